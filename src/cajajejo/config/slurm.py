"""A job config's `slurm` section: where and with what resources a job runs when it goes to Slurm.

Every value here ends up on an `#SBATCH` line or in the batch script. sbatch reads `#SBATCH` lines
with its own small tokenizer (not a shell: its own quoting rules, `#` starts a comment, whitespace
ends a value), so the fields that reach those lines accept only the characters
Slurm's own names use, and nothing else: a value can never end a line, start a comment or add an
option. Values that reach shell commands are quoted by the renderer (`render/shell.py`).
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, ValidationError, model_validator

from cajajejo.config.fields import StrictModel
from cajajejo.config.source import YamlDocument
from cajajejo.errors import Problem, UserInputError, quoted

if TYPE_CHECKING:
    from cajajejo.settings import Settings

# What sbatch itself writes for a number of minutes: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S.
_TIME_FORMS = (
    re.compile(r"(?P<m>\d+)"),
    re.compile(r"(?P<m>\d+):(?P<s>\d+)"),
    re.compile(r"(?P<h>\d+):(?P<m>\d+):(?P<s>\d+)"),
    re.compile(r"(?P<d>\d+)-(?P<h>\d+)"),
    re.compile(r"(?P<d>\d+)-(?P<h>\d+):(?P<m>\d+)"),
    re.compile(r"(?P<d>\d+)-(?P<h>\d+):(?P<m>\d+):(?P<s>\d+)"),
)
_MEMORY = re.compile(r"(?P<amount>[1-9][0-9]{0,11})(?P<unit>[KMGT]?)")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_PARTITIONS = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}(?:,[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})*")
# Slurm's constraint expressions: features joined by & | , with counts [a*2], brackets and parentheses.
_CONSTRAINT = re.compile(r"[A-Za-z0-9_.&|,*:\[\]()!-]{1,256}")
_GRES = re.compile(r"[A-Za-z0-9_.:,/-]{1,256}")
# The path's characters must mean nothing to sbatch's tokenizer, nor to its filename patterns ('%').
_SAFE_PATH = re.compile(r"/[A-Za-z0-9_.+/-]{0,1023}")
_IMAGE = re.compile(r"[A-Za-z0-9_.:/@+#=-]{1,1024}")
_SHELL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
# One `--option` or `--option=value`: the value in the same small alphabet as the other #SBATCH values.
_SBATCH_OPTION = re.compile(r"--(?P<name>[a-z][a-z0-9-]{0,63})(?:=(?P<value>[A-Za-z0-9_.,:=+@%/~\[\]()*!&|-]{1,512}))?")
# Options cajajejo writes itself (from the fields above, or because the script depends on them), and
# ones that would change what the script is: each would contradict or bypass a line of ours.
OWN_SBATCH_OPTIONS = frozenset(
    {
        "job-name",
        "partition",
        "account",
        "qos",
        "time",
        "nodes",
        "ntasks",
        "ntasks-per-node",
        "cpus-per-task",
        "mem",
        "mem-per-cpu",
        "mem-per-gpu",
        "gres",
        "gpus",
        "gpus-per-node",
        "gpus-per-task",
        "constraint",
        "output",
        "error",
        "open-mode",
        "requeue",
        "no-requeue",
        "signal",
        "chdir",
        "wrap",
        "array",
        "export",
        "export-file",
        "parsable",
        "wait",
    }
)
MIN_GRACE_SECONDS = 30  # checkpointing and requeueing take a while; less is a lost segment
MAX_GRACE_SECONDS = 65_535  # the largest --signal=...@TIME sbatch accepts


def time_limit_seconds(value: str) -> int | None:
    """Seconds in a Slurm time limit (`90`, `1:30:00`, `2-12`), or None if `value` is not one."""
    for form in _TIME_FORMS:
        match = form.fullmatch(value)
        if match:
            parts = {key: int(number) for key, number in match.groupdict().items()}
            return ((parts.get("d", 0) * 24 + parts.get("h", 0)) * 60 + parts.get("m", 0)) * 60 + parts.get("s", 0)
    return None


def _number_to_text(value: Any) -> Any:
    # `time_limit: 90` and `memory: 4096` are ints in YAML; Slurm reads both as text.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _time_limit(value: str) -> str:
    seconds = time_limit_seconds(value)
    if seconds is None:
        raise ValueError(
            f"{quoted(value)} is not a Slurm time limit; write minutes (90), HH:MM:SS (01:30:00) or D-HH:MM (2-12:00)"
        )
    if seconds <= 0:
        raise ValueError(f"{quoted(value)} must be longer than zero")
    return value


def _memory(value: str) -> str:
    if not _MEMORY.fullmatch(value):
        raise ValueError(f"{quoted(value)} is not a Slurm memory size; write e.g. 32G, 512M or 4096 (megabytes)")
    return value


def _matching(pattern: re.Pattern[str], what: str) -> AfterValidator:
    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(f"{quoted(value)} is not {what}")
        return value

    return AfterValidator(check)


def _shared_path(value: str) -> str:
    if not _SAFE_PATH.fullmatch(value) or ".." in PurePosixPath(value).parts or value == "/":
        raise ValueError(
            f"{quoted(value)} must be an absolute path of letters, digits, '.', '_', '+', '-' and '/' "
            "(it appears on #SBATCH lines, which sbatch reads without shell quoting)"
        )
    return value.rstrip("/")


def _sbatch_option(value: str) -> str:
    match = _SBATCH_OPTION.fullmatch(value)
    if match is None:
        raise ValueError(
            f"{quoted(value)} is not one sbatch option such as --mail-type=END or --exclusive "
            "(letters, digits and ._,:=+@%/~[]()*!&|- only; one option per item)"
        )
    name = match["name"]
    # sbatch (getopt_long) takes any unambiguous prefix of an option: --outp is --output.
    own = sorted(option for option in OWN_SBATCH_OPTIONS if option.startswith(name))
    if own:
        which = f"--{name}" if own == [name] else f"--{name} (sbatch reads it as --{own[0]})"
        raise ValueError(f"{which} is written by cajajejo (from the slurm section, or fixed); remove it here")
    return _one_component(value)


def has_component_word(value: str) -> bool:
    """Whether `value` holds a word that makes sbatch read an `#SBATCH` line as the start of another
    component of a heterogeneous job (Slurm looks for it anywhere on the line)."""
    lower = value.lower()
    return "hetjob" in lower or "packjob" in lower


def _one_component(value: str) -> str:
    if has_component_word(value):
        raise ValueError("'hetjob' and 'packjob' mean something to sbatch on any #SBATCH line; remove them")
    return value


def _cluster_file(value: str) -> str:
    # Only ever a quoted word in the script: any absolute path a shell can carry.
    if not value.startswith("/") or "\x00" in value:
        raise ValueError(f"{quoted(value)} must be an absolute path of a file on the cluster")
    return value


SlurmTime = Annotated[str, BeforeValidator(_number_to_text), AfterValidator(_time_limit)]
SlurmMemory = Annotated[str, BeforeValidator(_number_to_text), AfterValidator(_memory)]
# Values that go on #SBATCH lines.
_OneComponent = AfterValidator(_one_component)
SlurmName = Annotated[str, _matching(_NAME, "a Slurm name (letters, digits, '_', '.', '-')"), _OneComponent]
PartitionList = Annotated[
    str, _matching(_PARTITIONS, "a Slurm partition name, or several joined by ','"), _OneComponent
]
Constraint = Annotated[
    str, _matching(_CONSTRAINT, "a Slurm constraint such as a100&ib or [rack1|rack2]"), _OneComponent
]
Gres = Annotated[str, _matching(_GRES, "a Slurm gres such as gpu:a100:4"), _OneComponent]
SharedPath = Annotated[str, AfterValidator(_shared_path), _OneComponent]
ShellName = Annotated[str, _matching(_SHELL_NAME, "a shell variable name (letters, digits, '_')")]
SbatchOption = Annotated[str, AfterValidator(_sbatch_option)]
ContainerImage = Annotated[str, _matching(_IMAGE, "a container image (a path, docker://..., or registry#image:tag)")]


class SlurmContainer(StrictModel):
    """Run the job's steps in a container: Apptainer (`apptainer exec`), or enroot through pyxis
    (`srun --container-image`). The workdir is mounted at the same path inside."""

    runtime: Literal["apptainer", "enroot"]
    image: ContainerImage


class SlurmSettings(StrictModel):
    """Where the job runs on Slurm, and what it asks for; unset resources follow compute_config."""

    # On a filesystem every node sees: logs/, jobs/, checkpoints/ and scratch/ go there. None: the
    # slurm_workdir setting (or a command's --workdir) says where; see `with_defaults`.
    workdir: SharedPath | None = None
    time_limit: SlurmTime | None = None  # None: the partition's default limit
    partition: PartitionList | None = None  # None: the cluster's default
    account: SlurmName | None = None
    qos: SlurmName | None = None
    nodes: int | None = Field(default=None, ge=1, le=4096)  # None: training.nnodes (evaluation: 1)
    cpus_per_task: int | None = Field(default=None, ge=1, le=4096)  # None: compute_config.cpu, rounded up
    memory: SlurmMemory | None = None  # per node; None: compute_config.memory
    gpus_per_node: int | None = Field(default=None, ge=0, le=64)  # None: compute_config's GPUs
    gres: Gres | None = None  # instead of gpus_per_node, for clusters that count GPUs as gres only
    constraint: Constraint | None = None
    extra_sbatch: list[SbatchOption] = Field(default_factory=list)
    signal_grace_seconds: int = Field(default=120, ge=MIN_GRACE_SECONDS, le=MAX_GRACE_SECONDS)
    requeue: bool = True
    container: SlurmContainer | None = None
    # Secrets: a Kubernetes Secret does not exist on a Slurm cluster, and a value must never be written
    # into the batch script. Each name is read at run time from a file on the cluster (mode 0600).
    secret_files: dict[ShellName, Annotated[str, AfterValidator(_cluster_file)]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _grace_fits_the_time_limit(self) -> SlurmSettings:
        limit = time_limit_seconds(self.time_limit) if self.time_limit is not None else None
        if limit is not None and self.signal_grace_seconds >= limit:
            raise ValueError(
                f"signal_grace_seconds ({self.signal_grace_seconds}) must be shorter than time_limit "
                f"({self.time_limit}): the job is signalled that long before its end"
            )
        return self

    @model_validator(mode="after")
    def _one_way_to_ask_for_gpus(self) -> SlurmSettings:
        if self.gres is not None and self.gpus_per_node is not None:
            raise ValueError("set one of gpus_per_node or gres, not both")
        return self

    @property
    def shared_dir(self) -> str:
        """The workdir, once `with_defaults` has settled it (the renderer needs one)."""
        if self.workdir is None:
            raise ValueError("Slurm settings without a workdir reached the renderer; call with_defaults first")
        return self.workdir

    def with_defaults(
        self, settings: Settings, *, workdir: str | None = None, workdir_from: str = "--workdir", source: str
    ) -> SlurmSettings:
        """These settings with what they leave open taken from cajajejo's settings (`slurm_workdir`,
        `slurm_partition`, `slurm_account`); `workdir`, a command's option, wins over both. A workdir is
        needed in the end: UserInputError naming where to set it otherwise. `workdir_from` says where
        `workdir` came from, for errors."""
        updates: dict[str, Any] = {}
        for field, setting in (
            ("workdir", "slurm_workdir"),
            ("partition", "slurm_partition"),
            ("account", "slurm_account"),
        ):
            if getattr(self, field) is None and settings.get(setting):
                updates[field] = settings.get(setting)
        if workdir is not None:
            updates["workdir"] = workdir
        if not updates:
            resolved = self
        else:
            try:  # values from settings and options pass the same checks as the config's own
                resolved = SlurmSettings.model_validate({**self.model_dump(exclude_unset=True), **updates})
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(part) for part in first["loc"])
                origin = workdir_from if where == "workdir" and workdir is not None else f"setting slurm_{where}"
                raise UserInputError(Problem(origin, first["msg"].removeprefix("Value error, "))) from None
        if resolved.workdir is None:
            raise UserInputError(
                Problem(
                    source,
                    "no Slurm workdir: set slurm.workdir in the config, slurm_workdir in [tool.cajajejo] "
                    "(or CAJAJEJO_SLURM_WORKDIR), a folder every node of the cluster sees",
                    field="slurm.workdir",
                )
            )
        return resolved


def slurm_settings_of(document: YamlDocument) -> SlurmSettings | None:
    """The `slurm` section of a parsed job config, validated, or None when there is none.

    Problems read `file:line: slurm.field: message`, as every config problem does. (Once `slurm` is a
    field of the shared config base, the config's own validation does this and this goes.)
    """
    from cajajejo.config.loader import validate_document  # the loader imports every kind: import it late

    data = document.data.get("slurm") if isinstance(document.data, dict) else None
    if data is None:
        return None
    return validate_document(document.part("slurm", data), SlurmSettings)
