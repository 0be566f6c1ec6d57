"""Reading input files and parsing YAML while remembering which line each field came from.

PyYAML's composer gives every node a start mark; we walk the node tree once to index
field paths to line numbers, so validation errors can say `file:line: field.path: ...`.
The same walk rejects duplicate keys, which PyYAML would otherwise silently resolve to the last one.
Aliases and deep nesting are refused before that walk (see `yaml_limits`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cajajejo.errors import Problem, UserInputError, one_line, quoted
from cajajejo.yaml_limits import MAX_DEPTH, shape_problem

# A ConfigMap holds at most 1 MiB, so no input file can usefully be larger.
MAX_INPUT_BYTES = 1024 * 1024

Loc = tuple[str | int, ...]

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_text_file(path: str | Path) -> str:
    """The UTF-8 text of `path`, or a UserInputError saying what is wrong with it."""
    p = Path(path)
    name = str(path)
    try:
        if p.is_dir():
            raise UserInputError(Problem(name, "is a directory; pass the path of a file"))
        raw = p.read_bytes()
    except FileNotFoundError:
        raise UserInputError(Problem(name, "no such file; check the path")) from None
    except PermissionError:
        raise UserInputError(Problem(name, "cannot be read: permission denied")) from None
    except OSError as exc:
        raise UserInputError(Problem(name, f"cannot be read: {exc.strerror or exc}")) from None
    if len(raw) > MAX_INPUT_BYTES:
        raise UserInputError(
            Problem(name, f"is {len(raw)} bytes; at most {MAX_INPUT_BYTES} fit in a Kubernetes ConfigMap")
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserInputError(Problem(name, f"is not UTF-8 text (bad byte at offset {exc.start})")) from None


@dataclass(frozen=True)
class YamlDocument:
    """A parsed YAML document with the line of every field path in it.

    `prefix` is where `data` sits in the document it was taken from (see `part`): field paths of
    problems found in `data` are reported from the top of the file, and `lines` are indexed that way.
    """

    name: str
    text: str
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)
    prefix: Loc = ()

    def line_of(self, loc: Loc) -> int | None:
        """Line of the deepest known field on `loc` (a missing field points at its parent)."""
        full = self.prefix + loc
        for end in range(len(full), -1, -1):
            line = self.lines.get(full[:end])
            if line is not None:
                return line
        return None

    def part(self, key: str, data: Any) -> YamlDocument:
        """The value under `key`, as a document of its own (an inline config inside a group's task)."""
        return YamlDocument(self.name, self.text, data, self.lines, (*self.prefix, key))


def parse_yaml(text: str, name: str) -> YamlDocument:
    """Parse one YAML document; syntax errors and duplicate keys become UserInputErrors."""
    documents = _parse(text, name, single=True)
    return documents[0] if documents else YamlDocument(name, text, None)


def parse_yaml_documents(text: str, name: str) -> list[YamlDocument]:
    """Parse every document of a `---`-separated stream; line numbers count from the top of the file.

    Problems of all documents (duplicate keys, aliases, depth) are reported together.
    """
    return _parse(text, name, single=False)


def _parse(text: str, name: str, *, single: bool) -> list[YamlDocument]:
    loader = _Loader(text)
    try:
        if single:
            node = loader.get_single_node()
            nodes = [] if node is None else [node]
        else:
            nodes = []
            while loader.check_node():
                nodes.append(loader.get_node())
        problems: list[Problem] = []
        indexed = [(node, _indexed(loader, node, problems, name)) for node in nodes]
        if problems:
            raise UserInputError(problems)
        return [YamlDocument(name, text, loader.construct_document(node), lines) for node, lines in indexed]
    except yaml.MarkedYAMLError as exc:
        raise UserInputError(_syntax_problem(exc, text, name)) from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow anywhere (NUL, other controls)
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        line = text.count("\n", 0, exc.position) + 1
        raise UserInputError(
            Problem(name, f"not valid YAML: character U+{code:04X} is not allowed in YAML; remove it", line=line)
        ) from None
    except yaml.YAMLError as exc:
        raise UserInputError(Problem(name, f"not valid YAML: {one_line(exc, 200)}")) from None
    except (ValueError, OverflowError) as exc:  # a scalar YAML resolved but cannot build: 2026-13-45, 10**5000
        raise UserInputError(Problem(name, f"not valid YAML: a value cannot be read ({one_line(exc, 120)})")) from None
    except RecursionError:  # PyYAML's pure-Python composer recurses (libyaml's, used when present, does not)
        raise UserInputError(Problem(name, f"nested more than {MAX_DEPTH} levels deep")) from None
    finally:
        loader.dispose()


def _indexed(loader: Any, node: yaml.Node, problems: list[Problem], name: str) -> dict[Loc, int]:
    """The line of every field path of one document; its shape and duplicate-key problems go to `problems`."""
    shape = shape_problem(node)
    if shape is not None:
        problems.append(Problem(name, shape.message, line=shape.line))
        return {}
    lines: dict[Loc, int] = {}
    _index(loader, node, (), lines, problems, name)
    return lines


def _syntax_problem(exc: yaml.MarkedYAMLError, text: str, name: str) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    if mark is None:
        return Problem(name, f"not valid YAML: {one_line(exc.problem or exc.context or 'syntax error', 200)}")
    line = mark.line + 1
    # PyYAML words a stray tab as "found character that cannot start any token" (or as an indentation
    # problem); people rarely see the tab, so name it.
    index = getattr(mark, "index", None)
    if isinstance(index, int) and 0 <= index < len(text) and text[index] == "\t":
        return Problem(
            name,
            f"not valid YAML: a tab character at column {mark.column + 1}; YAML indents with spaces only, "
            "replace the tab with spaces",
            line=line,
        )
    return Problem(name, f"not valid YAML: {one_line(exc.problem or exc.context or 'syntax error', 200)}", line=line)


def _index(loader: Any, node: yaml.Node, loc: Loc, lines: dict[Loc, int], problems: list[Problem], name: str) -> None:
    lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        first_seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = loader.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in first_seen:
                problems.append(
                    Problem(
                        name,
                        f"duplicate key (first at line {first_seen[key]}); keep only one",
                        field=dotted_path((*loc, key)),
                        line=line,
                    )
                )
                continue
            first_seen[key] = line
            lines[(*loc, key)] = line
            _index(loader, value_node, (*loc, key), lines, problems, name)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index(loader, item, (*loc, i), lines, problems, name)


def dotted_path(loc: Loc) -> str:
    """`("helm", "args", 2)` -> `helm.args[2]`; a key with odd characters is quoted: `env['A\\nB']`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not (isinstance(part, str) and part.isprintable() and 0 < len(part) <= 60):
            out += f"[{quoted(part)}]"
        else:
            out += f".{part}" if out else part
    return out
