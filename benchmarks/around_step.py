"""Where the time of ``make main`` goes around the training step, and what the CPU-side fixes save.

Three measurements, each ``make main``-like run in a fresh subprocess (imports are part of the cost):

1. **split**: ``mmrobust train method=modality_dropout dataset=uci_mfeat`` through the API with
   ``trainer.threads=1`` and ``=2``; wall and CPU seconds of imports, training epochs, per-epoch validation,
   the final evaluation (val + test, every subset), writing tables and plots, and the collate calls inside them.
2. **collate**: the former per-sample collate loop (kept here as the reference) against ``data.Collate`` on
   uci_mfeat batches of 64 and 512, and the ratio to one training step of the same run.
3. **diagnostics**: seconds per epoch (training + validation + epoch-end hook, the last epoch's plot included)
   of ``method=joint`` (the imbalance diagnostics) over ``method=modality_dropout``, one thread; target ≤ 1.2.

Every worker records the CPU used by other processes meanwhile (``other_cores``): run it once on an idle and
once on a busy machine (e.g. with ``stress -c 1`` or a second benchmark beside it).

Usage::

    python benchmarks/around_step.py                  # 30 epochs as make main (~3 min on 2 idle cores)
    python benchmarks/around_step.py --quick          # 2 epochs, code path only
    python benchmarks/around_step.py --epochs 10 --out benchmarks/results/around_step_busy.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import _common as C

NAME = "around_step"


def _now() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


class Timer:
    """Wall and CPU seconds per category, by wrapping methods; ``outer`` calls nested in another timed call of
    ``nested_in`` are not counted twice (``final_eval`` = evaluations outside the per-epoch validation)."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.active: set[str] = set()

    def wrap(self, owner: Any, attr: str, name: str, skip_inside: Sequence[str] = ()) -> None:
        original = getattr(owner, attr)
        timer = self

        def timed(*args: Any, **kwargs: Any) -> Any:
            if any(s in timer.active for s in skip_inside):
                return original(*args, **kwargs)
            w0, c0 = _now()
            timer.active.add(name)
            try:
                return original(*args, **kwargs)
            finally:
                timer.active.discard(name)
                w1, c1 = _now()
                timer.wall[name] = timer.wall.get(name, 0.0) + w1 - w0
                timer.cpu[name] = timer.cpu.get(name, 0.0) + c1 - c0
                timer.calls[name] = timer.calls.get(name, 0) + 1

        setattr(owner, attr, timed)


def worker(method: str, threads: int, epochs: int, run_dir: str) -> dict[str, Any]:
    """One ``make main``-like run in this (fresh) process; returns the split of its time."""
    w0, c0 = _now()
    snap = C.cpu_snapshot()
    import torch

    from mmrobust import api, experiment
    from mmrobust.data.collate import Collate
    from mmrobust.engine.trainer import Trainer

    w1, c1 = _now()
    timer = Timer()
    timer.wrap(Trainer, "train_epoch", "train")
    timer.wrap(Trainer, "train_step", "steps")
    timer.wrap(Trainer, "validate_and_select", "validation")
    timer.wrap(Trainer, "evaluate", "final_eval", skip_inside=("validation",))
    timer.wrap(experiment, "write_outputs", "outputs")
    timer.wrap(Collate, "__call__", "collate")
    overrides = [
        f"method={method}",
        "dataset=uci_mfeat",
        f"trainer.max_epochs={epochs}",
        f"trainer.threads={threads}",
        "trainer.progress=false",
        "overwrite=true",
    ]
    api.train(overrides, run_dir=run_dir)
    w2, c2 = _now()
    split = {"imports": {"wall_s": w1 - w0, "cpu_s": c1 - c0}}
    for name in ("train", "steps", "validation", "final_eval", "outputs", "collate"):
        split[name] = {"wall_s": timer.wall.get(name, 0.0), "cpu_s": timer.cpu.get(name, 0.0)}
        split[name]["calls"] = timer.calls.get(name, 0)
    split["total"] = {"wall_s": w2 - w0, "cpu_s": c2 - c0}
    return {
        "method": method,
        "threads": threads,
        "torch_threads_used": torch.get_num_threads(),
        "epochs": epochs,
        "split": split,
        "contention": C.contention(snap, C.cpu_snapshot()),
    }


def old_collate(modalities: Sequence[str], shapes: dict[str, tuple[int, ...]], samples: Sequence[Any]) -> Any:
    """The per-sample loop that ``data.Collate`` replaced (inputs and mask only)."""
    import torch

    present = torch.zeros(len(samples), len(modalities), dtype=torch.bool)
    inputs = {}
    for j, name in enumerate(modalities):
        stacked = torch.zeros(len(samples), *shapes[name])
        for i, sample in enumerate(samples):
            x = sample.inputs.get(name)
            if x is not None:
                stacked[i] = x
                present[i, j] = True
        inputs[name] = stacked
    return inputs, present


def collate_worker(repeats: int) -> dict[str, Any]:
    """Old vs new collate on uci_mfeat training samples (every view present, and with a third of them missing)."""
    import torch

    from mmrobust.data import DATASETS
    from mmrobust.data.base import Sample
    from mmrobust.data.collate import Collate

    torch.set_num_threads(1)
    data = DATASETS.build("uci_mfeat", {"split": "train"})
    collate = Collate(data.modalities, data.shapes)
    out: dict[str, Any] = {}
    for size in (64, 512):
        full = [data[i] for i in range(size)]
        holes = [
            Sample(
                {m: (None if (i + j) % 3 == 0 else x) for j, (m, x) in enumerate(s.inputs.items())}, s.target, s.index
            )
            for i, s in enumerate(full)
        ]
        for label, samples in (("full", full), ("missing", holes)):

            def old(samples: list[Any] = samples) -> Any:
                return old_collate(data.modalities, data.shapes, samples)

            def new(samples: list[Any] = samples) -> Any:
                return collate(samples)

            t_old = C.summary(C.time_calls(old, repeats, 2))["median_s"]
            t_new = C.summary(C.time_calls(new, repeats, 2))["median_s"]
            out[f"batch{size}_{label}"] = {"old_s": t_old, "new_s": t_new, "speedup": t_old / t_new}
    return out


def run_worker(args: Sequence[str]) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False, cwd=C.ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def row(label: str, r: dict[str, Any]) -> list[Any]:
    s, total = r["split"], r["split"]["total"]["wall_s"]

    def cell(k: str) -> str:
        return f"{s[k]['wall_s']:.2f} ({100 * s[k]['wall_s'] / total:.0f} %)"

    return [label, f"{total:.2f}", *(cell(k) for k in ("imports", "train", "validation", "final_eval", "outputs",
            "collate")), f"{r['contention']['other_cores']:.2f}"]  # fmt: skip


def per_epoch(r: dict[str, Any]) -> float:
    s = r["split"]
    return (s["train"]["wall_s"] + s["validation"]["wall_s"]) / r["epochs"]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 epochs, few repeats: checks the code path")
    parser.add_argument("--epochs", type=int, default=30, help="epochs of each run (make main: 30)")
    parser.add_argument("--repeats", type=int, default=20, help="collate timings per variant")
    parser.add_argument("--out", default=str(C.ROOT / "benchmarks" / "results" / f"{NAME}.json"))
    parser.add_argument("--worker", choices=["run", "collate"], help=argparse.SUPPRESS)
    parser.add_argument("--method", default="modality_dropout", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker == "run":
        print(json.dumps(worker(args.method, args.threads, args.epochs, args.run_dir)))
        return
    if args.worker == "collate":
        print(json.dumps(collate_worker(args.repeats)))
        return
    epochs, repeats = (2, 3) if args.quick else (args.epochs, args.repeats)
    info = C.machine_info()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:

        def one(method: str, threads: int) -> dict[str, Any]:
            return run_worker(["--worker", "run", "--method", method, "--threads", str(threads), "--epochs",
                               str(epochs), "--run-dir", str(Path(tmp) / f"{method}_{threads}")])  # fmt: skip

        runs = {f"md_{t}": one("modality_dropout", t) for t in (1, 2)}
        runs["joint_1"] = one("joint", 1)
        runs["md_1_again"] = one("modality_dropout", 1)  # interleaved: the ratio uses the mean of both md runs
    collate = run_worker(["--worker", "collate", "--repeats", str(repeats)])
    md_epoch = (per_epoch(runs["md_1"]) + per_epoch(runs["md_1_again"])) / 2
    ratio = per_epoch(runs["joint_1"]) / md_epoch
    steps = runs["md_1"]["split"]["steps"]
    step_s = steps["wall_s"] / max(steps["calls"], 1)
    print(f"# {NAME}: {C.machine_line(info)}; {epochs} epochs")
    print(C.markdown_table(
        ["run", "total s", "imports", "training", "validation", "final eval", "outputs", "collate", "other cores"],
        [row(k, r) for k, r in runs.items()],
    ))  # fmt: skip
    print()
    print(C.markdown_table(
        ["batch", "old collate ms", "new collate ms", "speed-up", "old / train step", "new / train step"],
        [[k, f"{1e3 * v['old_s']:.2f}", f"{1e3 * v['new_s']:.3f}", f"{v['speedup']:.1f}x",
          f"{v['old_s'] / step_s:.2f}", f"{v['new_s'] / step_s:.3f}"] for k, v in collate.items()],
    ))  # fmt: skip
    print()
    two_over_one = runs["md_2"]["split"]["total"]["wall_s"] / runs["md_1"]["split"]["total"]["wall_s"]
    print(f"threads 2 / 1 (make main wall): {two_over_one:.2f}")
    print(f"diagnostics: joint epoch / modality_dropout epoch = {ratio:.2f} (target <= 1.2)")
    payload = {"benchmark": NAME, "machine": info, "args": vars(args), "runs": runs, "collate": collate,
               "train_step_s": step_s, "diagnostics_ratio": ratio}  # fmt: skip
    print(f"saved {C.write_json(args.out, payload)}")


if __name__ == "__main__":
    main()
