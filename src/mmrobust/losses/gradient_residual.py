"""Gradient residual (ARL, ICCV 2025): the identity in the forward pass, a scaled gradient in the backward.

ARL re-weights the optimization of each modality encoder by adding a residual to the gradient at the
encoder's output ``z_m``::

    forward:  y = z
    backward: ∂L/∂z = (1 + w_m) · ∂L/∂y        (the caller passes ``scale = 1 + w_m``)

ARL's coefficient ``w`` is computed from the unimodal predictions of the *same* forward pass (which are
computed from ``y``), so it is not known when ``y`` is built. The scale is therefore a tensor that the
backward reads when it runs: the caller may write the final value into it (in place) after the forward
and before ``backward()``. Nothing else reads it.
"""

from __future__ import annotations

from typing import Any

import torch


class GradientResidualFunction(torch.autograd.Function):
    """``y = z``; ``∂L/∂z = scale · ∂L/∂y`` with ``scale`` read at backward time (no gradient to it)."""

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        ctx.scale = scale  # a reference, not a saved tensor: its value may be set after this forward
        return z.view_as(z)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.scale.to(grad.dtype), None


def gradient_residual(z: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The identity whose backward multiplies the incoming gradient by ``scale``.

    Args:
        z: an encoder output.
        scale: a tensor broadcastable to ``z`` (``1 + w_m`` for ARL); its value when ``backward`` runs is
            the one used.

    Shape: z ``[B, *]``, scale ``[]`` or broadcastable -> ``[B, *]``.
    """
    if scale.requires_grad:
        raise ValueError("gradient_residual: scale must not require a gradient (it is a coefficient)")
    try:
        fits = torch.broadcast_shapes(scale.shape, z.shape) == z.shape
    except RuntimeError:
        fits = False
    if not fits:
        raise ValueError(
            f"gradient_residual: scale of shape {tuple(scale.shape)} does not broadcast to z {tuple(z.shape)}"
        )
    return GradientResidualFunction.apply(z, scale)  # type: ignore[no-any-return]
