"""Training throughput and peak memory of the ESANet-style RGB-D segmentation model, and the cost of one
evaluation forward per modality subset.

Model: ``architecture: esanet`` (``configs/model/esanet_r18.yaml`` / ``esanet_r34.yaml``: two ResNet
streams, masked SE-add fusion after the stem and every stage, pyramid pooling, decoder 128-128-128),
modalities rgb (3 channels) + depth (1 channel), 40 classes (NYUv2), no pretrained weights.

1. Training step (what the trainer does for the ``full`` method): ``model(batch)`` -> per-pixel
   cross-entropy (void = 255 ignored) -> ``backward`` -> SGD step (momentum 0.9, weight decay 1e-4), on a
   fixed random full-modality batch already in memory (no data loading timed). Samples/s = batch size /
   median step time over ``--repeats`` timed steps after ``--warmup`` untimed ones.
2. Peak memory: each configuration runs in a fresh subprocess. On the CPU the peak resident set size
   (``VmHWM`` of ``/proc/self/status``) is reset to the current RSS just before the first step
   (``echo 5 > /proc/self/clear_refs``) and read after the last one; "training delta" = peak − RSS before
   the first step (activations, gradients, momentum buffers, allocator caches). Neither tracemalloc (it
   does not see torch's C allocations) nor ``ru_maxrss`` (it cannot be reset) is used. On CUDA:
   ``torch.cuda.max_memory_allocated`` minus the memory allocated before the first step.
3. Evaluation cost per subset: the model fuses inside its encoders (``fusion_inside_encoders``), so the
   evaluator runs one full forward per modality subset (rgb, depth, rgb+depth). For each subset: the
   FLOPs of one forward of one sample (``torch.utils.flop_counter.FlopCounterMode``: conv and matmul
   FLOPs, 2 per multiply-add; element-wise ops, norms and pooling not counted) and the median time of a
   ``no_grad`` eval-mode forward of the batch. A stream whose modality is absent from the whole batch is
   skipped, so single-modality subsets cost less than rgb+depth.

Usage::

    python benchmarks/seg_throughput.py                         # r18 and r34, 240x320 and 480x640, batch 8
    python benchmarks/seg_throughput.py --quick                 # seconds-long smoke run
    python benchmarks/seg_throughput.py --encoders resnet18 --sizes 480x640 --batch 4 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import _common as C
from train_throughput import _proc_status_kib, _reset_hwm

NAME = "seg_throughput"
MODALITIES = ("rgb", "depth")
NUM_CLASSES = 40  # NYUv2
SUBSETS = {"rgb": 1, "depth": 2, "rgb+depth": 3}


def parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"size must be HxW (e.g. 480x640), got {text!r}") from error
    return h, w


def model_and_batch(encoder: str, size: tuple[int, int], batch_size: int, seed: int = 0) -> tuple[Any, Any]:
    import torch

    from mmrobust.batch import Batch
    from mmrobust.models import build_model

    torch.manual_seed(seed)
    h, w = size
    shapes = {"rgb": (3, h, w), "depth": (1, h, w)}
    model = build_model({"architecture": "esanet", "encoder": encoder}, MODALITIES, shapes, NUM_CLASSES)
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, NUM_CLASSES, (batch_size, h, w), generator=g)
    target[torch.rand(batch_size, h, w, generator=g) < 0.1] = 255  # some void pixels
    batch = Batch(
        inputs={m: torch.randn(batch_size, *shapes[m], generator=g) for m in MODALITIES},
        present=torch.ones(batch_size, len(MODALITIES), dtype=torch.bool),
        target=target,
        modalities=MODALITIES,
        index=torch.arange(batch_size),
    )
    return model, batch


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """Measure one (encoder, size) configuration in this (fresh) process."""
    import torch
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    C.apply_threads(args.threads)
    device = args.device
    size = parse_size(args.size)
    model, batch = model_and_batch(args.encoder, size, args.batch)
    model = model.to(device).train()
    batch = batch.to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        logits = model(batch)  # [B, K, H, W]
        loss = F.cross_entropy(logits, batch.target, ignore_index=255)
        loss.backward()
        opt.step()

    memory: dict[str, Any] = {}
    if device.startswith("cuda"):
        C.sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        memory["allocated_before_mib"] = torch.cuda.memory_allocated(device) / 2**20
    else:
        memory["rss_before_mib"] = (_proc_status_kib("VmRSS") or 0) / 1024
        memory["hwm_reset"] = _reset_hwm()
    before = C.cpu_snapshot()
    times = C.time_calls(step, repeats=args.repeats, warmup=args.warmup, device=device)
    busy = C.contention(before, C.cpu_snapshot())
    if device.startswith("cuda"):
        memory["peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
        memory["peak_delta_mib"] = memory["peak_mib"] - memory["allocated_before_mib"]
        memory["method"] = "torch.cuda.max_memory_allocated - allocated before the first step"
    else:
        memory["peak_mib"] = (_proc_status_kib("VmHWM") or 0) / 1024
        memory["peak_delta_mib"] = memory["peak_mib"] - memory["rss_before_mib"]
        memory["method"] = "VmHWM after steps - VmRSS before first step" + (
            " (VmHWM reset before the first step)" if memory["hwm_reset"] else " (VmHWM could not be reset)"
        )
    stats = C.summary(times)

    opt.zero_grad(set_to_none=True)
    model.eval()
    evaluation = {}
    for name, subset in SUBSETS.items():
        restricted = batch.restrict(subset)
        single = type(batch)(
            {m: v[:1] for m, v in restricted.inputs.items()},
            restricted.present[:1],
            restricted.target[:1],
            MODALITIES,
        )
        with torch.no_grad():
            with FlopCounterMode(display=False) as counter:
                model(single)
            before_eval = C.cpu_snapshot()
            eval_times = C.time_calls(lambda b=restricted: model(b), args.repeats, 0, device)  # warm from training
        evaluation[name] = {
            "flops_per_sample": int(counter.get_total_flops()),
            "forward": C.summary(eval_times),
            "forward_times_s": eval_times,
            "contention": C.contention(before_eval, C.cpu_snapshot()),
        }
    return {
        "encoder": args.encoder,
        "size": list(size),
        "batch": args.batch,
        "params": C.count_params(model),
        "warmup_steps": args.warmup,
        "step_times_s": times,
        "step": stats,
        "samples_per_s": args.batch / stats["median_s"],
        "memory": memory,
        "contention": busy,
        "eval_per_subset": evaluation,
        "torch_num_threads": torch.get_num_threads(),
    }


def run_config(args: argparse.Namespace, encoder: str, size: str) -> dict[str, Any]:
    cmd = [
        sys.executable, str(Path(__file__).resolve()), "--worker",
        "--encoder", encoder, "--size", size, "--batch", str(args.batch),
        "--repeats", str(args.repeats), "--warmup", str(args.warmup), "--device", args.device,
    ]  # fmt: skip
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    C.log(f"[{NAME}] {encoder} {size}: {' '.join(cmd[2:])}")
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
        raise SystemExit(f"worker for {encoder} {size} failed with exit code {out.returncode}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    C.add_common_args(p, NAME)
    p.add_argument("--encoders", nargs="+", default=["resnet18", "resnet34"], help="default: %(default)s")
    p.add_argument("--sizes", nargs="+", default=None, help="HxW inputs (default 240x320 480x640; 64x64 --quick)")
    p.add_argument("--batch", type=int, default=None, help="batch size (default 8; 2 with --quick)")
    p.add_argument("--repeats", type=int, default=None, help="timed steps / forwards (default 2; 1 with --quick)")
    p.add_argument("--warmup", type=int, default=1, help="untimed warmup steps (default %(default)s)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    p.add_argument("--encoder", help=argparse.SUPPRESS)
    p.add_argument("--size", help=argparse.SUPPRESS)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    C.resolve_wait(args)
    args.batch = args.batch or (2 if args.quick else 8)
    args.repeats = args.repeats or (1 if args.quick else 2)
    args.sizes = args.sizes or (["64x64"] if args.quick else ["240x320", "480x640"])
    for s in args.sizes:
        parse_size(s)

    if args.worker:
        print(json.dumps(worker(args)))
        return

    C.apply_threads(args.threads)
    info = C.machine_info(args.device)
    results = []
    for encoder in args.encoders:
        for size in args.sizes:
            idle = C.wait_for_idle(args.wait_idle)
            results.append({**run_config(args, encoder, size), "idle_wait": idle})
    cuda = args.device.startswith("cuda")
    rows = [
        [
            r["encoder"],
            "×".join(map(str, r["size"])),
            r["batch"],
            f"{r['params'] / 1e6:.1f}",
            f"{r['step']['median_s']:.2f}",
            f"{r['samples_per_s']:.2f}",
            f"{r['memory']['peak_delta_mib']:.0f}",
            " / ".join(f"{e['flops_per_sample'] / 1e9:.1f}" for e in r["eval_per_subset"].values()),
            " / ".join(f"{e['forward']['median_s']:.2f}" for e in r["eval_per_subset"].values()),
            f"{r['contention']['other_cores']:.2f}",
        ]
        for r in results
    ]
    headers = [
        "encoder", "input", "batch", "params (M)", "median step (s)", "samples/s",
        f"training delta, {'peak alloc' if cuda else 'peak RSS'} (MiB)",
        "GFLOP/sample fwd rgb / depth / rgb+depth", "eval fwd of batch (s) rgb / depth / rgb+depth",
        "other processes (cores)",
    ]  # fmt: skip
    print(f"## ESANet training throughput and per-subset evaluation cost\n\nMachine: {C.machine_line(info)}\n")
    print(C.markdown_table(headers, rows))
    print(
        f"\nmedian over {args.repeats} timed steps after {args.warmup} warmup; memory: {results[0]['memory']['method']}"
    )
    path = C.write_json(args.out, {"benchmark": NAME, "machine": info, "args": vars(args), "results": results})
    C.log(f"[{NAME}] wrote {path}")


if __name__ == "__main__":
    main()
