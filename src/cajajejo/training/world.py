"""The torchrun world this process belongs to: its rank, size, backend and device, and the few collectives the
trainer uses.

Under torchrun (RANK, WORLD_SIZE, MASTER_ADDR... set) the process joins the default process group: nccl
when CUDA is available (LOCAL_RANK picks the GPU), gloo on CPU. Without torchrun it is a world of one
with no process group, and every collective here is a no-op, so the trainer has a single code path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from cajajejo.errors import CajajejoError

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place in the job: global and local rank, sizes, the backend and the device."""

    rank: int
    local_rank: int
    size: int
    local_size: int  # processes on this node (torchrun's nproc_per_node)
    nnodes: int
    backend: str  # "nccl", "gloo", or "none" for a world of one without torchrun
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that prints, writes shared files and talks to MLflow."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.backend != "none"

    def barrier(self) -> None:
        if not self.distributed:
            return
        if self.device.type == "cuda":
            dist.barrier(device_ids=[self.device.index or 0])
        else:
            dist.barrier()

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum `tensor` over all ranks, in place; returns it."""
        if self.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def from_main(self, value: T) -> T:
        """Rank 0's `value` on every rank (pickled), so that all ranks act on one decision."""
        if not self.distributed:
            return value
        box: list[Any] = [value]
        dist.broadcast_object_list(box, src=0, device=self.device if self.device.type == "cuda" else None)
        return box[0]  # type: ignore[no-any-return]


def join_world(environ: Mapping[str, str] | None = None) -> World:
    """Join torchrun's process group if torchrun started this process; else a world of one."""
    env = os.environ if environ is None else environ
    under_torchrun = "WORLD_SIZE" in env and "RANK" in env
    rank = int(env.get("RANK", "0"))
    local_rank = int(env.get("LOCAL_RANK", "0"))
    size = int(env.get("WORLD_SIZE", "1"))
    local_size = int(env.get("LOCAL_WORLD_SIZE", str(size)))
    nnodes = int(env.get("GROUP_WORLD_SIZE", str(max(1, size // max(local_size, 1)))))
    device = _device(local_rank)
    if not under_torchrun:
        return World(0, 0, 1, 1, 1, "none", device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, device_id=device if device.type == "cuda" else None)
    return World(rank, local_rank, size, local_size, nnodes, backend, device)


def leave_world(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def _device(local_rank: int) -> torch.device:
    if not torch.cuda.is_available():
        return torch.device("cpu")
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise CajajejoError(
            f"LOCAL_RANK {local_rank} but this node has {count} GPU(s): set nproc_per_node to at most {count}"
        )
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)
