"""``dgl``: Disentangled Gradient Learning (Shi et al., ICCV 2025, arXiv:2507.10213).

Claim: the fused loss shrinks the gradient each encoder receives, so encoder and fusion optimization are
decoupled:

- fused logits from *detached* features, ``p_f = head(neck(fuse(z.detach(), S)))``: the multimodal loss
  trains the fusion, neck and head only;
- unimodal logits ``p_m`` through the shared stages with *detached parameters*: their loss trains the
  encoders only;
- ``L = CE(p_f) + α Σ_m CE(p_m)``, in one backward pass (the reference code's two passes, with the fusion
  gradients deleted in between, give the same gradients; see tests/methods/test_dgl.py), so it works with
  the trainer's single gradient all-reduce.

Every encoder gradient comes from ``α · CE(p_m)`` and every shared-stage gradient from ``CE(p_f)``, so
under Adam-type optimizers α cancels out (up to ``eps``, weight decay and gradient clipping); it matters
with SGD, as in the reference code (SGD, lr 2e-3, clip 40).
"""

from __future__ import annotations

import torch

from mmrobust.batch import Batch
from mmrobust.losses.imbalance import FusedUnimodalLoss
from mmrobust.methods.base import METHODS, EpochContext, Method, MethodContext, StepOutput, TrainState
from mmrobust.methods.diagnostics import ImbalanceDiagnostics
from mmrobust.methods.unimodal import present_columns, unimodal_logits
from mmrobust.models.multimodal import MultimodalModel


@METHODS.register("dgl")
class DGL(Method):
    """DGL; see the module docstring.

    Args:
        context: the run (modality order).
        alpha: α, weight of the unimodal cross-entropies (4 in the reference code, 4–5 on CREMA-D,
            2–3 on Kinetics-Sounds in the paper).
    """

    supported_tasks = ("classification",)
    task_reason = "its unimodal coefficients are defined on per-sample class predictions (classification only)"

    def __init__(self, context: MethodContext, alpha: float = 4.0) -> None:
        super().__init__()
        self.loss = FusedUnimodalLoss(alpha)
        self.diagnostics = ImbalanceDiagnostics(context.modalities)

    def forward(self, model: MultimodalModel, batch: Batch, state: TrainState) -> StepOutput:
        features = model.encode(batch)
        detached = {m: z.detach() for m, z in features.items()}
        fused = model.head(model.neck(model.fuse(detached, batch.present)))  # [B, C]: trains fusion/head only
        unimodal = unimodal_logits(model, features, batch.present, shared="detached")  # trains encoders only
        mask = present_columns(model, unimodal, batch.present)  # [B, V]
        loss, ce_fused, ce = self.loss(fused, torch.stack(list(unimodal.values())), batch.target, mask)
        terms = {"ce_fused": ce_fused.detach()}
        terms |= {f"ce_{m}": ce[v].detach() for v, m in enumerate(unimodal)}
        return StepOutput(loss=loss, terms=terms, output=fused)

    def after_backward(self, model: MultimodalModel, state: TrainState) -> None:
        self.diagnostics.add_gradient_norms(model)

    def on_epoch_end(self, model: MultimodalModel, state: TrainState, ctx: EpochContext) -> None:
        self.diagnostics.epoch_end(model, state, ctx)
