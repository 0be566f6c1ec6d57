"""The causal LM: a tiny GPT-2 on the built-in corpus, checkpoints that Hugging Face loads, text inputs.

The runs here are worlds of one inside the test process (`cajajejo.training.main`), which saves a
torch and transformers start per run; the torchrun path is the classifier's (test_ddp.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cajajejo.checkpoints import CheckpointDir
from cajajejo.errors import UserInputError
from cajajejo.training import main
from cajajejo.training.text import builtin_corpus, read_texts
from tests.training.launch import lines, training_config, write_config

TINY_GPT2 = {"type": "causal_lm", "n_layer": 1, "n_head": 2, "n_embd": 32, "sequence_length": 32, "vocab_size": 320}
STEPS = 21  # the built-in corpus makes 84 training sequences of 32 tokens: 21 steps of 4


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in a job without network: no hub, no MLflow."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)


def train(config: Path, checkpoints: Path, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    code = main(["--config", str(config), "--checkpoint-dir", str(checkpoints), *args])
    output = capsys.readouterr().out
    assert code == 0, output[-3000:]
    return output


@pytest.mark.usefixtures("offline")
def test_a_tiny_gpt2_trains_and_its_checkpoints_load_with_hugging_face_and_resume_exactly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = write_config(tmp_path / "lm.yml", training_config(model=TINY_GPT2, batch_size=4, epochs=1))
    output = train(config, tmp_path / "whole", capsys)
    epoch = lines(output, "[EPOCH] epoch=1")
    assert epoch
    assert "val_ppl=" in epoch[0]
    assert lines(output, f"[DONE] steps={STEPS} best=step-{STEPS:08d}")

    best = CheckpointDir(tmp_path / "whole").best()
    assert best is not None
    assert best.metadata["val_perplexity"] > 1
    model = AutoModelForCausalLM.from_pretrained(best.path, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(best.path, local_files_only=True)
    ids = tokenizer("The baker lit the oven", return_tensors="pt")["input_ids"]
    assert tokenizer.decode(ids[0]) == "The baker lit the oven"  # byte-level: every text round-trips
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    assert logits.shape == (1, ids.shape[1], len(tokenizer))

    # The same run in two segments (dropout draws included) ends with the same weights, bit for bit.
    output = train(config, tmp_path / "segments", capsys, "--stop-after-steps", "8")
    assert lines(output, "[STOP] step=8 reason=stop-after-steps=8")
    output = train(config, tmp_path / "segments", capsys)
    assert lines(output, "[RESUME] from=step-00000008")
    whole = load_file(tmp_path / "whole" / f"step-{STEPS:08d}" / "model.safetensors")
    segments = load_file(tmp_path / "segments" / f"step-{STEPS:08d}" / "model.safetensors")
    assert [name for name in whole if not torch.equal(whole[name], segments[name])] == []


def test_text_comes_from_jsonl_plain_files_or_a_folder_of_them(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.jsonl").write_text(json.dumps({"text": "first"}) + "\n\n" + json.dumps({"text": "second"}))
    (tmp_path / "data" / "b.txt").write_text("third")
    (tmp_path / "data" / ".hidden").write_text("never")
    assert read_texts(str(tmp_path / "data")) == ["first", "second", "third"]
    assert read_texts(str(tmp_path / "data" / "b.txt")) == ["third"]
    assert len(builtin_corpus()) > 5


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"text": "fine"}\n{"txt": "typo"}\n', 'a.jsonl:2: expected an object with a "text" string'),
        ('{"text": "fine"}\nnot json\n', "a.jsonl:2: is not JSON"),
        ("\n\n", "a.jsonl: holds no text"),
    ],
)
def test_bad_text_input_is_one_line_with_file_and_line(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "a.jsonl").write_text(content)
    with pytest.raises(UserInputError) as error:
        read_texts(str(tmp_path / "a.jsonl"))
    assert message in str(error.value)
    assert "\n" not in str(error.value)
