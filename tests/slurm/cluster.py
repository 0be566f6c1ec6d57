"""A real one-node Slurm cluster on localhost for the tests: munged, slurmctld and slurmd started from a
throwaway slurm.conf, driven with the ordinary Slurm commands, stopped by PID.

Why each slurm.conf line is there is said next to it in `render_slurm_conf`; DESIGN.md ("Slurm on one
machine") has the measurements behind them.
"""

from __future__ import annotations

import getpass
import os
import secrets
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import Popen

import pytest

from tests.support import free_port, require_tool

APT_PACKAGES = "slurmctld slurmd slurm-client munge"
DAEMONS = ("munged", "slurmctld", "slurmd")
COMMANDS = ("sbatch", "squeue", "sinfo", "sacct", "scontrol", "scancel")
NODE = "node1"
PARTITIONS = ("train", "eval")
# The node offers more CPUs than this machine has (config_overrides): jobs here mostly sleep, and
# workflows need a trainer and an evaluator side by side on the one node.
NODE_CPUS = 4
NODE_MEMORY_MB = 4096
# The smallest lifetime Slurm accepts (smaller values fall back to 120 s). It also sets how long a
# requeued job waits before it may start again, which is why it is not left at the default.
CRED_EXPIRE_S = 5
# States after which a job never runs again by itself (REQUEUED is not one: the job comes back).
FINAL_STATES = frozenset(
    {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}
)


def find_tools(names: Iterable[str]) -> dict[str, str]:
    """The path of every Slurm/munge binary; fails once, naming the apt packages, if any is missing.

    The daemons live in /usr/sbin, which is not on a normal user's PATH, so that is looked at too.
    """
    found: dict[str, str] = {}
    missing: list[str] = []
    for name in names:
        try:
            found[name] = require_tool(name)
        except pytest.fail.Exception:
            sbin = Path("/usr/sbin") / name
            if os.access(sbin, os.X_OK):
                found[name] = str(sbin)
            else:
                missing.append(name)
    if missing:
        pytest.fail(
            f"Slurm is not installed ({', '.join(missing)} missing): "
            f"apt-get install --no-install-recommends {APT_PACKAGES} (.ci/run does this)",
            pytrace=False,
        )
    return found


@dataclass(frozen=True)
class FinishedJob:
    """One line of the jobcomp file: how a run of a job ended (a requeued job has one line per run)."""

    job_id: str
    state: str
    exit_code: str  # "code:signal", as Slurm prints it
    fields: dict[str, str]


@dataclass
class SlurmCluster:
    """The session's cluster (fixture `slurm_cluster`). Pass `env` to every subprocess that runs a Slurm
    command; SLURM_CONF is also set in this process's environment while the session lasts."""

    root: Path
    conf: Path
    env: dict[str, str]
    work_dir: Path  # the "shared filesystem": job scripts, their output and anything jobs share
    partitions: tuple[str, ...] = PARTITIONS
    default_partition: str = PARTITIONS[0]
    node: str = NODE
    logs: dict[str, Path] = field(default_factory=dict)
    jobcomp: Path = field(default_factory=Path)
    _scripts: int = 0

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a Slurm command against this cluster; a failure shows its stderr and the daemons' logs."""
        result = subprocess.run(
            list(args), capture_output=True, text=True, check=False, env=self.env, cwd=self.work_dir, timeout=60
        )
        if check and result.returncode != 0:
            pytest.fail(f"{' '.join(args)} exited {result.returncode}: {result.stderr.strip()}\n{self.log_tails()}")
        return result

    def sbatch(self, script_text: str, *args: str) -> str:
        """Submit `script_text` (a whole batch script, `#!` line included) with sbatch's `args`; the job id.

        The script is kept under work_dir/scripts and submitted from work_dir, so relative output
        paths (and the default slurm-<id>.out) land there.
        """
        self._scripts += 1
        script = self.work_dir / "scripts" / f"job-{self._scripts}.sbatch"
        script.parent.mkdir(exist_ok=True)
        script.write_text(script_text)
        output = self.run("sbatch", "--parsable", *args, str(script)).stdout.strip()
        return output.split(";")[0]  # --parsable prints "id" or "id;cluster"

    def job_state(self, job_id: str) -> str | None:
        """The job's state: squeue while slurmctld still holds the job (MinJobAge), else the last run's state
        in the jobcomp file; None while neither knows it."""
        queued = self.run("squeue", "--noheader", "--states=all", f"--jobs={job_id}", "--format=%T", check=False)
        state = queued.stdout.strip()
        if queued.returncode == 0 and state:
            return state
        runs = self.finished_runs(job_id)
        return runs[-1].state if runs else None

    def finished_runs(self, job_id: str) -> list[FinishedJob]:
        """Every ended run of the job, oldest first, from `sacct -c` (which reads the jobcomp file)."""
        result = self.run(
            "sacct", "-c", f"--jobs={job_id}", "--noheader", "--parsable2", "--format=JobID,State,ExitCode", check=False
        )
        runs = []
        for line in result.stdout.splitlines():
            parts = line.split("|")
            if len(parts) >= 3 and parts[0] == job_id:
                runs.append(FinishedJob(parts[0], parts[1].split()[0], parts[2], {}))
        return runs

    def jobcomp_records(self, job_id: str) -> list[FinishedJob]:
        """The raw jobcomp lines of the job (`Key=Value` pairs), for fields `sacct -c` does not print."""
        if not self.jobcomp.exists():
            return []
        records = []
        for line in self.jobcomp.read_text().splitlines():
            fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
            if fields.get("JobId") == job_id:
                records.append(FinishedJob(job_id, fields.get("JobState", ""), fields.get("ExitCode", ""), fields))
        return records

    def wait_for(self, job_id: str, states: str | Iterable[str], timeout: float = 30) -> str:
        """Poll until the job is in one of `states`; its state. Fails at once if it ends in another state."""
        wanted = {states} if isinstance(states, str) else set(states)
        deadline = time.monotonic() + timeout
        state = None
        while time.monotonic() < deadline:
            state = self.job_state(job_id)
            if state in wanted:
                return state
            if state in FINAL_STATES:
                break
            time.sleep(0.2)
        pytest.fail(
            f"job {job_id} is {state}, not {'/'.join(sorted(wanted))} (waited up to {timeout} s)\n{self.log_tails()}"
        )

    def log_tails(self, lines: int = 15) -> str:
        """The last lines of every daemon's log, for failure messages."""
        parts = []
        for name, path in self.logs.items():
            text = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else ["(no log)"]
            parts.append(f"--- {name} ({path})\n" + "\n".join(text))
        return "\n".join(parts)


def render_slurm_conf(root: Path, munge_socket: Path, user: str, ctld_port: int, slurmd_port: int) -> str:
    """slurm.conf for one node on 127.0.0.1 with every path inside `root`."""
    return f"""\
ClusterName=cajajejo
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
# Listen on loopback only: nothing outside this machine talks to the test cluster.
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
# The daemons run as the user running the tests (root in CI containers).
SlurmUser={user}
SlurmdUser={user}
AuthType=auth/munge
CredType=cred/munge
# Our own munged socket; the short credential lifetime keeps requeued jobs from waiting 120 s.
AuthInfo=socket={munge_socket},cred_expire={CRED_EXPIRE_S}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/run/slurmctld.pid
SlurmdPidFile={root}/run/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups in containers: plain process tracking, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
# No slurmdbd; finished jobs are read back with `sacct -c` from this text file.
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={root}/log/jobcomp.txt
# One CPU per job, memory not a consumable resource: jobs never wait for memory.
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
# Schedule at submission and every 2 s (defaults wait for batches and a 60 s cycle).
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_interval=2
# A job whose dependency can never be met is cancelled, not left pending forever.
DependencyParameters=kill_invalid_depend
# Time-limited jobs get SIGKILL 2 s after SIGTERM instead of 30 s.
KillWait=2
# The node's CPUs and memory below are what the tests need, not what this machine has.
SlurmdParameters=config_overrides
ReturnToService=2
InactiveLimit=0
# Finished jobs stay in squeue for 5 minutes, then only the jobcomp file knows them.
MinJobAge=300
NodeName={NODE} NodeAddr=127.0.0.1 CPUs={NODE_CPUS} Sockets=1 CoresPerSocket={NODE_CPUS} ThreadsPerCore=1 \
RealMemory={NODE_MEMORY_MB} State=UNKNOWN
PartitionName={PARTITIONS[0]} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP
PartitionName={PARTITIONS[1]} Nodes={NODE} Default=NO MaxTime=INFINITE State=UP
"""


def _start(argv: list[str], log: Path, env: dict[str, str]) -> Popen[bytes]:
    """A daemon in the foreground (so its PID is ours to stop), stdout and stderr into `log`."""
    with log.open("ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)


def _stop(process: Popen[bytes], grace: float = 10) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _kill_leftovers(conf: Path) -> list[int]:
    """Kill every process started under this cluster (slurmstepd, job scripts and their children) by PID.

    They are found by SLURM_CONF=<our conf> in their initial environment: the daemons were started
    with it and every job inherits it, while other sessions' clusters use other conf paths.
    """
    marker = f"SLURM_CONF={conf}".encode()
    killed = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue  # gone already, or not ours to read
        if marker in environ.split(b"\0"):
            try:
                os.kill(int(entry.name), signal.SIGKILL)
                killed.append(int(entry.name))
            except ProcessLookupError:
                pass
    return killed


@contextmanager
def start_cluster(root: Path, timeout: float = 30) -> Iterator[SlurmCluster]:
    """Start munged, slurmctld and slurmd under `root`, wait until the node is idle, stop them all after."""
    tools = find_tools((*DAEMONS, *COMMANDS))
    for folder in ("state", "spool", "run", "log", "munge", "work"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    # munged insists that every directory above its socket is reachable by all (tmp_path's parents are
    # 0700), and a unix socket path must stay under ~108 bytes: a short folder of its own under /tmp.
    socket_dir = Path(tempfile.mkdtemp(prefix="cajajejo-munge-"))
    socket_dir.chmod(0o755)
    munge_socket = socket_dir / "munge.socket"
    key = root / "munge" / "munge.key"
    key.write_bytes(secrets.token_bytes(1024))
    key.chmod(stat.S_IRUSR)  # munged refuses a key that anyone else can read
    conf = root / "slurm.conf"
    conf.write_text(render_slurm_conf(root, munge_socket, getpass.getuser(), free_port(), free_port()))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    cluster = SlurmCluster(
        root=root,
        conf=conf,
        env=env,
        work_dir=root / "work",
        # munged logs to stderr in the foreground; the slurm daemons' stderr holds what goes wrong
        # before their log files are open (a bad slurm.conf line, say).
        logs={
            "munged": root / "log" / "munged.out",
            "slurmctld": root / "log" / "slurmctld.log",
            "slurmctld stderr": root / "log" / "slurmctld.out",
            "slurmd": root / "log" / "slurmd.log",
            "slurmd stderr": root / "log" / "slurmd.out",
        },
        jobcomp=root / "log" / "jobcomp.txt",
    )
    previous_conf = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(conf)
    processes: list[Popen[bytes]] = []
    try:
        processes.append(
            _start(
                [
                    tools["munged"],
                    "--foreground",
                    f"--socket={munge_socket}",
                    f"--key-file={key}",
                    f"--pid-file={root / 'run' / 'munged.pid'}",
                    f"--log-file={root / 'log' / 'munged.log'}",
                    f"--seed-file={root / 'munge' / 'munged.seed'}",
                ],
                root / "log" / "munged.out",
                env,
            )
        )
        _wait(lambda: munge_socket.exists(), timeout, "munged did not create its socket", cluster, processes)
        # -D: stay in the foreground so the PID we hold is the daemon's.
        processes.append(_start([tools["slurmctld"], "-D", "-f", str(conf)], root / "log" / "slurmctld.out", env))
        processes.append(_start([tools["slurmd"], "-D", "-N", NODE, "-f", str(conf)], root / "log" / "slurmd.out", env))

        def node_idle() -> bool:
            states = cluster.run("sinfo", "--noheader", f"--nodes={NODE}", "--format=%P %t", check=False).stdout
            return sorted(states.split()) == sorted(["eval", "idle", "idle", "train*"])

        _wait(node_idle, timeout, f"node {NODE} did not become idle", cluster, processes)
        yield cluster
    finally:
        try:
            if processes and processes[-1].poll() is None:
                cluster.run("scancel", f"--user={getpass.getuser()}", check=False)
        finally:
            for process in reversed(processes):
                _stop(process)
            _kill_leftovers(conf)
            shutil.rmtree(socket_dir, ignore_errors=True)
            if previous_conf is None:
                os.environ.pop("SLURM_CONF", None)
            else:
                os.environ["SLURM_CONF"] = previous_conf


def _wait(
    ready: Callable[[], bool], timeout: float, what: str, cluster: SlurmCluster, processes: list[Popen[bytes]]
) -> None:
    """Poll `ready()` until true; fail with the daemons' exit codes and log tails after `timeout` (or as soon
    as a daemon has exited)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if any(p.poll() is not None for p in processes):
            break  # a daemon died: waiting longer only delays its log
        time.sleep(0.1)
    codes = ", ".join(f"{name}: {p.poll()}" for name, p in zip(DAEMONS, processes, strict=False))
    when = "a daemon exited" if any(p.poll() is not None for p in processes) else f"after {timeout} s"
    pytest.fail(f"Slurm test cluster: {what} ({when}; exit codes: {codes})\n{cluster.log_tails()}", pytrace=False)
