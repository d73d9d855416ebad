"""Segmentation evaluation: memory as the split grows, and the cost of evaluating every subset.

1. **Memory vs split size.** For each number of samples N, a fresh child process evaluates a
   ``seg_small`` model (40 classes, NYUv2-like 240×320 RGB-D inputs, random data) on all 3 subsets and
   reports its peak resident memory during evaluation minus its resident memory just before
   (sampled every 5 ms from ``/proc/self/statm``):
   - ``stream``: ``evaluate_subsets`` (the trainer's evaluation: a confusion matrix per subset);
   - ``keep``: ``predict_subsets`` without a compacting task, i.e. keeping every logit of the split per
     subset (what the evaluator did before the tasks layer: ``N · 3 · 40 · 240 · 320 · 4`` bytes).
2. **Every-subset cost with fusion inside the encoders.** ESANet (ResNet-18) cannot encode once and fuse per
   subset: the evaluator runs one forward per subset. Median time of evaluating one batch on the full subset
   only vs on all three subsets.

    python benchmarks/eval_memory.py            # ~3 min on a 2-core CPU
    python benchmarks/eval_memory.py --quick    # seconds; figures meaningless
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common
from mmrobust.data.base import MultimodalDataset, Sample
from mmrobust.data.collate import Collate
from mmrobust.evaluation.evaluator import evaluate_subsets, predict_subsets
from mmrobust.models import build_model
from mmrobust.subsets import all_subsets
from mmrobust.tasks import Segmentation

NUM_CLASSES = 40
SEG_SMALL = {
    "encoder": {"name": "seg_cnn", "channels": [16, 32], "blocks": 1},
    "fusion": {"name": "concat", "keep_maps": True},
    "neck": {"name": "identity"},
    "head": {"name": "segmentation", "scale": 4, "hidden": 32},
}
ESANET = {"architecture": "esanet", "encoder": "resnet18"}


class RandomRGBD(MultimodalDataset):
    """``n`` random RGB-D samples with label maps, generated from the index (no files)."""

    task = "segmentation"
    modalities = ("rgb", "depth")
    num_classes = NUM_CLASSES

    def __init__(self, n: int, size: tuple[int, int]) -> None:
        super().__init__()
        self.n, self.size = n, size
        h, w = size
        self.shapes = {"rgb": (3, h, w), "depth": (1, h, w)}

    def __len__(self) -> int:
        return self.n

    def load(self, index: int) -> Sample:
        g = torch.Generator().manual_seed(index)
        h, w = self.size
        inputs: dict[str, torch.Tensor | None] = {
            "rgb": torch.randn(3, h, w, generator=g),
            "depth": torch.randn(1, h, w, generator=g),
        }
        return Sample(inputs=inputs, target=torch.randint(0, NUM_CLASSES, (h, w), generator=g), index=index)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child(mode: str, samples: int, size: tuple[int, int], batch: int) -> dict[str, Any]:
    """Evaluate once in this process; return the peak memory increase during evaluation."""
    torch.manual_seed(0)
    data = RandomRGBD(samples, size)
    task = Segmentation(NUM_CLASSES)
    model = build_model(SEG_SMALL, data.modalities, data.shapes, NUM_CLASSES).eval()
    collate = Collate(data.modalities, data.shapes, task.collate_targets)
    loader = torch.utils.data.DataLoader(data, batch_size=batch, collate_fn=collate)
    with torch.no_grad():  # warm-up: allocator pools and kernels, so the baseline includes them
        model(collate([data[0]]))
    peak, stop = [rss_bytes()], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss_bytes())
            time.sleep(0.005)

    before = rss_bytes()
    peak[0] = before
    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    start = time.perf_counter()
    if mode == "stream":
        result: Any = evaluate_subsets(model, loader, all_subsets(2), task)
    else:
        result = predict_subsets(model, loader, all_subsets(2))
    seconds = time.perf_counter() - start
    stop.set()
    watcher.join()
    del result
    return {"mode": mode, "samples": samples, "peak_increase_mib": (peak[0] - before) / 2**20, "seconds": seconds}


def memory_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for samples in args.samples:
        for mode in ("stream", "keep"):
            common.resolve_wait(args)
            common.wait_for_idle(args.wait_idle)
            cmd = [sys.executable, __file__, "--child", mode, "--n", str(samples), "--size", *map(str, args.size)]
            cmd += ["--batch", str(args.batch)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ | {"OMP_NUM_THREADS": "1"})
            row = json.loads(out.stdout.strip().splitlines()[-1])
            common.log(f"{mode:6s} N={samples:4d}: +{row['peak_increase_mib']:.0f} MiB in {row['seconds']:.1f} s")
            rows.append(row)
    return rows


def subset_cost(args: argparse.Namespace) -> dict[str, Any]:
    torch.manual_seed(0)
    data = RandomRGBD(args.batch, tuple(args.size))  # type: ignore[arg-type]
    task = Segmentation(NUM_CLASSES)
    model = build_model(ESANET, data.modalities, data.shapes, NUM_CLASSES).eval()
    batch = Collate(data.modalities, data.shapes, task.collate_targets)([data[i] for i in range(len(data))])
    full = all_subsets(2)[-1:]
    times = {}
    for name, subsets in (("full subset only", full), ("all 3 subsets", all_subsets(2))):
        common.wait_for_idle(args.wait_idle)
        times[name] = common.summary(
            common.time_calls(lambda s=subsets: evaluate_subsets(model, [batch], s, task), args.repeats, 1)
        )
        common.log(f"ESANet-R18 {name}: {times[name]['median_s']:.2f} s per batch of {args.batch}")
    return {"batch": args.batch, "size": args.size, "times": times,
            "ratio_all_to_full": times["all 3 subsets"]["median_s"] / times["full subset only"]["median_s"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(parser, "eval_memory")
    parser.add_argument("--samples", type=int, nargs="+", default=[8, 32, 96])
    parser.add_argument("--size", type=int, nargs=2, default=[240, 320])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", choices=["stream", "keep"], help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.n, tuple(args.size), args.batch)))
        return
    if args.quick:
        args.samples, args.size, args.repeats = [4, 8], [64, 64], 1
    common.resolve_wait(args)
    common.apply_threads(args.threads)
    info = common.machine_info()
    rows = memory_rows(args)
    cost = subset_cost(args)
    table = common.markdown_table(
        ["samples", "stream: peak +MiB", "keep logits: peak +MiB"],
        [
            [n, f"{r['peak_increase_mib']:.0f}", f"{k['peak_increase_mib']:.0f}"]
            for n in args.samples
            for r in rows
            for k in rows
            if r["samples"] == n == k["samples"] and r["mode"] == "stream" and k["mode"] == "keep"
        ],
    )
    print(table)
    print(f"\nESANet-R18, one forward per subset: all 3 subsets take {cost['ratio_all_to_full']:.2f}x the full subset")
    print(common.machine_line(info))
    common.write_json(args.out, {"machine": info, "memory": rows, "subset_cost": cost, "args": vars(args)})


if __name__ == "__main__":
    main()
