"""Fusions: combine per-modality features (already zeroed where absent) into one representation.

Every fusion is called as ``fusion(feats, present)``: the features in modality order, ``feats: list[Tensor]``,
each ``[B, ...]``, where absent modalities are zero (the papers' Bernoulli indicator, applied by
``MultimodalModel.fuse``), and the availability mask ``present: BoolTensor[B, M]`` (column j is ``feats[j]``).
It returns ``[B, D]`` (``concat``, ``sum`` and ``mean`` with ``keep_maps: true`` return a map ``[B, C, h, w]``,
for dense prediction). Most fusions need only the zeroed features; a mask-aware one (``mean``) uses ``present``.
A new fusion is one class here, registered with ``@FUSIONS.register(name)``, constructed with
``feature_shapes`` (per-modality feature shapes without the batch dimension) plus its config keys, with an
``out_features`` attribute; ``tests/models/test_contracts.py`` then needs a tiny config for it.
"""

from __future__ import annotations

import torch
from torch import nn

from mmrobust.models.encoders import mlp
from mmrobust.models.resnet import STAGES, make_stages, stage_channels
from mmrobust.registry import Registry

FUSIONS: Registry[nn.Module] = Registry("fusion")


@FUSIONS.register("concat")
class Concat(nn.Module):
    """Concatenate flattened features, ``z = [f_1; …; f_M]``, no parameters. Shape: M × [B, D_m] -> [B, Σ D_m].

    With a ``linear`` head, ``W z + b = Σ_m W^m f_m + b`` where ``W^m`` are the columns of modality m, in
    modality order: the per-modality head slices OGM-GE scores modalities with. OGM-GE's ``ConcatFusion`` is
    this fusion plus the linear head; its ``SumFusion``, ``fc_x(x) + fc_y(y)``, is the same function too
    (untied per-modality weights, biases summed), so ``concat`` also stands for OGM-GE's ``sum``.

    ``keep_maps: true`` (dense prediction): maps of one spatial size are concatenated along channels,
    M × [B, C_m, h, w] -> [B, Σ C_m, h, w], and ``out_features`` is Σ C_m.
    """

    def __init__(self, feature_shapes: list[tuple[int, ...]], keep_maps: bool = False) -> None:
        super().__init__()
        self.keep_maps = keep_maps
        if keep_maps:
            if any(len(s) != 3 for s in feature_shapes) or len({tuple(s[1:]) for s in feature_shapes}) != 1:
                raise ValueError(f"concat with keep_maps needs maps [C, h, w] of one size, got {feature_shapes}")
            self.out_features = sum(s[0] for s in feature_shapes)
        else:
            self.out_features = sum(int(torch.Size(s).numel()) for s in feature_shapes)

    def forward(self, feats: list[torch.Tensor], present: torch.Tensor) -> torch.Tensor:
        if self.keep_maps:
            return torch.cat(feats, dim=1)  # [B, Σ C_m, h, w]
        return torch.cat([f.flatten(1) for f in feats], dim=1)


@FUSIONS.register("concat_mlp")
class ConcatMLP(nn.Module):
    """Concatenate, then an MLP. Shape: M × [B, D_m] -> [B, out_features]."""

    def __init__(
        self,
        feature_shapes: list[tuple[int, ...]],
        hidden: list[int] | None = None,
        out_features: int = 128,
        norm: str = "none",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        total = sum(int(torch.Size(s).numel()) for s in feature_shapes)
        self.net = mlp([total, *(hidden or []), out_features], norm, dropout)
        self.out_features = out_features

    def forward(self, feats: list[torch.Tensor], present: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([f.flatten(1) for f in feats], dim=1))

    def fuse_subsets(self, feats: list[torch.Tensor], masks: torch.Tensor) -> torch.Tensor:
        """The fusion of S masks of one batch at once, sharing the first layer's per-modality products.

        Equals stacking ``forward(feats zeroed where masks[s] is False, masks[s])`` over ``s`` (subset-major)
        in eval mode. The first layer is linear in the concatenation and a dropped modality's feature is zero,
        so with ``W^m`` the columns of modality m,

            h_{s,b} = b + Σ_m [masks_{s,b,m}] · P_{b,m},     P_{b,m} = W^m f_{b,m}

        ``P`` is computed once on the B rows (instead of ``W [f_1; …; f_M]`` on S·B rows) and selected with
        ``torch.where``, so a non-finite feature of a dropped modality cannot leak (``NaN · 0 = NaN``). The
        rest of the MLP (norm, activation, further layers) runs on the S·B rows.

        Shape: M × [B, *F_m] (not zeroed), masks [S, B, M] -> [S·B, out_features].
        """
        first = self.net[0]
        assert isinstance(first, nn.Linear)  # mlp() starts with one
        s, b, m = masks.shape
        if m != len(feats) or any(len(f) != b for f in feats):
            raise ValueError(f"concat_mlp.fuse_subsets: masks [S, B, M] = {tuple(masks.shape)} do not match "
                             f"{len(feats)} features of batch sizes {[len(f) for f in feats]}")  # fmt: skip
        keep = masks.to(device=first.weight.device, dtype=torch.bool).unsqueeze(-1)  # [S, B, M, 1]
        hidden: torch.Tensor | None = None  # [S, B, D]
        start = 0
        for j, f in enumerate(feats):
            x = f.flatten(1)  # [B, F_m]
            product = nn.functional.linear(x, first.weight[:, start : start + x.shape[1]])  # [B, D]
            start += x.shape[1]
            term = torch.where(keep[:, :, j], product, torch.zeros((), dtype=product.dtype, device=product.device))
            hidden = term if hidden is None else hidden.add_(term)
        if hidden is None or start != first.in_features:
            raise ValueError(
                f"concat_mlp.fuse_subsets: features of {start} elements in all, expected {first.in_features}"
            )
        if first.bias is not None:
            hidden = hidden.add_(first.bias)
        return self.net[1:](hidden.reshape(s * b, -1))


@FUSIONS.register("sum")
class Sum(nn.Module):
    """Element-wise sum ``z = Σ_m f_m`` (features must share a shape), no parameters; maps are global-average
    pooled unless ``keep_maps: true`` (dense prediction). With a ``linear`` head every modality shares the
    weights, ``W Σ_m f_m + b`` (OGM-GE's ``sum`` has one linear layer per modality: that is ``concat``).

    Shape: M × [B, D, *] -> [B, D] (or [B, C, h, w] with ``keep_maps``)."""

    def __init__(self, feature_shapes: list[tuple[int, ...]], keep_maps: bool = False) -> None:
        super().__init__()
        if len({tuple(s) for s in feature_shapes}) != 1:
            raise ValueError(f"sum fusion needs features of one shape, got {feature_shapes}")
        self.out_features = feature_shapes[0][0]
        self.keep_maps = keep_maps

    def forward(self, feats: list[torch.Tensor], present: torch.Tensor) -> torch.Tensor:
        x = torch.stack(feats).sum(0)
        return x.mean(dim=(2, 3)) if x.dim() == 4 and not self.keep_maps else x


@FUSIONS.register("concat_trunk")
class ConcatTrunk(nn.Module):
    """The CASIA-SURF baseline fusion: concatenate per-modality maps along channels, then shared ResNet
    stages (``layer3``, ``layer4`` by default), then (``pool: true``) global average pooling.

    Shape: M × [B, C, H, W] -> [B, C_out] (pooled) or [B, C_out, H', W'] (``pool: false``, the map that
    map-level losses and necks use; the linear head pools it). The first shared block takes M·C channels.
    """

    def __init__(
        self,
        feature_shapes: list[tuple[int, ...]],
        depth: int = 18,
        width: int = 64,
        se: bool = False,
        first_stage: str = "layer3",
        pool: bool = True,
    ) -> None:
        super().__init__()
        if any(len(s) != 3 for s in feature_shapes):
            raise ValueError(f"concat_trunk fusion needs feature maps [C, H, W], got {feature_shapes}")
        stages = STAGES[STAGES.index(first_stage) :]
        in_channels = sum(s[0] for s in feature_shapes)
        self.trunk = nn.Sequential(*make_stages(depth, width, se, stages, in_channels).values())
        self.out_features = stage_channels(depth, width)["layer4"]
        self.pool = pool

    def forward(self, feats: list[torch.Tensor], present: torch.Tensor) -> torch.Tensor:
        x = self.trunk(torch.cat(feats, dim=1))  # [B, C_out, H', W']
        return x.mean(dim=(2, 3)) if self.pool else x


@FUSIONS.register("mean")
class Mean(nn.Module):
    """Mean over the modalities present for each sample (features must share a shape):

        z_b = Σ_m δ_bm · f_bm / max(1, Σ_m δ_bm),     δ_bm = present[b, m] ∈ {0, 1}

    so the scale of ``z`` does not depend on how many modalities a sample lacks (``sum`` grows with the
    number present), and a sample without any modality gets 0. Maps are global-average pooled unless
    ``keep_maps: true`` (dense prediction).

    Shape: M × [B, *F], present [B, M] -> [B, F_0] (pooled) or [B, *F] (vectors, or maps with ``keep_maps``).
    """

    def __init__(self, feature_shapes: list[tuple[int, ...]], keep_maps: bool = False) -> None:
        super().__init__()
        if len({tuple(s) for s in feature_shapes}) != 1:
            raise ValueError(f"mean fusion needs features of one shape, got {feature_shapes}")
        self.out_features = feature_shapes[0][0]
        self.keep_maps = keep_maps

    def forward(self, feats: list[torch.Tensor], present: torch.Tensor) -> torch.Tensor:
        x = torch.stack(feats, dim=1)  # [B, M, *F]
        if present.shape != x.shape[:2]:
            raise ValueError(f"mean fusion: present must be [B, M] = {tuple(x.shape[:2])}, got {tuple(present.shape)}")
        keep = present.to(device=x.device, dtype=torch.bool)  # [B, M]
        mask = keep.view(*keep.shape, *([1] * (x.dim() - 2)))  # [B, M, 1, ...]
        total = torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device)).sum(dim=1)  # [B, *F]
        count = keep.sum(dim=1).clamp(min=1).to(x.dtype)  # [B]
        z = total / count.view(-1, *([1] * (total.dim() - 1)))
        return z.mean(dim=(2, 3)) if z.dim() == 4 and not self.keep_maps else z


def _two_vectors(feature_shapes: list[tuple[int, ...]], name: str) -> tuple[int, int]:
    if len(feature_shapes) != 2 or any(len(s) != 1 for s in feature_shapes):
        raise ValueError(f"{name} fusion needs two modalities with vector features [D], got {feature_shapes}")
    return feature_shapes[0][0], feature_shapes[1][0]


@FUSIONS.register("film")
class FiLM(nn.Module):
    """Feature-wise linear modulation (Perez et al. 2018), as OGM-GE's ``FiLM`` fusion: the conditioning
    modality ``c`` predicts a per-feature scale and shift of the other modality ``x``,

        [γ, β] = W c + b   (W: [2·D_x, D_c]),     z = γ ⊙ x + β

    ``condition`` is the position of ``c`` in the modality order (default 0: with audio listed first, audio
    conditions the visual features, as OGM-GE's ``x_film=True``). OGM-GE's ``fc_out`` is the ``linear`` head.
    A missing modality's features are zero: without ``x``, ``z = β(c)``; without ``c``, ``z = b_γ ⊙ x + b_β``.

    Shape: 2 × [B, D_m], present [B, 2] -> [B, D_x].
    """

    def __init__(self, feature_shapes: list[tuple[int, ...]], condition: int = 0) -> None:
        super().__init__()
        dims = _two_vectors(feature_shapes, "film")
        if condition not in (0, 1):
            raise ValueError(f"film fusion: condition must be 0 or 1 (a modality position), got {condition}")
        self.condition = condition
        self.out_features = dims[1 - condition]
        self.fc = nn.Linear(dims[condition], 2 * self.out_features)

    def forward(self, feats: list[torch.Tensor], present: torch.Tensor) -> torch.Tensor:
        c, x = feats[self.condition], feats[1 - self.condition]  # [B, D_c], [B, D_x]
        gamma, beta = self.fc(c).chunk(2, dim=1)  # [B, D_x] each
        return gamma * x + beta


@FUSIONS.register("gated")
class Gated(nn.Module):
    """Gated fusion (Kiela et al. 2018), as OGM-GE's ``GatedFusion``: a sigmoid gate computed from one modality
    ``g`` multiplies a projection of the other, ``x``,

        z = σ(W_g g + b_g) ⊙ (W_x x + b_x)     (W_g: [H, D_g], W_x: [H, D_x])

    ``gate`` is the position of ``g`` in the modality order (default 0: with audio listed first, audio gates
    the visual features, as OGM-GE's ``x_gate=True``); ``hidden`` is H (default D_x; 512 in OGM-GE). OGM-GE's
    ``fc_out`` is the ``linear`` head. A missing modality's features are zero: without ``x``,
    ``z = σ(W_g g + b_g) ⊙ b_x``; without ``g``, ``z = σ(b_g) ⊙ (W_x x + b_x)``.

    Shape: 2 × [B, D_m], present [B, 2] -> [B, H].
    """

    def __init__(self, feature_shapes: list[tuple[int, ...]], gate: int = 0, hidden: int | None = None) -> None:
        super().__init__()
        dims = _two_vectors(feature_shapes, "gated")
        if gate not in (0, 1):
            raise ValueError(f"gated fusion: gate must be 0 or 1 (a modality position), got {gate}")
        if hidden is not None and hidden < 1:
            raise ValueError(f"gated fusion: hidden must be >= 1, got {hidden}")
        self.gate = gate
        self.out_features = hidden or dims[1 - gate]
        self.fc_gate = nn.Linear(dims[gate], self.out_features)
        self.fc_value = nn.Linear(dims[1 - gate], self.out_features)

    def forward(self, feats: list[torch.Tensor], present: torch.Tensor) -> torch.Tensor:
        g, x = feats[self.gate], feats[1 - self.gate]  # [B, D_g], [B, D_x]
        return torch.sigmoid(self.fc_gate(g)) * self.fc_value(x)  # [B, H]
