"""GradNorm (Chen et al., ICML 2018): loss weights that follow gradient-norm targets.

Weighted tasks ``L_1..L_T`` with weights ``w_i`` share a tensor ``W`` (a layer's parameters or, cheaper, a
shared activation). Per step::

    G_i = ‖∇_W w_i L_i‖ = w_i ‖∇_W L_i‖                   (gradient norm of each weighted task)
    L̃_i = L_i(t) / L_i(0),   r_i = L̃_i / mean_j L̃_j       (relative inverse training rate)
    target_i = ratio_i · G_ref · r_i^a                      (a = ``asymmetry``)

- **Standard GradNorm** (no anchor): ``G_ref = mean_i G_i``, ``ratio_i = 1``; after each step the weights
  are renormalized to keep their initial sum (Σ w_i = T for unit initial weights), as in the paper.
- **Anchored** (OS-MD): a primary loss ``L_0`` keeps the fixed weight 1 and sets the scale,
  ``G_ref = ‖∇_W L_0‖``; with ``ratio_i = 0.1`` every auxiliary task puts a tenth of the primary task's
  gradient norm on ``W`` ("the same magnitude, an order of magnitude below L_TTL"). No renormalization: the
  anchor fixes the scale.

The update is gradient descent on ``L_grad = Σ_i |log G_i − log target_i|`` with respect to ``log w_i``
(targets held constant): ``log w_i ← log w_i − lr · sign(G_i − target_i)``. Chen et al. use
``Σ_i |G_i − target_i|`` on ``w_i`` directly; the log form has the same fixed point, keeps the weights
positive and makes the step independent of the gradients' scale (each step multiplies a weight by
``e^{±lr}``). Under DDP the norms and losses are averaged over processes before the update, so every process
holds the same weights. The weights and the initial losses are buffers: checkpointed and resumed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from mmrobust.distributed import all_reduce_mean


@dataclass
class GradNormStep:
    """The weights used for this step ``[T]`` and each weighted task's gradient norm relative to the
    reference ``G_i / G_ref`` ``[T]`` (what the targets steer)."""

    weights: torch.Tensor
    ratios: torch.Tensor


def gradient_norm(loss: torch.Tensor, shared: Sequence[torch.Tensor]) -> torch.Tensor:
    """``‖∇_shared loss‖`` over all shared tensors (0 when the loss does not depend on them); keeps the graph."""
    zero = torch.zeros((), device=shared[0].device)
    if not loss.requires_grad:
        return zero
    grads = torch.autograd.grad(loss, list(shared), retain_graph=True, allow_unused=True)
    return torch.stack([zero, *(g.pow(2).sum() for g in grads if g is not None)]).sum().sqrt()


class GradNorm(nn.Module):
    """Learnable loss weights updated by GradNorm; see the module docstring.

    Args:
        num_tasks: number of weighted tasks T.
        initial: initial weights (default all 1).
        ratios: target gradient-norm ratio of each task to the reference (default all 1).
        asymmetry: the exponent a on the relative inverse training rate (0 = pure gradient-norm targets).
        lr: step size on the log-weights.
    """

    log_weights: torch.Tensor
    initial_losses: torch.Tensor
    ratios: torch.Tensor

    def __init__(
        self,
        num_tasks: int,
        initial: Sequence[float] | None = None,
        ratios: Sequence[float] | None = None,
        asymmetry: float = 0.0,
        lr: float = 0.025,
    ) -> None:
        super().__init__()
        initial = list(initial) if initial is not None else [1.0] * num_tasks
        ratios = list(ratios) if ratios is not None else [1.0] * num_tasks
        if num_tasks < 1 or len(initial) != num_tasks or len(ratios) != num_tasks:
            raise ValueError(f"GradNorm needs {num_tasks} initial weights and ratios, got {initial} and {ratios}")
        if min(initial) <= 0 or min(ratios) <= 0 or lr <= 0:
            raise ValueError(f"GradNorm needs positive weights, ratios and lr, got {initial}, {ratios}, {lr}")
        self.register_buffer("log_weights", torch.tensor([math.log(w) for w in initial]))
        self.register_buffer("initial_losses", torch.full((num_tasks,), math.nan))
        self.register_buffer("ratios", torch.tensor(ratios))
        self.total = sum(initial)
        self.asymmetry, self.lr = asymmetry, lr

    @property
    def weights(self) -> torch.Tensor:
        return self.log_weights.exp()

    def forward(
        self, losses: Sequence[torch.Tensor], shared: Sequence[torch.Tensor], anchor: torch.Tensor | None = None
    ) -> GradNormStep:
        """The weights for ``Σ_i w_i L_i`` this step (detached) and, in training mode, one GradNorm update.

        Args:
            losses: the T weighted task losses (scalars with their graphs).
            shared: the shared tensors ``W`` whose gradient norms are balanced.
            anchor: the primary loss with fixed weight 1 (anchored mode) or None (standard GradNorm).
        """
        if len(losses) != len(self.log_weights):
            raise ValueError(f"GradNorm was built for {len(self.log_weights)} losses, got {len(losses)}")
        weights = self.weights.clone()
        norms = torch.stack([gradient_norm(loss, shared) for loss in losses]).to(weights)  # [T]
        values = torch.stack([loss.detach() for loss in losses]).to(weights)  # [T]
        extra = [gradient_norm(anchor, shared).to(weights).view(1)] if anchor is not None else []
        stats = all_reduce_mean(torch.cat([norms, values, *extra]))  # identical on every process
        norms, values = stats[: len(norms)], stats[len(norms) : 2 * len(norms)]
        g = weights * norms  # [T]
        active = norms > 0
        mean = g[active].mean() if bool(active.any()) else g.new_zeros(())
        ref = stats[-1] if anchor is not None else mean
        ratios = g / ref.clamp_min(torch.finfo(g.dtype).tiny)
        if self.training and bool(active.any()) and float(ref) > 0:
            self._update(g, values, ref, active, renormalize=anchor is None)
        return GradNormStep(weights, ratios)

    @torch.no_grad()
    def _update(
        self, g: torch.Tensor, values: torch.Tensor, ref: torch.Tensor, active: torch.Tensor, renormalize: bool
    ) -> None:
        tiny = torch.finfo(values.dtype).tiny
        self.initial_losses.copy_(torch.where(torch.isnan(self.initial_losses), values, self.initial_losses))
        rate = values / self.initial_losses.clamp_min(tiny)  # [T]
        relative = (rate / rate[active].mean().clamp_min(tiny)).clamp_min(tiny)
        target = self.ratios * ref * relative**self.asymmetry
        self.log_weights.sub_(self.lr * torch.sign(g - target) * active)
        if renormalize:  # standard GradNorm: the weights keep their initial sum
            self.log_weights.add_(math.log(self.total) - self.log_weights.exp().sum().log())
