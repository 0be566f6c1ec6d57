"""The escaping filter: any value comes back unchanged, in the same place, whatever characters it holds."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from cajajejo.render.yaml_text import YamlText, dump_documents, load_documents, only_yaml_text, to_yaml
from tests.yaml_readers import retyped_scalars

HOSTILE = [
    'a"b\\c',
    "x\n---\nkind: Secret\n",
    "\x00\x07\x1b\x7f\x85\u2028\u2029\ufeff\U0001f600",
    "{{ config }} {% raw %}",
    "&anchor *alias !!python/object:os.system",
    "key: value # comment",
    "- item",
    "'single' \"double\"",
    "",
    " leading and trailing ",
    "yes",
    "null",
    "0x1F",
    "1e3",
]


@pytest.mark.parametrize("number", [5e-324, 1e16, -2.5e-10, 0.1, 1e300])
def test_floats_in_exponent_form_stay_floats(number: float) -> None:
    assert yaml.safe_load(f"a: {to_yaml(number)}") == {"a": number}


scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
values = st.recursive(scalars, lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner), max_leaves=20)


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_strings_stay_one_value(text: str) -> None:
    document = yaml.safe_load(f"a: {to_yaml(text)}\nb: 1\n")
    assert document == {"a": text, "b": 1}


@given(values)
def test_any_value_round_trips_through_the_filter(value: Any) -> None:
    assert yaml.safe_load(f"key: {to_yaml(value)}\nnext: true") == {"key": value, "next": True}


@given(st.lists(st.dictionaries(st.text(), values, min_size=1), min_size=1, max_size=3))
def test_any_documents_round_trip_through_the_dumper(documents: list[dict[str, Any]]) -> None:
    assert load_documents(dump_documents(documents)) == documents


# Strings that YAML 1.1 readers (kubectl's) or YAML 1.2 readers take for bools or numbers when plain.
LOOKALIKES = [
    "-_1",  # Go's YAML drops "_" from numbers: -_1 is -1 to kubectl
    "-_1e3",
    "y",
    "Y",
    "n",
    "N",
    "yes",
    "off",
    "On",
    "1e3",
    "1E3",
    "0o17",
    "123456789e12",
    "1e-400",
    "0.1.0",
    "12:30",
    "0x1F",
    "0b101",
    ".inf",
    "-.Inf",
    ".NaN",
    "~",
    "null",
    "2026-11-26",
    "<<",
    "=",
    "+1",
    "-1",
    "",
]


@pytest.mark.parametrize("text", LOOKALIKES)
def test_strings_other_readers_would_retype_are_quoted(text: str) -> None:
    written = dump_documents([{"labels": {"v": text}, "env": [{"name": text, "value": text}]}])
    assert retyped_scalars(written) == []
    assert load_documents(written) == [{"labels": {"v": text}, "env": [{"name": text, "value": text}]}]


@given(st.lists(st.dictionaries(st.text(max_size=12), values, min_size=1), min_size=1, max_size=3))
def test_no_string_is_read_as_another_type_by_a_yaml_1_1_reader(documents: list[dict[str, Any]]) -> None:
    assert retyped_scalars(dump_documents(documents)) == []


def test_multiline_text_is_written_as_a_literal_block() -> None:
    text = dump_documents([{"data": {"f.yml": "a: 1\nb: 2\n"}}])
    assert "f.yml: |\n    a: 1\n    b: 2\n" in text


def test_shared_lists_are_written_in_full() -> None:
    shared = [{"name": "A", "value": "1"}]
    text = dump_documents([{"x": shared, "y": shared}])
    assert "&" not in text
    assert "*" not in text


def test_only_filtered_values_may_be_output() -> None:
    assert only_yaml_text(YamlText('"x"')) == '"x"'
    with pytest.raises(TypeError, match="without the `yaml` filter"):
        only_yaml_text("x")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), object()])
def test_values_without_a_yaml_form_are_refused(value: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        to_yaml(value)
