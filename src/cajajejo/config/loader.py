"""Load a job config file into its typed model, turning every problem into `file:line: field: message`."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from cajajejo import kube, runtime_contract
from cajajejo.config.evaluation import EvaluationJobConfig
from cajajejo.config.run_specs import RunSpecs
from cajajejo.config.source import Loc, YamlDocument, dotted_path, parse_yaml, read_text_file
from cajajejo.credentials import credential_lines
from cajajejo.errors import Problem, UserInputError, quoted

M = TypeVar("M", bound=BaseModel)

EXAMPLE_HINT = "see jobs/evaluation/example.mlflow.job_config.yml"


@dataclass(frozen=True)
class LoadedConfig:
    """A validated config with the text it came from (the ConfigMap carries that exact text)."""

    path: str
    text: str
    config: EvaluationJobConfig
    warnings: tuple[Problem, ...]


def load_evaluation_config(path: str | Path) -> LoadedConfig:
    name = str(path)
    document = parse_yaml(read_text_file(path), name)
    config, problems = None, []
    try:
        config = validate_document(document, EvaluationJobConfig)
    except UserInputError as exc:
        problems = exc.problems
    # Credentials anywhere in the file (comments too), on lines that no field problem names already.
    named = {problem.line for problem in problems}
    problems += [p for p in credential_lines(document.text, name) if p.line not in named]
    if problems or config is None:
        raise UserInputError(problems)
    return LoadedConfig(name, document.text, config, tuple(evaluation_warnings(config, document)))


def check_inputs_fit_a_configmap(loaded: LoadedConfig, run_specs: RunSpecs) -> None:
    """The two input files travel in one ConfigMap: too large together is the user's to fix, before rendering."""
    size = kube.configmap_data_size(
        {runtime_contract.EVAL_CONFIG_FILE: loaded.text, runtime_contract.RUN_SPECS_FILE: run_specs.text}
    )
    if size > kube.MAX_CONFIGMAP_BYTES:
        raise UserInputError(
            Problem(
                f"{loaded.path} + {run_specs.path}",
                f"together {size} bytes; the job's ConfigMap holds at most {kube.MAX_CONFIGMAP_BYTES}: "
                "make them smaller (e.g. split the run specs over several jobs)",
            )
        )


def validate_document(document: YamlDocument, model: type[M]) -> M:
    """Validate a parsed document against `model`; all problems are reported at once."""
    if document.data is None:
        raise UserInputError(Problem(document.name, f"is empty; expected a job config ({EXAMPLE_HINT})"))
    if not isinstance(document.data, dict):
        found = type(document.data).__name__
        raise UserInputError(
            Problem(document.name, f"expected a mapping of fields at the top level, found {found}", line=1)
        )
    try:
        return model.model_validate(document.data)
    except ValidationError as exc:
        problems = [_problem(document, model, error) for error in exc.errors()]
        raise UserInputError(problems) from None


def evaluation_warnings(config: EvaluationJobConfig, document: YamlDocument) -> list[Problem]:
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
    return Problem(document.name, message, field=dotted_path(loc) or None, line=document.line_of(loc))


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
