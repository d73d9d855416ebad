"""Training cost of MMANet relative to the modality-dropout (MD) baseline, per epoch.

One training epoch = every batch of the train split (collated before timing, no data loading): the
method's step (``method(model, batch, state)``), backward, AdamW step, exactly what the trainer does.
Variants, timed alternately in one run (rotating order) so their medians share the machine load:

- ``md``: ``modality_dropout``;
- ``mmanet_ce``: ``mmanet`` before ``begin_epoch`` (CE only: the same work as MD);
- ``mmanet``: ``mmanet`` from ``begin_epoch`` (CE + MAD with the teacher forward + MAR with the
  regularization network; the weak set is given, the teacher's weights do not matter for the cost);
- ``teacher``: an epoch of the teacher's training (``full``);
- ``val_all`` / ``val_full`` / ``val_mining``: the trainer's every-subset validation after each epoch,
  the teacher's full-set-only validation, and MMANet's extra mining validation (M + 1 subsets).

The per-epoch ratio is (mmanet + val_all) / (md + val_all); the whole-run ratio adds the teacher's
training and the CE-only and mining epochs of a ``max_epochs``-epoch schedule (``begin_epoch`` 5, mining
epochs 2–4).

Usage::

    python benchmarks/mmanet_cost.py                 # uci_mfeat + synthetic, CPU
    python benchmarks/mmanet_cost.py --quick         # seconds-long smoke run
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import torch
import yaml

import _common as C
from mmrobust.data import DATASETS, Collate
from mmrobust.engine.checkpoint import save_atomic
from mmrobust.evaluation.evaluator import predict_subsets
from mmrobust.methods import MethodContext, TrainState
from mmrobust.methods.full import Full
from mmrobust.methods.mmanet import MMANet
from mmrobust.methods.modality_dropout import ModalityDropout
from mmrobust.models import build_model
from mmrobust.subsets import all_subsets, full_subset

NAME = "mmanet_cost"
CASES = {
    "uci_mfeat": {},
    "synthetic": {"snr": [1.0, 0.4, 0.4]},
}  # shipped dataset config + these overrides (the sweeps')


def batches_of(case: str, split: str, batch_size: int, limit: int | None) -> tuple[Any, list[Any]]:
    spec = yaml.safe_load((C.ROOT / f"src/mmrobust/configs/dataset/{case}.yaml").read_text()) | CASES[case]
    ds = DATASETS.build(spec.pop("name"), {**spec, "split": split})
    n = min(len(ds), limit) if limit else len(ds)
    collate = Collate(ds.modalities, ds.shapes)
    size = n // batch_size * batch_size if split == "train" else n  # the trainer drops the last train batch
    return ds, [collate([ds[i] for i in range(s, min(s + batch_size, size))]) for s in range(0, size, batch_size)]


def bench_case(case: str, args: argparse.Namespace) -> dict[str, Any]:
    limit = 128 if args.quick else None
    train, train_batches = batches_of(case, "train", args.batch_size, limit)
    _, val_batches = batches_of(case, "val", 512, limit)
    config = yaml.safe_load((C.ROOT / "src/mmrobust/configs/model/mlp.yaml").read_text())

    def fresh() -> Any:
        return build_model(config, train.modalities, train.shapes, train.num_classes)

    tmp = Path(tempfile.mkdtemp(prefix="mmanet-cost-"))
    save_atomic({"model": fresh().state_dict()}, tmp / "teacher.ckpt")
    context = MethodContext(train.modalities, train.num_classes, fresh, fit=None, run_dir=tmp)  # type: ignore[arg-type]
    mmanet = MMANet(context, teacher=str(tmp / "teacher.ckpt"), strong=train.modalities[0])
    torch.manual_seed(0)
    models = {k: fresh() for k in ("md", "mmanet", "teacher")}
    mmanet.prepare(models["mmanet"])
    methods = {"md": ModalityDropout(context), "mmanet": mmanet, "teacher": Full(context)}
    optimizers = {
        k: torch.optim.AdamW([*models[k].parameters(), *(p for p in methods[k].parameters() if p.requires_grad)])
        for k in models
    }

    def train_epoch(variant: str) -> None:
        key = "mmanet" if variant.startswith("mmanet") else variant
        model, method, opt = models[key], methods[key], optimizers[key]
        state = TrainState(epoch=0 if variant == "mmanet_ce" else 5, seed=0)
        model.train()
        method.train()
        for batch in train_batches:
            method(model, batch, state).loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

    m = len(train.modalities)
    subsets = {
        "val_all": all_subsets(m),
        "val_full": [full_subset(m)],
        "val_mining": [*mmanet.miner.candidates()] if mmanet.miner else [],
    }
    variants: dict[str, Any] = {v: (lambda v=v: train_epoch(v)) for v in ("md", "mmanet_ce", "mmanet", "teacher")}
    variants |= {v: (lambda s=s: predict_subsets(models["md"], val_batches, s)) for v, s in subsets.items()}
    for fn in variants.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {v: [] for v in variants}
    names = list(variants)
    before = C.cpu_snapshot()
    for r in range(args.repeats):
        for v in names[r % len(names) :] + names[: r % len(names)]:
            times[v] += C.time_calls(variants[v], repeats=1, warmup=0)
    busy = C.contention(before, C.cpu_snapshot())
    med = {v: C.summary(t)["median_s"] for v, t in times.items()}
    epochs, begin, mining = args.max_epochs, 5, 3
    md_run = epochs * (med["md"] + med["val_all"])
    student = (
        begin * (med["mmanet_ce"] + med["val_all"])
        + mining * med["val_mining"]
        + (epochs - begin) * (med["mmanet"] + med["val_all"])
    )
    teacher = epochs * (med["teacher"] + med["val_full"])
    return {
        "case": case,
        "modalities": len(train.modalities),
        "train_batches": len(train_batches),
        "batch_size": args.batch_size,
        "times_s": times,
        "median_s": med,
        "epoch_ratio_train_only": med["mmanet"] / med["md"],
        "epoch_ratio_with_validation": (med["mmanet"] + med["val_all"]) / (med["md"] + med["val_all"]),
        "run_ratio_student": student / md_run,
        "run_ratio_with_teacher": (student + teacher) / md_run,
        "contention": busy,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    C.add_common_args(p, NAME)
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--batch-size", type=int, default=64, help="training batch size (the trainer default, 64)")
    p.add_argument("--max-epochs", type=int, default=30, help="epochs of the schedule for the run ratios")
    p.add_argument("--repeats", type=int, default=None, help="timed epochs per variant (default 7; 2 quick)")
    args = p.parse_args(argv)
    C.resolve_wait(args)
    args.repeats = args.repeats or (2 if args.quick else 7)
    C.apply_threads(args.threads)
    info = C.machine_info("cpu")
    results = []
    for case in args.cases:
        C.log(f"[{NAME}] {case}: {args.repeats} timed epochs per variant")
        idle = C.wait_for_idle(args.wait_idle)
        results.append({**bench_case(case, args), "idle_wait": idle})
    headers = ["case", "train batches", *(f"{v} (ms)" for v in results[0]["median_s"]), "epoch ratio (train)",
               "epoch ratio (+val)", "run ratio (student)", "run ratio (+teacher)", "other processes (cores)"]  # fmt: skip
    rows = [
        [
            r["case"],
            r["train_batches"],
            *(f"{t * 1e3:.0f}" for t in r["median_s"].values()),
            f"{r['epoch_ratio_train_only']:.2f}×",
            f"{r['epoch_ratio_with_validation']:.2f}×",
            f"{r['run_ratio_student']:.2f}×",
            f"{r['run_ratio_with_teacher']:.2f}×",
            f"{r['contention']['other_cores']:.2f}",
        ]
        for r in results
    ]
    print(f"## MMANet training cost relative to modality dropout\n\nMachine: {C.machine_line(info)}\n")
    print(C.markdown_table(headers, rows))
    path = C.write_json(args.out, {"benchmark": NAME, "machine": info, "args": vars(args), "results": results})
    C.log(f"[{NAME}] wrote {path}")


if __name__ == "__main__":
    main()
