"""The evaluation job config: the fields of the original tool's README, plus what it hard-coded.

`EvaluationJobConfig.model_validate(data)` checks a parsed YAML mapping. Field names are the ones users
write in YAML (`model_config` is spelled through an alias because pydantic reserves that attribute).
The fields every kind shares live in `common.py`.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from cajajejo import runtime_contract
from cajajejo.config.common import JobConfigBase, no_credential_in
from cajajejo.config.fields import NonBlankText, RelativePath, StrictModel
from cajajejo.credentials import is_credential_name, name_words
from cajajejo.errors import quoted

_SUITE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_GS_URI = re.compile(r"gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](?:/.*)?", re.DOTALL)


def looks_like_credential_option(option: str) -> bool:
    """Whether a command-line option's name says it carries a credential (--api-key, --hf-token, ...).

    helm.args land in a ConfigMap and in MLflow tags and params, where no credential may go. Any
    option naming a key counts (HELM has none that is not a credential).
    """
    return option.startswith("-") and (is_credential_name(option) or "KEY" in name_words(option))


def _check_helm_arg(arg: str) -> str:
    no_credential_in(arg)
    option = arg.split("=", 1)[0]
    if option in runtime_contract.HELM_OPTIONS_SET_BY_RUNTIME:
        raise ValueError(f"{quoted(option)} is set by cajajejo at run time; remove it from helm.args")
    if looks_like_credential_option(re.split(r"[=:]", arg, maxsplit=1)[0]):  # --token=x, --token:x
        raise ValueError(  # not echoed: the option may hold the credential itself (--token:hf_...)
            "this option looks like it carries a credential; give credentials through "
            "kubernetes_config.secret_env instead of helm.args"
        )
    return arg


HelmArg = Annotated[str, AfterValidator(_check_helm_arg)]


class HelmConfig(StrictModel):
    args: list[HelmArg] = Field(default_factory=list)
    suite: str

    @field_validator("suite")
    @classmethod
    def _suite_is_a_directory_name(cls, value: str) -> str:
        if not _SUITE.fullmatch(value) or value in (".", ".."):
            raise ValueError(
                f"{quoted(value)} must be a plain name (letters, digits, '.', '_', '-'): HELM makes a folder of it"
            )
        return value


class MlflowArtifact(StrictModel):
    run_id: str
    artifact_path: RelativePath
    model_directory: RelativePath | None = None
    tokenizer_directory: RelativePath | None = None
    tokenizer_hf_repo: NonBlankText | None = None

    @field_validator("run_id")
    @classmethod
    def _run_id_shape(cls, value: str) -> str:
        if not _RUN_ID.fullmatch(value):
            raise ValueError(f"{quoted(value)} is not an MLflow run id (e.g. 3969f731d3f74fd19cfed62a9aa26d69)")
        return value


class ModelSource(StrictModel):
    """Where the model comes from: exactly one of an MLflow artifact or a `gs://` URI."""

    mlflow_artifact: MlflowArtifact | None = None
    gs_uri: str | None = None

    @field_validator("gs_uri")
    @classmethod
    def _gs_uri_shape(cls, value: str | None) -> str | None:
        if value is not None and not _GS_URI.fullmatch(value):
            raise ValueError(f"{quoted(value)} is not a GCS URI such as gs://bucket/path/to/model")
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> ModelSource:
        if (self.mlflow_artifact is None) == (self.gs_uri is None):
            found = "both" if self.gs_uri is not None else "neither"
            raise ValueError(f"set exactly one of mlflow_artifact or gs_uri (found {found})")
        return self


class EvaluationJobConfig(JobConfigBase):
    """One HELM evaluation job: the shared fields, the model source and the HELM settings."""

    kind: Literal["evaluation"] = "evaluation"  # configs from before `kind` existed are evaluation configs
    helm: HelmConfig
    model: ModelSource = Field(alias="model_config")
