"""``mmanet``: MMANet (Wei et al., CVPR 2023) — deployment network + teacher + regularization network.

- Deployment network: the run's model, trained with per-sample modality dropout (``modality_dropout``).
- Teacher: a model of the same architecture trained by ``full`` in the run's ``teacher/`` sub-folder and
  selected on the validation score of the full modality set (or loaded from ``method.teacher=<checkpoint>``);
  frozen, always in eval mode, fed the complete available modalities of each sample. Its provenance goes
  to ``teacher.json`` in the run.
- MAD (``losses.mad``): the deployment network's fused representation (``neck(fuse(...))``, for the
  CASIA-SURF model the last feature map before pooling) distilled from the teacher's with
  teacher-entropy weights (``weighting: uniform`` gives the SP ablation).
- MAR: at the end of the mining epochs ``[mining_start, begin_epoch)`` the validation predictions for
  M and every M∖{m} are compared (``methods.mar_mining``); the strong modality m* has the largest
  accumulated shift and the weak set W is every non-empty subset of M∖{m*}. The evidence is logged and
  saved to ``mar_mining.json``. From ``begin_epoch``, a regularization network owned by the method (never
  exported) predicts from the dropped encoder features and ``L_MAR = (1/B) Σ_b 1[S_b ∈ W] CE_b``.
- ``L = CE`` before ``begin_epoch``, then ``L = CE + α L_MAD + β L_MAR``; α = 0 or β = 0 turns a term
  (and its teacher or regularization network) off.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmrobust.atomic_io import write_json_atomic
from mmrobust.batch import Batch
from mmrobust.distributed import all_gather_with_grad, gather_concat, is_main_process
from mmrobust.engine.checkpoint import load_checkpoint, load_model_state
from mmrobust.losses.mad import WEIGHTINGS, MarginAwareDistillation
from mmrobust.methods.base import METHODS, EpochContext, Method, MethodContext, StepOutput, TrainState, frozen
from mmrobust.methods.full import Full
from mmrobust.methods.mar_mining import SIGNALS, WeakCombinationMiner
from mmrobust.methods.modality_dropout import ModalityDropout
from mmrobust.models.multimodal import MultimodalModel
from mmrobust.registry import ConfigError, Registry
from mmrobust.subsets import full_subset

log = logging.getLogger(__name__)
REGULARIZERS: Registry[nn.Module] = Registry("regularization network")


@REGULARIZERS.register("fusion")
class FusionRegularizer(nn.Module):
    """A fresh copy of the model's fusion, neck and head on the dropped encoder features (reference code:
    for CASIA-SURF a new layer3 + layer4 + classifier on the concatenated maps). MAR's gradient reaches the
    encoders, not the deployment network's fusion. Shape: features -> logits ``[B, C]``."""

    def __init__(self, fresh: MultimodalModel) -> None:
        super().__init__()
        if getattr(fresh, "fusion_inside_encoders", False):
            raise ConfigError(
                f"method.regularizer=fusion copies the fusion that follows the encoders, but {type(fresh).__name__} "
                "fuses inside its encoders; use method.regularizer=head"
            )
        fresh.encoders = nn.ModuleDict()  # only the tail (fuse -> neck -> head) is used
        self.net = fresh

    def forward(self, features: dict[str, torch.Tensor], present: torch.Tensor, fused: torch.Tensor) -> torch.Tensor:
        return self.net.head(self.net.neck(self.net.fuse(features, present)))


@REGULARIZERS.register("head")
class HeadRegularizer(nn.Module):
    """A fresh copy of the model's head on the deployment network's fused representation (cheaper; MAR's
    gradient also reaches the deployment fusion). Shape: fused ``[B, D]`` or ``[B, D, H, W]`` -> ``[B, C]``."""

    def __init__(self, fresh: MultimodalModel) -> None:
        super().__init__()
        self.head = fresh.head_module

    def forward(self, features: dict[str, torch.Tensor], present: torch.Tensor, fused: torch.Tensor) -> torch.Tensor:
        return self.head(fused)


@METHODS.register("mmanet")
class MMANet(Method):
    """MMANet; see the module docstring.

    Args:
        context: the run.
        alpha: weight of MAD (reference: 30 CASIA-SURF/CeFA, 4 NYUv2, 10 Cityscapes); 0 = no MAD, no teacher.
        beta: weight of MAR (reference: 0.5 CASIA-SURF/CeFA, 0.2 NYUv2, 0.1 Cityscapes); 0 = no MAR.
        begin_epoch: first (0-based) epoch with MAD and MAR; CE only before.
        mining_start: first mining epoch; the mining epochs are ``[mining_start, begin_epoch)``.
        signal: mining signal, ``kl`` | ``label_hist`` | ``accuracy`` (see ``mar_mining``).
        weighting: MAD sample weights, ``entropy`` (MAD) | ``uniform`` (SP).
        teacher: checkpoint of a trained ``full`` model to use as the teacher; None = train one first.
        teacher_epochs: epochs of that teacher training; None = the run's ``trainer.max_epochs``.
        teacher_checkpoint: which weights of that teacher training: ``last`` (the converged model) or ``best``
            (the first epoch with the best full-set validation score, which saturates early on easy data).
        regularizer: regularization network, ``fusion`` (reference) | ``head``.
        strong: the strong modality, skipping the mining; None = mine it.
        distribution: the modality dropout distribution (see ``modality_dropout``).
    """

    def __init__(
        self,
        context: MethodContext,
        alpha: float = 30.0,
        beta: float = 0.5,
        begin_epoch: int = 5,
        mining_start: int = 2,
        signal: str = "kl",
        weighting: str = "entropy",
        teacher: str | None = None,
        teacher_epochs: int | None = None,
        teacher_checkpoint: str = "last",
        regularizer: str = "fusion",
        strong: str | None = None,
        distribution: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        check_config(
            context, alpha, beta, begin_epoch, mining_start, signal, weighting, teacher, teacher_checkpoint, strong
        )
        self.context = context
        self.task = context.task
        self.alpha, self.beta, self.begin_epoch = alpha, beta, begin_epoch
        self.teacher_path, self.teacher_epochs, self.teacher_checkpoint = teacher, teacher_epochs, teacher_checkpoint
        self.dropout = ModalityDropout(context, distribution)
        self.distill = MarginAwareDistillation(weighting) if alpha > 0 else None  # type: ignore[arg-type]
        self.regularizer_name = regularizer
        REGULARIZERS.get(regularizer)  # an unknown name fails now, not after the teacher is trained
        self.teacher: MultimodalModel | None = None
        self.regularizer: nn.Module | None = None
        self.miner: WeakCombinationMiner | None = None
        if beta > 0:
            self.miner = WeakCombinationMiner(context.modalities, range(mining_start, begin_epoch), signal)
            if strong is not None:
                self.miner.set_strong(context.modalities.index(strong), source="config")
        self._warned = False

    # ---------------------------------------------------------------------- teacher, regularization network
    def prepare(self, model: MultimodalModel) -> None:
        """Train (or load) and freeze the teacher, then build the regularization network.

        The teacher is built and trained under a forked RNG: it consumes none of the run's randomness, so the
        ablations of one seed (MAD, SP, MAD+MAR, MAR) share the same teacher and regularization network init.
        """
        if self.distill is not None:
            with torch.random.fork_rng(devices=[]):
                self.teacher = self.load_teacher()
        if self.miner is not None:
            self.regularizer = REGULARIZERS.build(self.regularizer_name, {}, fresh=self.context.build_model())
            if self.miner.decided:
                self.save_evidence()

    def load_teacher(self) -> MultimodalModel:
        """The frozen teacher in eval mode, trained in ``teacher/`` or loaded; writes ``teacher.json``."""
        teacher = self.context.build_model()
        if self.teacher_path is None:
            complete = full_subset(len(self.context.modalities))  # selected on the full set, not every subset
            best = self.context.fit(
                "teacher", teacher, Full(self.context), max_epochs=self.teacher_epochs, restrict_to=complete
            )
            weights = self.teacher_checkpoint  # best.ckpt and last.ckpt lie side by side in the trainer's folder
            path, source = best.with_name(f"{weights}.ckpt"), "trained"
        else:
            path, source, weights = Path(self.teacher_path), "checkpoint", None
        ckpt = load_checkpoint(path)
        load_model_state(teacher, ckpt["model"], path)
        history = ckpt.get("history") or [{}]  # last.ckpt: the score of its own epoch is in its history
        # the selection metric (the task's default unless trainer.select_metric) is in the history's key
        metric = next((k.removeprefix("val/avg_") for k in history[-1] if k.startswith("val/avg_")), None)
        provenance = {
            "source": source,
            "weights": weights,
            "checkpoint": str(Path(path).resolve()),
            "epoch": ckpt.get("epoch"),
            "val_score": ckpt.get("score", history[-1].get(f"val/avg_{metric}")),
            "val_metric": metric,
        }
        if is_main_process():
            write_json_atomic(provenance, self.context.run_dir / "teacher.json")
        log.info("MMANet teacher (%s): %s", source, provenance)
        return frozen(teacher)

    def full_loss_epoch(self) -> int:
        """MAD and MAR start at ``begin_epoch``."""
        return self.begin_epoch if (self.distill is not None or self.miner is not None) else 0

    # ------------------------------------------------------------------------------------ training
    def forward(self, model: MultimodalModel, batch: Batch, state: TrainState) -> StepOutput:
        dropped = self.dropout.drop(batch, state)
        features = model.encode(dropped)
        fused = model.neck(model.fuse(features, dropped.present))  # [B, D] or [B, C, H, W]
        logits = model.head(fused)  # [B, num_classes]
        ce = self.task.loss(logits, batch.target)
        loss, terms = ce, {"ce": ce.detach()}
        active = state.epoch >= self.begin_epoch
        if self.distill is not None:
            mad = self.mad(fused, batch) if active else ce.new_zeros(())
            loss, terms["mad"] = loss + self.alpha * mad, mad.detach()
        if self.miner is not None:
            mar = self.mar(features, dropped, fused) if active else ce.new_zeros(())
            loss, terms["mar"] = loss + self.beta * mar, mar.detach()
        return StepOutput(loss=loss, terms=terms, output=logits)

    def mad(self, fused: torch.Tensor, batch: Batch) -> torch.Tensor:
        """MAD between the student's fused representation and the teacher's on the complete batch.

        MAD compares every sample with every other (relation matrices), so in a distributed run it is computed
        on the global batch: the features of every process are gathered (the student's with gradients), and N
        processes give the loss and, after the trainer's gradient averaging, the gradient of one process.
        """
        if self.teacher is None or self.distill is None:
            raise RuntimeError("MMANet.prepare(model) must run before training with alpha > 0 (no teacher yet)")
        with torch.inference_mode():  # frozen teacher: no autograd bookkeeping, no version counters
            full = teacher_inputs(batch)
            t_fused = self.teacher.neck(self.teacher.fuse(self.teacher.encode(full), full.present))
            t_logits = self.teacher.head(t_fused)
        t_fused, t_logits = t_fused.clone(), t_logits.clone()  # ordinary tensors: the loss may save them
        return self.distill(all_gather_with_grad(fused), gather_concat(t_fused), gather_concat(t_logits))

    def mar(self, features: dict[str, torch.Tensor], dropped: Batch, fused: torch.Tensor) -> torch.Tensor:
        """``(1/B) Σ_b 1[S_b ∈ W] CE(regularizer(x_b), y_b)``, the regularization network run on the weak rows.

        Only the samples whose subset is weak (``n_W`` of the ``B``) enter the loss, so the regularization
        network runs on those rows only and ``L_MAR = (n_W / B) · mean_{b ∈ W} CE_b`` (the same value as the
        masked mean over the batch). In train mode its BatchNorm layers (the ``fusion`` regularizer's trunk)
        therefore normalize with the statistics of the weak rows, not of the whole batch. With fewer than 2
        weak rows the network runs on the whole batch with the mask, so it stays in the graph (and a
        BatchNorm1d never sees a single sample).
        """
        if self.miner is None or self.regularizer is None:
            raise RuntimeError("MMANet.prepare(model) must run before training with beta > 0 (no regularizer yet)")
        if not self.miner.decided and not self._warned:
            log.warning("MAR is active but no weak set was mined (no mining epoch ran): L_MAR = 0")
            self._warned = True
        weak = self.miner.is_weak(dropped.present)  # [B] bool
        size, n_weak = len(weak), int(weak.sum())
        if n_weak < 2 or n_weak == size:
            reg_logits = self.regularizer(features, dropped.present, fused)  # [B, num_classes]
            return self.task.loss(reg_logits, dropped.target, weak)
        rows = weak.nonzero().flatten()  # [n_W]
        reg_logits = self.regularizer(
            {m: f.index_select(0, rows.to(f.device)) for m, f in features.items()},
            dropped.present.index_select(0, rows.to(dropped.present.device)),
            fused.index_select(0, rows.to(fused.device)),
        )  # [n_W, num_classes]
        target = dropped.target.index_select(0, rows.to(dropped.target.device))
        every = torch.ones(n_weak, dtype=torch.bool, device=target.device)  # per-sample mean, as with the mask
        return self.task.loss(reg_logits, target, every) * (n_weak / size)

    # -------------------------------------------------------------------------------------- mining
    def on_epoch_end(self, model: MultimodalModel, state: TrainState, ctx: EpochContext) -> None:
        """At a mining epoch: validate M and every M∖{m}, accumulate the shifts, decide after the last."""
        miner = self.miner
        if miner is None or miner.source == "config" or state.epoch not in miner.mining_epochs:
            return
        shifts = miner.observe(state.epoch, ctx.validate(miner.candidates()))
        ctx.log({f"mar/shift_{m}": v for m, v in zip(miner.modalities, shifts)}, state.step)
        if state.epoch == miner.mining_epochs[-1]:
            strong = miner.decide()
            ctx.log({"mar/strong": float(strong)}, state.step)
        evidence = self.save_evidence()
        log.info("MAR mining after epoch %d: %s", state.epoch, evidence["candidates"])
        if miner.decided:
            log.info(
                "MAR: strong modality %s (largest accumulated %s shift when dropped); weak combinations: %s",
                evidence["strong"],
                miner.signal,
                ", ".join(evidence["weak"]),
            )

    def save_evidence(self) -> dict[str, Any]:
        """Write the mining evidence (``mar_mining.json`` in the run) and return it."""
        assert self.miner is not None
        evidence = self.miner.evidence()
        if is_main_process():
            write_json_atomic(evidence, self.context.run_dir / "mar_mining.json")
        return evidence


def teacher_inputs(batch: Batch) -> Batch:
    """The batch for the teacher's inference forward: on the CPU, image inputs ``[B, C, H, W]`` in channels-last
    layout (same values). Measured on the 2-core CPU of ``docs/benchmarks.md`` (SURF width 64, batch 32, one
    thread): the teacher's forward takes 0.70× the CPU time (oneDNN's NHWC convolutions and max-pool are faster
    in inference); in a training step the same layout gains only about 3 %, so the student keeps its layout.
    """
    inputs = {
        m: x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 and x.device.type == "cpu" else x
        for m, x in batch.inputs.items()
    }
    return replace(batch, inputs=inputs)


def check_config(
    context: MethodContext,
    alpha: float,
    beta: float,
    begin_epoch: int,
    mining_start: int,
    signal: str,
    weighting: str,
    teacher: str | None,
    teacher_checkpoint: str,
    strong: str | None,
) -> None:
    """ConfigError with the key and the reason for an inconsistent MMANet config."""
    if alpha < 0 or beta < 0:
        raise ConfigError(f"method.alpha/beta: weights must be >= 0, got alpha={alpha}, beta={beta}")
    if begin_epoch < 0:
        raise ConfigError(f"method.begin_epoch: must be >= 0, got {begin_epoch}")
    if signal not in SIGNALS:
        raise ConfigError(f"method.signal: unknown mining signal {signal!r}; valid signals: {', '.join(SIGNALS)}")
    if weighting not in WEIGHTINGS:
        raise ConfigError(f"method.weighting: unknown weighting {weighting!r}; valid: {', '.join(WEIGHTINGS)}")
    if teacher_checkpoint not in ("last", "best"):
        raise ConfigError(f"method.teacher_checkpoint: expected 'last' or 'best', got {teacher_checkpoint!r}")
    if teacher is not None and alpha == 0:
        raise ConfigError("method.teacher: a teacher is only used by MAD, but alpha = 0")
    if beta == 0:
        return
    if len(context.modalities) < 2:
        raise ConfigError(f"method.beta: MAR needs at least 2 modalities, got {list(context.modalities)}")
    if strong is not None and strong not in context.modalities:
        raise ConfigError(f"method.strong: {strong!r} is not a modality; valid: {list(context.modalities)}")
    if strong is None and not 0 <= mining_start < begin_epoch:
        raise ConfigError(
            f"method.mining_start: the mining epochs [mining_start, begin_epoch) = [{mining_start}, {begin_epoch}) "
            "are empty; lower mining_start, raise begin_epoch, or set method.strong"
        )
