import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cajajejo.config.run_specs import _parse_plain, load_run_specs
from cajajejo.errors import UserInputError
from tests.support import DEBUG_RUN_SPECS, RUN_SPECS


def test_examples_parse() -> None:
    assert load_run_specs(DEBUG_RUN_SPECS).descriptions[0] == "simple_mcqa:model=huggingface/model"
    assert len(load_run_specs(RUN_SPECS).descriptions) == 4
    assert load_run_specs(RUN_SPECS).text == RUN_SPECS.read_text()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('entries: [ {description: "a"', ":1: not valid HOCON: "),
        ("foo: 1", "expected `entries: ["),
        ("entries: []", "expected `entries: ["),
        ("entries: [1]", "entries[0]: needs a non-empty `description` string"),
        ('entries: [ {description: ""} ]', "entries[0]: needs a non-empty `description` string"),
        ('entries: [ {description: "a", priority: "high"} ]', "entries[0]: `priority` must be a whole number"),
        ('# x\ninclude "other.conf"\nentries: [ {description: "a"} ]', ":2: include is not supported"),
        ("", "expected `entries: ["),
    ],
)
def test_bad_run_specs(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "specs.conf"
    path.write_text(text)
    with pytest.raises(UserInputError) as caught:
        load_run_specs(path)
    (line,) = str(caught.value).splitlines()
    assert line.startswith(str(path))
    assert expected in line


# --- The plain-HOCON fast path: whatever it reads, pyhocon reads the same way ---------------------------

Tree = Any


def _typed(value: Tree) -> Tree:
    """`value` with every scalar paired with its type, so that 1, True and "1" never compare equal."""
    if hasattr(value, "items"):
        return {key: _typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_typed(item) for item in value]
    return (type(value).__name__, value)


def _pyhocon(text: str) -> Tree:
    from pyhocon import ConfigFactory

    return ConfigFactory.parse_string(text, resolve=False)


def _joined(draw: st.DrawFn, items: list[str], separators: st.SearchStrategy[str]) -> str:
    return "".join(item + (draw(separators) if i < len(items) - 1 else "") for i, item in enumerate(items))


def _hocon(
    keys: st.SearchStrategy[str],
    separators: st.SearchStrategy[str],
    item_separators: st.SearchStrategy[str],
    gaps: st.SearchStrategy[str],
    scalars: st.SearchStrategy[str],
    *,
    unique_keys: bool,
    ends: st.SearchStrategy[str],
) -> st.SearchStrategy[str]:
    """HOCON-like texts: a root of `key: value` members, values nested with the given pieces."""

    @st.composite
    def members(draw: st.DrawFn, values: st.SearchStrategy[str]) -> str:
        names = draw(st.lists(keys, max_size=4, unique=unique_keys))
        items = [name + draw(separators) + draw(values) for name in names]
        return draw(gaps) + _joined(draw, items, item_separators) + draw(st.sampled_from(["", ","]) if items else gaps)

    @st.composite
    def elements(draw: st.DrawFn, values: st.SearchStrategy[str]) -> str:
        items = draw(st.lists(values.filter(lambda value: value != '""'), max_size=4))  # see the next test
        return draw(gaps) + _joined(draw, items, item_separators) + draw(st.sampled_from(["", ","]) if items else gaps)

    def nested(values: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        closing = gaps
        return st.builds(lambda body, end: "[" + body + end + "]", elements(values), closing) | st.builds(
            lambda body, end: "{" + body + end + "}", members(values), closing
        )

    values = st.recursive(scalars, nested, max_leaves=10)
    return st.builds(lambda body, end: body + end, members(values), ends)


plain_strings = st.text(st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters='"\\'), max_size=12).map(
    lambda text: f'"{text}"'
)
PLAIN = _hocon(
    keys=st.sampled_from(["entries", "description", "priority", "groups", "a_b", "x-y", "_z", "A1", "e-", "a--b"]),
    separators=st.sampled_from([":", ": ", " : ", "=", " = ", "\t:\t"]),
    item_separators=st.sampled_from([",", "\n", ", ", ",\n", " # note\n", "// note\n", "\n\n", " ,\n  "]),
    gaps=st.sampled_from(["", " ", "\n", "\n  ", " # a # comment\n", "\t// c\n\t", "\n\n"]),
    scalars=plain_strings | st.integers(-(10**18) + 1, 10**18 - 1).map(str) | st.just("-0"),  # 18 digits at most
    unique_keys=True,
    ends=st.sampled_from(["", "\n", "  \n", " # note", "\n// note\n"]),  # not blanks alone: see _BLANKS_AT_END
)
NEAR_MISSES = _hocon(
    keys=st.sampled_from(["entries", "description", "a.b", "1a", "true", "include", '"q"', "a b", "x-y", "a$"]),
    separators=st.sampled_from([":", " = ", "", " ", ":\n", "+=", "::"]),
    item_separators=st.sampled_from([",", "\n", "", " ", ",,", "\n,", "\r\n", "#c\n", ", ,"]),
    gaps=st.sampled_from(["", " ", "\n", "\r\n", " #c\n", "//c\n", "/ /", "\ufeff", "\u00a0"]),
    scalars=st.text(st.sampled_from([*'ab :=,/#{}[]$."\\\t\n', "é", "\u2028", "\x01", "1"]), max_size=8).map(
        lambda text: f'"{text}"'
    )
    | st.sampled_from(["0", "-0", "01", "1.5", "1e3", "0x1", "+1", "1_000", "true", "null", "abc", "1 2", "-", "${x}"])
    | st.integers().map(str),
    unique_keys=False,
    ends=st.sampled_from(["", " ", "\t", "\n", " #c", "\r\n"]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=PLAIN)
def test_plain_hocon_takes_the_fast_path_and_means_the_same(text: str) -> None:
    tree = _parse_plain(text)
    assert tree is not None
    assert _typed(tree) == _typed(_pyhocon(text))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=NEAR_MISSES | PLAIN)
def test_whatever_the_fast_path_reads_pyhocon_reads_the_same(text: str) -> None:
    tree = _parse_plain(text)
    if tree is not None:
        assert _typed(tree) == _typed(_pyhocon(text))


@pytest.mark.parametrize(
    "text",
    [
        'entries: [ {description: "a"} {description: "b"} ]',  # HOCON merges the two objects
        'entries: [ {description: "a" "b"} ]',  # and joins the two strings
        'entries: [ {description: "a", description: "b"} ]',  # and keeps the last duplicate
        'entries: [ {description: "a\tb"} ]',  # pyhocon turns tabs into spaces
        'entries: [ {description: "a", groups: [""]} ]',  # and drops empty strings from lists
        'entries: [ {description: "a", priority: 1 ',  # and reads a number with blanks after it as text
        'entries: [ {description: "a"} ]\npriority: 1 ',
        'entries: [ {description: "a", priority: 01} ]',
        'entries: [ {description: "a"} ]\r\n',
        'entries: [ {description: "a"}, {description: ${?X}} ]',
        '{ entries: [ {description: "a"} ] }',
    ],
)
def test_anything_else_goes_to_pyhocon(text: str) -> None:
    assert _parse_plain(text) is None


def test_beyond_the_plain_part_pyhocon_still_reads_the_file(tmp_path: Path) -> None:
    path = tmp_path / "specs.conf"
    text = 'entries: [\n  {"description": "mmlu:model=huggingface/model", priority: 2},\n  {description: boolq}\n]\n'
    path.write_text(text)
    assert _parse_plain(text) is None
    assert load_run_specs(path).descriptions == ("mmlu:model=huggingface/model", "boolq")


def test_the_examples_are_read_without_pyhocon() -> None:
    probe = (
        "import sys\nfrom cajajejo.config.run_specs import load_run_specs\n"
        f"assert len(load_run_specs({str(RUN_SPECS)!r}).descriptions) == 4\nprint(sorted(sys.modules))"
    )
    modules = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert "pyhocon" not in modules
    assert "pyparsing" not in modules
    assert _typed(_parse_plain(RUN_SPECS.read_text())) == _typed(_pyhocon(RUN_SPECS.read_text()))
