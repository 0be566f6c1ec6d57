"""Make a fetched model known to HELM for offline use, and provide the NLTK data HELM's metrics need.

HELM reads `model_deployments.yaml`, `tokenizer_configs.yaml` and `model_metadata.yaml` from its
local config folder (`--local-path`). Registering the model there (rather than with
`--enable-local-huggingface-models`) is what lets `helm-summarize` work without the hub too.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import yaml

from cajajejo.evaluation.model_fetch import ModelFiles

# Sentence splitting of HELM's text metrics uses NLTK's punkt_tab model. Where it cannot be
# downloaded we write a minimal English model: Punkt with no learned statistics but the common
# abbreviations, so "e.g." or "Dr." do not end a sentence. The real model is used when present.
PUNKT_ABBREVIATIONS = [
    "mr",
    "mrs",
    "ms",
    "dr",
    "prof",
    "sr",
    "jr",
    "st",
    "vs",
    "etc",
    "e.g",
    "i.e",
    "a.m",
    "p.m",
    "u.s",
    "u.k",
    "no",
    "fig",
    "al",
    "approx",
    "dept",
    "est",
    "inc",
    "ltd",
    "co",
    "corp",
    "jan",
    "feb",
    "mar",
    "apr",
    "jun",
    "jul",
    "aug",
    "sep",
    "sept",
    "oct",
    "nov",
    "dec",
]
PUNKT_FILES = ("collocations.tab", "sent_starters.txt", "abbrev_types.txt", "ortho_context.tab")


def write_helm_model_configs(local_path: Path, model: ModelFiles, max_sequence_length: int) -> None:
    """Register `model` under its HELM name in HELM's local config folder."""
    local_path.mkdir(parents=True, exist_ok=True)
    end_of_text, prefix = _special_tokens(model.tokenizer_dir)
    deployments = {
        "model_deployments": [
            {
                "name": model.helm_name,
                "model_name": model.helm_name,
                "tokenizer_name": model.helm_name,
                "max_sequence_length": max_sequence_length,
                "client_spec": {
                    "class_name": "helm.clients.huggingface_client.HuggingFaceClient",
                    "args": {"pretrained_model_name_or_path": str(model.model_dir)},
                },
            }
        ]
    }
    tokenizers = {
        "tokenizer_configs": [
            {
                "name": model.helm_name,
                "tokenizer_spec": {
                    "class_name": "helm.tokenizers.huggingface_tokenizer.HuggingFaceTokenizer",
                    "args": {"pretrained_model_name_or_path": str(model.tokenizer_dir)},
                },
                "end_of_text_token": end_of_text,
                "prefix_token": prefix,
            }
        ]
    }
    metadata = {
        "models": [
            {
                "name": model.helm_name,
                "display_name": model.model_dir.name,
                "description": f"Evaluated by cajajejo from {model.model_dir}",
                "creator_organization_name": "cajajejo",
                "access": "open",
                "release_date": dt.date.today(),  # HELM wants a YAML date, not a string
                "tags": ["TEXT_MODEL_TAG", "FULL_FUNCTIONALITY_TEXT_MODEL_TAG"],
            }
        ]
    }
    for name, content in (
        ("model_deployments.yaml", deployments),
        ("tokenizer_configs.yaml", tokenizers),
        ("model_metadata.yaml", metadata),
    ):
        (local_path / name).write_text(yaml.safe_dump(content, sort_keys=False))


def _special_tokens(tokenizer_dir: Path) -> tuple[str, str]:
    """End-of-text and prefix tokens from the tokenizer's saved config (no tokenizer library needed)."""
    config_file = tokenizer_dir / "tokenizer_config.json"
    if not config_file.is_file():
        return "</s>", ""
    config = json.loads(config_file.read_text())
    end = _token_text(config.get("eos_token")) or "</s>"
    return end, _token_text(config.get("bos_token")) or ""


def _token_text(token: object) -> str | None:
    if isinstance(token, dict):  # older tokenizers save AddedToken dicts
        content = token.get("content")
        return content if isinstance(content, str) else None
    return token if isinstance(token, str) else None


def model_max_length(model_dir: Path, tokenizer_dir: Path, default: int = 2048) -> int:
    """The context length: the model's n_positions/max_position_embeddings, else the tokenizer's."""
    candidates: list[int] = []
    model_config = model_dir / "config.json"
    if model_config.is_file():
        config = json.loads(model_config.read_text())
        candidates += [config[k] for k in ("max_position_embeddings", "n_positions") if isinstance(config.get(k), int)]
    tokenizer_config = tokenizer_dir / "tokenizer_config.json"
    if tokenizer_config.is_file():
        length = json.loads(tokenizer_config.read_text()).get("model_max_length")
        if isinstance(length, int) and length < 1_000_000:
            candidates.append(length)
    return min(candidates) if candidates else default


def ensure_punkt_tab(data_dir: Path) -> Path | None:
    """Write a minimal English punkt_tab under `data_dir` unless NLTK already finds one.

    Returns the folder to put on NLTK_DATA, or None when NLTK has the model already.
    """
    import nltk

    try:
        nltk.data.find("tokenizers/punkt_tab/english/")
        return None
    except LookupError:
        pass
    english = data_dir / "tokenizers" / "punkt_tab" / "english"
    english.mkdir(parents=True, exist_ok=True)
    for name in PUNKT_FILES:
        content = "\n".join(PUNKT_ABBREVIATIONS) + "\n" if name == "abbrev_types.txt" else ""
        (english / name).write_text(content)
    return data_dir


def nltk_environment(data_dir: Path | None) -> dict[str, str]:
    if data_dir is None:
        return {}
    existing = os.environ.get("NLTK_DATA")
    return {"NLTK_DATA": os.pathsep.join(filter(None, [str(data_dir), existing]))}


if __name__ == "__main__":  # the install script: `python -m cajajejo.evaluation.helm_setup`
    import sys

    written = ensure_punkt_tab(Path(sys.prefix) / "nltk_data")  # a folder NLTK always searches
    print(f"punkt_tab: {'written to ' + str(written) if written else 'already installed'}")
