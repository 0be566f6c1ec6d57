"""Text for the causal LM: reading it, the tokenizer, and cutting token streams into training sequences.

Text comes from a JSONL file (one `{"text": ...}` object per line), a plain text file, or a folder of
them (its files in name order; `.jsonl`/`.json` read as JSONL, anything else as text; hidden files
skipped), else from the small corpus shipped in this package (so a quick run needs no data at all).
"""

from __future__ import annotations

import json
import os
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from cajajejo.errors import Problem, UserInputError, quoted

END_OF_TEXT = "<|endoftext|>"  # GPT-2's separator between documents; also bos, unk and pad here
JSONL_SUFFIXES = (".jsonl", ".json")


def builtin_corpus() -> list[str]:
    """The corpus shipped in this package: short English paragraphs, one document each."""
    text = resources.files("cajajejo.training").joinpath("corpus.txt").read_text(encoding="utf-8")
    return [paragraph.strip() for paragraph in text.split("\n\n") if paragraph.strip()]


def read_texts(path: str) -> list[str]:
    """The documents at `path`: a JSONL or text file, or a folder of them."""
    location = Path(path)
    if location.is_dir():
        files = sorted(p for p in location.iterdir() if p.is_file() and not p.name.startswith("."))
        if not files:
            raise UserInputError(Problem(path, "is an empty folder; put JSONL or text files in it"))
    elif location.is_file():
        files = [location]
    else:
        raise UserInputError(Problem(path, "no such file or folder"))
    texts = []
    for file in files:
        texts.extend(_read_jsonl(file) if file.suffix in JSONL_SUFFIXES else [_read_text(file)])
    texts = [text for text in texts if text.strip()]
    if not texts:
        raise UserInputError(Problem(path, "holds no text"))
    return texts


def _read_text(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserInputError(Problem(str(file), f"is not UTF-8 text ({exc.reason} at byte {exc.start})")) from None
    except OSError as exc:
        raise UserInputError(Problem(str(file), f"cannot be read ({exc.strerror})")) from None


def _read_jsonl(file: Path) -> list[str]:
    texts = []
    for number, line in enumerate(_read_text(file).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record: Any = json.loads(line)
        except ValueError as exc:
            raise UserInputError(Problem(str(file), f"is not JSON ({exc})", line=number)) from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            found = quoted(sorted(record) if isinstance(record, dict) else type(record).__name__)
            raise UserInputError(
                Problem(str(file), f'expected an object with a "text" string, found {found}', line=number)
            )
        texts.append(record["text"])
    return texts


def train_tokenizer(texts: list[str], vocab_size: int) -> Any:
    """A byte-level BPE tokenizer (GPT-2's kind) trained on `texts`, as a transformers tokenizer.

    Byte-level: every string can be encoded, whatever its characters, and the vocabulary never has
    fewer than the 256 bytes plus END_OF_TEXT, even when `vocab_size` asks for less.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    wrapper: Any = PreTrainedTokenizerFast  # untyped in transformers
    return wrapper(
        tokenizer_object=tokenizer,
        bos_token=END_OF_TEXT,
        eos_token=END_OF_TEXT,
        unk_token=END_OF_TEXT,
        pad_token=END_OF_TEXT,
    )


def save_tokenizer_atomically(tokenizer: Any, folder: Path) -> None:
    """`save_pretrained` into a temporary folder beside `folder`, then rename it: readers see all or nothing."""
    temp = folder.with_name(f".tmp-{folder.name}-{os.getpid()}")
    shutil.rmtree(temp, ignore_errors=True)
    tokenizer.save_pretrained(str(temp))
    from cajajejo.checkpoints import fsync_dir, fsync_tree

    fsync_tree(temp)
    os.rename(temp, folder)
    fsync_dir(folder.parent)


def load_tokenizer(folder: str | Path, local_files_only: bool) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=local_files_only)
    except (OSError, ValueError) as exc:
        message = " ".join(str(exc).split())[:200]
        raise UserInputError(Problem(str(folder), f"holds no tokenizer transformers can load ({message})")) from None


def token_sequences(tokenizer: Any, texts: list[str], length: int) -> torch.Tensor:
    """All texts as one token stream (the tokenizer's end-of-text token after each, when it has one), cut into
    rows of `length`; the rest is dropped."""
    eos = tokenizer.eos_token_id
    stream: list[int] = []
    for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        stream.extend(ids)
        if eos is not None:
            stream.append(eos)
    rows = len(stream) // length
    return torch.tensor(stream[: rows * length], dtype=torch.long).view(rows, length)
