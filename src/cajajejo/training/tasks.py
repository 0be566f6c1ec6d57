"""What the trainer trains: a model, its data, its loss, and how the model is saved into a checkpoint.

Two tasks, one per `trainer.model.type`: the seed's smoke-test `classifier` (an MLP on synthetic
data) and `causal_lm` (a GPT-2-shaped Hugging Face model on text). The trainer sees only `Task`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from cajajejo.checkpoints import CheckpointDir
from cajajejo.config.training import CausalLmModel, ClassifierModel
from cajajejo.errors import Problem, UserInputError
from cajajejo.training import text
from cajajejo.training.data import synthetic_classification
from cajajejo.training.world import World

CLASSIFIER_WEIGHTS = "model.pt"
CLASSIFIER_SHAPE = "classifier.json"
TOKENIZER_DIR = "tokenizer"  # in the checkpoint directory: the tokenizer trained for this run, shared by ranks


class Task(Protocol):
    """A model with its data: sample i of the training set is addressed by its index."""

    kind: str
    train_size: int
    validation_size: int
    reports_perplexity: bool

    def new_model(self) -> nn.Module:
        """A freshly initialised model (from the global torch RNG, which the trainer has seeded)."""
        ...

    def load_model(self, folder: Path) -> nn.Module:
        """The model saved in a checkpoint folder by `save_model`."""
        ...

    def save_model(self, model: nn.Module, folder: Path) -> None: ...

    def training_loss(self, model: nn.Module, indices: torch.Tensor) -> torch.Tensor:
        """The mean loss of the training samples at `indices` (the graph kept for backward)."""
        ...

    def validation_loss(self, model: nn.Module, indices: torch.Tensor) -> tuple[torch.Tensor, int]:
        """The summed loss of the validation samples at `indices`, and how many terms it sums."""
        ...


class ClassifierTask:
    """The seed's smoke test: a two-layer MLP on `synthetic_classification` data, the same on every rank."""

    kind = "classifier"
    reports_perplexity = False

    def __init__(self, config: ClassifierModel, seed: int, device: torch.device) -> None:
        self.config = config
        (x, y), (vx, vy) = synthetic_classification(config.samples, config.features, config.classes, seed)
        self.inputs, self.labels = x.to(device), y.to(device)
        self.validation_inputs, self.validation_labels = vx.to(device), vy.to(device)
        self.train_size, self.validation_size = len(y), len(vy)

    def new_model(self) -> nn.Module:
        c = self.config
        return nn.Sequential(nn.Linear(c.features, c.hidden), nn.ReLU(), nn.Linear(c.hidden, c.classes))

    def load_model(self, folder: Path) -> nn.Module:
        model = self.new_model()
        model.load_state_dict(torch.load(folder / CLASSIFIER_WEIGHTS, map_location="cpu", weights_only=True))
        return model

    def save_model(self, model: nn.Module, folder: Path) -> None:
        torch.save(model.state_dict(), folder / CLASSIFIER_WEIGHTS)
        shape = {"features": self.config.features, "hidden": self.config.hidden, "classes": self.config.classes}
        (folder / CLASSIFIER_SHAPE).write_text(json.dumps(shape) + "\n")

    def training_loss(self, model: nn.Module, indices: torch.Tensor) -> torch.Tensor:
        index = indices.to(self.inputs.device, non_blocking=True)
        return nn.functional.cross_entropy(model(self.inputs[index]), self.labels[index])

    def validation_loss(self, model: nn.Module, indices: torch.Tensor) -> tuple[torch.Tensor, int]:
        index = indices.to(self.validation_inputs.device)
        logits = model(self.validation_inputs[index])
        return nn.functional.cross_entropy(logits, self.validation_labels[index], reduction="sum"), len(index)


class CausalLmTask:
    """A GPT-2-shaped causal LM on text; its checkpoints are Hugging Face folders (model and tokenizer)."""

    kind = "causal_lm"
    reports_perplexity = True

    def __init__(
        self, config: CausalLmModel, world: World, checkpoints: CheckpointDir, resume_from: Path | None
    ) -> None:
        from transformers.utils import logging as transformers_logging

        quiet: Any = transformers_logging.disable_progress_bar  # untyped in transformers
        quiet()  # a progress bar per checkpoint write would flood the job's log
        self.config = config
        self.device = world.device
        train_texts = text.read_texts(config.train_data) if config.train_data else text.builtin_corpus()
        self.tokenizer = self._tokenizer(train_texts, world, checkpoints, resume_from)
        length = config.sequence_length
        train = text.token_sequences(self.tokenizer, train_texts, length)
        if config.validation_data:
            validation = text.token_sequences(self.tokenizer, text.read_texts(config.validation_data), length)
        else:
            cut = len(train) - max(1, len(train) // 10)  # the last tenth
            train, validation = train[:cut], train[cut:]
        where = config.train_data or "the built-in corpus"
        if len(train) == 0 or len(validation) == 0:
            raise UserInputError(
                Problem(where, f"too little text for sequences of {length} tokens, for training and validation")
            )
        self.train, self.validation = train.to(self.device), validation.to(self.device)
        self.train_size, self.validation_size = len(train), len(validation)

    def _tokenizer(
        self, train_texts: list[str], world: World, checkpoints: CheckpointDir, resume_from: Path | None
    ) -> Any:
        config = self.config
        if config.tokenizer_dir:
            return text.load_tokenizer(config.tokenizer_dir, config.local_files_only)
        if config.model_dir:
            return text.load_tokenizer(config.model_dir, config.local_files_only)
        if resume_from is not None:
            return text.load_tokenizer(resume_from, local_files_only=True)  # the tokenizer its data was cut with
        # Rank 0 trains it once for the run and shares it through the checkpoint directory: every rank
        # must cut the text into the same tokens.
        shared = checkpoints.path / TOKENIZER_DIR
        if world.is_main and not shared.is_dir():
            checkpoints.path.mkdir(parents=True, exist_ok=True)
            text.save_tokenizer_atomically(text.train_tokenizer(train_texts, config.vocab_size), shared)
        world.barrier()
        return text.load_tokenizer(shared, local_files_only=True)

    def new_model(self) -> nn.Module:
        config = self.config
        model: Any
        if config.model_dir:
            from transformers import AutoModelForCausalLM

            model = AutoModelForCausalLM.from_pretrained(config.model_dir, local_files_only=config.local_files_only)
        else:
            from transformers import GPT2Config, GPT2LMHeadModel

            shape = GPT2Config(
                vocab_size=len(self.tokenizer),
                n_positions=config.sequence_length,
                n_embd=config.n_embd,
                n_layer=config.n_layer,
                n_head=config.n_head,
                bos_token_id=self.tokenizer.bos_token_id,
                eos_token_id=self.tokenizer.eos_token_id,
            )
            model = GPT2LMHeadModel(shape)
        self._check_fits(model)
        return _with_loss_type(model)

    def _check_fits(self, model: Any) -> None:
        where = self.config.model_dir or "trainer.model"
        positions = getattr(model.config, "n_positions", None) or getattr(model.config, "max_position_embeddings", None)
        if positions is not None and self.config.sequence_length > positions:
            raise UserInputError(
                Problem(where, f"the model takes at most {positions} tokens; set sequence_length to at most that")
            )
        if len(self.tokenizer) > model.get_input_embeddings().num_embeddings:
            raise UserInputError(
                Problem(where, f"the tokenizer has {len(self.tokenizer)} tokens, more than the model's embeddings")
            )

    def load_model(self, folder: Path) -> nn.Module:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True)
        return _with_loss_type(model.train())  # from_pretrained returns it in eval mode

    def save_model(self, model: nn.Module, folder: Path) -> None:
        model.save_pretrained(str(folder))  # type: ignore[operator]
        self.tokenizer.save_pretrained(str(folder))

    def training_loss(self, model: nn.Module, indices: torch.Tensor) -> torch.Tensor:
        batch = self.train[indices.to(self.device, non_blocking=True)]
        return model(input_ids=batch, labels=batch).loss  # type: ignore[no-any-return]

    def validation_loss(self, model: nn.Module, indices: torch.Tensor) -> tuple[torch.Tensor, int]:
        batch = self.validation[indices.to(self.device)]
        predicted = batch.shape[0] * (batch.shape[1] - 1)  # the model's mean loss is over the shifted tokens
        return model(input_ids=batch, labels=batch).loss * predicted, predicted


def _with_loss_type(model: Any) -> nn.Module:
    # Without it transformers warns once that `loss_type=None` is unrecognized, then uses this very loss.
    if getattr(model, "loss_type", None) is None:
        model.loss_type = "ForCausalLM"
    return model  # type: ignore[no-any-return]


def build_task(
    config: ClassifierModel | CausalLmModel,
    seed: int,
    world: World,
    checkpoints: CheckpointDir,
    resume_from: Path | None,
) -> Task:
    if isinstance(config, ClassifierModel):
        return ClassifierTask(config, seed, world.device)
    return CausalLmTask(config, world, checkpoints, resume_from)
