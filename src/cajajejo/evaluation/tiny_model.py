"""A tiny causal language model made on the spot: random weights and a tokenizer trained locally.

It lets the whole evaluation path (MLflow artifact → HELM → MLflow results) run with no network and
no GPU, in the quickstart and in the tests. Its answers are noise; its shape is a real Hugging Face
model (GPT-2 architecture) saved with `save_pretrained`, in two folders: `model/` and `tokenizer/`.
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path

END_OF_TEXT = "<|endoftext|>"
MAX_LENGTH = 1024
# Words of HELM's synthetic scenarios and of everyday English, so that the tokenizer learns merges.
_WORDS = [
    "the",
    "a",
    "an",
    "is",
    "are",
    "was",
    "of",
    "to",
    "in",
    "on",
    "for",
    "with",
    "what",
    "which",
    "who",
    "answer",
    "question",
    "choice",
    "correct",
    "true",
    "false",
    "yes",
    "no",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "red",
    "green",
    "blue",
    "apple",
    "banana",
    "cherry",
    "dog",
    "cat",
    "bird",
    "number",
    "color",
    "animal",
    "fruit",
    "positive",
    "negative",
    "neutral",
    "sentiment",
    "label",
    "input",
    "output",
    "passage",
    "story",
]


def _corpus(lines: int, rng: random.Random) -> list[str]:
    return [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(4, 16))) + "." for _ in range(lines)]


def build_tiny_model(target: Path, *, seed: int = 0, vocab_size: int = 600) -> Path:
    """Write `target/model` (weights) and `target/tokenizer`; returns `target`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    rng = random.Random(seed)  # noqa: S311 - test data, not secrets
    tokenizer = Tokenizer(models.BPE())
    # Byte-level: every string can be encoded, whatever characters a scenario throws at it.
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(itertools.chain(_corpus(2000, rng), _WORDS), trainer=trainer)
    wrapped = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tokenizer,
        bos_token=END_OF_TEXT,
        eos_token=END_OF_TEXT,
        unk_token=END_OF_TEXT,
        model_max_length=MAX_LENGTH,
    )
    wrapped.save_pretrained(target / "tokenizer")

    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(wrapped),
        n_positions=MAX_LENGTH,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=wrapped.bos_token_id,
        eos_token_id=wrapped.eos_token_id,
    )
    GPT2LMHeadModel(config).save_pretrained(target / "model")
    return target
