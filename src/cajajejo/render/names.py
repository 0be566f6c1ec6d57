"""Readable, random, valid job names: `eval-[prefix-]<adjective>-<animal>`.

The words come from coolname's curated lists (adjectives and animals only), not a hand-made list.
A `random.Random` can be passed in so that tests and golden files get the same name every time.
"""

from __future__ import annotations

import random
from typing import Any

from cajajejo import kube
from cajajejo.errors import Problem, UserInputError

JOB_KIND_PREFIX = "eval"


def generate_job_name(prefix: str | None = None, rng: random.Random | None = None) -> str:
    from coolname import RandomGenerator
    from coolname.data import config as coolname_config

    word_lists: Any = coolname_config
    generator = RandomGenerator(
        {
            "all": {"type": "cartesian", "lists": ["adjective", "animal"]},
            "adjective": word_lists["adjective"],
            "animal": word_lists["animal"],
        },
        rng or random.SystemRandom(),
    )
    name = "-".join(part for part in (JOB_KIND_PREFIX, prefix, generator.generate_slug()) if part)
    # Prefixes are at most 20 characters and coolname words at most 13, so this always holds.
    assert kube.dns1123_label_problem(name) is None, name
    return name


def check_dns_label(value: str, source: str) -> str:
    """A user-chosen job name or namespace must be a DNS-1123 label (a job name is also a pod label value)."""
    problem = kube.dns1123_label_problem(value)
    if problem:
        raise UserInputError(Problem(source, f"{value!r} {problem}"))
    return value
