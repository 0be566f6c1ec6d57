from pathlib import Path

import pytest

from cajajejo.config.run_specs import load_run_specs
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
