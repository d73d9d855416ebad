"""``diagnosed``: plain joint training (``L = CE``, as ``full``) with the imbalance diagnostics.

The baseline of ARL, DGL and OGM-GE with the same per-epoch curves (unimodal validation accuracy through
the shared head, gradient norm reaching each encoder), so a run shows how much plain joint training
under-learns a modality. Its config is ``method=joint``.
"""

from __future__ import annotations

from mmrobust.batch import Batch
from mmrobust.methods.base import (
    METHODS,
    EpochContext,
    Method,
    MethodContext,
    StepOutput,
    TrainState,
    cross_entropy_step,
)
from mmrobust.methods.diagnostics import ImbalanceDiagnostics
from mmrobust.models.multimodal import MultimodalModel


@METHODS.register("diagnosed")
class Diagnosed(Method):
    """``L = CE`` on the batch as it comes, plus :class:`ImbalanceDiagnostics`."""

    supported_tasks = ("classification",)
    task_reason = "its unimodal coefficients are defined on per-sample class predictions (classification only)"

    def __init__(self, context: MethodContext) -> None:
        super().__init__()
        self.task = context.task
        self.diagnostics = ImbalanceDiagnostics(context.modalities)

    def forward(self, model: MultimodalModel, batch: Batch, state: TrainState) -> StepOutput:
        return cross_entropy_step(model, batch, self.task)

    def after_backward(self, model: MultimodalModel, state: TrainState) -> None:
        self.diagnostics.add_gradient_norms(model)

    def on_epoch_end(self, model: MultimodalModel, state: TrainState, ctx: EpochContext) -> None:
        self.diagnostics.epoch_end(model, state, ctx)
