"""Training throughput and peak memory of the SURF-baseline model (3 modalities, 112×112).

One training step is the trainer's step for the ``full`` method: ``logits = model(batch)``,
``F.cross_entropy``, ``backward``, SGD (momentum 0.9, weight decay 5e-4, the papers' recipe) ``step``,
on a fixed random full-modality batch already in memory (no data loading is timed).

Each configuration (encoder/fusion width) runs in a fresh subprocess so that its peak memory is its own:
on the CPU the peak resident set size (``VmHWM`` of ``/proc/self/status``) is reset just before the
first step (``echo 5 > /proc/self/clear_refs``) and read after the last one; the delta to the resident
size before the first step is the memory the training steps need (activations, gradients, optimizer
state, allocator caches). On CUDA, ``torch.cuda.max_memory_allocated`` is used instead.

Usage::

    python benchmarks/train_throughput.py                 # widths 16 and 64, batch 16, CPU
    python benchmarks/train_throughput.py --quick         # seconds-long smoke run
    python benchmarks/train_throughput.py --device cuda --batch-size 64
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import _common as C

NAME = "train_throughput"


def _proc_status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_hwm() -> bool:
    """Reset the peak RSS (VmHWM) to the current RSS (Linux >= 4.0); False when not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """Measure one configuration in this (fresh) process."""
    import torch
    import torch.nn.functional as F

    C.apply_threads(args.threads)
    device = args.device
    model, batch = C.surf_model_and_batch(args.width, args.batch_size, args.image_size)
    model = model.to(device).train()
    batch = batch.to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        logits = model(batch)  # [B, 2]
        loss = F.cross_entropy(logits, batch.target)
        loss.backward()
        opt.step()

    memory: dict[str, Any] = {}
    if device.startswith("cuda"):
        C.sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        memory["allocated_before_mib"] = torch.cuda.memory_allocated(device) / 2**20
    else:
        memory["rss_before_mib"] = (_proc_status_kib("VmRSS") or 0) / 1024
        memory["hwm_before_mib"] = (_proc_status_kib("VmHWM") or 0) / 1024
        memory["hwm_reset"] = _reset_hwm()

    before = C.cpu_snapshot()
    times = C.time_calls(step, repeats=args.steps, warmup=args.warmup, device=device)
    busy = C.contention(before, C.cpu_snapshot())

    if device.startswith("cuda"):
        memory["peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
        memory["peak_delta_mib"] = memory["peak_mib"] - memory["allocated_before_mib"]
        memory["method"] = "torch.cuda.max_memory_allocated"
    else:
        hwm = (_proc_status_kib("VmHWM") or 0) / 1024
        memory["peak_mib"] = hwm
        memory["peak_delta_mib"] = hwm - memory["rss_before_mib"]
        memory["method"] = "VmHWM after steps - VmRSS before first step" + (
            " (VmHWM reset before the first step)" if memory["hwm_reset"] else " (VmHWM could not be reset)"
        )
    stats = C.summary(times)
    return {
        "width": args.width,
        "batch_size": args.batch_size,
        "image_size": args.image_size,
        "params": C.count_params(model),
        "warmup_steps": args.warmup,
        "step_times_s": times,
        "step": stats,
        "samples_per_s": args.batch_size / stats["median_s"],
        "memory": memory,
        "contention": busy,
        "torch_num_threads": torch.get_num_threads(),
    }


def run_config(args: argparse.Namespace, width: int) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        "--width", str(width),
        "--batch-size", str(args.batch_size),
        "--image-size", str(args.image_size),
        "--steps", str(args.steps),
        "--warmup", str(args.warmup),
        "--device", args.device,
    ]  # fmt: skip
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    C.log(f"[{NAME}] width {width}: {' '.join(cmd[2:])}")
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
        raise SystemExit(f"worker for width {width} failed with exit code {out.returncode}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    C.add_common_args(p, NAME)
    p.add_argument("--widths", type=int, nargs="+", default=[16, 64], help="encoder/fusion widths (64 = paper)")
    p.add_argument("--batch-size", type=int, default=None, help="default 16 on CPU, 64 on CUDA (2 with --quick)")
    p.add_argument("--image-size", type=int, default=None, help="default 112 (32 with --quick)")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 5; 2 with --quick)")
    p.add_argument("--warmup", type=int, default=None, help="untimed warmup steps (default 2; 1 with --quick)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    p.add_argument("--width", type=int, help=argparse.SUPPRESS)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    C.resolve_wait(args)
    cuda = args.device.startswith("cuda")
    args.batch_size = args.batch_size or (2 if args.quick else 64 if cuda else 16)
    args.image_size = args.image_size or (32 if args.quick else 112)
    args.steps = args.steps or (2 if args.quick else 20 if cuda else 5)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 5 if cuda else 2)

    if args.worker:
        print(json.dumps(worker(args)))
        return

    C.apply_threads(args.threads)
    info = C.machine_info(args.device)
    results = []
    for w in args.widths:
        idle = C.wait_for_idle(args.wait_idle)
        results.append({**run_config(args, w), "idle_wait": idle})
    mem_label = "peak alloc" if cuda else "peak RSS"
    rows = [
        [
            r["width"],
            r["batch_size"],
            f"{r['image_size']}×{r['image_size']}",
            f"{r['params'] / 1e6:.2f}",
            f"{r['step']['median_s']:.3f}",
            f"{r['step']['q1_s']:.3f}–{r['step']['q3_s']:.3f}",
            f"{r['samples_per_s']:.1f}",
            f"{r['memory'].get('rss_before_mib', r['memory'].get('allocated_before_mib', 0)):.0f}",
            f"{r['memory']['peak_mib']:.0f}",
            f"{r['memory']['peak_delta_mib']:.0f}",
            f"{r['contention']['other_cores']:.2f}",
        ]
        for r in results
    ]
    headers = [
        "width", "batch", "input", "params (M)", "median step (s)", "IQR (s)", "samples/s",
        "before (MiB)", f"{mem_label} (MiB)", "training delta (MiB)", "other processes (cores)",
    ]  # fmt: skip
    print(f"## Training throughput, SURF baseline, 3 modalities\n\nMachine: {C.machine_line(info)}\n")
    print(C.markdown_table(headers, rows))
    print(f"\nmedian over {args.steps} timed steps after {args.warmup} warmup steps; memory: "
          f"{results[0]['memory']['method']}")  # fmt: skip
    path = C.write_json(args.out, {"benchmark": NAME, "machine": info, "args": vars(args), "results": results})
    C.log(f"[{NAME}] wrote {path}")


if __name__ == "__main__":
    main()
