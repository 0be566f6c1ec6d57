"""The rendered batch script: #SBATCH lines as the settings say, the commands each node runs, signals, secrets."""

from __future__ import annotations

import shlex
import socket
from pathlib import Path
from typing import Any

import jinja2
import pytest

from cajajejo.config.training import TrainingJobConfig
from cajajejo.errors import RenderedManifestError, UserInputError
from cajajejo.render.shell import ShellText, expansion, sbatch, sh, sh_command, shell_environment
from cajajejo.render.slurm import check_script, render_slurm_script, sbatch_directives
from tests.slurm_render import (
    JOB_ID,
    SMOKE,
    evaluation_config,
    expected_torchrun,
    run_script,
    slurm_settings,
    training_config,
)

PROVENANCE = {"CONFIG_VERSION": "10abfb1bf8a0", "CONFIG_PATH_GIT_REPO": "jobs/training/x.yml"}
CONFIG_PATH = "/shared/jobs/run-1/train_config.yml"


def render(config: Any, settings: Any = None, **options: Any) -> str:
    options.setdefault("job_name", "run-1")
    options.setdefault("config_path", CONFIG_PATH)
    options.setdefault("provenance_env", PROVENANCE)
    return render_slurm_script(config, settings or slurm_settings(), **options)


def test_sbatch_lines_parse_back_to_the_settings() -> None:
    settings = slurm_settings(
        partition="gpu,gpu-long",
        account="ml-platform",
        qos="high",
        time_limit="2-12:30:00",
        cpus_per_task=12,
        memory="64G",
        constraint="a100&ib",
        extra_sbatch=["--exclusive", "--mail-type=END,FAIL"],
        signal_grace_seconds=300,
    )
    directives = sbatch_directives(render(training_config(), settings))
    assert directives == [
        ("--job-name", "run-1"),
        ("--partition", "gpu,gpu-long"),
        ("--account", "ml-platform"),
        ("--qos", "high"),
        ("--time", "2-12:30:00"),
        ("--nodes", "4"),
        ("--ntasks-per-node", "1"),
        ("--cpus-per-task", "12"),
        ("--mem", "64G"),
        ("--gpus-per-node", "1"),
        ("--constraint", "a100&ib"),
        ("--output", "/shared/jobs/logs/%x-%j.out"),
        ("--error", "/shared/jobs/logs/%x-%j.out"),
        ("--open-mode", "append"),
        ("--requeue", None),
        ("--signal", "B:USR1@300"),
        ("--exclusive", None),
        ("--mail-type", "END,FAIL"),
    ]


def test_unset_resources_follow_compute_config_and_gres_replaces_gpus() -> None:
    # example: cpu "8", memory 32Gi, one nvidia-l4 per pod, 4 pods.
    directives = dict(sbatch_directives(render(training_config())))
    assert (directives["--cpus-per-task"], directives["--mem"], directives["--gpus-per-node"]) == ("8", "32768M", "1")
    assert "--partition" not in directives
    assert "--account" not in directives
    with_gres = dict(sbatch_directives(render(training_config(), slurm_settings(gres="gpu:l4:1", requeue=False))))
    assert with_gres["--gres"] == "gpu:l4:1"
    assert "--gpus-per-node" not in with_gres
    assert "--no-requeue" in with_gres
    assert "--requeue" not in with_gres


def test_a_multi_node_script_runs_torchrun_once_per_node_with_the_first_node_as_rendezvous(tmp_path: Path) -> None:
    config = training_config()
    run = run_script(render(config), tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.calls == ["scontrol show hostnames node-[a-d]", "scontrol -o show node node-a", "srun"]
    started = run.programs("torchrun")
    assert [argv for argv, _ in started] == [expected_torchrun(config, node, [], CONFIG_PATH) for node in range(4)]
    for node, (argv, env) in enumerate(started):
        assert "--rdzv-endpoint=addr-of-node-a:24242" in argv  # the first node's NodeAddr, a port from the job id
        assert f"--node-rank={node}" in argv
        assert (env["NODE_RANK"], env["RANK"], env["MASTER_ADDR"]) == (str(node), str(node), "addr-of-node-a")
        assert (env["NNODES"], env["WORLD_SIZE"], env["MASTER_PORT"]) == ("4", "4", "24242")
        assert env["JOB_NAME"] == "run-1"
        assert env["CONFIG_VERSION"] == "10abfb1bf8a0"
        assert env["TRANSFORMERS_CACHE"] == "/models/cache"  # the config's own env
    srun_options = (run.out / "srun.options").read_bytes().split(b"\0")[:-1]
    # srun does not inherit sbatch's --cpus-per-task (Slurm 22.05+): without it each task gets one CPU.
    assert srun_options == [b"--kill-on-bad-exit=1", b"--nodes=4", b"--ntasks-per-node=1", b"--cpus-per-task=8"]


def test_the_built_in_trainer_gets_the_config_and_a_checkpoint_dir_of_its_own(tmp_path: Path) -> None:
    config = training_config(SMOKE)
    run = run_script(render(config, extra_trainer_args=["--max-steps", "10"]), tmp_path, nodes=config.training.nnodes)
    assert run.returncode == 0, run.stderr
    trainer_args = ["--checkpoint-dir", "/shared/jobs/checkpoints/run-1", "--max-steps", "10"]
    assert [argv for argv, _ in run.programs("torchrun")] == [
        expected_torchrun(config, node, trainer_args, CONFIG_PATH) for node in range(config.training.nnodes)
    ]
    assert run.programs("torchrun")[0][0][-7:-4] == ["cajajejo.training", "--config", CONFIG_PATH]


def test_usr1_makes_the_trainer_stop_and_the_job_requeue(tmp_path: Path) -> None:
    run = run_script(render(training_config()), tmp_path, wait_for_signal="USR1")
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in run.out.glob("stopped.*")) == [f"stopped.{n}" for n in range(4)]
    assert run.calls[-1] == f"scontrol requeue {JOB_ID}"
    assert "stopped on a signal from Slurm" in run.stderr


_WORKER = """
import os, signal, sys, time
out = os.environ["FAKE_OUT"]
def stop(number, frame):
    with open(f"{out}/stopped.{os.environ['RANK']}", "w") as f:
        f.write(signal.Signals(number).name)
    sys.exit(0)
signal.signal(signal.SIGUSR1, stop)
open(f"{out}/ready.{os.environ['RANK']}", "w").close()
while True:
    time.sleep(0.05)
"""


def test_real_torchrun_passes_usr1_on_to_its_workers(tmp_path: Path) -> None:
    # torchrun dies of USR1 unless told to handle it (--signals-to-handle); then it sends it on to every worker.
    worker = tmp_path / "worker.py"
    worker.write_text(_WORKER)
    data = training_config().model_dump(mode="json", by_alias=True)
    data["training"].update(nnodes=1, nproc_per_node=2, script={"path": str(worker)}, max_restarts=0)
    data["training"]["rendezvous"]["port"] = free_port()
    (tmp_path / "run").mkdir()
    script = render(TrainingJobConfig.model_validate(data))
    run = run_script(script, tmp_path / "run", nodes=1, wait_for_signal="USR1", ready=2, real_torchrun=True, timeout=90)
    assert run.returncode == 0, run.stderr
    assert {p.name: p.read_text() for p in run.out.glob("stopped.*")} == {
        "stopped.0": "SIGUSR1",
        "stopped.1": "SIGUSR1",
    }
    assert run.calls[-1] == f"scontrol requeue {JOB_ID}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_without_requeue_a_stopped_job_ends_as_not_done(tmp_path: Path) -> None:
    # Exit 0 would let `afterok` start the next segment and count unfinished work as complete.
    run = run_script(render(training_config(), slurm_settings(requeue=False)), tmp_path, wait_for_signal="USR1")
    assert run.returncode == 143, run.stderr
    assert not any(call.startswith("scontrol requeue") for call in run.calls)


def test_a_failing_step_fails_the_job_without_requeue(tmp_path: Path) -> None:
    script = render(training_config()).replace("run_step srun ", "run_step false ", 1)
    run = run_script(script, tmp_path)
    assert run.returncode == 1
    assert not any(call.startswith("scontrol requeue") for call in run.calls)


def test_an_evaluation_fetches_the_model_then_evaluates(tmp_path: Path) -> None:
    config = evaluation_config()
    script = render(
        config, helm_config_path="/shared/jobs/run-1/run_specs.conf", settings=slurm_settings(cpus_per_task=4)
    )
    assert dict(sbatch_directives(script))["--nodes"] == "1"
    run = run_script(script, tmp_path, nodes=1)
    assert run.returncode == 0, run.stderr
    scratch = "/shared/jobs/scratch/run-1"
    assert [argv for argv, _ in run.programs("cajajejo")] == [
        ["models", "download", "--config", CONFIG_PATH, "--scratch-dir", scratch],
        [
            "--trace",
            "evaluate",
            "--config",
            CONFIG_PATH,
            "--helm-config",
            "/shared/jobs/run-1/run_specs.conf",
            "--scratch-dir",
            scratch,
        ],
    ]
    assert run.programs("cajajejo")[1][1]["CAJAJEJO_SCRATCH_DIR"] == scratch


def test_a_stopped_evaluation_gets_term_and_fails_without_requeue(tmp_path: Path) -> None:
    script = render(evaluation_config(), helm_config_path="/h.conf")
    run = run_script(script, tmp_path, nodes=1, wait_for_signal="USR1")
    assert run.returncode == 1
    assert (run.out / "stopped.0").exists()
    assert not any(call.startswith("scontrol requeue") for call in run.calls)


def test_secrets_are_read_from_files_on_the_cluster_never_written(tmp_path: Path) -> None:
    secret = tmp_path / "hf-token"
    secret.write_text("hf_abcdefghijklmnopqrstuvwxyz0123456789\n")
    config = training_config()
    data = config.model_dump(mode="json", by_alias=True)
    data["kubernetes_config"]["secret_env"] = {"HUGGINGFACE_HUB_TOKEN": {"secret": "hf-token", "key": "t"}}
    config = TrainingJobConfig.model_validate(data)
    with pytest.raises(UserInputError, match=r"kubernetes_config\.secret_env\.HUGGINGFACE_HUB_TOKEN: has no source"):
        render(config)
    script = render(config, slurm_settings(secret_files={"HUGGINGFACE_HUB_TOKEN": str(secret)}))
    assert "hf_abc" not in script
    (tmp_path / "run").mkdir()
    run = run_script(script, tmp_path / "run")
    assert run.returncode == 0, run.stderr
    assert {env["HUGGINGFACE_HUB_TOKEN"] for _, env in run.programs("torchrun")} == {
        "hf_abcdefghijklmnopqrstuvwxyz0123456789"
    }


def test_apptainer_and_enroot_run_the_same_command_in_the_image(tmp_path: Path) -> None:
    config = training_config()
    apptainer = render(config, slurm_settings(container={"runtime": "apptainer", "image": "/images/train.sif"}))
    run = run_script(apptainer, tmp_path)
    assert run.returncode == 0, run.stderr
    assert [argv for argv, _ in run.programs("torchrun")] == [
        expected_torchrun(config, n, [], CONFIG_PATH) for n in range(4)
    ]
    assert (run.out / "apptainer.0").read_bytes().split(b"\0")[:6] == [
        b"exec",
        b"--nv",
        b"--bind",
        b"/shared/jobs",
        b"/images/train.sif",
        b"bash",
    ]
    enroot = render(config, slurm_settings(container={"runtime": "enroot", "image": "nvcr.io#nvidia/pytorch:24.01"}))
    step = next(line for line in enroot.splitlines() if line.startswith("run_step "))
    assert shlex.split(step)[1:8] == [
        "srun",
        "--kill-on-bad-exit=1",
        "--nodes=4",
        "--ntasks-per-node=1",
        "--cpus-per-task=8",
        "--container-image=nvcr.io#nvidia/pytorch:24.01",
        "--container-mounts=/shared/jobs:/shared/jobs",
    ]


def test_gpus_asked_for_as_gres_reach_an_apptainer_container_and_after_steps_run_in_it(tmp_path: Path) -> None:
    settings = slurm_settings(gres="gpu:a100:4", container={"runtime": "apptainer", "image": "/images/train.sif"})
    script = render(training_config(), settings, after_steps=[["cajajejo", "workflows", "record", "/w", "--job", "j"]])
    steps = [shlex.split(line) for line in script.splitlines() if line.strip().startswith("run_step ")]
    assert len(steps) == 2
    for step in steps:  # the training step and the after step: both through srun, in the image, with GPUs
        assert step[1] == "srun"
        assert step[step.index("apptainer") : step.index("apptainer") + 3] == ["apptainer", "exec", "--nv"]
    assert steps[1][-3].endswith("cajajejo workflows record /w --job j")  # then: || status=$?


@pytest.mark.parametrize(
    ("kwargs", "where"),
    [
        ({"job_name": "run 1"}, "--job-name"),
        ({"job_name": "-x"}, "--job-name"),
        ({"job_name": "my-HETJOB"}, "--job-name"),
        ({"config_path": "/a\x00b"}, "config path"),
        ({"extra_trainer_args": ["ok", "x\x00"]}, "trainer arguments"),
        ({"config_path": "/a\ud800"}, "config path: contains a lone surrogate"),
    ],
)
def test_bad_render_inputs_get_one_line(kwargs: dict[str, Any], where: str) -> None:
    with pytest.raises(UserInputError) as caught:
        render(training_config(SMOKE), **kwargs)
    assert len(caught.value.problems) == 1
    assert str(caught.value).startswith(where)
    assert "\n" not in str(caught.value)


def test_a_nul_in_a_script_argument_is_refused_in_one_line() -> None:
    data = training_config().model_dump(mode="json", by_alias=True)
    data["training"]["script"]["args"] = ["ok", "a\x00b"]
    with pytest.raises(UserInputError, match=r"^t\.yml: training\.script\.args\[1\]: contains a NUL"):
        render(TrainingJobConfig.model_validate(data), source="t.yml")


def test_env_a_shell_cannot_carry_or_that_the_script_sets_is_refused() -> None:
    config = training_config()
    for env, message in (
        ({"MY.VAR": "x"}, r"kubernetes_config\.env\.MY\.VAR: is not a shell variable name"),
        ({"OK": "a\x00b"}, r"^t\.yml: kubernetes_config\.env\.OK: contains a NUL"),
        # The script reads these itself: overridden, it would requeue another job or find no srun.
        ({"SLURM_JOB_ID": "4242"}, r"env\.SLURM_JOB_ID: SLURM_JOB_ID is Slurm's own \(the script relies on it\)"),
        ({"SBATCH_EXPORT": "NONE"}, r"env\.SBATCH_EXPORT: SBATCH_EXPORT is Slurm's own"),
        ({"PATH": "/nowhere"}, r"env\.PATH: PATH finds srun, torchrun and cajajejo"),
    ):
        data = config.model_dump(mode="json", by_alias=True)
        data["kubernetes_config"]["env"] = env
        with pytest.raises(UserInputError, match=message):
            render(TrainingJobConfig.model_validate(data), source="t.yml")


def test_nodes_must_match_the_torchrun_world() -> None:
    with pytest.raises(UserInputError, match=r"t\.yml: slurm\.nodes: 2 differs from training\.nnodes \(4\)"):
        render(training_config(), slurm_settings(nodes=2), source="t.yml")
    with pytest.raises(UserInputError, match=r"slurm\.nodes: 2: an evaluation runs on one node"):
        render(evaluation_config(), slurm_settings(nodes=2), helm_config_path="/h")


def test_the_shell_environment_refuses_any_value_without_a_quoting_filter() -> None:
    env = shell_environment()
    with pytest.raises(TypeError, match="without a quoting filter"):
        env.from_string("echo {{ value }}").render(value="$(reboot)")
    with pytest.raises(jinja2.UndefinedError):
        env.from_string("echo {{ missing | sh }}").render()
    assert env.from_string("echo {{ value | sh }}").render(value="$(reboot)") == "echo '$(reboot)'"
    for bad in ("a\nb", "a b", "x#y", 'x"y', "x'y", "a\\b", "--hetjob", "PackJob"):
        with pytest.raises(ValueError, match="cannot be an #SBATCH value"):
            sbatch(bad)
    with pytest.raises(ValueError, match="NUL"):
        sh("a\x00b")
    assert sh_command(["a b", f"--id={expansion('SLURM_JOB_ID')}", ""]) == ShellText(
        "'a b' --id=\"${SLURM_JOB_ID}\" ''"
    )


def test_a_script_whose_sbatch_lines_or_syntax_are_off_is_refused() -> None:
    script = render(training_config())
    directives = sbatch_directives(script)
    check_script(script, directives)
    with pytest.raises(RenderedManifestError, match="#SBATCH lines"):
        check_script(script.replace("#SBATCH --requeue\n", ""), directives)
    with pytest.raises(RenderedManifestError, match="not valid bash"):
        check_script(script + "\nif then fi\n", directives)


def test_a_job_takes_its_rendezvous_port_from_its_id_unless_the_config_pins_one(tmp_path: Path) -> None:
    free = render(training_config())
    assert 'export MASTER_PORT="$(( 20000 + SLURM_JOB_ID % 20000 ))"' in free
    data = training_config().model_dump(mode="json", by_alias=True, exclude_unset=True)
    data["training"].setdefault("rendezvous", {})["port"] = 29555
    pinned = render(TrainingJobConfig.model_validate(data))
    assert "SLURM_JOB_ID % " not in pinned
    assert "export MASTER_PORT=29555" in pinned
    run = run_script(pinned, tmp_path)
    assert {env["MASTER_PORT"] for _, env in run.programs("torchrun")} == {"29555"}
    assert all("--rdzv-endpoint=addr-of-node-a:29555" in argv for argv, _ in run.programs("torchrun"))
