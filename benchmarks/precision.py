"""bf16-mixed against fp32 (``trainer.precision``): training step time and accuracy.

1. **uci_mfeat accuracy**: the `make main` run (modality dropout, the default ``mlp`` model, 30 epochs), for each
   seed once with ``trainer.precision=32-true`` and once with ``bf16-mixed`` (``mmrobust.experiment.run``, the
   order alternating between seeds); the test accuracy averaged over the 63 subsets, and each run's wall time.
2. **uci_mfeat step time**: one training step of the same model on one real training batch of 64 (forward of
   the full model, cross entropy, backward, AdamW step), fp32 and bf16-mixed steps interleaved, medians.
3. **SURF step time**: the SURF-baseline network (``configs/model/surf_baseline.yaml``, width 64) on synthetic
   112×112 tensors, batch 16 (the same step with SGD, the papers' optimizer), interleaved, medians.

bf16-mixed is what the trainer runs: the forward inside ``fabric.autocast()`` (``torch.autocast(cpu,
bfloat16)``), float32 parameters. Ratios are bf16-mixed / fp32 of figures measured in the same run (a ratio
> 1: bf16-mixed is slower). Set ``OMP_NUM_THREADS=1`` on a shared machine.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/precision.py            # ~13 min on a 2-core CPU
    python benchmarks/precision.py --quick                      # seconds-long smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import torch
import torch.nn.functional as F

import _common as C

NAME = "precision"
PRECISIONS = ("32-true", "bf16-mixed")


def autocast_of(precision: str) -> Callable[[], AbstractContextManager[Any]]:
    """``fabric.autocast`` of a CPU Fabric with ``precision`` (what the trainer wraps every forward in)."""
    from lightning.fabric import Fabric

    fabric = Fabric(accelerator="cpu", devices=1, precision=precision)  # type: ignore[arg-type]
    return fabric.autocast


def interleaved_step_times(
    model: torch.nn.Module, batch: Any, optimizer: torch.optim.Optimizer, repeats: int, warmup: int
) -> dict[str, list[float]]:
    """Wall seconds of training steps, alternating the precisions (and which goes first) for ``repeats`` rounds.

    One step: ``model(batch)`` inside the precision's autocast, cross entropy, backward, optimizer step.
    """
    contexts = {p: autocast_of(p) for p in PRECISIONS}

    def step(precision: str) -> float:
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with contexts[precision]():
            logits = model(batch)  # [B, C]
        loss = F.cross_entropy(logits.float(), batch.target)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - start

    for _ in range(warmup):
        for p in PRECISIONS:
            step(p)
    times: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    for r in range(repeats):
        for p in PRECISIONS if r % 2 == 0 else PRECISIONS[::-1]:
            times[p].append(step(p))
    return times


def timing_summary(times: dict[str, list[float]]) -> dict[str, Any]:
    medians = {p: statistics.median(t) for p, t in times.items()}
    return {
        "times_s": times,
        "median_s": medians,
        "ratio_bf16_mixed_over_fp32": medians["bf16-mixed"] / medians["32-true"],
    }


def uci_config(seed: int, precision: str, epochs: int) -> Any:
    from mmrobust.api import compose_config

    return compose_config(
        [
            "dataset=uci_mfeat",
            f"seed={seed}",
            f"trainer.precision={precision}",
            f"trainer.max_epochs={epochs}",
            "trainer.progress=false",
            "trainer.tensorboard=false",
        ]
    )


def uci_runs(seeds: list[int], epochs: int) -> list[dict[str, Any]]:
    """Whole runs: test accuracy averaged over every subset, and wall time, per (seed, precision)."""
    from mmrobust.experiment import run

    rows = []
    for i, seed in enumerate(seeds):
        for precision in PRECISIONS if i % 2 == 0 else PRECISIONS[::-1]:
            with tempfile.TemporaryDirectory(prefix="mmrobust-precision-") as folder:
                before = C.cpu_snapshot()
                with contextlib.redirect_stdout(io.StringIO()):  # the run's printed tables
                    results = run(uci_config(seed, precision, epochs), folder)
                busy = C.contention(before, C.cpu_snapshot())
            accuracies = [m["accuracy"] for m in results["metrics"]["test"].values()]
            rows.append(
                {
                    "seed": seed,
                    "precision": precision,
                    "test_avg_accuracy": sum(accuracies) / len(accuracies),
                    "test_full_accuracy": accuracies[-1],
                    "best_val_score": results["fits"]["."]["best_val_score"],
                    "wall_s": busy["wall_s"],
                    "other_cores": busy["other_cores"],
                }
            )
            C.log(f"[{NAME}] uci seed {seed} {precision}: {rows[-1]['test_avg_accuracy']:.4f} in {busy['wall_s']:.1f} s")
    return rows


def uci_step(repeats: int, warmup: int) -> dict[str, Any]:
    """Step times of the default uci_mfeat model on one real training batch of 64."""
    from mmrobust.data import Collate
    from mmrobust.experiment import build_data, build_job_model, to_run_config

    cfg = to_run_config(uci_config(0, "32-true", 1))
    data = build_data(cfg)
    torch.manual_seed(0)
    model = build_job_model(cfg, data).train()
    batch = Collate(data.train.modalities, data.train.shapes)([data.train[i] for i in range(64)])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    return timing_summary(interleaved_step_times(model, batch, optimizer, repeats, warmup))


def surf_step(batch_size: int, image_size: int, width: int, repeats: int, warmup: int) -> dict[str, Any]:
    model, batch = C.surf_model_and_batch(width, batch_size, image_size)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    return timing_summary(interleaved_step_times(model, batch, optimizer, repeats, warmup)) | {
        "batch_size": batch_size,
        "image_size": image_size,
        "width": width,
        "params": C.count_params(model),
    }


def accuracy_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and std over seeds per precision, and the paired (same seed) bf16-mixed − fp32 differences."""
    by = {p: {r["seed"]: r for r in rows if r["precision"] == p} for p in PRECISIONS}
    out: dict[str, Any] = {}
    for p, runs in by.items():
        acc = [r["test_avg_accuracy"] for r in runs.values()]
        out[p] = {
            "mean": statistics.mean(acc),
            "std": statistics.stdev(acc) if len(acc) > 1 else 0.0,
            "median_wall_s": statistics.median(r["wall_s"] for r in runs.values()),
        }
    diffs = [by["bf16-mixed"][s]["test_avg_accuracy"] - by["32-true"][s]["test_avg_accuracy"] for s in by["32-true"]]
    out["paired_diff"] = diffs
    out["mean_paired_diff"] = statistics.mean(diffs)
    noise = max(out["32-true"]["std"], out["bf16-mixed"]["std"])
    out["within_seed_noise"] = abs(out["mean_paired_diff"]) <= noise  # within one std over seeds
    out["wall_ratio_bf16_mixed_over_fp32"] = out["bf16-mixed"]["median_wall_s"] / out["32-true"]["median_wall_s"]
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    C.add_common_args(p, NAME)
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="uci_mfeat seeds (default 0 1 2)")
    p.add_argument("--epochs", type=int, default=None, help="uci_mfeat epochs (default 30, the shipped trainer)")
    p.add_argument("--repeats", type=int, default=None, help="interleaved rounds per step timing (default 20/7)")
    args = p.parse_args(argv)
    C.resolve_wait(args)
    C.apply_threads(args.threads)
    seeds = args.seeds or ([0, 1] if args.quick else [0, 1, 2])
    epochs = args.epochs or (1 if args.quick else 30)
    uci_repeats = args.repeats or (3 if args.quick else 20)
    surf_repeats = args.repeats or (2 if args.quick else 7)
    warnings.filterwarnings("ignore", message=".*(Automatic Mixed Precision|GPU available|num_workers).*")

    info = C.machine_info("cpu")
    C.wait_for_idle(args.wait_idle)
    before = C.cpu_snapshot()
    uci_step_times = uci_step(uci_repeats, warmup=2)
    surf = surf_step(2 if args.quick else 16, 32 if args.quick else 112, 8 if args.quick else 64, surf_repeats, 1)
    step_busy = C.contention(before, C.cpu_snapshot())
    rows = uci_runs(seeds, epochs)
    acc = accuracy_summary(rows)

    print(f"## Precision: bf16-mixed vs fp32\n\nMachine: {C.machine_line(info)}\n")
    step_rows = [
        [name, f"{1e3 * s['median_s']['32-true']:.2f}", f"{1e3 * s['median_s']['bf16-mixed']:.2f}",
         f"{s['ratio_bf16_mixed_over_fp32']:.2f}×"]
        for name, s in (("uci_mfeat mlp, batch 64", uci_step_times), ("SURF w64, 112 px, batch 16", surf))
    ]  # fmt: skip
    print(C.markdown_table(["training step", "fp32 (ms)", "bf16-mixed (ms)", "bf16/fp32"], step_rows))
    print(f"\nother processes during the step timings: {step_busy['other_cores']:.2f} cores\n")
    run_rows = [
        [r["seed"], r["precision"], f"{100 * r['test_avg_accuracy']:.2f}", f"{r['wall_s']:.1f}",
         f"{r['other_cores']:.2f}"]
        for r in rows
    ]  # fmt: skip
    print(C.markdown_table(["seed", "precision", "test avg acc (%)", "run wall (s)", "other cores"], run_rows))
    print(
        f"\nfp32 {100 * acc['32-true']['mean']:.2f} ± {100 * acc['32-true']['std']:.2f}, bf16-mixed "
        f"{100 * acc['bf16-mixed']['mean']:.2f} ± {100 * acc['bf16-mixed']['std']:.2f} (mean ± std over seeds); "
        f"paired difference {100 * acc['mean_paired_diff']:+.2f} points; within seed noise: {acc['within_seed_noise']}; "
        f"run wall ratio {acc['wall_ratio_bf16_mixed_over_fp32']:.2f}×"
    )
    payload = {
        "benchmark": NAME,
        "machine": info,
        "args": vars(args) | {"seeds": seeds, "epochs": epochs},
        "uci_step": uci_step_times,
        "surf_step": surf,
        "step_contention": step_busy,
        "uci_runs": rows,
        "uci_accuracy": acc,
    }
    path = C.write_json(args.out, payload)
    C.log(f"[{NAME}] wrote {path}")


if __name__ == "__main__":
    main()
