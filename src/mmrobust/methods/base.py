"""The Method contract: turn ``(model, batch)`` into a loss and named terms.

A method steps in between the model's public stages (encode / fuse / neck / head); it never subclasses
the model. It owns its training-only modules (teacher, regularization heads): they are checkpointed
with the run and never exported with the deployed model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from mmrobust.batch import Batch
from mmrobust.models.multimodal import MultimodalModel
from mmrobust.registry import Registry
from mmrobust.tasks import Classification, Task

M = TypeVar("M", bound=nn.Module)


@dataclass
class TrainState:
    """Where training is: the current epoch (0-based), the global optimizer step, and the run's seed."""

    epoch: int = 0
    step: int = 0
    max_epochs: int = 1
    seed: int = 0


@dataclass
class StepOutput:
    """A training step's result: the scalar ``loss`` to minimize, named scalar ``terms`` to log, and the
    fused ``output`` logits ``[B, C]``."""

    loss: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)
    output: torch.Tensor | None = None


@dataclass
class EpochContext:
    """What an ``on_epoch_end`` hook may use: ``validate(subsets)`` evaluates the deployment model on
    the validation split and returns ``{subset: (logits [N, C], targets [N])}``; ``log`` records scalars."""

    validate: Any
    log: Any
    run_dir: Any = None


@dataclass
class MethodContext:
    """What a method may know about the run when it is built.

    Attributes:
        modalities: the modality order.
        num_classes: number of classes of the task.
        build_model: returns a fresh model of the run's plain architecture, the ``model`` config as given,
            without the method's ``model_config`` changes (e.g. for a teacher or a pretrained encoder).
        fit: ``fit(name, model, method, max_epochs=None, restrict_to=None) -> Path`` trains ``model`` with
            ``method`` on the run's train/val splits in the sub-folder ``name`` of the run (resumable like the
            main model) and returns its best checkpoint; used for teachers and pretrained encoders.
            ``restrict_to`` (a subset bitmask) trains and selects on that subset only.
        run_dir: the folder of the model being trained.
        task: what is predicted; its ``loss`` is the supervised loss of every method (default:
            classification with ``num_classes`` classes).
    """

    modalities: tuple[str, ...]
    num_classes: int
    build_model: Callable[[], MultimodalModel]
    fit: Callable[..., Path]
    run_dir: Path
    task: Task = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.task is None:
            self.task = Classification(self.num_classes)


class Method(nn.Module):
    """Base class. Subclasses implement ``forward``; the hooks are optional.

    Constructors take ``context: MethodContext`` plus their config keys. They list the tasks they
    can train (``supported_tasks``); one that cannot train a task says why in ``task_reason`` (shown to the user).
    """

    supported_tasks: tuple[str, ...] = ("classification", "segmentation")
    task_reason: str = ""

    def model_config(self, config: dict[str, Any]) -> dict[str, Any]:
        """The model config this method trains, given the run's ``model`` config (default: unchanged).

        A method that needs an architecture declares it here instead of changing the model in ``prepare``:
        DMRNet puts a probabilistic neck in place of an identity one, OS-MD wraps the encoders of the
        deployed modalities in ``osmd`` encoders. The run builds its model from the returned config and
        saves it, so ``mmrobust eval`` rebuilds exactly the trained model. The result must be a new dict
        (``config`` is not changed) and the hook must be idempotent:
        ``model_config(model_config(c)) == model_config(c)`` (eval applies it again to the saved config).
        Teachers and pretrained helpers (``MethodContext.build_model``) keep the plain architecture.
        """
        return dict(config)

    def prepare(self, model: MultimodalModel) -> None:
        """Called once before training the deployment ``model``, built from ``model_config``: training-only
        state (train or load a teacher, pretrain encoders, ...); it does not change the architecture."""

    def forward(self, model: MultimodalModel, batch: Batch, state: TrainState) -> StepOutput:  # pragma: no cover
        raise NotImplementedError

    def deployed_modalities(self) -> tuple[str, ...] | None:
        """The modalities the trained model takes at deployment (only their encoders are trained);
        None = every modality. Privileged-information methods (OS-MD, KD to an ordinary-modality student)
        return the ordinary ones."""
        return None

    def full_loss_epoch(self) -> int:
        """The first (0-based) epoch at which every term of the method's loss is active; model selection
        never picks an earlier epoch (a model of the warm-up phase is not the method's model)."""
        return 0

    def after_backward(self, model: MultimodalModel, state: TrainState) -> None:
        """Called after the backward pass, before clipping and the optimizer step (gradient modulation)."""

    def on_epoch_end(self, model: MultimodalModel, state: TrainState, ctx: EpochContext) -> None:
        """Called after each training epoch, before validation (mining weak or hard combinations)."""


METHODS: Registry[Method] = Registry("method")


def frozen(module: M) -> M:
    """Freeze a teacher (or a pretrained privileged network) for good: no parameter requires a gradient and
    it stays in eval mode (BatchNorm keeps its statistics, dropout is off) even when the method that owns
    it is switched to training mode. It remains a submodule of its method (moved and checkpointed with it)."""
    module.requires_grad_(False)
    module.eval()
    module.train = lambda mode=True: module  # type: ignore[method-assign,assignment]
    return module


def cross_entropy_step(model: MultimodalModel, batch: Batch, task: Task) -> StepOutput:
    """``L = task.loss(head(neck(fuse(encode(x), present))), y)`` on the batch as given (cross-entropy:
    per sample for classification, per pixel for segmentation)."""
    logits = model(batch)  # [B, C] or [B, K, H, W]
    loss = task.loss(logits, batch.target)
    return StepOutput(loss=loss, terms={"ce": loss.detach()}, output=logits)
