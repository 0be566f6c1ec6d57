"""Readable, random, valid job names: `eval-[prefix-]<adjective>-<animal>-<4 letters or digits>` (`train-...`).

The words come from coolname's curated lists (adjectives and animals only), not a hand-made list.
A `random.Random` can be passed in so that tests and golden files get the same name every time.

The 640 x 413 word pairs alone (264,320) collide with even odds once ~600 jobs share a namespace;
the suffix multiplies that by 36^4 (~4.4e11 names), so a namespace of 50,000 jobs holds a clash
with ~0.3% odds. A clash still never takes over a job: submission draws a fresh name instead.

Importing coolname builds every one of its word lists and a default generator (~90 ms), for the two
lists used here. So the two word files are read straight from coolname's data folder, located without
importing the package, and the pick is made the way coolname's generator makes it for a 2-list
cartesian config, draw for draw: a seeded `rng` gives the same name it gave through coolname.
"""

from __future__ import annotations

import functools
import importlib.util
import random
import re
from pathlib import Path

from cajajejo import kube
from cajajejo.errors import CajajejoError, Problem, UserInputError

JOB_KIND_PREFIXES = {"evaluation": "eval", "training": "train"}
SUFFIX_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
SUFFIX_LENGTH = 4

_WORD = re.compile(r"[a-z]+")


def generate_job_name(prefix: str | None = None, rng: random.Random | None = None, *, kind: str = "evaluation") -> str:
    rng = rng or random.SystemRandom()
    words = _adjective_animal(rng)  # first, so that a seed gives the words it gave before the suffix
    suffix = "".join(rng.choice(SUFFIX_ALPHABET) for _ in range(SUFFIX_LENGTH))
    name = "-".join(part for part in (JOB_KIND_PREFIXES[kind], prefix, *words, suffix) if part)
    # Prefixes are at most 20 characters and coolname words at most 13, so this always holds.
    assert kube.dns1123_label_problem(name) is None, name
    return name


def check_dns_label(value: str, source: str) -> str:
    """A user-chosen job name or namespace must be a DNS-1123 label (a job name is also a pod label value)."""
    problem = kube.dns1123_label_problem(value)
    if problem:
        raise UserInputError(Problem(source, f"{value!r} {problem}"))
    return value


def _adjective_animal(rng: random.Random) -> tuple[str, str]:
    adjectives, animals = word_list("adjective"), word_list("animal")
    # coolname numbers the pairs adjective-major and draws one number per try; its generator draws
    # once when it is built (a self-check) and retries a pair of two equal words.
    rng.randrange(len(adjectives) * len(animals))
    while True:
        adjective, animal = divmod(rng.randrange(len(adjectives) * len(animals)), len(animals))
        if adjectives[adjective] != animals[animal]:
            return adjectives[adjective], animals[animal]


@functools.cache
def word_list(name: str) -> tuple[str, ...]:
    """coolname's list `name` (data/<name>.txt): one word a line, `#` comments and `option = value` lines."""
    path = _coolname_data() / f"{name}.txt"
    words = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or "=" in line:
            continue
        if not _WORD.fullmatch(line):
            raise CajajejoError(f"{path}: {line!r} is not a lower-case word; coolname's format has changed")
        words.append(line)
    if not words:
        raise CajajejoError(f"{path}: no words; coolname's format has changed")
    return tuple(words)


def _coolname_data() -> Path:
    # Located, not imported: importing even coolname.data runs coolname/__init__.py first.
    spec = importlib.util.find_spec("coolname")
    if spec is None or not spec.submodule_search_locations:
        raise CajajejoError("the coolname package is missing; reinstall cajajejo")
    return Path(next(iter(spec.submodule_search_locations))) / "data"
