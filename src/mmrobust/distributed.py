"""Collectives across training processes: the one place that talks to ``torch.distributed``.

Every function works with or without an initialized process group: in a single process (no group, or a
group of one) it is the identity, so callers never branch on the world size. Lightning Fabric's DDP
strategies initialize the default ``torch.distributed`` group, so plain tensors and modules are enough here.

Gradient convention (the trainer's): each process backpropagates its own loss, then the gradients are
**averaged** over the N processes (:func:`sync_gradients`). For a loss of the per-process batch (a mean over
its ``B/N`` samples) the average of the N gradients is the gradient of the global mean. A batch-relational
loss (MAD, SP, MMD, RKD: every sample is compared with every other) is not a mean over samples, so each
process computes it on the **global** batch, gathered with :func:`all_gather_with_grad`: every process then
holds the same loss ``L`` of all ``N·b`` samples. Its backward all-reduces (sums) the gradient of the gathered
tensor and keeps the local slice; as each of the N processes computes the same ``L``, process ``r`` receives
``Σ_s ∂L/∂x_r = N · ∂L/∂x_r`` for its slice ``x_r``, and the trainer's average over processes gives
``(1/N) Σ_r N · ∂L/∂x_r · ∂x_r/∂θ = ∂L/∂θ`` — exactly the gradient of one process on the global batch.
Parameters used after the gather (a head on the gathered features) get ``∂L/∂θ`` on every process, which
the average leaves unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import nn
from torch.autograd.function import once_differentiable

ReduceOp = Literal["sum", "mean", "min", "max"]


def is_distributed() -> bool:
    """True when a process group of more than one process is initialized."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's global rank (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main_process() -> bool:
    """True on rank 0 (and in a single process): the process that writes files."""
    return rank() == 0


def barrier() -> None:
    """Wait for every process (no-op in a single process)."""
    if is_distributed():
        dist.barrier()


# ------------------------------------------------------------------------------------------ reductions
def all_reduce(x: torch.Tensor, op: ReduceOp = "sum") -> torch.Tensor:
    """``x`` reduced over processes (a new tensor; ``x`` is left as it is). ``mean`` is the sum divided by the
    world size (integer tensors: use ``sum``). Identity in a single process.

    Shape: any -> same.
    """
    if op not in ("sum", "mean", "min", "max"):
        raise ValueError(f"all_reduce: op must be sum, mean, min or max, got {op!r}")
    if not is_distributed():
        return x
    out = x.detach().clone()
    torch_op = {"sum": dist.ReduceOp.SUM, "mean": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}
    dist.all_reduce(out, op=torch_op[op])
    return out / world_size() if op == "mean" else out


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """``Σ_processes x`` (statistics summed over the global batch). Shape: any -> same."""
    return all_reduce(x, "sum")


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """``(1/N) Σ_processes x``. Shape: any -> same."""
    return all_reduce(x, "mean")


def _flat_all_reduce_mean(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """The mean over processes of each tensor, with one flat all-reduce per (dtype, device) group."""
    out: list[torch.Tensor] = list(tensors)
    groups: dict[tuple[torch.dtype, torch.device], list[int]] = {}
    for i, t in enumerate(tensors):
        groups.setdefault((t.dtype, t.device), []).append(i)
    for indices in groups.values():
        flat = torch.cat([tensors[i].reshape(-1) for i in indices])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= world_size()
        for i, chunk in zip(indices, flat.split([tensors[i].numel() for i in indices])):
            out[i] = chunk.view_as(tensors[i])
    return out


def sync_gradients(params: Iterable[torch.Tensor]) -> None:
    """Average the gradients of ``params`` over processes with one flat all-reduce (per dtype and device);
    an absent gradient counts as zero and is set. No-op in a single process."""
    params = list(params)
    if not is_distributed() or not params:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    for p, g in zip(params, _flat_all_reduce_mean(grads)):
        p.grad = g.clone()


def broadcast_(x: torch.Tensor, src: int = 0) -> torch.Tensor:
    """Overwrite ``x`` in place with rank ``src``'s value and return it. Identity in a single process."""
    if is_distributed():
        dist.broadcast(x, src=src)
    return x


def broadcast_parameters(*modules: nn.Module, src: int = 0) -> None:
    """Give every process rank ``src``'s parameters and buffers (the same starting point everywhere)."""
    if not is_distributed():
        return
    with torch.no_grad():
        for module in modules:
            for t in [*module.parameters(), *module.buffers()]:
                data = t.data if t.data.is_contiguous() else t.data.contiguous()
                dist.broadcast(data, src=src)
                if data is not t.data:
                    t.data.copy_(data)


def average_buffers(*modules: nn.Module) -> None:
    """Average the floating-point buffers (BatchNorm running statistics) of ``modules`` over processes.
    Integer buffers (``num_batches_tracked``) and bool buffers are left alone."""
    if not is_distributed():
        return
    buffers = [b for module in modules for b in module.buffers() if b.is_floating_point()]
    if not buffers:
        return
    with torch.no_grad():
        for b, mean in zip(buffers, _flat_all_reduce_mean([b.detach() for b in buffers])):
            b.copy_(mean)


# -------------------------------------------------------------------------------------------- gathers
def _shapes(x: torch.Tensor) -> list[tuple[int, ...]]:
    """Every process's shape of ``x`` (which must have the same number of dimensions everywhere)."""
    mine = torch.tensor(x.shape, dtype=torch.long, device=x.device)
    shapes = [torch.empty_like(mine) for _ in range(world_size())]
    dist.all_gather(shapes, mine)
    out = [tuple(int(v) for v in s.tolist()) for s in shapes]
    if any(s[1:] != out[0][1:] for s in out):
        raise ValueError(f"gather: the processes hold tensors of different shapes beyond dimension 0: {out}")
    return out


def _gather(x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Concatenate every process's ``x`` (``sizes[r]`` rows on rank r) along dimension 0."""
    is_bool = x.dtype == torch.bool
    x = x.detach().to(torch.uint8) if is_bool else x.detach()  # gloo has no bool collectives
    most = max(sizes)
    if x.shape[0] < most:  # all_gather needs one shape: pad, then trim
        x = torch.cat([x, x.new_zeros(most - x.shape[0], *x.shape[1:])])
    x = x.contiguous()
    parts = [torch.empty_like(x) for _ in sizes]
    dist.all_gather(parts, x)
    out = torch.cat([p[:n] for p, n in zip(parts, sizes)])
    return out.bool() if is_bool else out


def gather_concat(x: torch.Tensor) -> torch.Tensor:
    """Every process's ``x`` concatenated along dimension 0 in rank order, without gradient (targets,
    masks, a frozen teacher's features, evaluation shards). The processes may hold different numbers of rows.

    Shape: ``[b_r, ...]`` on rank r -> ``[Σ_r b_r, ...]``; identity in a single process.
    """
    if not is_distributed():
        return x
    return _gather(x, [s[0] for s in _shapes(x)])


class _AllGatherWithGrad(torch.autograd.Function):
    """Forward: all-gather along dim 0. Backward: all-reduce (sum) the gathered gradient, keep the local rows."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
        ctx.sizes, ctx.rank = sizes, rank()
        return _gather(x, sizes)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)  # Σ over processes of ∂L_s/∂(gathered rows)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]], None


def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Every process's ``x`` concatenated along dimension 0 in rank order; gradients flow back to the local
    rows (see the module docstring for why their scale is right under the trainer's gradient averaging).

    Use it for a loss that every process computes identically on the gathered global batch. Its backward is
    a collective: every process must put the result into its loss the same way. In grad mode the result
    always requires grad (even on a process whose ``x`` does not), so every process takes part in the backward.
    The processes may hold different numbers of rows.

    Shape: ``[b_r, ...]`` on rank r -> ``[Σ_r b_r, ...]``; identity in a single process.
    """
    if not is_distributed():
        return x
    if torch.is_grad_enabled() and not x.requires_grad and x.is_floating_point():
        x = x.detach().requires_grad_()
    return _AllGatherWithGrad.apply(x, [s[0] for s in _shapes(x)])  # type: ignore[no-any-return]
