"""``full``: plain training on the modalities each sample has (complete data: S = M).

It is the complete-modality baseline and the MMANet teacher.
"""

from __future__ import annotations

from mmrobust.batch import Batch
from mmrobust.methods.base import METHODS, Method, MethodContext, StepOutput, TrainState, cross_entropy_step
from mmrobust.models.multimodal import MultimodalModel


@METHODS.register("full")
class Full(Method):
    """``L = CE`` on the batch as it comes from the data."""

    def __init__(self, context: MethodContext) -> None:
        super().__init__()
        self.task = context.task

    def forward(self, model: MultimodalModel, batch: Batch, state: TrainState) -> StepOutput:
        return cross_entropy_step(model, batch, self.task)
