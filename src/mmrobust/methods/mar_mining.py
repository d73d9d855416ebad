"""Weak-combination mining for MMANet's modality-aware regularization (MAR).

Memorization effect: a network fits the easy (strong) modality first. During the mining epochs the
deployment network is evaluated on the validation split with the full set M and with every subset that
drops exactly one modality, M∖{m}; the shift ``D(M∖{m})`` between the two predictions is accumulated
over the epochs. The strong modality is ``m* = argmax_m Σ_epochs D(M∖{m})`` and the weak combinations
are all non-empty subsets of ``M∖{m*}``. Signals:

- ``kl`` (default): mean per-sample ``KL(p_M ‖ p_{M∖m})`` of the softmax predictions;
- ``label_hist`` (reference code): ``KL(h_M ‖ h_{M∖m})`` of the predicted-label histograms, add-one
  (Laplace) smoothed (the reference applies a softmax to the normalized histograms instead);
- ``accuracy``: accuracy drop ``acc_M − acc_{M∖m}`` (the segmentation reference uses the mIoU drop).

The miner keeps its evidence in buffers, so a resumed run keeps the mined set.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmrobust.subsets import all_subsets, full_subset, masks_to_subsets, subset_name

SIGNALS = ("kl", "label_hist", "accuracy")


def prediction_shift(full: torch.Tensor, dropped: torch.Tensor, target: torch.Tensor, signal: str) -> float:
    """How far the predictions move when a modality is dropped (see the module docstring).

    Shape: full ``[N, C]``, dropped ``[N, C]`` logits, target ``[N]`` -> float.
    """
    if full.shape != dropped.shape or full.dim() != 2 or target.shape != full.shape[:1]:
        raise ValueError(
            f"prediction_shift expects logits [N, C], [N, C] and target [N], got {tuple(full.shape)}, "
            f"{tuple(dropped.shape)} and {tuple(target.shape)}"
        )
    full, dropped = full.double(), dropped.double()
    if signal == "kl":
        log_p, log_q = full.log_softmax(dim=1), dropped.log_softmax(dim=1)
        return float((log_p.exp() * (log_p - log_q)).sum(dim=1).mean())
    if signal == "label_hist":
        num_classes = full.shape[1]
        h_full = torch.bincount(full.argmax(dim=1), minlength=num_classes).double() + 1.0  # [C]
        h_drop = torch.bincount(dropped.argmax(dim=1), minlength=num_classes).double() + 1.0  # [C]
        h_full, h_drop = h_full / h_full.sum(), h_drop / h_drop.sum()
        return float(F.kl_div(h_drop.log(), h_full, reduction="sum"))  # KL(h_full ‖ h_drop)
    if signal == "accuracy":
        acc_full = (full.argmax(dim=1) == target).double().mean()
        acc_drop = (dropped.argmax(dim=1) == target).double().mean()
        return float(acc_full - acc_drop)
    raise ValueError(f"unknown mining signal {signal!r}; valid signals: {', '.join(SIGNALS)}")


def leave_one_out(num_modalities: int) -> list[int]:
    """``M∖{m}`` for every modality m, in modality order (bitmasks)."""
    full = full_subset(num_modalities)
    return [full & ~(1 << m) for m in range(num_modalities)]


def weak_subsets(strong: int, num_modalities: int) -> list[int]:
    """Every non-empty subset of ``M∖{strong}`` (bitmasks, singles first)."""
    rest = full_subset(num_modalities) & ~(1 << strong)
    return [s for s in all_subsets(num_modalities) if s & rest == s]


class WeakCombinationMiner(nn.Module):
    """Accumulates the leave-one-out prediction shifts and holds the mined strong modality and weak set.

    Args:
        modalities: the modality order.
        mining_epochs: the (0-based) epochs whose end is observed.
        signal: ``kl``, ``label_hist`` or ``accuracy``.

    Buffers (saved with the method, so a resume keeps them): ``shift [E, M]`` (NaN = not observed),
    ``strong`` (−1 = not decided), ``weak_table [2^M]`` (bool, indexed by subset bitmask).
    """

    shift: torch.Tensor
    strong: torch.Tensor
    weak_table: torch.Tensor

    def __init__(self, modalities: Sequence[str], mining_epochs: Sequence[int], signal: str = "kl") -> None:
        super().__init__()
        if signal not in SIGNALS:
            raise ValueError(f"unknown mining signal {signal!r}; valid signals: {', '.join(SIGNALS)}")
        self.modalities = tuple(modalities)
        self.mining_epochs = list(mining_epochs)
        self.signal = signal
        self.source = "mined"
        self.register_buffer("shift", torch.full((len(self.mining_epochs), len(self.modalities)), float("nan")))
        self.register_buffer("strong", torch.tensor(-1))
        self.register_buffer("weak_table", torch.zeros(1 << len(self.modalities), dtype=torch.bool))

    @property
    def decided(self) -> bool:
        return int(self.strong) >= 0

    def candidates(self) -> list[int]:
        """The subsets to validate at a mining epoch: every ``M∖{m}`` and the full set."""
        return [*leave_one_out(len(self.modalities)), full_subset(len(self.modalities))]

    def observe(self, epoch: int, predictions: Mapping[int, Any]) -> list[float]:
        """Record the shifts of one mining epoch from ``{subset: Predictions}``; returns them per modality."""
        full = predictions[full_subset(len(self.modalities))]
        shifts = [
            prediction_shift(full.logits, predictions[s].logits, full.target, self.signal)
            for s in leave_one_out(len(self.modalities))
        ]
        self.shift[self.mining_epochs.index(epoch)] = torch.tensor(shifts, dtype=self.shift.dtype)
        return shifts

    def accumulated(self) -> torch.Tensor:
        """Shift per dropped modality summed over the observed epochs. Shape: ``[M]``."""
        return torch.nan_to_num(self.shift, nan=0.0).sum(dim=0)

    def decide(self) -> int:
        """``m* = argmax`` of the accumulated shift (first on ties); sets the weak set. Returns m*."""
        if torch.isnan(self.shift).all():
            raise RuntimeError("MAR mining has observed no epoch; cannot choose the strong modality")
        strong = int(torch.argmax(self.accumulated()))
        self.set_strong(strong)
        return strong

    def set_strong(self, strong: int, source: str = "mined") -> None:
        """Fix the strong modality (mined, or given by the config) and the weak set it implies."""
        self.strong.fill_(strong)
        self.weak_table.zero_()
        self.weak_table[weak_subsets(strong, len(self.modalities))] = True
        self.source = source

    def is_weak(self, present: torch.Tensor) -> torch.Tensor:
        """Whether each sample's subset is a weak combination. Shape: ``[B, M] -> [B]`` bool."""
        return self.weak_table[masks_to_subsets(present)]

    def evidence(self) -> dict[str, Any]:
        """What was observed and chosen, as plain values (for the run's JSON and logs)."""
        total = self.accumulated().tolist()
        subsets = leave_one_out(len(self.modalities))
        rows = [
            {
                "dropped": m,
                "subset": subset_name(subsets[j], self.modalities),
                "shift_per_epoch": [None if math.isnan(v) else v for v in self.shift[:, j].tolist()],
                "accumulated": total[j],
            }
            for j, m in enumerate(self.modalities)
        ]
        strong = int(self.strong)
        weak = [subset_name(s, self.modalities) for s in all_subsets(len(self.modalities)) if self.weak_table[s]]
        return {
            "signal": self.signal,
            "mining_epochs": self.mining_epochs,
            "candidates": rows,
            "strong": self.modalities[strong] if strong >= 0 else None,
            "weak": weak,
            "source": self.source if strong >= 0 else None,
        }
