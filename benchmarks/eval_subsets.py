"""Every-subset evaluation: encode once per batch (then fuse + head per subset) vs one forward per subset.

Both paths are ``mmrobust.evaluation.evaluator.predict_subsets`` (``encode_once=True`` / ``False``), on
batches collated before timing (no data loading is timed). The two paths are timed alternately in one
run (A B, B A, A B, ...) after one untimed call each, so the speed-up ratio compares medians taken
under the same machine load. The script also checks that the two paths give the same logits (max abs
difference over every subset and sample) and counts the FLOPs of each path with
``torch.utils.flop_counter.FlopCounterMode`` (matmul/conv FLOPs only; element-wise ops, norms and
pooling are not counted), which gives the speed-up to expect if time were proportional to FLOPs.

Cases:

- ``surf-w16`` / ``surf-w64``: the SURF-baseline model (per-modality ResNet-18 stem + layer1 + layer2 +
  SE, concat, shared layer3 + layer4) with 3 modalities (7 subsets) on random 3×112×112 inputs;
- ``uci_mfeat``: the ``mlp`` model on the 6 views of the UCI Multiple Features test split (63 subsets).

Usage::

    python benchmarks/eval_subsets.py            # all cases, CPU
    python benchmarks/eval_subsets.py --quick    # seconds-long smoke run
"""

from __future__ import annotations

import argparse
import functools
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

import _common as C
from mmrobust.batch import Batch
from mmrobust.evaluation.evaluator import predict_subsets
from mmrobust.models.multimodal import MultimodalModel
from mmrobust.subsets import all_subsets, full_subset

NAME = "eval_subsets"


def count_flops(fn: Any) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


@torch.no_grad()
def stage_flops(model: MultimodalModel, batch: Batch) -> dict[str, int]:
    """FLOPs of encoding the full batch (every modality) and of one fuse + neck + head pass."""
    model.eval()
    features = model.encode(batch)
    return {
        "encode_all_modalities": count_flops(lambda: model.encode(batch)),
        "fuse_neck_head_one_subset": count_flops(lambda: model.head(model.neck(model.fuse(features, batch.present)))),
    }


def bench_case(name: str, model: MultimodalModel, batches: list[Batch], repeats: int, device: str) -> dict[str, Any]:
    model = model.to(device).eval()
    num_modalities = len(batches[0].modalities)
    subsets = all_subsets(num_modalities)
    samples = sum(len(b) for b in batches)

    def run(once: bool) -> dict[int, Any]:
        return predict_subsets(model, batches, subsets, device=device, encode_once=once)

    # correctness (and warm-up of both paths)
    a, b = run(True), run(False)
    max_diff = max(float((a[s].logits - b[s].logits).abs().max()) for s in subsets)
    max_logit = max(float(a[s].logits.abs().max()) for s in subsets)

    flops = {"encode_once": count_flops(lambda: run(True)), "per_subset": count_flops(lambda: run(False))}
    stages = stage_flops(model, batches[0])

    times: dict[str, list[float]] = {"encode_once": [], "per_subset": []}
    before = C.cpu_snapshot()
    for r in range(repeats):
        order = (True, False) if r % 2 == 0 else (False, True)
        for once in order:
            key = "encode_once" if once else "per_subset"
            times[key] += C.time_calls(functools.partial(run, once), repeats=1, warmup=0, device=device)
    busy = C.contention(before, C.cpu_snapshot())
    stats = {k: C.summary(v) for k, v in times.items()}
    speedup = stats["per_subset"]["median_s"] / stats["encode_once"]["median_s"]
    # per-repeat ratios of adjacent pairs: a spread that the ratio of medians hides
    pair_ratios = [p / e for p, e in zip(times["per_subset"], times["encode_once"])]
    sizes = [bin(s).count("1") for s in subsets]
    return {
        "case": name,
        "modalities": list(batches[0].modalities),
        "num_subsets": len(subsets),
        "samples": samples,
        "batches": len(batches),
        "batch_size": len(batches[0]),
        "params": C.count_params(model),
        "encoder_passes": {"encode_once": num_modalities, "per_subset": sum(sizes)},
        "fusion_head_passes": len(subsets),
        "times_s": times,
        "stats": stats,
        "speedup_median": speedup,
        "speedup_pairs_min_max": [min(pair_ratios), max(pair_ratios)],
        "flops": flops,
        "flop_ratio": flops["per_subset"] / flops["encode_once"],
        "stage_flops_first_batch": stages,
        "max_abs_logit_diff": max_diff,
        "max_abs_logit": max_logit,
        "full_subset": full_subset(num_modalities),
        "contention": busy,
    }


def surf_case(width: int, samples: int, batch_size: int, image_size: int) -> tuple[MultimodalModel, list[Batch]]:
    model, batch = C.surf_model_and_batch(width, samples, image_size)
    batches = []
    for start in range(0, samples, batch_size):
        sl = slice(start, start + batch_size)
        batches.append(
            Batch(
                inputs={m: x[sl] for m, x in batch.inputs.items()},
                present=batch.present[sl],
                target=batch.target[sl],
                modalities=batch.modalities,
                index=batch.index[sl],
            )
        )
    return model, batches


def uci_case(batch_size: int, limit: int | None) -> tuple[MultimodalModel, list[Batch]]:
    import yaml

    from mmrobust.data import DATASETS, Collate
    from mmrobust.models import build_model

    ds = DATASETS.build("uci_mfeat", {"split": "test"})
    collate = Collate(ds.modalities, ds.shapes)
    n = min(len(ds), limit) if limit else len(ds)
    batches = [collate([ds[i] for i in range(s, min(s + batch_size, n))]) for s in range(0, n, batch_size)]
    config = yaml.safe_load((C.ROOT / "src/mmrobust/configs/model/mlp.yaml").read_text())
    torch.manual_seed(0)
    return build_model(config, ds.modalities, ds.shapes, ds.num_classes), batches


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    C.add_common_args(p, NAME)
    p.add_argument("--cases", nargs="+", default=["surf-w16", "surf-w64", "uci_mfeat"],
                   choices=["surf-w16", "surf-w64", "uci_mfeat"])  # fmt: skip
    p.add_argument("--surf-samples", type=int, default=None, help="SURF samples evaluated (default 16; 4 quick)")
    p.add_argument("--surf-batch-size", type=int, default=16, help="SURF batch size (default 16)")
    p.add_argument("--image-size", type=int, default=None, help="SURF input size (default 112; 32 quick)")
    p.add_argument("--uci-batch-size", type=int, default=128, help="uci_mfeat batch size (default 128)")
    p.add_argument("--repeats", type=int, default=None, help="timed calls per path (default 5 SURF / 20 uci)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    C.resolve_wait(args)
    args.surf_samples = args.surf_samples or (4 if args.quick else 16)
    args.image_size = args.image_size or (32 if args.quick else 112)
    C.apply_threads(args.threads)
    info = C.machine_info(args.device)

    results = []
    for case in args.cases:
        if case.startswith("surf"):
            width = int(case.split("-w")[1])
            model, batches = surf_case(width, args.surf_samples, min(args.surf_batch_size, args.surf_samples),
                                       args.image_size)  # fmt: skip
            repeats = args.repeats or (2 if args.quick else 5)
        else:
            model, batches = uci_case(args.uci_batch_size, 64 if args.quick else None)
            repeats = args.repeats or (3 if args.quick else 20)
        C.log(f"[{NAME}] {case}: {sum(len(b) for b in batches)} samples, {repeats} repeats per path")
        idle = C.wait_for_idle(args.wait_idle)
        results.append({**bench_case(case, model, batches, repeats, args.device), "idle_wait": idle})

    rows = [
        [
            r["case"],
            r["num_subsets"],
            r["samples"],
            f"{r['encoder_passes']['per_subset']} + {r['fusion_head_passes']}",
            f"{r['encoder_passes']['encode_once']} + {r['fusion_head_passes']}",
            f"{r['stats']['per_subset']['median_s'] * 1e3:.1f}",
            f"{r['stats']['encode_once']['median_s'] * 1e3:.1f}",
            f"{r['speedup_median']:.2f}×",
            f"{r['speedup_pairs_min_max'][0]:.2f}–{r['speedup_pairs_min_max'][1]:.2f}",
            f"{r['flop_ratio']:.2f}×",
            f"{r['max_abs_logit_diff']:.2e}",
            f"{r['contention']['other_cores']:.2f}",
        ]
        for r in results
    ]
    headers = [
        "case", "subsets", "samples", "passes per subset path (enc + fuse/head)", "passes encode-once",
        "per-subset (ms)", "encode-once (ms)", "speed-up (median)", "speed-up range (pairs)",
        "FLOP ratio", "max |Δlogit|", "other processes (cores)",
    ]  # fmt: skip
    print(f"## Every-subset evaluation: encode once vs one forward per subset\n\nMachine: {C.machine_line(info)}\n")
    print(C.markdown_table(headers, rows))
    print("\nTimes are medians over the repeats of one call of predict_subsets over all samples and subsets.")
    for r in results:
        st = r["stage_flops_first_batch"]
        per_sample = r["batch_size"]
        print(
            f"- {r['case']}: FLOPs per sample: encoders (all modalities) "
            f"{st['encode_all_modalities'] / per_sample / 1e6:.4g} MFLOP, fuse+neck+head per subset "
            f"{st['fuse_neck_head_one_subset'] / per_sample / 1e6:.4g} MFLOP; "
            f"max |logit| {r['max_abs_logit']:.3g}"
        )
    path = C.write_json(args.out, {"benchmark": NAME, "machine": info, "args": vars(args), "results": results})
    C.log(f"[{NAME}] wrote {path}")


if __name__ == "__main__":
    main()
