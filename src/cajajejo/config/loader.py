"""Load a job config file into its typed model, turning every problem into `file:line: field: message`."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from cajajejo import kube, runtime_contract
from cajajejo.config.common import JobConfigBase
from cajajejo.config.evaluation import EvaluationJobConfig
from cajajejo.config.run_specs import RunSpecs
from cajajejo.config.source import Loc, YamlDocument, dotted_path, parse_yaml, read_text_file
from cajajejo.config.training import TrainingJobConfig
from cajajejo.credentials import credential_lines
from cajajejo.errors import Problem, UserInputError, quoted

M = TypeVar("M", bound=BaseModel)
C = TypeVar("C", bound=JobConfigBase)

# Each job kind: its config model and the example a user can compare a broken config with.
KINDS: dict[str, tuple[type[JobConfigBase], str]] = {
    "evaluation": (EvaluationJobConfig, "jobs/evaluation/example.mlflow.job_config.yml"),
    "training": (TrainingJobConfig, "jobs/training/example.job_config.yml"),
}
_KIND_MODELS = {model for model, _ in KINDS.values()}
DEFAULT_KIND = "evaluation"  # configs written before `kind` existed are evaluation configs
EXAMPLE_HINT = f"see {KINDS[DEFAULT_KIND][1]}"


@dataclass(frozen=True)
class LoadedConfig(Generic[C]):
    """A validated config with the text it came from (the ConfigMap carries that exact text)."""

    path: str
    text: str
    config: C
    warnings: tuple[Problem, ...]


def load_evaluation_config(path: str | Path) -> LoadedConfig[EvaluationJobConfig]:
    return _load(path, EvaluationJobConfig)


def load_training_config(path: str | Path) -> LoadedConfig[TrainingJobConfig]:
    return _load(path, TrainingJobConfig)


def load_job_config(path: str | Path) -> LoadedConfig[JobConfigBase]:
    """A config of any kind, as its `kind` field says."""
    return _load(path, None)


def _load(path: str | Path, wanted: type[C] | None, advice: Callable[[str], str] | None = None) -> LoadedConfig[C]:
    name = str(path)
    document = parse_yaml(read_text_file(path), name)
    problems: list[Problem] = []
    try:
        loaded = config_from_document(document, wanted, advice)
    except UserInputError as exc:
        problems = exc.problems
    # Credentials anywhere in the file (comments too), on lines that no field problem names already.
    named = {problem.line for problem in problems}
    problems += [p for p in credential_lines(document.text, name) if p.line not in named]
    if problems:
        raise UserInputError(problems)
    return loaded


def load_config_of_kind(path: str | Path, wanted: type[C], advice: Callable[[str], str]) -> LoadedConfig[C]:
    """A config file that must be of `wanted`'s kind; `advice(kind)` says what to do with one of another kind."""
    return _load(path, wanted, advice)


def config_from_document(
    document: YamlDocument, wanted: type[C] | None, advice: Callable[[str], str] | None = None, text: str | None = None
) -> LoadedConfig[C]:
    """A parsed document (a whole file, or an inline config inside a group file) validated as a job config.

    `text` is what the job's ConfigMap will carry (default: the document's own text).
    """
    model = _model_of_kind(document, wanted, advice or _jobs_command)
    config = validate_document(document, model)
    return LoadedConfig(
        document.name, document.text if text is None else text, config, tuple(config_warnings(config, document))
    )


def _jobs_command(kind: str) -> str:
    return f"use `cajajejo jobs {kind} ...` for it"


def _model_of_kind(document: YamlDocument, wanted: type[C] | None, advice: Callable[[str], str]) -> type[C]:
    """The model the document's `kind` names; a kind other than `wanted` is refused in one line."""
    data = document.data
    kind = data.get("kind", DEFAULT_KIND) if isinstance(data, dict) else DEFAULT_KIND
    if not isinstance(kind, str) or kind not in KINDS:
        close = difflib.get_close_matches(str(kind), list(KINDS), n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"use one of: {', '.join(KINDS)}"
        raise UserInputError(
            Problem(
                document.name,
                f"unknown job kind {quoted(kind)}; {hint}",
                field=dotted_path((*document.prefix, "kind")),
                line=document.line_of(("kind",)),
            )
        )
    model = KINDS[kind][0]
    if wanted is not None and model is not wanted:
        wanted_kind = next(name for name, (m, _) in KINDS.items() if m is wanted)
        raise UserInputError(
            Problem(
                document.name,
                f"is {_a(kind)} job config, not {_a(wanted_kind)} one; {advice(kind)}",
                field=dotted_path((*document.prefix, "kind")),
                line=document.line_of(("kind",)) or 1,
            )
        )
    return model  # type: ignore[return-value]  # KINDS maps each name to the model of that kind


def _a(word: str) -> str:
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"


def check_inputs_fit_a_configmap(files: dict[str, str], paths: str) -> None:
    """The job's input files travel in one ConfigMap: too large together is the user's to fix, before rendering."""
    size = kube.configmap_data_size(files)
    if size > kube.MAX_CONFIGMAP_BYTES:
        raise UserInputError(
            Problem(
                paths,
                f"together {size} bytes; the job's ConfigMap holds at most {kube.MAX_CONFIGMAP_BYTES}: "
                "make them smaller (e.g. split the run specs over several jobs)",
            )
        )


def evaluation_inputs(loaded: LoadedConfig[EvaluationJobConfig], run_specs: RunSpecs) -> dict[str, str]:
    """The files an evaluation job's ConfigMap carries, checked to fit."""
    files = {runtime_contract.EVAL_CONFIG_FILE: loaded.text, runtime_contract.RUN_SPECS_FILE: run_specs.text}
    check_inputs_fit_a_configmap(files, f"{loaded.path} + {run_specs.path}")
    return files


def training_inputs(loaded: LoadedConfig[TrainingJobConfig]) -> dict[str, str]:
    """The files a training job's ConfigMap carries (the config itself), checked to fit."""
    files = {runtime_contract.TRAIN_CONFIG_FILE: loaded.text}
    check_inputs_fit_a_configmap(files, loaded.path)
    return files


def validate_document(document: YamlDocument, model: type[M]) -> M:
    """Validate a parsed document against `model`; all problems are reported at once."""
    field = dotted_path(document.prefix) or None
    if document.data is None:
        what = f"a job config ({_example_of(model)})" if model in _KIND_MODELS else "a mapping of fields"
        raise UserInputError(Problem(document.name, f"is empty; expected {what}", field, document.line_of(())))
    if not isinstance(document.data, dict):
        found = type(document.data).__name__
        where = "" if document.prefix else " at the top level"
        raise UserInputError(
            Problem(
                document.name, f"expected a mapping of fields{where}, found {found}", field, document.line_of(()) or 1
            )
        )
    try:
        return model.model_validate(document.data)
    except ValidationError as exc:
        problems = [_problem(document, model, error) for error in exc.errors()]
        raise UserInputError(problems) from None


def _example_of(model: type[BaseModel]) -> str:
    return next((f"see {example}" for m, example in KINDS.values() if m is model), EXAMPLE_HINT)


def config_warnings(config: JobConfigBase, document: YamlDocument) -> list[Problem]:
    """Things that are valid but undermine reproducibility."""
    if config.image_tag in (None, "latest"):
        what = "is missing (so 'latest')" if config.image_tag is None else "is 'latest'"
        return [
            Problem(
                document.name,
                f"{what}: a mutable tag; pin the image to the commit tag it was built from",
                field="image_tag",
                line=document.line_of(("image_tag",)) or document.line_of(("image",)),
            )
        ]
    return []


def _problem(document: YamlDocument, model: type[BaseModel], error: ErrorDetails) -> Problem:
    loc: Loc = tuple(part for part in error["loc"] if part != "[key]")
    message = _message(model, error, loc)
    field = dotted_path(document.prefix + loc)
    return Problem(document.name, message, field=field or None, line=document.line_of(loc))


def _message(model: type[BaseModel], error: ErrorDetails, loc: Loc) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_fields(model, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"expected one of: {', '.join(allowed)}"
        return f"unknown field; {hint}"
    if kind == "missing":
        return "required field is missing"
    if kind == "value_error":
        return str(error["ctx"]["error"]) if "ctx" in error else error["msg"]
    if kind == "string_type" and isinstance(error["input"], int | float | bool):
        # YAML read an unquoted 007 as 7, `yes` as true: the original text is lost, so ask for quotes.
        return f"expected text but YAML read {quoted(error['input'])}; put the value in quotes"
    if kind == "literal_error":
        return f"{quoted(error['input'])} is not allowed; {error['msg'].replace('Input should be', 'use')}"
    return f"{error['msg']} (got {quoted(error['input'])})"


def _allowed_fields(model: type[BaseModel], loc: Loc) -> list[str]:
    """Field names (as written in YAML) of the model found at `loc`, for did-you-mean hints."""
    current: Any = model
    parts = list(loc)
    while parts:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        info = next((f for n, f in current.model_fields.items() if (f.alias or n) == parts[0]), None)
        if info is None:
            return []
        parts.pop(0)
        if _is_container(info.annotation) and parts:
            parts.pop(0)  # the list index or dict key of the item the problem is in
        current = _model_in(info.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or n for n, f in current.model_fields.items()]
    return []


def _is_container(annotation: Any) -> bool:
    """Whether the field holds its model in a list or dict (`list[X]`, `dict[str, X] | None`, ...)."""
    origins = {getattr(arg, "__origin__", None) for arg in (*getattr(annotation, "__args__", ()), annotation)}
    return bool(origins & {list, dict})


def _model_in(annotation: Any) -> Any:
    """The BaseModel class inside `X | None`, `list[X]`, `dict[str, X]`, or the annotation itself."""
    for arg in (*getattr(annotation, "__args__", ()), annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None
