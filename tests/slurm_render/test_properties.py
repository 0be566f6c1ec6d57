"""Hostile strings in every free-text field reach the batch script only as data.

For any text in a field, the script either is refused with one line naming the field, or: its
`#SBATCH` option names are the same, in the same order; the values that went on `#SBATCH` lines parse
back exactly; the same commands run (nothing else: a canary command in the strings never runs); and
every process gets exactly the argv and env the config says, as run by real bash in the sandbox.
"""

from __future__ import annotations

import re
import string
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from cajajejo.config.evaluation import EvaluationJobConfig
from cajajejo.config.slurm import SlurmSettings, has_component_word
from cajajejo.config.training import TrainingJobConfig
from cajajejo.credentials import credential_in_value, is_credential_name
from cajajejo.errors import UserInputError
from cajajejo.render.slurm import SCRIPT_ENV, render_slurm_script, sbatch_directives
from cajajejo.runtime_contract import RESERVED_ENV, TRAINING_ENV
from tests.slurm_render import (
    JOB_ID,
    SMOKE,
    evaluation_config,
    expected_torchrun,
    run_script,
    training_config,
)

CANARY = "PWNED"
# Strings that mean something to a shell, to sbatch's #SBATCH reader, to Jinja, torchrun or the kubelet.
_tricky = st.sampled_from(
    [
        f"$(touch {CANARY})",
        f"`touch {CANARY}`",
        f"; touch {CANARY}",
        f"\ntouch {CANARY}\n",
        f"\n#SBATCH --wrap='touch {CANARY}'\n",
        f"' ; touch {CANARY} ; '",
        f'" ; touch {CANARY} ; "',
        "${SLURM_NODEID}",
        "$SLURM_JOB_ID",
        "${IFS}",
        "\\",
        "*",
        "~",
        "!!",
        "%x",
        "#",
        "--nnodes=9",
        "{{ x }}",
        "{% if %}",
        "\r",
        "\t",
        "\u2028",
        "-",
        "hetjob",
    ]
)
_chars = st.characters(exclude_characters="\x00", exclude_categories=["Cs"])  # both refused: test_script
free_text = (
    st.lists(st.one_of(st.text(_chars, max_size=8), _tricky), max_size=4)
    .map("".join)
    .filter(lambda s: credential_in_value(s) is None)
)
non_blank = free_text.filter(lambda s: s.strip() != "")
env_names = st.text(string.ascii_uppercase + "_", min_size=1, max_size=10).filter(
    lambda n: n not in RESERVED_ENV | TRAINING_ENV | SCRIPT_ENV and not is_credential_name(n) and n[0] != "_"
)
_JOB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_HEADER = ["--time", "--nodes", "--ntasks-per-node", "--cpus-per-task", "--mem", "--gpus-per-node"]
_TAIL = ["--output", "--error", "--open-mode", "--requeue", "--signal"]
PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def accepted_settings(texts: dict[str, str]) -> tuple[SlurmSettings, dict[str, str]]:
    """Settings with each of `texts` that its field accepts; one refused is refused alone, in its field."""
    base: dict[str, Any] = {"workdir": "/shared/jobs", "time_limit": "60"}
    accepted = {}
    for field, text in texts.items():
        try:
            SlurmSettings.model_validate({**base, field: text})
        except ValidationError as exc:
            refused_in = [error["loc"] for error in exc.errors()]
        else:
            accepted[field] = text
            continue
        assert refused_in == [(field,)]
    return SlurmSettings.model_validate({**base, **accepted}), accepted


def expected_names(accepted: dict[str, str]) -> list[str]:
    before = [f"--{field}" for field in ("partition", "account", "qos") if field in accepted]
    after = ["--constraint"] if "constraint" in accepted else []
    return ["--job-name", *before, *_HEADER, *after, *_TAIL]


def skeleton(script: str) -> tuple[int, list[str]]:
    """The script's number of lines, and its comment lines up to any `=`: what no value may change."""
    lines = script.split("\n")
    return len(lines), [line.split("=")[0] for line in lines if line.lstrip().startswith("#")]


def checked_job_name(name: str, render: Any) -> str:
    """`name` if Slurm can have it; otherwise show it is refused in one line, and use another."""
    if _JOB_NAME.fullmatch(name) and not has_component_word(name):
        return name
    with pytest.raises(UserInputError) as caught:
        render(name)
    assert str(caught.value).startswith("--job-name: ")
    assert "\n" not in str(caught.value)
    return "prop"


@PROPERTY
@given(
    script_path=non_blank,
    args=st.lists(free_text, max_size=4),
    env=st.dictionaries(env_names, free_text, max_size=3),
    provenance=free_text,
    job=st.one_of(free_text, st.from_regex(_JOB_NAME, fullmatch=True)),
    config_path=free_text,
    partition=free_text,
    account=free_text,
    qos=free_text,
    constraint=free_text,
)
def test_free_text_in_a_training_job_is_data_in_the_batch_script(
    script_path: str,
    args: list[str],
    env: dict[str, str],
    provenance: str,
    job: str,
    config_path: str,
    partition: str,
    account: str,
    qos: str,
    constraint: str,
) -> None:
    base = training_config()
    data = base.model_dump(mode="json", by_alias=True)
    data["training"]["script"] = {"path": script_path, "args": args}
    data["training"]["nnodes"] = 2
    data["kubernetes_config"]["env"] = env
    config = TrainingJobConfig.model_validate(data)
    slurm, accepted = accepted_settings(
        {"partition": partition, "account": account, "qos": qos, "constraint": constraint}
    )
    stamps = {"CONFIG_VERSION": provenance, "CONFIG_PATH_GIT_REPO": provenance[::-1]}

    def render(job_name: str) -> str:
        return render_slurm_script(config, slurm, job_name=job_name, config_path=config_path, provenance_env=stamps)

    job_name = checked_job_name(job, render)
    script = render(job_name)
    data["training"]["script"] = {"path": "x", "args": ["a"] * len(args)}
    data["kubernetes_config"]["env"] = dict.fromkeys(env, "v")
    plain = render_slurm_script(
        TrainingJobConfig.model_validate(data),
        slurm,
        job_name="plain",
        config_path="c",
        provenance_env=dict.fromkeys(stamps, "p"),
    )
    assert skeleton(script) == skeleton(plain)
    directives = sbatch_directives(script)
    assert [option for option, _ in directives] == expected_names(accepted)
    assert {option[2:]: value for option, value in directives if option[2:] in accepted} == accepted
    assert directives[0] == ("--job-name", job_name)
    with tempfile.TemporaryDirectory() as folder:
        run = run_script(script, Path(folder), nodes=2)
        assert run.returncode == 0, run.stderr
        assert run.calls == ["scontrol show hostnames node-[a-b]", "scontrol -o show node node-a", "srun"]
        started = run.programs("torchrun")
        assert [argv for argv, _ in started] == [expected_torchrun(config, n, [], config_path) for n in range(2)]
        for _, received in started:
            assert {name: received[name] for name in env} == env
            assert {name: received[name] for name in stamps} == stamps
            assert received["JOB_NAME"] == job_name
        assert not (Path(folder) / CANARY).exists()
        assert not list(Path(folder).glob(f"**/{CANARY}"))


@PROPERTY
@given(
    config_path=free_text,
    helm_config_path=free_text,
    trainer_args=st.lists(free_text, max_size=3),
    env=st.dictionaries(env_names, free_text, max_size=2),
    tracking_uri=non_blank,
)
def test_paths_and_arguments_round_trip_to_the_trainer_and_the_evaluator(
    config_path: str, helm_config_path: str, trainer_args: list[str], env: dict[str, str], tracking_uri: str
) -> None:
    trainer = training_config(SMOKE)
    slurm = SlurmSettings.model_validate({"workdir": "/shared/jobs", "time_limit": "60"})
    script = render_slurm_script(
        trainer,
        slurm,
        job_name="prop",
        config_path=config_path,
        provenance_env={},
        extra_trainer_args=trainer_args,
    )
    own = ["--checkpoint-dir", "/shared/jobs/checkpoints/prop"]
    with tempfile.TemporaryDirectory() as folder:
        run = run_script(script, Path(folder), nodes=trainer.training.nnodes)
        assert run.returncode == 0, run.stderr
        assert [argv for argv, _ in run.programs("torchrun")] == [
            expected_torchrun(trainer, n, [*own, *trainer_args], config_path) for n in range(trainer.training.nnodes)
        ]
        assert not list(Path(folder).glob(f"**/{CANARY}"))

    data = evaluation_config().model_dump(mode="json", by_alias=True)
    data["kubernetes_config"]["env"] = env
    data["mlflow_config"]["tracking_uri"] = tracking_uri
    try:
        evaluation = EvaluationJobConfig.model_validate(data)
    except ValidationError:  # a URI with what looks like a credential in it: refused by the config itself
        return
    script = render_slurm_script(
        evaluation,
        slurm,
        job_name="prop",
        config_path=config_path,
        helm_config_path=helm_config_path,
        provenance_env={},
    )
    assert [option for option, _ in sbatch_directives(script)] == ["--job-name", *_HEADER, *_TAIL]
    with tempfile.TemporaryDirectory() as folder:
        run = run_script(script, Path(folder), nodes=1)
        assert run.returncode == 0, run.stderr
        scratch = "/shared/jobs/scratch/prop"
        started = run.programs("cajajejo")
        assert [argv for argv, _ in started] == [
            ["models", "download", "--config", config_path, "--scratch-dir", scratch],
            [
                "--trace",
                "evaluate",
                "--config",
                config_path,
                "--helm-config",
                helm_config_path,
                "--scratch-dir",
                scratch,
            ],
        ]
        for _, received in started:
            assert {name: received[name] for name in env} == env
            assert received["MLFLOW_TRACKING_URI"] == tracking_uri
            assert received["SLURM_JOB_ID"] == JOB_ID
        assert not list(Path(folder).glob(f"**/{CANARY}"))
