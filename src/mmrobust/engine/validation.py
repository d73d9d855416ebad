"""The validation of one epoch: which subsets it covers, and one pass over the split for every consumer.

Which subsets (:func:`epoch_subsets`): model selection needs the selection subsets (``trainer.select_subsets``;
the runner's subsets when unset, i.e. every subset for the ``single`` runner) at every epoch, and nothing else.
Every subset is evaluated too, for the curves (``val_all/avg_<metric>``), only every
``trainer.val_all_subsets_every`` epochs and at the last epoch (0 = never). The selection subsets come first, so
their metrics are those of a selection-only pass, and the best epoch does not depend on the curves. The final
test evaluation (``experiment``) covers every subset of the job whatever this schedule.

One pass (:class:`EpochValidation`): a method's epoch-end hook asks for per-sample validation predictions
(``ctx.validate``: the imbalance diagnostics' unimodal accuracies, MMANet's mining). In one process the first
such request runs a single encode-once pass over the split that updates the selection metrics and keeps the
requested predictions (:func:`evaluate_and_predict`), and the trainer's validation reuses those metrics: the split
is encoded once per epoch instead of twice. In several processes the two passes stay separate (predictions need
the padded, gathered loader; streaming metrics need disjoint shards).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import torch

from mmrobust.batch import Batch
from mmrobust.engine.progress import tracked
from mmrobust.evaluation.evaluator import Predictions, subset_outputs
from mmrobust.tasks import SubsetMetric, Task

if TYPE_CHECKING:
    from mmrobust.data.base import MultimodalDataset
    from mmrobust.engine.trainer import Trainer
    from mmrobust.models.multimodal import MultimodalModel


def epoch_subsets(
    selection: Sequence[int], every: Sequence[int], epoch: int, max_epochs: int, all_every: int
) -> tuple[list[int], bool]:
    """The subsets validated at ``epoch`` (0-based) and whether they include every subset for the curves.

    ``selection`` first (unchanged order), then the other subsets of ``every`` on an epoch ``e`` with
    ``all_every > 0`` and (``(e + 1) mod all_every = 0`` or ``e = max_epochs − 1``).
    """
    selected = list(dict.fromkeys(selection))
    extra = [s for s in every if s not in selected]
    due = all_every > 0 and ((epoch + 1) % all_every == 0 or epoch == max_epochs - 1)
    if not extra:
        return selected, all_every > 0 and due
    return (selected + extra, True) if due else (selected, False)


@torch.no_grad()
def evaluate_and_predict(
    model: Any,
    batches: Iterable[Batch],
    metric_subsets: Sequence[int],
    predict: Sequence[int],
    task: Task,
    *,
    device: torch.device | str = "cpu",
    encode_once: bool = True,
    on_unreadable: Callable[[tuple[tuple[str, str, str], ...]], None] | None = None,
) -> tuple[dict[int, SubsetMetric], dict[int, Predictions]]:
    """One pass (one process): the streaming task metrics of ``metric_subsets`` and the per-sample predictions
    (compacted by the task, sorted by dataset index) of ``predict``; each batch is encoded once for all of them.

    Equal to ``evaluate_subsets(metric_subsets)`` + ``predict_subsets(predict)`` on the same batches (the model in
    eval mode). Shape: per predicted subset logits ``[N, C]``, target ``[N]``, index ``[N]``.
    """
    union = list(dict.fromkeys([*metric_subsets, *predict]))
    wanted = set(predict)
    was_training = model.training
    model.eval()
    metrics = {s: task.new_metric().to(device) for s in metric_subsets}
    logits_of: dict[int, list[torch.Tensor]] = {s: [] for s in predict}
    target_of: dict[int, list[torch.Tensor]] = {s: [] for s in predict}
    indices = []
    for batch in batches:
        if on_unreadable is not None:
            on_unreadable(batch.unreadable)
        batch = batch.to(device)
        for s, logits in subset_outputs(model, batch, union, encode_once):
            if s in metrics:
                metrics[s].update(logits.float(), batch.target)
            if s in wanted:
                kept, target = task.compact(logits.float(), batch.target)
                logits_of[s].append(kept)
                target_of[s].append(target)
        indices.append(batch.index)
    model.train(was_training)
    for metric in metrics.values():
        metric.sync()
    index = torch.cat(indices) if indices else torch.zeros(0, dtype=torch.long)
    order = torch.argsort(index, stable=True).cpu()
    index = index.cpu()
    predictions = {
        s: Predictions(torch.cat(logits_of[s]).cpu()[order], torch.cat(target_of[s]).cpu()[order], index[order])
        for s in predict
        if logits_of[s]
    }
    return metrics, predictions


class EpochValidation:
    """The validation of one epoch for the trainer (``metrics``) and the method hook (``predict``, given to the
    hook as ``ctx.validate``); see the module docstring.

    Args:
        trainer: the trainer (loaders, precision, progress bar, task).
        model: the model, as trained so far.
        val_set: the validation split.
        subsets: the subsets whose metrics the trainer reads (:func:`epoch_subsets`).
    """

    def __init__(
        self, trainer: Trainer, model: MultimodalModel, val_set: MultimodalDataset, subsets: Sequence[int]
    ) -> None:
        self.trainer, self.model, self.val_set, self.subsets = trainer, model, val_set, list(subsets)
        self._metrics: dict[int, SubsetMetric] | None = None
        self.shared = trainer.fabric.world_size == 1

    def predict(self, subsets: Sequence[int]) -> dict[int, Predictions]:
        """Per-sample predictions of ``subsets`` on the split; the first call in one process also computes the
        trainer's metrics in the same pass."""
        if not self.shared or self._metrics is not None:
            return self.trainer.predict(self.model, self.val_set, list(subsets))
        t = self.trainer
        with t.progress() as bar, t.fabric.autocast():
            metrics, predictions = evaluate_and_predict(
                self.model,
                tracked(t.eval_loader(self.val_set), bar, "val"),
                self.subsets,
                list(subsets),
                t.task,
                device=t.fabric.device,
                encode_once=t.cfg.encode_once,
                on_unreadable=self.val_set.record_unreadable,
            )
        self._metrics = metrics
        return predictions

    def metrics(self) -> dict[int, SubsetMetric]:
        """The streaming metrics of ``subsets``: from the shared pass when the hook ran one, else a pass now."""
        if self._metrics is None:
            self._metrics = self.trainer.evaluate(self.model, self.val_set, self.subsets, label="val")
        return self._metrics
