"""What fraction of the machine's float32 matmul throughput a SURF-model training step achieves.

1. Machine throughput: ``torch.matmul`` of two random float32 ``n × n`` matrices for each ``n`` of
   ``--sizes``; GFLOP/s = ``2 n³ / median time``; the best size's figure is the reference.
2. Training step: the SURF-baseline model (3 modalities, 112×112) trained as the trainer does
   (``model(batch)``, cross-entropy, backward, SGD step). Its FLOPs are counted on one full step
   (forward + backward) with ``torch.utils.flop_counter.FlopCounterMode``, which counts matmul and
   convolution FLOPs (2 per multiply-add) and not element-wise ops, norms, pooling or the optimizer;
   the forward alone is counted too (backward ≈ 2× forward: a gradient for the input and one for the
   weight of every conv/linear). Achieved GFLOP/s = counted step FLOPs / median step time.

Usage::

    python benchmarks/matmul_fraction.py            # sizes 1024 2048 4096, widths 16 64, batch 16
    python benchmarks/matmul_fraction.py --quick    # seconds-long smoke run
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import _common as C

NAME = "matmul_fraction"


def matmul_throughput(n: int, repeats: int, warmup: int, device: str) -> dict[str, Any]:
    g = torch.Generator().manual_seed(n)
    a = torch.randn(n, n, generator=g).to(device)
    b = torch.randn(n, n, generator=g).to(device)
    out = torch.empty(n, n, device=device)
    before = C.cpu_snapshot()
    times = C.time_calls(lambda: torch.matmul(a, b, out=out), repeats, warmup, device)
    stats = C.summary(times)
    flops = 2 * n**3
    return {
        "n": n,
        "flops": flops,
        "times_s": times,
        "stats": stats,
        "gflops_median": flops / stats["median_s"] / 1e9,
        "gflops_best": flops / stats["min_s"] / 1e9,
        "contention": C.contention(before, C.cpu_snapshot()),
    }


def op_breakdown(counter: FlopCounterMode) -> dict[str, int]:
    counts = counter.get_flop_counts().get("Global", {})
    return {str(op): int(v) for op, v in sorted(counts.items(), key=lambda kv: -kv[1])}


def train_step_fraction(width: int, batch_size: int, image_size: int, steps: int, warmup: int,
                        device: str) -> dict[str, Any]:  # fmt: skip
    model, batch = C.surf_model_and_batch(width, batch_size, image_size)
    model = model.to(device).train()
    batch = batch.to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(batch), batch.target)
        loss.backward()
        opt.step()

    with FlopCounterMode(display=False) as fwd_counter, torch.no_grad():
        model(batch)
    with FlopCounterMode(display=False) as step_counter:
        step()
    forward_flops = int(fwd_counter.get_total_flops())
    step_flops = int(step_counter.get_total_flops())
    before = C.cpu_snapshot()
    times = C.time_calls(step, steps, warmup, device)
    stats = C.summary(times)
    return {
        "width": width,
        "batch_size": batch_size,
        "image_size": image_size,
        "params": C.count_params(model),
        "forward_flops": forward_flops,
        "step_flops": step_flops,
        "step_over_forward": step_flops / forward_flops,
        "step_flops_by_op": op_breakdown(step_counter),
        "times_s": times,
        "stats": stats,
        "samples_per_s": batch_size / stats["median_s"],
        "achieved_gflops": step_flops / stats["median_s"] / 1e9,
        "contention": C.contention(before, C.cpu_snapshot()),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    C.add_common_args(p, NAME)
    p.add_argument("--sizes", type=int, nargs="+", default=None, help="matmul sizes (default 1024 2048 4096)")
    p.add_argument("--matmul-repeats", type=int, default=None, help="timed matmuls per size (default 10)")
    p.add_argument("--widths", type=int, nargs="+", default=[16, 64], help="SURF widths (64 = paper)")
    p.add_argument("--batch-size", type=int, default=None, help="default 16 (2 with --quick)")
    p.add_argument("--image-size", type=int, default=None, help="default 112 (32 with --quick)")
    p.add_argument("--steps", type=int, default=None, help="timed training steps (default 5; 2 quick)")
    p.add_argument("--warmup", type=int, default=None, help="untimed warmup steps (default 2; 1 quick)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    C.resolve_wait(args)
    q = args.quick
    args.sizes = args.sizes or ([256, 512] if q else [1024, 2048, 4096])
    args.matmul_repeats = args.matmul_repeats or (3 if q else 10)
    args.batch_size = args.batch_size or (2 if q else 16)
    args.image_size = args.image_size or (32 if q else 112)
    args.steps = args.steps or (2 if q else 5)
    args.warmup = args.warmup if args.warmup is not None else (1 if q else 2)
    C.apply_threads(args.threads)
    info = C.machine_info(args.device)

    mm = []
    for n in args.sizes:
        C.log(f"[{NAME}] matmul {n}×{n}")
        idle = C.wait_for_idle(args.wait_idle)
        mm.append({**matmul_throughput(n, args.matmul_repeats, 2, args.device), "idle_wait": idle})
    peak = max(mm, key=lambda r: r["gflops_median"])
    steps = []
    for w in args.widths:
        C.log(f"[{NAME}] SURF training step, width {w}")
        idle = C.wait_for_idle(args.wait_idle)
        r = train_step_fraction(w, args.batch_size, args.image_size, args.steps, args.warmup, args.device)
        r["idle_wait"] = idle
        r["fraction_of_matmul"] = r["achieved_gflops"] / peak["gflops_median"]
        steps.append(r)

    print(f"## Matmul throughput and the SURF training step's share of it\n\nMachine: {C.machine_line(info)}\n")
    print(C.markdown_table(
        ["n", "median (ms)", "GFLOP/s (median)", "GFLOP/s (best)", "other processes (cores)"],
        [[r["n"], f"{r['stats']['median_s'] * 1e3:.2f}", f"{r['gflops_median']:.1f}", f"{r['gflops_best']:.1f}",
          f"{r['contention']['other_cores']:.2f}"] for r in mm],
    ))  # fmt: skip
    print(f"\nReference: {peak['gflops_median']:.1f} GFLOP/s (float32 matmul, n = {peak['n']}, median).\n")
    print(C.markdown_table(
        ["width", "batch", "forward GFLOP", "step GFLOP (fwd+bwd)", "step/forward", "median step (s)",
         "samples/s", "achieved GFLOP/s", "fraction of matmul", "other processes (cores)"],
        [[r["width"], r["batch_size"], f"{r['forward_flops'] / 1e9:.2f}", f"{r['step_flops'] / 1e9:.2f}",
          f"{r['step_over_forward']:.2f}", f"{r['stats']['median_s']:.3f}", f"{r['samples_per_s']:.1f}",
          f"{r['achieved_gflops']:.1f}", f"{100 * r['fraction_of_matmul']:.0f}%",
          f"{r['contention']['other_cores']:.2f}"] for r in steps],
    ))  # fmt: skip
    for r in steps:
        top = ", ".join(f"{op} {v / r['step_flops']:.0%}" for op, v in list(r["step_flops_by_op"].items())[:4])
        print(f"- width {r['width']}: counted step FLOPs by op: {top}")
    payload = {"benchmark": NAME, "machine": info, "args": vars(args), "matmul": mm,
               "matmul_reference_gflops": peak["gflops_median"], "train_steps": steps}  # fmt: skip
    path = C.write_json(args.out, payload)
    C.log(f"[{NAME}] wrote {path}")


if __name__ == "__main__":
    main()
