"""The Jinja environment: the package's templates, optionally overridden file by file from a user's folder."""

from __future__ import annotations

import functools
from pathlib import Path

import jinja2

from cajajejo.errors import Problem, UserInputError
from cajajejo.render.yaml_text import only_yaml_text, to_yaml


@functools.cache
def template_environment(template_dir: Path | None = None) -> jinja2.Environment:
    """One environment per template folder and process: Jinja compiles each template once per environment."""
    loaders: list[jinja2.BaseLoader] = []
    if template_dir is not None:
        if not template_dir.is_dir():
            raise UserInputError(Problem(str(template_dir), "is not a folder of templates (--template-dir)"))
        loaders.append(jinja2.FileSystemLoader(template_dir))
    loaders.append(jinja2.PackageLoader("cajajejo", "templates"))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        undefined=jinja2.StrictUndefined,
        finalize=only_yaml_text,
        autoescape=False,  # noqa: S701 - output is YAML, not HTML; every value is escaped by `yaml`
        keep_trailing_newline=True,
    )
    env.filters["yaml"] = to_yaml
    return env
