"""Inter-channel feature diversity ``D_channel`` (DMRNet, Wei et al. ECCV 2024, Eq. 14–15, Fig. 1).

Each channel of a feature is a row: its values over every observation (each position of each sample of a
feature map; each sample of a feature vector). ``D_channel[k, l] = 1 − cos(F_m[k], F_n[l])`` is the cosine
distance between channel k of feature m and channel l of feature n: m = n gives the intra-modality
diversity, m ≠ n the inter-modality diversity; higher means more diverse channels.

The paper's Eq. 14 normalizes the rows of ``F_m F_nᵀ`` instead, which is not the cosine distance between
channels its text describes; we follow the text. Channels that are zero everywhere (e.g. dead ReLUs) have no
direction and are left out.
"""

from __future__ import annotations

import torch


def channel_rows(features: torch.Tensor) -> torch.Tensor:
    """Channels as rows over all observations, unit-normalized; all-zero channels dropped.

    Shape: ``[N, C, *]`` -> ``[C', N·∏*]`` with C' ≤ C.
    """
    if features.dim() < 2:
        raise ValueError(f"features must be [N, C, *], got {tuple(features.shape)}")
    rows = features.detach().double().transpose(0, 1).reshape(features.shape[1], -1)  # [C, N·positions]
    norms = rows.norm(dim=1, keepdim=True)  # [C, 1]
    keep = norms.squeeze(1) > 0
    return rows[keep] / norms[keep]


def channel_distance(a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """``D_channel``: the cosine distance between every channel of ``a`` and every channel of ``b``
    (``b = a`` when omitted), over the same observations.

    Shape: a ``[N, C_a, *]``, b ``[N, C_b, *]`` (same N and positions) -> ``[C_a', C_b']``.
    """
    if b is not None and (a.shape[0] != b.shape[0] or a.shape[2:] != b.shape[2:]):
        raise ValueError(
            f"channel_distance needs features over the same observations, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    ra = channel_rows(a)
    rb = ra if b is None else channel_rows(b)
    return (1.0 - ra @ rb.T).clamp(0.0, 2.0)  # [C_a', C_b']


def diversity_values(a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """The entries of ``D_channel`` a histogram shows: every pair of distinct channels of ``a`` (intra,
    ``b`` omitted: the off-diagonal entries) or every channel of ``a`` against every channel of ``b``.

    Shape: -> ``[P]``.
    """
    d = channel_distance(a, b)
    if b is None:
        return d[~torch.eye(len(d), dtype=torch.bool)]
    return d.flatten()
