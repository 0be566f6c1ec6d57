"""The Jinja environment: the package's templates, optionally overridden file by file from a user's folder."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any

import jinja2
from jinja2.bccache import Bucket

from cajajejo import __version__
from cajajejo.cache import read_entry, write_entry
from cajajejo.errors import Problem, UserInputError
from cajajejo.render.yaml_text import only_yaml_text, to_yaml


@functools.cache
def template_environment(template_dir: Path | None = None) -> jinja2.Environment:
    """One environment per template folder and process: Jinja compiles each template once per environment."""
    loaders: list[jinja2.BaseLoader] = []
    if template_dir is not None:
        if not template_dir.is_dir():
            raise UserInputError(Problem(str(template_dir), "is not a folder of templates (--template-dir)"))
        loaders.append(jinja2.FileSystemLoader(template_dir))
    loaders.append(jinja2.PackageLoader("cajajejo", "templates"))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        undefined=jinja2.StrictUndefined,
        finalize=only_yaml_text,
        autoescape=False,  # noqa: S701 - output is YAML, not HTML; every value is escaped by `yaml`
        keep_trailing_newline=True,
    )
    env.filters["yaml"] = to_yaml
    env.bytecode_cache = CacheFolderBytecode(f"jinja-{_code_generation_fingerprint(env)}-")
    return env


class CacheFolderBytecode(jinja2.BytecodeCache):
    """Compiled templates kept in the cache folder, so a run does not compile them again (~10 ms each).

    Jinja looks an entry up by template name and file name and uses it only if it was compiled from
    the same source text (a checksum of it is stored with the code), so an edited template, ours or one
    in a user's --template-dir, is compiled afresh. The entry names carry a fingerprint of everything
    else the compiled code depends on (see `_code_generation_fingerprint`). Entries that cannot be
    read or written are skipped: the template is then compiled as if there were no cache.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def load_bytecode(self, bucket: Bucket) -> None:
        data = read_entry(self.prefix + bucket.key)
        if data is not None:
            try:
                bucket.bytecode_from_string(data)
            except Exception:  # an entry written by another Jinja or Python: compile instead
                bucket.reset()

    def dump_bytecode(self, bucket: Bucket) -> None:
        write_entry(self.prefix + bucket.key, bucket.bytecode_to_string())


def _code_generation_fingerprint(env: jinja2.Environment) -> str:
    # Jinja's own entry header covers its bytecode format and the Python version, not the settings
    # that shape the generated code (syntax, whitespace handling, finalize, autoescape, extensions),
    # nor Jinja's or cajajejo's version.
    settings: tuple[Any, ...] = (
        jinja2.__version__,
        __version__,
        env.block_start_string,
        env.block_end_string,
        env.variable_start_string,
        env.variable_end_string,
        env.comment_start_string,
        env.comment_end_string,
        env.line_statement_prefix,
        env.line_comment_prefix,
        env.trim_blocks,
        env.lstrip_blocks,
        env.newline_sequence,
        env.keep_trailing_newline,
        env.optimized,
        repr(env.autoescape),
        _qualified_name(env.finalize),
        tuple(sorted(env.extensions)),
    )
    return hashlib.sha256(repr(settings).encode()).hexdigest()[:16]


def _qualified_name(value: Any) -> str:
    return f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', repr(value))}"
