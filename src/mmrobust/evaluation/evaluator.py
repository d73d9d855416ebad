"""Every-subset evaluation: encode once per batch, then fuse + head for each subset.

Because ``fuse`` zeroes the features of absent modalities, encoding the batch once and fusing with the
mask ANDed with each subset gives exactly the logits of running the model on each restricted batch, at
a fraction of the cost (the encoders run once instead of once per subset that contains them). Models
that fuse inside their encoders (``fusion_inside_encoders = True``) get one forward per subset.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch

from mmrobust.batch import Batch
from mmrobust.models.multimodal import MultimodalModel
from mmrobust.subsets import subset_mask


@dataclass
class Predictions:
    """Logits ``[N, C]``, targets ``[N]`` and dataset indices ``[N]`` of one subset."""

    logits: torch.Tensor
    target: torch.Tensor
    index: torch.Tensor


@torch.no_grad()
def predict_subsets(
    model: MultimodalModel,
    batches: Iterable[Batch],
    subsets: Sequence[int],
    *,
    device: torch.device | str = "cpu",
    encode_once: bool = True,
    gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[int, Predictions]:
    """Predict every subset of ``subsets`` (bitmasks) on every batch.

    ``gather`` concatenates the shards of a distributed evaluation along dimension 0 (every process
    must hold the same number of samples, as a padding ``DistributedSampler`` gives); samples repeated
    by the padding are dropped by index.
    """
    was_training = model.training
    model.eval()
    out: dict[int, list[torch.Tensor]] = {s: [] for s in subsets}
    targets, indices = [], []
    once = encode_once and not model.fusion_inside_encoders
    for batch in batches:
        batch = batch.to(device)
        if once:
            features = model.encode(batch)
            for s in subsets:
                present = batch.present & subset_mask(s, len(batch.modalities)).to(batch.present.device)
                out[s].append(model.head(model.neck(model.fuse(features, present))).float())
        else:
            for s in subsets:
                out[s].append(model(batch.restrict(s)).float())
        targets.append(batch.target)
        indices.append(batch.index)
    model.train(was_training)
    target, index = torch.cat(targets), torch.cat(indices)
    logits = {s: torch.cat(v) for s, v in out.items()}
    if gather is not None:
        target, index = gather(target), gather(index)
        logits = {s: gather(v) for s, v in logits.items()}
    order = _unique_order(index)
    return {s: Predictions(v[order].cpu(), target[order].cpu(), index[order].cpu()) for s, v in logits.items()}


def _unique_order(index: torch.Tensor) -> torch.Tensor:
    """Positions that sort by dataset index and keep the first copy of each index."""
    sorted_index, order = torch.sort(index, stable=True)
    keep = torch.ones_like(sorted_index, dtype=torch.bool)
    keep[1:] = sorted_index[1:] != sorted_index[:-1]
    return order[keep]
