"""Generated job names: coolname's words and coolname's picks, without importing coolname."""

from __future__ import annotations

import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cajajejo.errors import CajajejoError
from cajajejo.render import names
from cajajejo.render.names import generate_job_name, word_list


def _through_coolname(prefix: str | None, rng: random.Random) -> str:
    """How names were made before: a coolname generator over its adjective and animal lists."""
    from coolname import RandomGenerator
    from coolname.data import config

    lists: Any = config
    generator = RandomGenerator(
        {
            "all": {"type": "cartesian", "lists": ["adjective", "animal"]},
            "adjective": lists["adjective"],
            "animal": lists["animal"],
        },
        rng,
    )
    return "-".join(part for part in ("eval", prefix, generator.generate_slug()) if part)


def test_the_words_are_coolnames_lists() -> None:
    from coolname.data import config

    lists: Any = config
    assert list(word_list("adjective")) == lists["adjective"]["words"]
    assert list(word_list("animal")) == lists["animal"]["words"]


@pytest.mark.parametrize("prefix", [None, "pythia"])
def test_a_seed_gives_the_name_coolname_gave(prefix: str | None) -> None:
    for seed in range(500):
        ours, theirs = random.Random(seed), random.Random(seed)
        words, suffix = generate_job_name(prefix, ours).rsplit("-", 1)
        assert words == _through_coolname(prefix, theirs), seed
        assert suffix == "".join(theirs.choice(names.SUFFIX_ALPHABET) for _ in range(4))


def test_names_are_valid_labels_even_with_the_longest_words() -> None:
    for words in (word_list("adjective"), word_list("animal")):
        assert all(re.fullmatch(r"[a-z]{1,13}", word) for word in words)
    longest = f"eval-{'p' * 20}-{max(word_list('adjective'), key=len)}-{max(word_list('animal'), key=len)}-0000"
    assert len(longest) <= 63
    assert re.fullmatch(r"eval-[a-z]+-[a-z]+-[a-z0-9]{4}", generate_job_name())


def test_there_are_enough_names_for_tens_of_thousands_of_jobs() -> None:
    count = len(word_list("adjective")) * len(word_list("animal")) * len(names.SUFFIX_ALPHABET) ** names.SUFFIX_LENGTH
    jobs = 50_000
    assert jobs * jobs / (2 * count) < 0.01  # odds that any two of them share a name (birthday bound)


def test_without_a_seed_names_differ() -> None:
    assert len({generate_job_name() for _ in range(20)}) > 1


def test_coolname_is_not_imported() -> None:
    probe = "import sys\nfrom cajajejo.render.names import generate_job_name as g\ng()\nprint(sorted(sys.modules))"
    modules = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert "coolname" not in modules


def test_a_changed_word_file_format_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "adjective.txt").write_text("# comment\nmax_length = 13\nbig  # inline comment\nsmall\n")
    (tmp_path / "animal.txt").write_text("polar bear\n")
    monkeypatch.setattr(names, "_coolname_data", lambda: tmp_path)
    word_list.cache_clear()
    try:
        assert word_list("adjective") == ("big", "small")
        with pytest.raises(CajajejoError, match="'polar bear' is not a lower-case word"):
            word_list("animal")
    finally:
        word_list.cache_clear()
