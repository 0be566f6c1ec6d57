"""What the built-in trainer costs on top of a plain DDP loop: training throughput of both under torchrun.

Both run under `torchrun --standalone --nproc-per-node 2` with gloo on CPU: the seed's smoke-test
MLP (128 features, 256 hidden, 4 classes), batch 256 per process, AdamW at 3e-3, the same number
of steps, one epoch. The built-in trainer runs as a job does, without MLflow and with one
checkpoint at the end; the plain script (written here, below) is the loop a person would write by
hand: a seeded permutation sliced per rank, forward, backward, step. It draws the same data, initial
weights and order as the trainer, so both compute the same numbers and only the loop around them
differs. Each reports its throughput over its training loop only (samples / seconds from the first
step to the last, sync points and logging included; start-up, validation and the final checkpoint
not); the whole command's wall time is shown beside it.

The two take turns, one run each per round (and which goes first alternates), so a burst of load on
the machine falls on both alike. The ratio is the median of each round's ratio (a round's two runs
saw about the same load), the throughputs are medians over the rounds. The goal: the trainer's
throughput within 2% of the plain loop's. On a small shared machine a run's throughput varies by
several percent from one run to the next: use enough steps and rounds, and an otherwise idle machine.

    python benchmarks/trainer_overhead.py [--rounds 7] [--steps 2000]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

GOAL = 0.02
FEATURES, HIDDEN, CLASSES, BATCH, LEARNING_RATE, SEED, PROCESSES = 128, 256, 4, 256, 3e-3, 42, 2
TORCHRUN = Path(sys.executable).with_name("torchrun")

PLAIN_DDP = f'''
"""A plain DDP loop: what the trainer is compared with."""
import sys, time
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

steps = int(sys.argv[1])
dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
# The trainer's data, initial weights and sample order, drawn the same way: both loops compute the same numbers.
samples = steps * {BATCH} * world
generator = torch.Generator().manual_seed({SEED})
teacher = torch.randn({FEATURES}, {CLASSES}, generator=generator)
inputs = torch.randn(samples + samples // 10, {FEATURES}, generator=generator)
noise = 0.5 * torch.randn(samples + samples // 10, {CLASSES}, generator=generator)
labels = (inputs @ teacher / {FEATURES} ** 0.5 + noise).argmax(dim=1)
torch.manual_seed({SEED})
mlp = nn.Sequential(nn.Linear({FEATURES}, {HIDDEN}), nn.ReLU(), nn.Linear({HIDDEN}, {CLASSES}))
model = DistributedDataParallel(mlp)
optimizer = torch.optim.AdamW(model.parameters(), lr={LEARNING_RATE}, weight_decay=0.0)
order = torch.randperm(samples, generator=torch.Generator().manual_seed({SEED} * 2**20))
start = time.perf_counter()
for step in range(steps):
    first = step * {BATCH} * world + rank * {BATCH}
    index = order[first : first + {BATCH}]
    optimizer.zero_grad(set_to_none=True)
    loss = nn.functional.cross_entropy(model(inputs[index]), labels[index])
    loss.backward()
    optimizer.step()
loss.item()
seconds = time.perf_counter() - start
if rank == 0:
    speed = steps * {BATCH} * world / seconds
    print(f"[PLAIN] steps={{steps}} seconds={{seconds:.4f}} samples_per_s={{speed:.1f}}", flush=True)
dist.barrier()  # no rank tears gloo down while another still talks to it
dist.destroy_process_group()
'''


def trainer_config(steps: int) -> dict[str, object]:
    """The smoke test's model for the built-in trainer: one epoch of exactly `steps` steps, one checkpoint."""
    return {
        "version": "v4",
        "kind": "training",
        "image": "registry.example.com/ml-platform/training",
        "compute_config": {"cpu": "2", "memory": "4Gi"},
        "training": {
            "nproc_per_node": PROCESSES,
            "trainer": {
                "model": {
                    "type": "classifier",
                    "samples": steps * BATCH * PROCESSES,
                    "features": FEATURES,
                    "hidden": HIDDEN,
                    "classes": CLASSES,
                },
                "epochs": 1,
                "batch_size": BATCH,
                "learning_rate": LEARNING_RATE,
                "seed": SEED,
            },
            "checkpoints": {"every_steps": 10 * steps, "keep_last": 1},  # only the final one
        },
        "mlflow_config": {"tracking_uri": "http://127.0.0.1:5000"},
        "tracking_config": {"experiment_name": "benchmark"},
    }


def timed(command: list[str], env: dict[str, str], pattern: str) -> tuple[float, float]:
    """Run `command`; its loop throughput (from the output line matching `pattern`) and its wall seconds."""
    start = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    match = re.search(pattern, result.stdout)
    if result.returncode or match is None:
        output = f"{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
        raise SystemExit(f"{' '.join(command[:6])} ... failed ({result.returncode}):\n{output}")
    return float(match.group(1)), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args()
    torchrun = [str(TORCHRUN), "--standalone", "--nproc-per-node", str(PROCESSES)]
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    env["OMP_NUM_THREADS"] = "1"  # what torchrun sets anyway; said here so both are alike whatever the caller has
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        (scratch / "plain_ddp.py").write_text(PLAIN_DDP)
        (scratch / "train.yml").write_text(yaml.safe_dump(trainer_config(args.steps)))
        contenders = {
            "plain DDP loop": (
                [*torchrun, str(scratch / "plain_ddp.py"), str(args.steps)],
                r"\[PLAIN\] .*samples_per_s=([0-9.]+)",
            ),
            "cajajejo trainer": (
                [*torchrun, "-m", "cajajejo.training", "--config", str(scratch / "train.yml"), "--checkpoint-dir"],
                r"\[DONE\] .*samples_per_s=([0-9.]+)",
            ),
        }
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in contenders}
        for round_number in range(args.rounds + 1):  # round 0 warms files and .pyc, and is not counted
            names = list(contenders)
            for name in names if round_number % 2 else reversed(names):
                command, pattern = contenders[name]
                if name == "cajajejo trainer":
                    command = [*command, str(scratch / f"checkpoints-{round_number}")]
                result = timed(command, env, pattern)
                if round_number:
                    samples[name].append(result)
    print(f"{args.rounds} rounds, {args.steps} steps of batch {BATCH} x {PROCESSES} processes (gloo, CPU), medians")
    print(f"{'':<18} {'samples/s':>11}  {'wall':>7}")
    results = {
        name: (statistics.median(s for s, _ in runs), statistics.median(w for _, w in runs))
        for name, runs in samples.items()
    }
    for name, (speed, wall) in results.items():
        print(f"{name:<18} {speed:11.0f}  {wall:6.2f}s")
    ratios = [t / p for (t, _), (p, _) in zip(samples["cajajejo trainer"], samples["plain DDP loop"], strict=True)]
    ratio = statistics.median(ratios)
    overhead = 1 - ratio
    print(f"trainer / plain per round: {' '.join(f'{r:.3f}' for r in ratios)}")
    print(f"trainer / plain = {ratio:.3f} (median of rounds); overhead {overhead:+.1%}")
    print(f"goal overhead <= {GOAL:.0%}: {'met' if overhead <= GOAL else 'not met'}")


if __name__ == "__main__":
    main()
