"""Slurm batch scripts: helpers shared by the tests, above all a sandbox that runs a rendered script.

The sandbox runs the script with real bash and stand-ins for `srun`, `scontrol`, `apptainer`,
`torchrun` and `cajajejo` on PATH: each records the argv and environment it received, so a test
compares what a job's processes would get with what the config says, byte for byte, without Slurm.
The stand-in `srun` starts one task per node with that node's `SLURM_NODEID` and forwards USR1 and
TERM to its tasks, as the real one does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cajajejo.config.evaluation import EvaluationJobConfig
from cajajejo.config.slurm import SlurmSettings
from cajajejo.config.training import TrainingJobConfig
from cajajejo.render.slurm import (
    FIRST_JOB_PORT,
    JOB_PORTS,
    SHUTDOWN_MARGIN_SECONDS,
    TORCHRUN_SIGNALS,
    port_is_pinned,
)
from cajajejo.torchrun import torchrun_command
from tests.support import REPO

EXAMPLE = REPO / "jobs" / "training" / "example.job_config.yml"
SMOKE = REPO / "jobs" / "training" / "smoke.job_config.yml"
EVALUATION = REPO / "jobs" / "evaluation" / "example.mlflow.job_config.yml"
NODES = ("node-a", "node-b", "node-c", "node-d")
JOB_ID = "4242"

_SRUN = r"""#!/bin/bash
nodes=1
while [[ $# -gt 0 && $1 == --* ]]; do
  printf '%s\0' "$1" >> "$FAKE_OUT/srun.options"
  [[ $1 == --nodes=* ]] && nodes=${1#--nodes=}
  shift
done
echo srun >> "$FAKE_OUT/calls"
pids=()
for (( i = 0; i < nodes; i++ )); do SLURM_NODEID=$i "$@" & pids+=($!); done
trap 'kill -s USR1 "${pids[@]}" 2>/dev/null' USR1
trap 'kill -s TERM "${pids[@]}" 2>/dev/null' TERM
status=0
for pid in "${pids[@]}"; do
  while :; do wait "$pid" && s=0 || s=$?; kill -0 "$pid" 2>/dev/null || break; done
  (( s )) && status=$s
done
exit "$status"
"""
_SCONTROL = r"""#!/bin/bash
echo "scontrol $*" >> "$FAKE_OUT/calls"
if [[ $1 == show ]]; then printf '%s\n' FAKE_NODES; fi
if [[ $1 == -o && $2 == show && $3 == node ]]; then
  echo "NodeName=$4 Arch=x86_64 NodeAddr=FAKE_ADDR_PREFIX$4 State=IDLE"
fi
"""
_APPTAINER = r"""#!/bin/bash
printf '%s\0' "$@" > "$FAKE_OUT/apptainer.$SLURM_NODEID"
shift  # exec
while [[ $1 == --* ]]; do [[ $1 == --bind ]] && shift; shift; done
shift  # the image
exec "$@"
"""
# What a job's program does: record argv and env; with FAKE_WAIT, wait for a signal and exit 0 on it.
_PROGRAM = r"""#!/bin/bash
name=$(basename "$0").$SLURM_NODEID.$(date +%s%N)
printf '%s\0' "$@" > "$FAKE_OUT/argv.$name"
env -0 > "$FAKE_OUT/env.$name"
if [[ -n ${FAKE_WAIT:-} ]]; then
  trap 'echo "$1" > "$FAKE_OUT/stopped.$SLURM_NODEID"; exit 0' USR1 TERM
  touch "$FAKE_OUT/ready.$SLURM_NODEID"
  while :; do sleep 0.02; done
fi
"""


@dataclass
class Run:
    """What one run of a batch script did."""

    returncode: int
    out: Path
    stderr: str

    @property
    def calls(self) -> list[str]:
        path = self.out / "calls"
        return path.read_text().splitlines() if path.exists() else []

    def programs(self, name: str) -> list[tuple[list[str], dict[str, str]]]:
        """(argv, env) of each start of stand-in `name` (torchrun, cajajejo), ordered by node and time."""
        runs = sorted(self.out.glob(f"argv.{name}.*"), key=lambda p: [int(x) for x in p.name.split(".")[2:]])
        return [(_nul_split(path), _env(self.out / path.name.replace("argv.", "env.", 1))) for path in runs]


def _nul_split(path: Path) -> list[str]:
    data = os.fsdecode(path.read_bytes())
    return data.split("\0")[:-1]


def _env(path: Path) -> dict[str, str]:
    return dict(item.split("=", 1) for item in _nul_split(path))


def make_sandbox(folder: Path, nodes: int = 4, hosts: tuple[str, ...] = NODES) -> tuple[Path, Path]:
    """A folder of stand-in tools and an empty output folder; returns (bin, out)."""
    tools = folder / "bin"
    out = folder / "out"
    tools.mkdir()
    out.mkdir()
    scripts = {
        "srun": _SRUN,
        # Stand-in nodes have addresses of their own; localhost (real torchrun) is its own address.
        "scontrol": _SCONTROL.replace("FAKE_NODES", " ".join(hosts[:nodes])).replace(
            "FAKE_ADDR_PREFIX", "" if hosts[0] == "localhost" else "addr-of-"
        ),
        "apptainer": _APPTAINER,
        "torchrun": _PROGRAM,
        "cajajejo": _PROGRAM,
    }
    for name, text in scripts.items():
        (tools / name).write_text(text)
        (tools / name).chmod(0o755)
    return tools, out


def run_script(
    script: str,
    folder: Path,
    *,
    nodes: int = 4,
    wait_for_signal: str | None = None,
    ready: int | None = None,
    real_torchrun: bool = False,
    timeout: float = 20,
) -> Run:
    """Run `script` as Slurm would start it; with `wait_for_signal` (a signal name), send it to the batch
    shell once `ready` processes (default: one per node) are running, as `--signal=B:...` does.

    `real_torchrun`: the virtualenv's torchrun instead of the stand-in, on this host.
    """
    tools, out = make_sandbox(folder, nodes, ("localhost",) * nodes if real_torchrun else NODES)
    if real_torchrun:
        (tools / "torchrun").unlink()
    path = folder / "job.sh"
    path.write_text(script)
    env = {
        "PATH": f"{tools}:{Path(sys.executable).parent}:/usr/bin:/bin" if real_torchrun else f"{tools}:/usr/bin:/bin",
        "FAKE_OUT": str(out),
        "SLURM_JOB_ID": JOB_ID,
        "SLURM_JOB_NODELIST": f"node-[a-{'abcd'[nodes - 1]}]",
        "SLURM_NNODES": str(nodes),
    }
    if wait_for_signal is not None:
        env["FAKE_WAIT"] = "1"
    process = subprocess.Popen(["bash", str(path)], cwd=folder, env=env, stderr=subprocess.PIPE, text=True)
    if wait_for_signal is not None:
        deadline = time.monotonic() + timeout
        while len(list(out.glob("ready.*"))) < (ready or nodes) and time.monotonic() < deadline:
            time.sleep(0.01)
        process.send_signal(getattr(signal, f"SIG{wait_for_signal}"))
    _, stderr = process.communicate(timeout=timeout)
    return Run(process.returncode, out, stderr)


def training_config(source: Path = EXAMPLE, **changes: Any) -> TrainingJobConfig:
    data = yaml.safe_load(source.read_text())
    data["kubernetes_config"].pop("secret_env", None)  # Slurm needs a file for each: tests give one
    data.update(changes)
    return TrainingJobConfig.model_validate(data)


def evaluation_config(**changes: Any) -> EvaluationJobConfig:
    data = yaml.safe_load(EVALUATION.read_text())
    data["kubernetes_config"].pop("secret_env", None)  # as for training
    data.update(changes)
    return EvaluationJobConfig.model_validate(data)


def slurm_settings(**fields: Any) -> SlurmSettings:
    data: dict[str, Any] = {"workdir": "/shared/jobs", "time_limit": "1-00:00"}
    data.update(fields)
    return SlurmSettings.model_validate(data)


def job_port(config: TrainingJobConfig) -> int:
    """The rendezvous port of the sandbox's job: the config's when it pins one, else from the job id."""
    if port_is_pinned(config):
        return config.training.rendezvous.port
    return FIRST_JOB_PORT + int(JOB_ID) % JOB_PORTS


def expected_torchrun(
    config: TrainingJobConfig, node: int, trainer_args: list[str], config_path: str, grace: int = 120
) -> list[str]:
    """What torchrun on `node` must receive (its argv after its name): the shared builder's argv, with the
    values Slurm gives in the sandbox."""
    return torchrun_command(
        config,
        node_rank=str(node),
        rendezvous_host=f"addr-of-{NODES[0]}",  # its NodeAddr, as the stand-in scontrol says
        rendezvous_port=job_port(config),
        run_id=JOB_ID,
        config_path=config_path,
        launcher=(
            "torchrun",
            f"--signals-to-handle={TORCHRUN_SIGNALS}",
            f"--shutdown-timeout={grace - SHUTDOWN_MARGIN_SECONDS}",
        ),
        trainer_args=trainer_args,
    )[1:]
