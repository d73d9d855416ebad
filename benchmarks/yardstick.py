"""Training throughput of our modality-dropout and MMANet steps against a plain loop written the authors' way.

The **yardstick** is the training loop of the MMANet / DMRNet CASIA-SURF code, written here with plain torch
calls on *our* SURF network modules (``model=surf_baseline`` built by ``mmrobust.models.build_model``, so the
architecture and the parameters are identical) and no mmrobust trainer or method code:

- modality dropout (MD): every encoder runs on the whole batch (3 × ``[B, 3, 112, 112]``); the dropout is a
  0/1 float mask ``k [B, M]`` multiplied onto the per-modality feature maps after the encoders,
  ``f_m ← f_m · k[:, m]``; then the concatenation trunk (layer3 + layer4), the linear head, cross-entropy,
  ``backward``, SGD (momentum 0.9, weight decay 5e-4) ``step``;
- MMANet: the frozen full-modality teacher's forward under ``torch.no_grad``; the student's MD forward as
  above; ``L = CE + α L_MAD + β L_MAR`` with ``L_MAD = Σ_ij w_j (Ĝ_s − Ĝ_t)²_ij`` (row-normalized Gram
  matrices of the fused maps, ``w`` the teacher's normalized entropies) and ``L_MAR = (1/B) Σ_b 1[S_b ∈ W]
  CE_b`` of a regularization network (a fresh trunk + head on the dropped encoder maps of every sample);
  ``backward``, SGD ``step``.

**Ours** is the trainer's step: ``method(model, batch, state)`` (``ModalityDropout`` or ``MMANet`` with the
``fusion`` regularizer, α = 30, β = 0.5, strong modality ``rgb`` so W = the 3 subsets of {depth, ir}), then
``loss.backward()``, the same SGD ``step`` and ``zero_grad(set_to_none=True)``. Both sides use the same
dropout masks (ours draws them; the yardstick is given the same masks as 0/1 floats), the same fixed random
batch already in memory, fp32 and the same torch thread count. The four steps (yardstick MD, ours MD,
yardstick MMANet, ours MMANet) are timed interleaved, the order reversed every round; the figure is the
median over rounds, and the ratio is ``median(yardstick) / median(ours)`` (ours' throughput over the
yardstick's). Before timing, both forwards are compared in eval mode on one masked batch (same logits).
The table also gives the ratio of the median CPU seconds of this process per step (``time.process_time``):
on a busy machine with one torch thread it tracks the work done better than the wall clock.

Usage::

    python benchmarks/yardstick.py                      # width 64 (paper), batch 64, 112 px, 5 rounds
    python benchmarks/yardstick.py --quick              # seconds-long smoke run (width 16, batch 16, 2 rounds)
    python benchmarks/yardstick.py --threads 1 --rounds 7
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import _common as C

NAME = "yardstick"
ALPHA, BETA, STRONG = 30.0, 0.5, "rgb"


# ------------------------------------------------------------------------------------------ the yardstick
def plain_forward(net: nn.Module, x: list[torch.Tensor], keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The authors' forward: every encoder on the whole batch, dropout as a 0/1 multiplier on the maps.

    Shape: x M × ``[B, 3, H, W]``, keep ``[B, M]`` float -> (fused map ``[B, C, h, w]``, logits ``[B, K]``).
    """
    maps = [enc(xm) * keep[:, j].view(-1, 1, 1, 1) for j, (enc, xm) in enumerate(zip(net.encoders.values(), x))]
    fused = net.neck_module(net.fusion(maps, keep > 0))
    return fused, net.head_module(fused)


def plain_mad(s: torch.Tensor, t: torch.Tensor, t_logits: torch.Tensor) -> torch.Tensor:
    """``Σ_ij w_j (Ĝ_s − Ĝ_t)²_ij`` with ``Ĝ`` the row-normalized Gram matrix and ``w`` the teacher's entropies."""
    s, t = s.flatten(1), t.flatten(1)
    g_s = F.normalize(s @ s.t(), dim=1)
    g_t = F.normalize(t @ t.t(), dim=1)
    p = t_logits.softmax(dim=1)
    h = -(p * p.log()).sum(dim=1)
    return ((g_s - g_t).pow(2) * (h / h.sum())).sum()


def yardstick_md_step(
    net: nn.Module, opt: torch.optim.Optimizer, x: list[torch.Tensor], y: torch.Tensor, keep: torch.Tensor
) -> float:
    opt.zero_grad(set_to_none=True)
    _, logits = plain_forward(net, x, keep)
    loss = F.cross_entropy(logits, y)
    loss.backward()
    opt.step()
    return float(loss.detach())


def yardstick_mmanet_loss(
    net: nn.Module,
    reg: nn.Module,
    teacher: nn.Module,
    x: list[torch.Tensor],
    y: torch.Tensor,
    keep: torch.Tensor,
    weak: torch.Tensor,
) -> torch.Tensor:
    with torch.no_grad():
        t_fused, t_logits = plain_forward(teacher, x, torch.ones_like(keep))
    maps = [enc(xm) * keep[:, j].view(-1, 1, 1, 1) for j, (enc, xm) in enumerate(zip(net.encoders.values(), x))]
    fused = net.neck_module(net.fusion(maps, keep > 0))
    logits = net.head_module(fused)
    reg_logits = reg.head_module(reg.neck_module(reg.fusion(maps, keep > 0)))
    mar = (F.cross_entropy(reg_logits, y, reduction="none") * weak).sum() / len(y)
    return F.cross_entropy(logits, y) + ALPHA * plain_mad(fused, t_fused, t_logits) + BETA * mar


def yardstick_mmanet_step(
    net: nn.Module,
    reg: nn.Module,
    teacher: nn.Module,
    opt: torch.optim.Optimizer,
    x: list[torch.Tensor],
    y: torch.Tensor,
    keep: torch.Tensor,
    weak: torch.Tensor,
) -> float:
    opt.zero_grad(set_to_none=True)
    loss = yardstick_mmanet_loss(net, reg, teacher, x, y, keep, weak)
    loss.backward()
    opt.step()
    return float(loss.detach())


# ---------------------------------------------------------------------------------------------- ours
def sgd(params: Any) -> torch.optim.Optimizer:
    return torch.optim.SGD([p for p in params if p.requires_grad], lr=0.01, momentum=0.9, weight_decay=5e-4)


def ours_step(method: nn.Module, model: nn.Module, opt: torch.optim.Optimizer, batch: Any, state: Any) -> float:
    step = method(model, batch, state)
    step.loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return float(step.loss.detach())


def setup(args: argparse.Namespace, run_dir: Path) -> dict[str, Any]:
    from mmrobust.methods.base import MethodContext, TrainState, frozen
    from mmrobust.methods.mmanet import REGULARIZERS, MMANet
    from mmrobust.methods.modality_dropout import ModalityDropout
    from mmrobust.models import build_model

    model, batch = C.surf_model_and_batch(args.width, args.batch_size, args.image_size)
    shapes = {m: tuple(batch.inputs[m].shape[1:]) for m in C.SURF_MODALITIES}

    def fresh() -> Any:
        return build_model(C.surf_config(args.width), C.SURF_MODALITIES, shapes, C.SURF_CLASSES)

    def no_fit(*_: Any, **__: Any) -> Path:
        raise RuntimeError("the benchmark gives MMANet its teacher; nothing is trained")

    context = MethodContext(C.SURF_MODALITIES, C.SURF_CLASSES, fresh, no_fit, run_dir)
    md = ModalityDropout(context)
    mmanet = MMANet(context, alpha=ALPHA, beta=BETA, strong=STRONG, begin_epoch=0)
    teacher = frozen(fresh())
    mmanet.teacher = teacher
    mmanet.regularizer = REGULARIZERS.build("fusion", {}, fresh=fresh())
    plain_reg = copy.deepcopy(mmanet.regularizer.net)  # the same fresh trunk + head for the yardstick

    nets = {k: copy.deepcopy(model).train() for k in ("yard_md", "ours_md", "yard_mma", "ours_mma")}
    md.train()
    mmanet.train()
    plain_reg.train()
    opts = {
        "yard_md": sgd(nets["yard_md"].parameters()),
        "ours_md": sgd(nets["ours_md"].parameters()),
        "yard_mma": sgd([*nets["yard_mma"].parameters(), *plain_reg.parameters()]),
        "ours_mma": sgd([*nets["ours_mma"].parameters(), *mmanet.parameters()]),
    }
    x = [batch.inputs[m] for m in C.SURF_MODALITIES]
    states = [TrainState(epoch=r, step=r, max_epochs=10**6, seed=0) for r in range(args.rounds + args.warmup)]
    masks = [md.drop(batch, s).present for s in states]  # the same draws for both sides (MMANet draws the same)
    strong = C.SURF_MODALITIES.index(STRONG)
    return {
        "batch": batch, "x": x, "y": batch.target, "md": md, "mmanet": mmanet, "teacher": teacher,
        "plain_reg": plain_reg, "nets": nets, "opts": opts, "states": states, "masks": masks,
        "weak": [(~k[:, strong]).float() for k in masks],
    }  # fmt: skip


@torch.no_grad()
def same_work_check(s: dict[str, Any]) -> dict[str, Any]:
    """Before any step, in eval mode, on the first masked batch: the yardstick's MD logits and MMANet loss
    against ours (max |Δlogit|, relative loss difference), and the kept fraction per modality."""
    net, method = s["nets"]["yard_md"], s["mmanet"]
    modules = [net, method, s["plain_reg"]]
    for module in modules:
        module.eval()
    keep, state = s["masks"][0], s["states"][0]
    _, plain = plain_forward(net, s["x"], keep.float())
    ours = method.dropout(net, s["batch"], state).output
    plain_loss = yardstick_mmanet_loss(net, s["plain_reg"], s["teacher"], s["x"], s["y"], keep.float(), s["weak"][0])
    ours_loss = method(net, s["batch"], state).loss
    for module in modules:
        module.train()
    return {
        "md_logits_max_abs_diff": float((plain - ours).abs().max()),
        "mmanet_loss_yardstick": float(plain_loss),
        "mmanet_loss_ours": float(ours_loss),
        "mmanet_loss_rel_diff": float((plain_loss - ours_loss).abs() / plain_loss.abs()),
        "kept_fraction_per_modality": [float(v) for v in keep.float().mean(0)],
        "weak_fraction": float(s["weak"][0].mean()),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    C.add_common_args(p, NAME)
    p.add_argument("--width", type=int, default=None, help="encoder/fusion width (default 64 = paper; 16 with --quick)")
    p.add_argument("--batch-size", type=int, default=None, help="default 64 (16 with --quick)")
    p.add_argument("--image-size", type=int, default=112)
    p.add_argument("--rounds", type=int, default=None, help="timed interleaved rounds (default 5; 2 with --quick)")
    p.add_argument("--warmup", type=int, default=1, help="untimed warm-up rounds")
    args = p.parse_args(argv)
    C.resolve_wait(args)
    args.width = args.width or (16 if args.quick else 64)
    args.batch_size = args.batch_size or (16 if args.quick else 64)
    args.rounds = args.rounds or (2 if args.quick else 5)
    C.apply_threads(args.threads)
    info = C.machine_info("cpu")

    with tempfile.TemporaryDirectory() as tmp:
        s = setup(args, Path(tmp))
        check = same_work_check(s)
        nets, opts = s["nets"], s["opts"]

        def runner(name: str, r: int) -> Callable[[], float]:
            keep, state = s["masks"][r], s["states"][r]
            if name == "yard_md":
                return lambda: yardstick_md_step(nets[name], opts[name], s["x"], s["y"], keep.float())
            if name == "ours_md":
                return lambda: ours_step(s["md"], nets[name], opts[name], s["batch"], state)
            if name == "yard_mma":
                return lambda: yardstick_mmanet_step(
                    nets[name], s["plain_reg"], s["teacher"], opts[name], s["x"], s["y"], keep.float(), s["weak"][r]
                )
            return lambda: ours_step(s["mmanet"], nets[name], opts[name], s["batch"], state)

        names = ["yard_md", "ours_md", "yard_mma", "ours_mma"]
        times: dict[str, list[float]] = {n: [] for n in names}
        cpu: dict[str, list[float]] = {n: [] for n in names}  # this process's CPU seconds (all its threads)
        idle = C.wait_for_idle(args.wait_idle)
        before = C.cpu_snapshot()
        for r in range(args.warmup + args.rounds):
            order = names if r % 2 == 0 else names[::-1]
            for n in order:
                fn = runner(n, r)
                start, start_cpu = time.perf_counter(), time.process_time()
                fn()
                if r >= args.warmup:
                    times[n].append(time.perf_counter() - start)
                    cpu[n].append(time.process_time() - start_cpu)
            C.log(f"[{NAME}] round {r + 1}/{args.warmup + args.rounds}" + (" (warm-up)" if r < args.warmup else ""))
        busy = C.contention(before, C.cpu_snapshot())

    stats = {n: C.summary(t) for n, t in times.items()}
    results: dict[str, Any] = {}
    rows = []
    for label, yard, ours in (("modality dropout", "yard_md", "ours_md"), ("MMANet", "yard_mma", "ours_mma")):
        ratio = stats[yard]["median_s"] / stats[ours]["median_s"]
        pairs = [a / b for a, b in zip(times[yard], times[ours])]
        cpu_ratio = statistics.median(cpu[yard]) / statistics.median(cpu[ours])
        results[label] = {
            "yardstick": stats[yard], "ours": stats[ours], "ratio": ratio, "round_ratios": pairs,
            "cpu_s_yardstick": cpu[yard], "cpu_s_ours": cpu[ours], "cpu_ratio": cpu_ratio,
        }  # fmt: skip
        rows.append([
            label, f"{stats[yard]['median_s']:.3f}", f"{stats[ours]['median_s']:.3f}",
            f"{args.batch_size / stats[ours]['median_s']:.1f}", f"**{ratio:.2f}×**",
            f"{min(pairs):.2f}–{max(pairs):.2f}", f"{cpu_ratio:.2f}×",
        ])  # fmt: skip
    headers = [
        "step", "yardstick (s)", "ours (s)", "ours samples/s", "throughput ratio", "per-round ratios",
        "CPU-time ratio",
    ]  # fmt: skip
    print(
        f"## Training step, ours vs the authors-style loop: SURF width {args.width}, 3 × 3×{args.image_size}², "
        f"batch {args.batch_size}, fp32\n\nMachine: {C.machine_line(info)}\n"
    )
    print(C.markdown_table(headers, rows))
    print(
        f"\nmedian of {args.rounds} interleaved rounds after {args.warmup} warm-up; threads "
        f"{torch.get_num_threads()}; other processes used {busy['other_cores']:.2f} cores.\nSame work, eval "
        f"mode, first batch: MD logits max |Δ| = {check['md_logits_max_abs_diff']:.2e}, MMANet loss "
        f"{check['mmanet_loss_yardstick']:.6g} vs {check['mmanet_loss_ours']:.6g} (relative "
        f"{check['mmanet_loss_rel_diff']:.1e}); kept fraction per modality "
        f"{[round(v, 2) for v in check['kept_fraction_per_modality']]}, weak rows {check['weak_fraction']:.2f}"
    )
    payload = {
        "benchmark": NAME, "machine": info, "args": vars(args), "results": results, "times_s": times,
        "check": check, "contention": busy, "idle_wait": idle,
    }  # fmt: skip
    path = C.write_json(args.out, payload)
    C.log(f"[{NAME}] wrote {path}")


if __name__ == "__main__":
    main()
