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

Two measurements, both in this one run:

- **Whole runs.** The two commands take turns, one run each per round (which goes first
  alternates), so a burst of load falls on both alike. The ratio is the median of the rounds'
  ratios. This is the comparison a user would make, but on a small shared VM identical runs of the
  same script differ by up to ±25% in loop throughput (measured on the 2-core CI machine), far more
  than the 2% asked about: it shows only gross overhead.
- **Same processes, alternating blocks.** One torchrun world builds the real `Trainer` from the
  same config and alternates, `--pairs` times, a block of `--block` steps of the trainer's own loop
  body (`Trainer.advance`: step, sync points, logging) with a block of the plain loop's step on the
  same DDP model, optimizer and data (the same epochs' orders, in lockstep). Both blocks of a pair
  see the same machine within a tenth of a second; the result is the median of the pairs' time
  ratios with a 95% interval. The trainer's sync clock is handed one that stops during the plain
  blocks, so it syncs as often as in a real run; pairs in which the trainer validated and
  checkpointed at an epoch's end are left out. Run with a world of 1 (DDP on one process: the
  shortest step, so the trainer's fixed cost per step weighs most; the interval is about ±0.3%) and
  of 2 (gloo between processes: on the 2-core VM the pairs' spread is ±15%, and runs disagree by
  more than their intervals).

The goal: the trainer's throughput within 2% of the plain loop's (overhead = 1 - trainer/plain).

    python benchmarks/trainer_overhead.py [--rounds 7] [--steps 2000] [--pairs 2000] [--block 10] [--same-processes 1 2]
"""

from __future__ import annotations

import argparse
import json
import math
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


SAME_PROCESSES = f'''
"""The trainer's loop body and the plain loop's step, alternating in one torchrun world."""
import contextlib, io, json, sys, time
from pathlib import Path
from torch import nn
from cajajejo.training.command import load_config
from cajajejo.training.data import SampleOrder
from cajajejo.training.sync import StepSync, StopRequests
from cajajejo.training.trainer import Trainer, TrainingOptions
from cajajejo.training.world import join_world, leave_world

config_path, checkpoints, pairs, block = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
stops = StopRequests()
world = join_world()
log = io.StringIO()  # the trainer's [TRAIN] lines: kept out of the way, they are not what is compared
with contextlib.redirect_stdout(log):
    trainer = Trainer(TrainingOptions(load_config(Path(config_path)), config_path, checkpoints), world, stops)
paused = 0.0  # the plain blocks' time: the trainer's clock leaves it out, so it syncs as often as in a real run
assert trainer.resumed_from is None, "a fresh checkpoint folder is needed: a resumed trainer would end early"
sync = StepSync(world, stops, clock=lambda: time.perf_counter() - paused)
model, optimizer = trainer.ddp, trainer.optimizer
inputs, labels, order = trainer.task.inputs, trainer.task.labels, trainer.order
plain_steps = 0

# The trainer's sample order, drawn the same way but cached apart: sharing one cache would make each block
# redraw the permutation of its epoch. Both loops take the same steps of the same epochs, in lockstep.
plain_order = SampleOrder(order.num_samples, order.batch_size, order.world_size, order.rank, order.seed)

def plain_block():
    global plain_steps
    for _ in range(block):  # the plain script's loop body, on the same model, optimizer and data
        epoch, step = divmod(plain_steps, order.steps_per_epoch)
        first = step * order.global_batch + world.rank * {BATCH}
        index = plain_order.permutation(epoch)[first : first + {BATCH}]
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(inputs[index]), labels[index])
        loss.backward()
        optimizer.step()
        plain_steps += 1
    loss.item()

def trainer_block():
    for _ in range(block):
        assert trainer.advance(sync) is None

times = {{"plain": [], "trainer": []}}
with contextlib.redirect_stdout(log):
    for pair in range(pairs + 2):  # the first two pairs warm up and are not counted
        seconds = {{}}
        epoch = trainer.progress.epoch
        for name in ("plain", "trainer") if pair % 2 else ("trainer", "plain"):
            start = time.perf_counter()
            plain_block() if name == "plain" else trainer_block()
            seconds[name] = time.perf_counter() - start
            if name == "plain":
                paused += seconds[name]
        # A pair whose trainer block validated and checkpointed at an epoch's end is left out: not loop overhead.
        if pair >= 2 and trainer.progress.epoch == epoch:
            for name, value in seconds.items():
                times[name].append(value)
if world.is_main:
    print("[PAIRS] " + json.dumps(times), flush=True)
world.barrier()
leave_world(world)
'''


def trainer_config(steps: int, epochs: int = 1, processes: int = PROCESSES) -> dict[str, object]:
    """The smoke test's model for the built-in trainer: `epochs` epochs of exactly `steps` steps each."""
    return {
        "version": "v4",
        "kind": "training",
        "image": "registry.example.com/ml-platform/training",
        "compute_config": {"cpu": "2", "memory": "4Gi"},
        "training": {
            "nproc_per_node": processes,
            "trainer": {
                "model": {
                    "type": "classifier",
                    "samples": steps * BATCH * processes,
                    "features": FEATURES,
                    "hidden": HIDDEN,
                    "classes": CLASSES,
                },
                "epochs": epochs,
                "batch_size": BATCH,
                "learning_rate": LEARNING_RATE,
                "seed": SEED,
            },
            "checkpoints": {"every_steps": 10 * steps * epochs, "keep_last": 1},  # only at epochs' ends
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


def torchrun(processes: int) -> list[str]:
    return [str(TORCHRUN), "--standalone", "--nproc-per-node", str(processes)]


def whole_runs(scratch: Path, env: dict[str, str], rounds: int, steps: int) -> tuple[float, float, float]:
    """The two commands in turns; prints their medians, returns the rounds' median ratio and its interval."""
    (scratch / "plain_ddp.py").write_text(PLAIN_DDP)
    (scratch / "train.yml").write_text(yaml.safe_dump(trainer_config(steps)))
    contenders = {
        "plain DDP loop": (
            [*torchrun(PROCESSES), str(scratch / "plain_ddp.py"), str(steps)],
            r"\[PLAIN\] .*samples_per_s=([0-9.]+)",
        ),
        "cajajejo trainer": (
            [
                *torchrun(PROCESSES),
                "-m",
                "cajajejo.training",
                "--config",
                str(scratch / "train.yml"),
                "--checkpoint-dir",
            ],
            r"\[DONE\] .*samples_per_s=([0-9.]+)",
        ),
    }
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in contenders}
    for round_number in range(rounds + 1):  # round 0 warms files and .pyc, and is not counted
        names = list(contenders)
        for name in names if round_number % 2 else reversed(names):
            command, pattern = contenders[name]
            if name == "cajajejo trainer":
                command = [*command, str(scratch / f"checkpoints-{round_number}")]
            result = timed(command, env, pattern)
            if round_number:
                samples[name].append(result)
    print(f"Whole runs: {rounds} rounds, {steps} steps of batch {BATCH} x {PROCESSES} processes (gloo, CPU), medians")
    print(f"{'':<18} {'samples/s':>11}  {'wall':>7}")
    for name, runs in samples.items():
        speed, wall = statistics.median(s for s, _ in runs), statistics.median(w for _, w in runs)
        print(f"{name:<18} {speed:11.0f}  {wall:6.2f}s")
    ratios = [t / p for (t, _), (p, _) in zip(samples["cajajejo trainer"], samples["plain DDP loop"], strict=True)]
    print(f"trainer / plain per round: {' '.join(f'{r:.3f}' for r in ratios)}")
    return median_interval(ratios)


def median_interval(values: list[float]) -> tuple[float, float, float]:
    """The median and a distribution-free 95% confidence interval for it (order statistics)."""
    ordered, n = sorted(values), len(values)
    if n < 6:  # even min..max covers the median with less than 95% (1 - 2 / 2**n): no interval
        return statistics.median(ordered), math.nan, math.nan
    half = 0.98 * math.sqrt(n)  # 1.96 * sqrt(n) / 2 ranks either side of the middle
    low, high = max(0, math.floor(n / 2 - half)), min(n - 1, math.ceil(n / 2 + half))
    return statistics.median(ordered), ordered[low], ordered[high]


def same_processes(
    scratch: Path, env: dict[str, str], processes: int, pairs: int, block: int
) -> tuple[float, float, float]:
    """Alternating blocks in one world; prints per-step times, returns the pairs' median ratio and its interval."""
    # Short epochs keep the data small (each rank holds all of it); pairs with an epoch's end are left out.
    epoch_steps = 50 * block
    epochs = (pairs + 2) * block // epoch_steps + 2
    (scratch / "same_processes.py").write_text(SAME_PROCESSES)
    config = scratch / f"pairs-{processes}.yml"
    config.write_text(yaml.safe_dump(trainer_config(epoch_steps, epochs, processes)))
    command = [
        *torchrun(processes),
        str(scratch / "same_processes.py"),
        str(config),
        str(scratch / f"checkpoints-pairs-{processes}"),  # its own: another world size's would be resumed
        str(pairs),
        str(block),
    ]
    try:
        # A pair takes about 0.05-0.1 s here: a generous bound, so a stuck world ends with a message.
        result = subprocess.run(command, env=env, capture_output=True, text=True, check=False, timeout=pairs * 2 + 300)
    except subprocess.TimeoutExpired as expired:
        raise SystemExit(f"same-process comparison ({processes} processes) ran past {expired.timeout} s") from None
    match = re.search(r"^\[PAIRS\] (.*)$", result.stdout, re.MULTILINE)
    if result.returncode or match is None:
        raise SystemExit(f"same-process comparison failed ({result.returncode}):\n{result.stderr[-3000:]}")
    times = json.loads(match.group(1))
    ratios = [p / t for p, t in zip(times["plain"], times["trainer"], strict=True)]
    print(f"Same processes: {len(ratios)} pairs of {block}-step blocks, {processes} process(es) (gloo, CPU)")
    for name in ("plain", "trainer"):
        print(f"{name:<18} {statistics.median(times[name]) / block * 1e3:8.3f} ms/step (median block)")
    quartiles = statistics.quantiles(ratios, n=4)
    print(f"trainer / plain per pair: quartiles {quartiles[0]:.3f} {quartiles[1]:.3f} {quartiles[2]:.3f}")
    return median_interval(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="whole-run rounds (0: skip them)")
    parser.add_argument("--steps", type=int, default=2000, help="steps of each whole run")
    parser.add_argument("--pairs", type=int, default=2000, help="same-process block pairs (0: skip them)")
    parser.add_argument("--block", type=int, default=10, help="steps per block")
    parser.add_argument(
        "--same-processes", type=int, nargs="+", default=[1, PROCESSES], help="world sizes of the same-process part"
    )
    args = parser.parse_args()
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    env["OMP_NUM_THREADS"] = "1"  # what torchrun sets anyway; said here so both are alike whatever the caller has
    results: dict[str, tuple[float, float, float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        if args.pairs:
            for processes in args.same_processes:
                name = f"same processes x{processes}"
                results[name] = same_processes(Path(folder), env, processes, args.pairs, args.block)
        if args.rounds:
            results["whole runs"] = whole_runs(Path(folder), env, args.rounds, args.steps)
    for name, (ratio, low, high) in results.items():
        # Shown when the whole interval is within the goal, refuted when all of it is beyond.
        verdict = "shown" if 1 - low <= GOAL else "refuted" if 1 - high > GOAL else "neither shown nor refuted"
        print(
            f"{name}: trainer / plain = {ratio:.4f} (95% CI {low:.4f}..{high:.4f}), overhead {1 - ratio:+.2%}; "
            f"goal <= {GOAL:.0%}: {verdict}"
        )


if __name__ == "__main__":
    main()
