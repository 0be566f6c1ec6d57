"""Which samples each step takes: one global order per epoch, cut into global batches, a slice per rank.

The order of epoch `e` is a permutation drawn from its own generator seeded with (seed, e), never from
the global RNG, so it is the same on every rank, in every run and after every resume, whatever else
consumed random numbers. Step `k` of the epoch takes the `k`-th global batch of `batch_size * world`
samples; rank `r` takes the `r`-th slice of `batch_size` (DistributedSampler shards by stride
instead; slices keep the samples of one step together whatever the world size). The last incomplete
global batch is dropped, so every rank does the same number of steps and none waits for the others.
A resume starts at `samples_done`, the samples this epoch has consumed, and skips exactly those.
"""

from __future__ import annotations

import torch

EPOCH_SEED_STRIDE = 2**20  # more epochs than a config allows (100,000): seeds of (seed, epoch) never collide


class SampleOrder:
    """The sample indices of each step, for one rank."""

    def __init__(self, num_samples: int, batch_size: int, world_size: int, rank: int, seed: int) -> None:
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.world_size = world_size
        self.rank = rank
        self.seed = seed
        self.global_batch = batch_size * world_size
        self.steps_per_epoch = num_samples // self.global_batch
        self._epoch = -1
        self._permutation = torch.empty(0, dtype=torch.long)

    def permutation(self, epoch: int) -> torch.Tensor:
        """All sample indices in the order of `epoch` (computed once per epoch)."""
        if epoch != self._epoch:
            generator = torch.Generator().manual_seed(self.seed * EPOCH_SEED_STRIDE + epoch)
            self._permutation = torch.randperm(self.num_samples, generator=generator)
            self._epoch = epoch
        return self._permutation

    def indices(self, epoch: int, step_in_epoch: int) -> torch.Tensor:
        """This rank's `batch_size` sample indices for the given step of the epoch."""
        start = step_in_epoch * self.global_batch + self.rank * self.batch_size
        return self.permutation(epoch)[start : start + self.batch_size]

    def resume_step(self, samples_done: int) -> int:
        """The step of the epoch to go on from when `samples_done` samples of it were consumed.

        With the world size of the checkpoint this is exact; with another one, a partial global batch
        is taken again rather than skipped.
        """
        return min(samples_done // self.global_batch, self.steps_per_epoch)


def synthetic_classification(
    samples: int, features: int, classes: int, seed: int
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """The seed's smoke-test data: Gaussian inputs labelled by a random linear teacher, plus some noise.

    `samples` training samples and a tenth as many validation samples drawn after them from one
    generator: the same on every rank. The noise keeps the task from being perfectly separable, so the
    loss falls steadily instead of collapsing to zero.
    """
    generator = torch.Generator().manual_seed(seed)
    validation = max(samples // 10, 1)
    teacher = torch.randn(features, classes, generator=generator)
    inputs = torch.randn(samples + validation, features, generator=generator)
    noise = 0.5 * torch.randn(samples + validation, classes, generator=generator)
    labels = (inputs @ teacher / features**0.5 + noise).argmax(dim=1)
    return (inputs[:samples], labels[:samples]), (inputs[samples:], labels[samples:])
