"""Per-epoch modality-imbalance diagnostics, shared by ARL, DGL, OGM-GE and the ``diagnosed`` baseline.

Each epoch records:

- ``val_acc/<m>``: validation accuracy of modality ``m`` alone through the shared head (the model with
  every other modality zeroed) and ``val_acc/fused`` with every modality present;
- ``grad_norm/<m>``: the mean over steps of the L2 norm of the gradient reaching encoder ``m`` (taken
  in ``after_backward``, where gradients are already averaged across processes);
- whatever the method adds per step (ARL's ``arl/q|d|w/<m>``, OGM-GE's ``ogm/rho|k/<m>``), averaged.

Every value is identical on every process (the method computes its coefficients from all-reduced
statistics). The records are logged (``diag/...``), written to ``run_dir/diagnostics.json`` after every
epoch and plotted to ``run_dir/diagnostics.png`` after the last one. The history is part of the method's
state, so a resumed run keeps the epochs before the interruption.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmrobust.atomic_io import write_json_atomic
from mmrobust.distributed import is_main_process
from mmrobust.methods.base import EpochContext, TrainState
from mmrobust.models.multimodal import MultimodalModel
from mmrobust.subsets import full_subset

JSON_NAME, PNG_NAME = "diagnostics.json", "diagnostics.png"


class ImbalanceDiagnostics(nn.Module):
    """Accumulates per-step values and writes one record per epoch (see the module docstring).

    Args:
        modalities: the modality order.
    """

    def __init__(self, modalities: Sequence[str]) -> None:
        super().__init__()
        self.modalities = tuple(modalities)
        self.history: list[dict[str, float]] = []
        self._sums: dict[str, torch.Tensor] = {}
        self._counts: dict[str, int] = {}

    def add(self, values: Mapping[str, torch.Tensor | float]) -> None:
        """Add one step's scalars; each key is averaged over the steps that reported it."""
        for key, value in values.items():
            v = value.detach().float() if isinstance(value, torch.Tensor) else torch.tensor(float(value))
            self._sums[key] = self._sums[key] + v if key in self._sums else v
            self._counts[key] = self._counts.get(key, 0) + 1

    def add_gradient_norms(self, model: MultimodalModel) -> None:
        """Record the L2 norm of each encoder's gradient (encoders without a gradient are skipped)."""
        norms = {}
        for m, encoder in model.encoders.items():
            grads = [p.grad.detach() for p in encoder.parameters() if p.grad is not None]
            if grads:  # ‖g‖ = ‖(‖g_p‖)_p‖: one fused kernel for every parameter, in float32, no host sync
                per_param = torch._foreach_norm(grads, 2, dtype=torch.float32)
                norms[f"grad_norm/{m}"] = torch.linalg.vector_norm(torch.stack(per_param))
        self.add(norms)

    def epoch_end(self, model: MultimodalModel, state: TrainState, ctx: EpochContext) -> dict[str, float]:
        """Validate each modality alone and all together, close the epoch's record, log and write it."""
        singles = [1 << j for j in range(len(self.modalities))]
        full = full_subset(len(self.modalities))
        predictions = ctx.validate(sorted({*singles, full}))
        record: dict[str, float] = {"epoch": state.epoch, "step": state.step}
        for m, s in zip(self.modalities, singles):
            record[f"val_acc/{m}"] = accuracy(predictions[s].logits, predictions[s].target)
        record["val_acc/fused"] = accuracy(predictions[full].logits, predictions[full].target)
        record |= {k: float(self._sums[k]) / self._counts[k] for k in sorted(self._sums)}
        self._sums, self._counts = {}, {}
        self.history = [r for r in self.history if r["epoch"] < state.epoch] + [record]
        ctx.log({f"diag/{k}": v for k, v in record.items() if k not in ("epoch", "step")}, state.step)
        if ctx.run_dir is not None and is_main_process():
            run_dir = Path(ctx.run_dir)
            write_json_atomic(self.history, run_dir / JSON_NAME)
            if state.epoch == state.max_epochs - 1:
                from mmrobust.evaluation.imbalance_plots import plot_diagnostics  # matplotlib only when plotting

                plot_diagnostics(self.history, run_dir / PNG_NAME, modalities=self.modalities)
        return record

    def get_extra_state(self) -> dict[str, Any]:
        return {"history": self.history}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.history = [dict(r) for r in state["history"]]


def accuracy(logits: torch.Tensor, target: torch.Tensor) -> float:
    """Share of correct argmax predictions. Shape: logits ``[N, C, *]``, target ``[N, *]`` -> float."""
    return float((logits.argmax(dim=1) == target).float().mean())
