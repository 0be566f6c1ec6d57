"""How soon an evaluator starts on a new checkpoint: cajajejo's watcher against seed 000's polling loop.

One writer process publishes `--checkpoints` checkpoints (default 50) at irregular intervals (uniform
between 0.2 and 1.2 s, seeded), each in two forms: a cajajejo checkpoint (`CheckpointDir.write`: a
small file, fsync, rename, ledger entry) in `native/`, and the seed trainer's form in `seed/`: the
file `checkpoint_epoch_N.pt` written in place, then `latest.json` rewritten in place. At the end it
marks training complete in both (`training_complete.json`; the seed's `training_complete`).

Three evaluators watch at the same time, each in a process of its own, with an evaluation that only
notes the time it started (so the numbers are the waiting, not the work):
- `cajajejo`: `Watcher(LedgerSource("native/"))`, the default 0.2 s poll (a `stat` of `ledger/`,
  a listing when it changed or every second);
- `cajajejo-foreign`: `Watcher(ForeignSource("seed/"))`: the same loop on the seed's files (a file
  is taken once `latest.json` names it);
- `seed-loop`: seed 000's evaluator loop as it is written, with its real 5 s interval (`--seed-interval`):
  glob `checkpoint_epoch_*.pt`, evaluate the new ones in epoch order, sleep; whenever `latest.json`'s
  checkpoint has been evaluated, wait two more intervals and stop if nothing new came (its way of
  finding the end: while training goes on, each time it has caught up it looks again only after
  three intervals, so its wait is up to 15 s, not 5).

Measured: for each checkpoint, the time its evaluation started minus the time it was published
(native: the entry's time, taken just before the ledger rename, so a little early; seed: just after
the `.pt` file was closed), on one machine's clock. Printed: p50, p95 and max per evaluator, and the
ratio of the seed loop's p50 and p95 to cajajejo's. Goal: cajajejo's p95 under 0.5 s. The local disk
has no NFS attribute cache: on NFS the `stat` shortcut can miss a change for up to the relist
interval (1 s). Run time: about the writer's (~35 s for 50) plus the seed loop's final 10-15 s.

    python benchmarks/watch_latency.py [--checkpoints 50] [--seed-interval 5]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cajajejo.checkpoints import Checkpoint, CheckpointDir
from cajajejo.watch import ForeignSource, LedgerSource, Watcher

GOAL_P95 = 0.5


def write_checkpoints(run: Path, count: int, seed: int) -> None:
    """The writer: both forms of each checkpoint, then the completion markers; publication times to writer.jsonl."""
    rng = random.Random(seed)
    native = CheckpointDir(run / "native")
    seed_dir = run / "seed"
    with (run / "writer.jsonl").open("a") as log:
        for step in range(1, count + 1):
            time.sleep(rng.uniform(0.2, 1.2))
            with native.write(step, epoch=step) as folder:
                (folder / "model.pt").write_bytes(os.urandom(4096))
            entry = native.get(f"step-{step:08d}")
            assert entry is not None
            log.write(json.dumps({"form": "native", "name": entry.name, "published": entry.time}) + "\n")
            file_name = f"checkpoint_epoch_{step}.pt"
            (seed_dir / file_name).write_bytes(os.urandom(4096))  # in place, as torch.save does
            log.write(json.dumps({"form": "seed", "name": file_name, "published": time.time()}) + "\n")
            latest = {"checkpoint": file_name, "epoch": step, "train_loss": 1.0 / step, "timestamp": time.time()}
            (seed_dir / "latest.json").write_text(json.dumps(latest, indent=2))
            log.flush()
    native.mark_complete(step=count)
    (seed_dir / "training_complete").write_text(json.dumps({"final_epoch": count}))


def run_watcher(name: str, run: Path, out: Path) -> None:
    source = LedgerSource(run / "native") if name == "cajajejo" else ForeignSource(run / "seed")
    with out.open("a") as log:

        def handle(checkpoint: Checkpoint) -> dict[str, float]:
            started = time.time()
            log.write(json.dumps({"name": checkpoint.name, "started": started}) + "\n")
            log.flush()
            return {"started": started}

        Watcher(source, "latency", name, log=lambda line: None).run(handle)


def run_seed_loop(run: Path, out: Path, interval: float) -> None:
    """Seed 000's evaluator loop, with an evaluation that only notes when it started."""
    directory = run / "seed"
    evaluated: set[str] = set()
    with out.open("a") as log:
        while True:
            current = set(glob.glob(os.path.join(directory, "checkpoint_epoch_*.pt")))
            for path in sorted(current - evaluated, key=lambda p: int(p.rsplit("_", 1)[1].removesuffix(".pt"))):
                log.write(json.dumps({"name": os.path.basename(path), "started": time.time()}) + "\n")
                log.flush()
                evaluated.add(path)
            latest_path = directory / "latest.json"
            if latest_path.exists():
                try:
                    latest = json.loads(latest_path.read_text())
                    if str(directory / latest["checkpoint"]) in evaluated:
                        time.sleep(interval * 2)
                        if set(glob.glob(os.path.join(directory, "checkpoint_epoch_*.pt"))) == evaluated:
                            return
                except (OSError, ValueError, KeyError):
                    pass
            time.sleep(interval)


def latencies(run: Path, contender: str, form: str) -> list[float]:
    published = {
        record["name"]: record["published"]
        for record in map(json.loads, (run / "writer.jsonl").read_text().splitlines())
        if record["form"] == form
    }
    started = {r["name"]: r["started"] for r in map(json.loads, (run / f"{contender}.jsonl").read_text().splitlines())}
    missing = published.keys() - started.keys()
    if missing:
        raise SystemExit(f"{contender} never evaluated {sorted(missing)[:5]}")
    return sorted(started[name] - published[name] for name in published)


def percentile(values: list[float], fraction: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[round(fraction * 100) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=int, default=50)
    parser.add_argument("--seed-interval", type=float, default=5.0, help="The seed loop's poll (its default: 5 s).")
    parser.add_argument("--seed", type=int, default=11, help="Of the writer's intervals.")
    parser.add_argument("--contender", nargs=3, metavar=("NAME", "RUN", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.contender:
        name, run, out = args.contender
        if name == "seed-loop":
            run_seed_loop(Path(run), Path(out), args.seed_interval)
        else:
            run_watcher(name, Path(run), Path(out))
        return
    with tempfile.TemporaryDirectory(prefix="watch-latency-") as temp:
        run = Path(temp)
        (run / "native").mkdir()
        (run / "seed").mkdir()
        contenders = {"cajajejo": "native", "cajajejo-foreign": "seed", "seed-loop": "seed"}
        options = ["--seed-interval", str(args.seed_interval), "--contender"]
        processes = [
            subprocess.Popen([sys.executable, __file__, *options, name, temp, str(run / f"{name}.jsonl")])
            for name in contenders
        ]
        time.sleep(1.0)  # let them start before the first checkpoint
        started = time.monotonic()
        write_checkpoints(run, args.checkpoints, args.seed)
        for name, process in zip(contenders, processes, strict=True):
            if process.wait(timeout=120) != 0:
                raise SystemExit(f"evaluator {name} failed (exit code {process.returncode})")
        print(f"{args.checkpoints} checkpoints, all evaluators done in {time.monotonic() - started:.1f} s")
        results = {name: latencies(run, name, form) for name, form in contenders.items()}
    for name, values in results.items():
        p50, p95 = percentile(values, 0.50), percentile(values, 0.95)
        print(f"{name:>17}: publication -> evaluation start p50 {p50:.3f} s  p95 {p95:.3f} s  max {max(values):.3f} s")
    ours, seed = results["cajajejo"], results["seed-loop"]
    for fraction in (0.50, 0.95):
        ratio = percentile(seed, fraction) / percentile(ours, fraction)
        print(f"seed loop / cajajejo at p{round(fraction * 100)}: {ratio:.0f}x")
    p95 = percentile(ours, 0.95)
    print(f"goal p95 < {GOAL_P95} s: {'met' if p95 < GOAL_P95 else 'NOT met'} ({p95:.3f} s)")


if __name__ == "__main__":
    main()
