"""Time of the PAD (ACER) threshold fit on N validation samples: mmrobust's streaming score histograms
(``tasks/classification.py``, 10,000 bins, fitted at bin edges) vs torchmetrics' exact ROC on the same scores.

    .venv/bin/python benchmarks/pad_threshold.py [--samples 2000] [--repeats 7]

Prints the median times, their ratio and both thresholds (several thresholds can reach the same minimum ACER).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torchmetrics.functional.classification import binary_roc

from mmrobust.tasks import build_task


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 2, (args.samples,), generator=g)
    logits = torch.randn(args.samples, 2, generator=g) + 1.5 * torch.nn.functional.one_hot(target, 2)
    task = build_task("classification", 2, ("attack", "bona fide"), {"bona_fide_class": 1})
    metric = task.new_metric()
    metric.update(logits, target)
    ours = median_time(metric.fit_threshold, args.repeats)
    score = logits.softmax(dim=1)[:, 1]

    def roc_threshold() -> float:  # the threshold minimizing ACER = (APCER + BPCER) / 2 = (FPR + 1 − TPR) / 2
        fpr, tpr, thresholds = binary_roc(score, target)
        return float(thresholds[torch.argmin(fpr + 1 - tpr)])

    theirs = median_time(roc_threshold, args.repeats)
    print(f"{args.samples} samples: histogram fit {1000 * ours:.2f} ms, torchmetrics ROC {1000 * theirs:.2f} ms "
          f"(ratio {theirs / ours:.1f}x); thresholds {metric.fit_threshold():.4f} vs {roc_threshold():.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
