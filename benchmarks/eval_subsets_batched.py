"""Every-subset evaluation as one batched fuse + neck + head call, against the per-subset loops, 2..6 modalities.

Four paths over the same pre-built batches, all through ``mmrobust.evaluation.evaluator.subset_outputs``
(eval mode, ``torch.no_grad``; the logits of every subset are produced and dropped, so no metric is timed):

- ``batched``: encode once, then fuse + neck + head for the ``2^M − 1`` subsets in as few stacked calls as the
  element budget allows (``encode_once=True, batched=True``, the default);
- ``loop``: encode once, then one fuse + neck + head call per subset (``batched=False``);
- ``per_subset``: one full forward per subset on the restricted batch (``encode_once=False``);
- ``full``: ONE full forward of the batch with every modality present (the unit of the last ratio).

Reported per modality count: ``loop / batched`` and ``per_subset / batched`` (speed-ups of the batched call),
and ``batched / full`` (what evaluating every subset costs, in full forwards). The paths are timed
interleaved, the order rotating each repeat (A B C D, B C D A, ...), after one untimed call each (which
also lets the evaluator learn the output size of the model); figures are medians over the repeats. The
script also checks that ``batched`` and ``loop`` give the same logits (max abs difference).

Cases:

- ``mlp``: the shipped ``mlp`` model (configs/model/mlp.yaml) on M synthetic vector views with the
  dimensions of the UCI Multiple Features views (76, 216, 64, 240, 47, 6), 10 classes, 400 samples in
  batches of 128, as uci_mfeat's test split;
- ``surf``: the SURF-baseline model (width 16 by default) on M random 3×64×64 image modalities, 2 classes,
  one batch of 16.

Usage::

    python benchmarks/eval_subsets_batched.py                 # all cases, CPU
    python benchmarks/eval_subsets_batched.py --threads 1     # torch on one thread
    python benchmarks/eval_subsets_batched.py --quick         # seconds-long smoke run
"""

from __future__ import annotations

import argparse
import functools
from typing import Any

import torch

import _common as C
from mmrobust.batch import Batch
from mmrobust.evaluation.evaluator import MAX_STACKED_ELEMENTS, subset_outputs, subsets_per_call
from mmrobust.models import build_model
from mmrobust.models.multimodal import MultimodalModel
from mmrobust.subsets import all_subsets

NAME = "eval_subsets_batched"
UCI_DIMS = (76, 216, 64, 240, 47, 6)  # fou, fac, kar, pix, zer, mor
PATHS = ("batched", "loop", "per_subset", "full")


def make_batches(shapes: dict[str, tuple[int, ...]], num_classes: int, samples: int, batch_size: int) -> list[Batch]:
    """Random full-modality batches (seeded)."""
    g = torch.Generator().manual_seed(0)
    modalities = tuple(shapes)
    batches = []
    for start in range(0, samples, batch_size):
        n = min(batch_size, samples - start)
        batches.append(
            Batch(
                inputs={m: torch.randn(n, *shapes[m], generator=g) for m in modalities},
                present=torch.ones(n, len(modalities), dtype=torch.bool),
                target=torch.randint(0, num_classes, (n,), generator=g),
                modalities=modalities,
                index=torch.arange(start, start + n),
            )
        )
    return batches


def mlp_case(num_modalities: int, samples: int, batch_size: int) -> tuple[MultimodalModel, list[Batch]]:
    import yaml

    shapes = {f"v{j}": (UCI_DIMS[j],) for j in range(num_modalities)}
    config = yaml.safe_load((C.ROOT / "src/mmrobust/configs/model/mlp.yaml").read_text())
    torch.manual_seed(0)
    return build_model(config, tuple(shapes), shapes, 10), make_batches(shapes, 10, samples, batch_size)


def surf_case(num_modalities: int, width: int, image_size: int, batch_size: int) -> tuple[MultimodalModel, list[Batch]]:
    shapes = {f"m{j}": (3, image_size, image_size) for j in range(num_modalities)}
    torch.manual_seed(0)
    model = build_model(C.surf_config(width), tuple(shapes), shapes, C.SURF_CLASSES)
    return model, make_batches(shapes, C.SURF_CLASSES, batch_size, batch_size)


@torch.no_grad()
def run_path(model: MultimodalModel, batches: list[Batch], subsets: list[int], path: str) -> None:
    for batch in batches:
        if path == "full":
            model(batch)
            continue
        encode_once, batched = {"batched": (True, True), "loop": (True, False), "per_subset": (False, False)}[path]
        for _s, _logits in subset_outputs(model, batch, subsets, encode_once, batched=batched):
            pass


@torch.no_grad()
def max_difference(model: MultimodalModel, batches: list[Batch], subsets: list[int]) -> tuple[float, float]:
    """Max |batched − loop| logit difference and max |logit| over every batch and subset."""
    diff = peak = 0.0
    for batch in batches:
        fast = dict(subset_outputs(model, batch, subsets))
        slow = dict(subset_outputs(model, batch, subsets, batched=False))
        diff = max(diff, max(float((fast[s] - slow[s]).abs().max()) for s in subsets))
        peak = max(peak, max(float(slow[s].abs().max()) for s in subsets))
    return diff, peak


@torch.no_grad()
def chunking(model: MultimodalModel, batch: Batch, subsets: list[int]) -> dict[str, int]:
    """Subsets per stacked call and the number of stacked calls for the first batch (default budget)."""
    features = model.encode(batch)
    out = model.head(model.neck(model.fuse(features, batch.present)))
    k = subsets_per_call(features, len(batch), out[:1].numel(), MAX_STACKED_ELEMENTS)
    return {"subsets_per_call": min(k, len(subsets)), "calls": -(-len(subsets) // k)}


def bench_case(case: str, m: int, model: MultimodalModel, batches: list[Batch], repeats: int) -> dict[str, Any]:
    model.eval()
    subsets = all_subsets(m)
    for path in PATHS:  # warm-up (and the evaluator learns the output size of the model)
        run_path(model, batches, subsets, path)
    diff, peak = max_difference(model, batches, subsets)
    times: dict[str, list[float]] = {p: [] for p in PATHS}
    before = C.cpu_snapshot()
    for r in range(repeats):
        for path in PATHS[r % len(PATHS) :] + PATHS[: r % len(PATHS)]:
            times[path] += C.time_calls(functools.partial(run_path, model, batches, subsets, path), 1, 0)
    busy = C.contention(before, C.cpu_snapshot())
    stats = {p: C.summary(v) for p, v in times.items()}
    med = {p: stats[p]["median_s"] for p in PATHS}
    return {
        "case": case,
        "modalities": m,
        "num_subsets": len(subsets),
        "samples": sum(len(b) for b in batches),
        "batch_size": len(batches[0]),
        "params": C.count_params(model),
        **chunking(model, batches[0], subsets),
        "times_s": times,
        "stats": stats,
        "speedup_vs_loop": med["loop"] / med["batched"],
        "speedup_vs_per_subset": med["per_subset"] / med["batched"],
        "batched_in_full_forwards": med["batched"] / med["full"],
        "loop_in_full_forwards": med["loop"] / med["full"],
        "per_subset_in_full_forwards": med["per_subset"] / med["full"],
        "max_abs_logit_diff": diff,
        "max_abs_logit": peak,
        "contention": busy,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    C.add_common_args(p, NAME)
    p.add_argument("--cases", nargs="+", default=["mlp", "surf"], choices=["mlp", "surf"])
    p.add_argument("--modalities", nargs="+", type=int, default=None, help="modality counts (default 2 3 4 5 6)")
    p.add_argument("--surf-modalities", nargs="+", type=int, default=None,
                   help="modality counts of the image case (default: --modalities)")  # fmt: skip
    p.add_argument("--samples", type=int, default=None, help="mlp samples (default 400; 64 quick)")
    p.add_argument("--batch-size", type=int, default=128, help="mlp batch size (default 128)")
    p.add_argument("--width", type=int, default=16, help="SURF width (default 16)")
    p.add_argument("--image-size", type=int, default=None, help="SURF input size (default 64; 32 quick)")
    p.add_argument("--surf-batch-size", type=int, default=16, help="SURF batch size (default 16)")
    p.add_argument("--repeats", type=int, default=None, help="timed calls per path (default 12; 2 quick)")
    args = p.parse_args(argv)
    C.resolve_wait(args)
    args.modalities = args.modalities or ([2, 3] if args.quick else [2, 3, 4, 5, 6])
    args.surf_modalities = args.surf_modalities or args.modalities
    args.samples = args.samples or (64 if args.quick else 400)
    args.image_size = args.image_size or (32 if args.quick else 64)
    args.repeats = args.repeats or (2 if args.quick else 12)
    if any(not 1 <= m <= len(UCI_DIMS) for m in args.modalities + args.surf_modalities):
        p.error(f"--modalities / --surf-modalities: counts from 1 to {len(UCI_DIMS)} expected")
    C.apply_threads(args.threads)
    info = C.machine_info("cpu")

    results = []
    for case in args.cases:
        for m in args.modalities if case == "mlp" else args.surf_modalities:
            if case == "mlp":
                model, batches = mlp_case(m, args.samples, args.batch_size)
            else:
                model, batches = surf_case(m, args.width, args.image_size, args.surf_batch_size)
            C.log(f"[{NAME}] {case}, {m} modalities: {2**m - 1} subsets, {args.repeats} repeats per path")
            idle = C.wait_for_idle(args.wait_idle)
            results.append({**bench_case(case, m, model, batches, args.repeats), "idle_wait": idle})

    rows = [
        [
            r["case"],
            r["modalities"],
            r["num_subsets"],
            f"{r['samples']} / {r['batch_size']}",
            f"{r['calls']} × {r['subsets_per_call']}",
            f"{r['stats']['full']['median_s'] * 1e3:.2f}",
            f"{r['stats']['batched']['median_s'] * 1e3:.2f}",
            f"{r['stats']['loop']['median_s'] * 1e3:.2f}",
            f"{r['stats']['per_subset']['median_s'] * 1e3:.2f}",
            f"**{r['speedup_vs_loop']:.2f}×**",
            f"**{r['speedup_vs_per_subset']:.2f}×**",
            f"**{r['batched_in_full_forwards']:.2f}**",
            f"{r['loop_in_full_forwards']:.2f}",
            f"{r['max_abs_logit_diff']:.1e}",
            f"{r['contention']['other_cores']:.2f}",
        ]
        for r in results
    ]
    headers = [
        "case", "M", "subsets", "samples / batch", "stacked calls × subsets", "one full forward (ms)",
        "batched (ms)", "encode-once loop (ms)", "forward per subset (ms)", "loop / batched",
        "per-subset / batched", "batched, in full forwards", "loop, in full forwards", "max |Δlogit|",
        "other processes (cores)",
    ]  # fmt: skip
    print(f"## Every-subset evaluation, batched\n\nMachine: {C.machine_line(info)}\n")
    print(C.markdown_table(headers, rows))
    print("\nTimes: medians over the interleaved repeats of one pass over all samples and subsets (no metrics).")
    path = C.write_json(args.out, {"benchmark": NAME, "machine": info, "args": vars(args), "results": results})
    C.log(f"[{NAME}] wrote {path}")


if __name__ == "__main__":
    main()
