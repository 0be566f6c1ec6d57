"""The `slurm` section: Slurm's own formats, and one line per mistake naming the field and its line."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from cajajejo.config.slurm import SlurmSettings, slurm_settings_of, time_limit_seconds
from cajajejo.config.source import parse_yaml
from cajajejo.errors import UserInputError

BASE: dict[str, Any] = {"workdir": "/shared/jobs", "time_limit": "04:00:00"}


def settings_from_yaml(slurm: dict[str, Any]) -> SlurmSettings | None:
    text = yaml.safe_dump({"version": "v4", "kind": "training", "slurm": slurm}, sort_keys=False)
    return slurm_settings_of(parse_yaml(text, "job.yml"))


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("90", 5400), ("5:30", 330), ("01:30:00", 5400), ("2-12", 216_000), ("1-00:30", 88_200), ("0-0:0:45", 45)],
)
def test_slurm_time_formats(value: str, seconds: int) -> None:
    assert time_limit_seconds(value) == seconds
    assert settings_from_yaml({**BASE, "time_limit": value, "signal_grace_seconds": 30}) is not None or seconds <= 30


def test_numbers_written_without_quotes_are_read_as_slurm_text() -> None:
    settings = settings_from_yaml({**BASE, "time_limit": 90, "memory": 4096})
    assert settings is not None
    assert (settings.time_limit, settings.memory) == ("90", "4096")


def test_no_section_is_none() -> None:
    assert slurm_settings_of(parse_yaml("version: v4\n", "job.yml")) is None


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"time_limit": "1:2:3:4"}, "job.yml:5: slurm.time_limit: '1:2:3:4' is not a Slurm time limit"),
        ({"time_limit": "0"}, "job.yml:5: slurm.time_limit: '0' must be longer than zero"),
        ({"memory": "32Gi"}, "job.yml:6: slurm.memory: '32Gi' is not a Slurm memory size"),
        ({"partition": "gpu\n#SBATCH --wrap=x"}, "job.yml:6: slurm.partition: 'gpu\\n#SBATCH --wrap=x' is not"),
        ({"account": "a b"}, "job.yml:6: slurm.account: 'a b' is not a Slurm name"),
        ({"qos": "x#y"}, "job.yml:6: slurm.qos: 'x#y' is not a Slurm name"),
        ({"constraint": "a100 ib"}, "job.yml:6: slurm.constraint: 'a100 ib' is not a Slurm constraint"),
        ({"workdir": "relative/dir"}, "job.yml:4: slurm.workdir: 'relative/dir' must be an absolute path"),
        ({"workdir": "/shared/my jobs"}, "job.yml:4: slurm.workdir: '/shared/my jobs' must be an absolute path"),
        ({"workdir": "/shared/%j"}, "job.yml:4: slurm.workdir: '/shared/%j' must be an absolute path"),
        ({"extra_sbatch": ["--exclusive --wrap=x"]}, "job.yml:7: slurm.extra_sbatch[0]: '--exclusive --wrap=x' is"),
        ({"extra_sbatch": ["--mail-type=END\n#SBATCH --x"]}, "job.yml:7: slurm.extra_sbatch[0]:"),
        ({"extra_sbatch": ["--signal=B:USR2@5"]}, "job.yml:7: slurm.extra_sbatch[0]: --signal is written by cajajejo"),
        (
            {"extra_sbatch": ["--outp=/tmp/x.log"]},
            "job.yml:7: slurm.extra_sbatch[0]: --outp (sbatch reads it as --output)",
        ),
        ({"extra_sbatch": ["--arr=0-9"]}, "job.yml:7: slurm.extra_sbatch[0]: --arr (sbatch reads it as --array) is"),
        ({"extra_sbatch": ["--comment=hetjob"]}, "job.yml:7: slurm.extra_sbatch[0]: 'hetjob' and 'packjob' mean"),
        ({"partition": "HetJob-a"}, "job.yml:6: slurm.partition: 'hetjob' and 'packjob' mean something to sbatch"),
        ({"workdir": "/x/packjob"}, "job.yml:4: slurm.workdir: 'hetjob' and 'packjob' mean something to sbatch"),
        ({"signal_grace_seconds": 10}, "job.yml:6: slurm.signal_grace_seconds: Input should be greater than or equal"),
        ({"signal_grace_seconds": 14400}, "job.yml:3: slurm: signal_grace_seconds (14400) must be shorter than"),
        ({"gpus_per_node": 2, "gres": "gpu:2"}, "job.yml:3: slurm: set one of gpus_per_node or gres, not both"),
        ({"container": {"runtime": "docker", "image": "x"}}, "job.yml:7: slurm.container.runtime: 'docker' is not"),
        ({"secret_files": {"HF-TOKEN": "/s"}}, "job.yml:7: slurm.secret_files.HF-TOKEN: 'HF-TOKEN' is not a shell"),
        ({"secret_files": {"HF_TOKEN": "~/t"}}, "job.yml:7: slurm.secret_files.HF_TOKEN: '~/t' must be an absolute"),
        ({"partiton": "gpu"}, "job.yml:6: slurm.partiton: unknown field; did you mean 'partition'?"),
        ({"nodes": "2"}, "job.yml:6: slurm.nodes: Input should be a valid integer"),
    ],
)
def test_each_mistake_is_one_line_naming_the_field(change: dict[str, Any], expected: str) -> None:
    with pytest.raises(UserInputError) as caught:
        settings_from_yaml({**BASE, **change})
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(expected), message


def test_what_the_section_leaves_open_comes_from_settings_and_the_option_wins() -> None:
    from cajajejo.settings import SPECS, Setting, Settings

    def settings(**values: str) -> Settings:
        return Settings({spec.name: Setting(spec.name, values.get(spec.name), "test") for spec in SPECS})

    section = settings_from_yaml({"time_limit": "10", "partition": "gpu"})
    assert section is not None
    resolved = section.with_defaults(
        settings(slurm_workdir="/shared/a", slurm_partition="cpu", slurm_account="ml"), source="job.yml"
    )
    assert (resolved.workdir, resolved.partition, resolved.account) == ("/shared/a", "gpu", "ml")
    assert section.with_defaults(settings(slurm_workdir="/shared/a"), workdir="/b", source="j").workdir == "/b"
    with pytest.raises(UserInputError, match=r"^job\.yml: slurm\.workdir: no Slurm workdir: set slurm\.workdir in"):
        section.with_defaults(settings(), source="job.yml")
    with pytest.raises(UserInputError, match=r"^setting slurm_workdir: 'rel/dir' must be an absolute path"):
        section.with_defaults(settings(slurm_workdir="rel/dir"), source="job.yml")
    with pytest.raises(UserInputError, match=r"^--workdir: '/a b' must be an absolute path"):
        section.with_defaults(settings(), workdir="/a b", source="job.yml")
