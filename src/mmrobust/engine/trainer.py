"""One training loop for every method, on Lightning Fabric.

Per step: ``step = method(model, batch, state)`` -> ``fabric.backward(step.loss)`` -> gradient sync ->
``method.after_backward`` -> clip -> ``optimizer.step()`` -> log ``step.terms``. After each epoch:
``method.on_epoch_end``, validation on every (selected) subset, an atomic ``last.ckpt`` and, when the
validation score improves, ``best.ckpt``. The test split is never seen here.

Distributed training: Fabric launches the processes and owns the process group, devices and precision.
Gradients are averaged with one flat all-reduce after the backward pass instead of wrapping the model in
``DistributedDataParallel``: methods call the model's stages (encode / fuse / neck / head) separately and
sometimes several times per step, which DDP's reducer (one forward per backward) does not allow. Each
process sees ``batch_size / world_size`` samples of the same global batch as a single process would
(``DistributedSampler`` with the same seed), and per-sample randomness is keyed by dataset index, so one
process and N processes follow the same trajectory (up to float summation order) for models without
BatchNorm. BatchNorm statistics are per process during an epoch and averaged across processes at its end.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from lightning.fabric import Fabric
from torch.utils.data import DataLoader, DistributedSampler

from mmrobust.config import TrainerConfig
from mmrobust.data.base import MultimodalDataset
from mmrobust.data.collate import Collate
from mmrobust.engine.checkpoint import load_checkpoint, save_atomic, write_json_atomic
from mmrobust.engine.optim import build_optimizer, build_schedule
from mmrobust.engine.progress import progress_bar
from mmrobust.evaluation.evaluator import Predictions, evaluate_subsets, predict_subsets
from mmrobust.methods.base import EpochContext, Method, TrainState
from mmrobust.models.multimodal import MultimodalModel
from mmrobust.registry import ConfigError
from mmrobust.subsets import all_subsets, subset_from_names
from mmrobust.tasks import SubsetMetric, Task

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass
class FitResult:
    best_path: Path
    last_path: Path
    best_epoch: int
    best_score: float
    history: list[dict[str, Any]]
    selected_from_epoch: int = 0


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """The torch seed of one epoch on one process: a resumed run re-seeds exactly as an uninterrupted one."""
    return (seed * 1_000_003 + epoch * 9_973 + rank) % (2**63 - 1)


class Trainer:
    """Trains one model with one method; see the module docstring.

    Args:
        cfg: trainer options.
        fabric: a launched Fabric.
        run_dir: where ``checkpoints/`` and ``logs/`` go.
        seed: the run's seed.
        task: what is predicted (collation of targets, validation metrics, the default selection metric).
        restrict_to: train and validate on this one subset only (the per-subset "customized" runner).
        log_fn: receives ``(metrics dict, step)``; defaults to Fabric's loggers.
        provenance: plain values stored in every checkpoint (the resolved config, ...).
    """

    def __init__(
        self,
        cfg: TrainerConfig,
        fabric: Fabric,
        run_dir: Path,
        seed: int,
        *,
        task: Task,
        restrict_to: int | None = None,
        provenance: dict[str, Any] | None = None,
        log_fn: Callable[[dict[str, float], int], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.fabric = fabric
        self.run_dir = Path(run_dir)
        self.seed = seed
        self.task = task
        self.restrict_to = restrict_to
        self.provenance = provenance or {}
        self.log_fn = log_fn or (lambda metrics, step: fabric.log_dict(metrics, step))
        if cfg.batch_size % fabric.world_size:
            raise ConfigError(
                f"trainer.batch_size: {cfg.batch_size} is not divisible by the {fabric.world_size} processes"
            )

    @property
    def ckpt_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    # ----------------------------------------------------------------------------------------- data
    def train_loader(self, dataset: MultimodalDataset) -> tuple[DataLoader, DistributedSampler]:
        sampler: DistributedSampler = DistributedSampler(
            dataset,
            num_replicas=self.fabric.world_size,
            rank=self.fabric.global_rank,
            shuffle=True,
            seed=self.seed,
        )
        per_process = self.cfg.batch_size // self.fabric.world_size
        if len(dataset) < self.cfg.batch_size:
            raise ConfigError(
                f"trainer.batch_size: {self.cfg.batch_size} is larger than the training split ({len(dataset)})"
            )
        loader = DataLoader(
            dataset,
            batch_size=per_process,
            sampler=sampler,
            drop_last=True,
            collate_fn=self.collate(dataset),
            num_workers=self.cfg.num_workers,
        )
        return loader, sampler

    def collate(self, dataset: MultimodalDataset) -> Collate:
        return Collate(dataset.modalities, dataset.shapes, self.task.collate_targets)

    def eval_loader(self, dataset: MultimodalDataset, *, pad: bool = False) -> DataLoader:
        """This process's shard of a split, in order. ``pad=True`` repeats samples so that every process
        holds as many (for gathering per-sample predictions); streaming metrics need disjoint shards."""
        world, rank = self.fabric.world_size, self.fabric.global_rank
        sampler: Any = (
            DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=False)
            if pad
            else range(rank, len(dataset), world)
        )
        return DataLoader(
            dataset,
            batch_size=max(self.cfg.eval_batch_size // self.fabric.world_size, 1),
            sampler=sampler,
            collate_fn=self.collate(dataset),
            num_workers=self.cfg.num_workers,
        )

    def evaluate(
        self, model: MultimodalModel, dataset: MultimodalDataset, subsets: list[int]
    ) -> dict[int, SubsetMetric]:
        """Streaming task metrics of every subset on a whole split (sharded; states summed across processes)."""
        return evaluate_subsets(
            model,
            self.eval_loader(dataset),
            subsets,
            self.task,
            device=self.fabric.device,
            encode_once=self.cfg.encode_once,
            on_unreadable=dataset.record_unreadable,
        )

    def predict(self, model: MultimodalModel, dataset: MultimodalDataset, subsets: list[int]) -> dict[int, Predictions]:
        """Per-sample predictions (compacted by the task) of every subset on a whole split, for method hooks."""
        return predict_subsets(
            model,
            self.eval_loader(dataset, pad=True),
            subsets,
            device=self.fabric.device,
            encode_once=self.cfg.encode_once,
            gather=self.gather,
            compact=self.task.compact,
        )

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        if self.fabric.world_size == 1:
            return x
        return cast(torch.Tensor, self.fabric.all_gather(x)).flatten(0, 1)  # [world, n, ...] -> [world·n, ...]

    def select_metric(self) -> str:
        """The validation metric of model selection: ``trainer.select_metric`` or the task's default."""
        metric = self.cfg.select_metric or self.task.default_select_metric
        valid = self.task.metric_names()
        if metric not in valid:
            raise ConfigError(
                f"trainer.select_metric: {metric!r} is not a metric of this {self.task.name} task; valid: {list(valid)}"
            )
        return metric

    def selection_start(self, method: Method) -> int:
        """The first epoch model selection may pick: ``trainer.select_from_epoch`` or the method's first epoch
        with its full loss, whichever is later (the last epoch when training stops before it)."""
        start = max(self.cfg.select_from_epoch, method.full_loss_epoch())
        if start > self.cfg.max_epochs - 1:
            log.warning(
                "model selection starts at epoch %d (the method's full loss or trainer.select_from_epoch) but "
                "training stops after epoch %d: the last epoch is selected",
                start,
                self.cfg.max_epochs - 1,
            )
            start = self.cfg.max_epochs - 1
        return start

    def selection_subsets(self, modalities: tuple[str, ...]) -> list[int]:
        if self.restrict_to is not None:
            return [self.restrict_to]
        if self.cfg.select_subsets:
            return [subset_from_names(s, modalities) for s in self.cfg.select_subsets]
        return all_subsets(len(modalities))

    # ------------------------------------------------------------------------------------ training
    def fit(
        self,
        model: MultimodalModel,
        method: Method,
        train_set: MultimodalDataset,
        val_set: MultimodalDataset,
        *,
        resume: bool = False,
    ) -> FitResult:
        fabric, cfg = self.fabric, self.cfg
        select_metric = self.select_metric()
        model.to(fabric.device)
        method.to(fabric.device)
        self.broadcast_parameters(model, method)
        params = [p for p in [*model.parameters(), *method.parameters()] if p.requires_grad]
        optimizer = cast(torch.optim.Optimizer, fabric.setup_optimizers(build_optimizer(params, cfg.optimizer)))
        loader, sampler = self.train_loader(train_set)
        steps_per_epoch = len(loader)
        schedule = build_schedule(optimizer, cfg.scheduler, steps_per_epoch, cfg.max_epochs)
        state = TrainState(epoch=0, step=0, max_epochs=cfg.max_epochs, seed=self.seed)
        best_score, best_epoch, history = -math.inf, -1, []
        last_path, best_path = self.ckpt_dir / "last.ckpt", self.ckpt_dir / "best.ckpt"
        start_epoch = 0
        if resume and last_path.is_file():
            ckpt = load_checkpoint(last_path)
            model.load_state_dict(ckpt["model"])
            method.load_state_dict(ckpt["method"])
            optimizer.load_state_dict(ckpt["optimizer"])
            schedule.load_state_dict(ckpt["scheduler"])
            start_epoch, state.step = ckpt["epoch"] + 1, ckpt["step"]
            best_score, best_epoch, history = ckpt["best_score"], ckpt["best_epoch"], list(ckpt["history"])
            if fabric.is_global_zero:
                log.info("resumed from %s after epoch %d", last_path, ckpt["epoch"])
        subsets = self.selection_subsets(model.modalities)
        select_from = self.selection_start(method)
        sign = 1.0 if self.task.METRICS[select_metric].higher_is_better else -1.0
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=False)

        with progress_bar(enabled=cfg.progress and fabric.is_global_zero) as bar:
            task = bar.add_task("train", total=(cfg.max_epochs - start_epoch) * steps_per_epoch)
            for epoch in range(start_epoch, cfg.max_epochs):
                state.epoch = epoch
                torch.manual_seed(epoch_seed(self.seed, epoch, fabric.global_rank))
                sampler.set_epoch(epoch)
                model.train()
                method.train()
                sums: dict[str, float] = {}
                for batch in loader:
                    train_set.record_unreadable(batch.unreadable)
                    batch = batch.to(fabric.device)
                    if self.restrict_to is not None:
                        batch = batch.restrict(self.restrict_to)
                    terms = self.train_step(model, method, batch, state, optimizer, params, last_path)
                    schedule.step()
                    state.step += 1
                    for k, v in terms.items():
                        sums[k] = sums.get(k, 0.0) + v
                    if state.step % cfg.log_every_n_steps == 0:
                        self.log_fn(
                            {f"train/{k}": v for k, v in terms.items()} | {"lr": float(schedule.get_last_lr()[0])},
                            state.step,
                        )
                    bar.update(
                        task,
                        advance=1,
                        description=f"epoch {epoch + 1}/{cfg.max_epochs} loss {terms['loss']:.4f}",
                    )
                self.average_buffers(model, method)
                ctx = EpochContext(
                    validate=lambda s: self.predict(model, val_set, s), log=self.log_fn, run_dir=self.run_dir
                )
                method.on_epoch_end(model, state, ctx)
                val = [m.scores()[select_metric] for m in self.evaluate(model, val_set, subsets).values()]
                score = sum(val) / len(val)
                record = {"epoch": epoch, "step": state.step} | {
                    f"train/{k}": v / steps_per_epoch for k, v in sums.items()
                }
                record |= {f"val/avg_{select_metric}": score}
                history.append(record)
                self.log_fn({k: v for k, v in record.items() if k != "epoch"} | {"epoch": epoch}, state.step)
                eligible = epoch >= select_from
                improved = eligible and (sign * score > sign * best_score if best_epoch >= 0 else True)
                if improved:
                    best_score, best_epoch = score, epoch
                ckpt = {
                    "model": model.state_dict(),
                    "method": method.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": schedule.state_dict(),
                    "epoch": epoch,
                    "step": state.step,
                    "best_score": best_score,
                    "best_epoch": best_epoch,
                    "history": history,
                    "provenance": self.provenance,
                }
                if fabric.is_global_zero:
                    # best before last: a run killed between the two writes resumes from the previous last.ckpt
                    # and redoes this epoch, rewriting the same best.ckpt; last.ckpt never names a best epoch
                    # that best.ckpt does not hold.
                    if improved:
                        save_atomic(
                            {
                                "model": ckpt["model"],
                                "method": ckpt["method"],
                                "epoch": epoch,
                                "score": score,
                                "provenance": self.provenance,
                            },
                            best_path,
                        )
                    save_atomic(ckpt, last_path)
                    write_json_atomic(history, self.run_dir / "history.json")
                fabric.barrier()
        return FitResult(best_path, last_path, best_epoch, best_score, history, select_from)

    def train_step(
        self,
        model: MultimodalModel,
        method: Method,
        batch: Any,
        state: TrainState,
        optimizer: torch.optim.Optimizer,
        params: list[torch.nn.Parameter],
        last_path: Path,
    ) -> dict[str, float]:
        fabric = self.fabric
        with fabric.autocast():
            step = method(model, batch, state)
        finite = torch.isfinite(step.loss.detach()).float()
        if fabric.world_size > 1:
            finite = cast(torch.Tensor, fabric.all_reduce(finite, reduce_op="min"))
        if not bool(finite):
            terms = {k: float(v) for k, v in step.terms.items()}
            kept = last_path if last_path.is_file() else "none yet"
            raise NonFiniteLossError(
                f"non-finite loss {float(step.loss.detach())} at epoch {state.epoch}, step {state.step}; "
                f"terms: {terms}; last good checkpoint kept: {kept}"
            )
        fabric.backward(step.loss)
        self.sync_gradients(params)
        method.after_backward(model, state)
        if self.cfg.grad_clip > 0:
            fabric.clip_gradients(model, optimizer, max_norm=self.cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return {"loss": float(step.loss.detach())} | {k: float(v) for k, v in step.terms.items()}

    # ---------------------------------------------------------------------------------- collectives
    def sync_gradients(self, params: list[torch.nn.Parameter]) -> None:
        """Average gradients over processes with one flat all-reduce (absent gradients count as zero)."""
        if self.fabric.world_size == 1:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        flat = cast(torch.Tensor, self.fabric.all_reduce(flat, reduce_op="mean"))
        offset = 0
        for p, g in zip(params, grads):
            n = g.numel()
            p.grad = flat[offset : offset + n].view_as(p).clone()
            offset += n

    def broadcast_parameters(self, *modules: torch.nn.Module) -> None:
        """Start every process from rank 0's parameters and buffers."""
        if self.fabric.world_size == 1:
            return
        for module in modules:
            for t in [*module.parameters(), *module.buffers()]:
                t.data.copy_(cast(torch.Tensor, self.fabric.broadcast(t.data, src=0)))

    def average_buffers(self, *modules: torch.nn.Module) -> None:
        """Average floating-point buffers (BatchNorm running statistics) over processes."""
        if self.fabric.world_size == 1:
            return
        for module in modules:
            for b in module.buffers():
                if b.is_floating_point():
                    b.copy_(cast(torch.Tensor, self.fabric.all_reduce(b, reduce_op="mean")))
