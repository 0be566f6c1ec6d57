"""Annotated field types shared by job config models: each one states a rule and says why it failed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

from cajajejo import kube
from cajajejo.errors import quoted


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors (a typo must not be ignored), no coercion."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, protected_namespaces=())


def _rule(problem_of: Callable[[str], str | None]) -> AfterValidator:
    def check(value: str) -> str:
        problem = problem_of(value)
        if problem:
            raise ValueError(f"{quoted(value)} {problem}")
        return value

    return AfterValidator(check)


DnsLabel = Annotated[str, _rule(kube.dns1123_label_problem)]
DnsSubdomain = Annotated[str, _rule(kube.dns1123_subdomain_problem)]
LabelKey = Annotated[str, _rule(kube.label_key_problem)]
LabelValue = Annotated[str, _rule(kube.label_value_problem)]
EnvVarName = Annotated[str, _rule(kube.env_var_name_problem)]
SecretKey = Annotated[str, _rule(kube.config_key_problem)]


def _number_to_text(value: Any) -> Any:
    # `cpu: 4` in YAML is an int; Kubernetes quantities are strings. Accept both, keep a string.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def positive_quantity(value: str, forms: str = "a Kubernetes quantity; write e.g. 4, 500m, 16Gi or 512Mi") -> str:
    """`value` unless it is not a quantity greater than zero; `forms` says what is accepted."""
    amount = kube.parse_quantity(value)
    if amount is None:
        raise ValueError(f"{quoted(value)} is not {forms}")
    if amount <= 0:
        raise ValueError(f"{quoted(value)} must be greater than zero")
    return value


Quantity = Annotated[str, BeforeValidator(_number_to_text), AfterValidator(positive_quantity)]


def _relative_path(value: str) -> str:
    parts = PurePosixPath(value).parts
    if not value or value.startswith("/") or "\\" in value or "\x00" in value or ".." in parts:
        raise ValueError(f"{quoted(value)} must be a relative path inside the artifact (no leading '/', no '..')")
    return value


RelativePath = Annotated[str, AfterValidator(_relative_path)]


def _non_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


NonBlankText = Annotated[str, AfterValidator(_non_blank)]
