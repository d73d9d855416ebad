"""One training loop for every method, on Lightning Fabric.

Per step: ``step = method(model, batch, state)`` -> ``fabric.backward(step.loss)`` -> gradient sync ->
``method.after_backward`` -> clip -> ``optimizer.step()`` -> log ``step.terms``. After each epoch:
``method.on_epoch_end``, validation on every (selected) subset, when the validation score improves an atomic
``best.ckpt``, then ``last.ckpt`` and ``history.json``. The test split is never seen here. ``fit`` is split
into named steps: ``setup`` -> ``restore`` (resume) -> per epoch ``train_epoch`` -> ``validate_and_select`` ->
``save_checkpoints``.

Distributed training: Fabric launches the processes and owns the process group, devices and precision; the
collectives are those of ``mmrobust.distributed``. Gradients are averaged with one flat all-reduce after the
backward pass instead of wrapping the model in ``DistributedDataParallel``: methods call the model's stages
(encode / fuse / neck / head) separately and sometimes several times per step, which DDP's reducer (one
forward per backward) does not allow. Each process sees ``batch_size / world_size`` samples of the same global
batch as a single process would (``DistributedSampler`` with the same seed), and per-sample randomness is
keyed by dataset index, so one process and N processes follow the same trajectory (up to float summation
order) for models without BatchNorm. BatchNorm statistics are per process during an epoch and averaged across
processes at its end.

Precision (``trainer.precision``) is applied without wrapping the model either (``engine.precision``): ``setup``
converts the model and the method for ``*-true``, batches are cast to the model's dtype, and every forward
(training step, validation, ``evaluate``, ``predict``) runs inside ``fabric.autocast()``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from lightning.fabric import Fabric
from rich.progress import Progress
from torch.utils.data import DataLoader, DistributedSampler

from mmrobust.config import TrainerConfig, resolve_num_workers
from mmrobust.corruption import augment_batch
from mmrobust.data.base import MultimodalDataset
from mmrobust.data.collate import Collate
from mmrobust.distributed import all_reduce, average_buffers, broadcast_parameters, gather_concat, sync_gradients
from mmrobust.engine.checkpoint import load_checkpoint, load_model_state, save_atomic, write_json_atomic
from mmrobust.engine.early_stopping import STOP_KEY, early_stop_epoch
from mmrobust.engine.faults import fault_point
from mmrobust.engine.optim import build_optimizer, build_schedule
from mmrobust.engine.precision import cast_to_model, convert_modules
from mmrobust.engine.progress import progress_bar, tracked
from mmrobust.engine.threads import ThreadChoice, apply_threads, configure_threads
from mmrobust.engine.validation import EpochValidation, epoch_subsets
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
    early_stopped_epoch: int | None = None  # trainer.early_stopping stopped after this epoch


@dataclass
class FitRun:
    """What ``Trainer.fit`` carries from one step to the next (optimizer, data, selection state)."""

    optimizer: torch.optim.Optimizer
    schedule: Any
    loader: DataLoader
    sampler: DistributedSampler
    params: list[torch.nn.Parameter]
    state: TrainState
    select_metric: str
    sign: float  # +1 when a higher selection metric is better, -1 when lower
    subsets: list[int]
    select_from: int
    last_path: Path
    best_path: Path
    start_epoch: int = 0
    best_score: float = -math.inf
    best_epoch: int = -1
    history: list[dict[str, Any]] = field(default_factory=list)
    resumed_from: int | None = None

    @property
    def steps_per_epoch(self) -> int:
        return len(self.loader)


def mean_scores(scores: list[dict[str, float]]) -> dict[str, float]:
    """Each metric averaged over subsets (the metrics every subset reports)."""
    return {k: sum(s[k] for s in scores) / len(scores) for k in scores[0] if all(k in s for s in scores)}


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
        on_restore: receives the global step training continues from (0 for a fresh start), before the first
            epoch; the run's logs drop their rows of later steps there.
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
        on_restore: Callable[[int], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.fabric = fabric
        self.run_dir = Path(run_dir)
        self.seed = seed
        self.task = task
        self.restrict_to = restrict_to
        self.provenance = provenance or {}
        self.log_fn = log_fn or (lambda metrics, step: fabric.log_dict(metrics, step))
        self.on_restore = on_restore
        self.bar: Progress | None = None  # the live progress bar (``progress``)
        self.eval_loaders: dict[tuple[int, bool], tuple[MultimodalDataset, DataLoader]] = {}  # persistent ones
        self.threads: ThreadChoice | None = None  # trainer.threads, applied once (``set_threads``)
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
            **self.loader_workers(dataset, persistent=True),
        )
        return loader, sampler

    def loader_workers(self, dataset: MultimodalDataset, *, persistent: bool = False) -> dict[str, Any]:
        """DataLoader worker options from ``trainer.num_workers`` (``config.resolve_num_workers``). Workers persist
        (``persistent``: the train loader, iterated every epoch, and the kept eval loaders) only for a
        ``worker_invariant`` dataset: a persistent worker's generator is not reseeded per epoch, which would change
        augmenting datasets' draws (and break resuming)."""
        processes = max(self.fabric.world_size // max(self.cfg.num_nodes, 1), 1)  # on this node
        workers = resolve_num_workers(self.cfg.num_workers, dataset, processes)
        keep = persistent and workers > 0 and bool(getattr(dataset, "worker_invariant", False))
        return {"num_workers": workers, "persistent_workers": keep}

    def set_threads(self, model: MultimodalModel, dataset: MultimodalDataset) -> None:
        """Apply ``trainer.threads`` once, before the first forward (``engine.threads``: from the model's FLOPs
        per step, the free cores, the processes and DataLoader workers of this node)."""
        if self.threads is not None:
            return
        processes = max(self.fabric.world_size // max(self.cfg.num_nodes, 1), 1)  # on this node

        def example() -> Any:  # two samples, for counting the model's FLOPs
            samples = [dataset[i] for i in range(min(2, len(dataset)))]
            return cast_to_model(self.collate(dataset)(samples).to(self.fabric.device), model)

        self.threads = configure_threads(
            self.cfg.threads,
            model,
            example,
            batch_size=self.cfg.batch_size // self.fabric.world_size,
            processes=processes,
            workers=resolve_num_workers(self.cfg.num_workers, dataset, processes),
        )

    def keep_threads_of(self, ckpt: dict[str, Any], path: Path) -> None:
        """Resume on the thread count the run was trained with (``last.ckpt`` records it) when ``trainer.threads``
        is ``auto`` and decided a number: ``auto`` looks at the free cores, and a different count can change the
        last bits of a reduction, so a resumed run would drift from the uninterrupted one."""
        recorded = ckpt.get("threads")
        choice = self.threads
        if not recorded or str(self.cfg.threads) != "auto" or choice is None or choice.threads is None:
            return
        if recorded != choice.threads:
            self.threads = ThreadChoice(recorded, f"auto: the {recorded} thread(s) {path} was trained with")
            apply_threads(self.threads)

    def collate(self, dataset: MultimodalDataset) -> Collate:
        return Collate(dataset.modalities, dataset.shapes, self.task.collate_targets)

    def eval_loader(self, dataset: MultimodalDataset, *, pad: bool = False) -> DataLoader:
        """This process's shard of a split, in order. ``pad=True`` repeats samples so that every process
        holds as many (for gathering per-sample predictions); streaming metrics need disjoint shards. With persistent
        workers (``loader_workers``) the loader is kept and reused, so its workers (and their decoded-input caches)
        live across validations instead of starting cold every epoch."""
        known = self.eval_loaders.get((id(dataset), pad))
        if known is not None and known[0] is dataset:
            return known[1]
        world, rank = self.fabric.world_size, self.fabric.global_rank
        sampler: Any = (
            DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=False)
            if pad
            else range(rank, len(dataset), world)
        )
        loader = DataLoader(
            dataset,
            batch_size=max(self.cfg.eval_batch_size // self.fabric.world_size, 1),
            sampler=sampler,
            collate_fn=self.collate(dataset),
            **self.loader_workers(dataset, persistent=True),
        )
        if loader.persistent_workers:
            self.eval_loaders[(id(dataset), pad)] = (dataset, loader)
        return loader

    @contextmanager
    def progress(self) -> Iterator[Progress]:
        """The live progress bar: ``fit``'s while it trains, else a new one for this block; disabled when
        ``trainer.progress=false`` and on every process but rank 0."""
        if self.bar is not None:
            yield self.bar
            return
        with progress_bar(enabled=self.cfg.progress and self.fabric.is_global_zero) as bar:
            self.bar = bar
            try:
                yield bar
            finally:
                self.bar = None

    def evaluate(
        self, model: MultimodalModel, dataset: MultimodalDataset, subsets: list[int], *, label: str = "eval"
    ) -> dict[int, SubsetMetric]:
        """Streaming task metrics of every subset on a whole split (sharded; states summed across processes), the
        forwards in the run's precision; the progress bar's task ``label`` advances per batch."""
        self.set_threads(model, dataset)
        with self.progress() as bar, self.fabric.autocast():
            return evaluate_subsets(
                model,
                tracked(self.eval_loader(dataset), bar, label),
                subsets,
                self.task,
                device=self.fabric.device,
                encode_once=self.cfg.encode_once,
                on_unreadable=dataset.record_unreadable,
            )

    def predict(self, model: MultimodalModel, dataset: MultimodalDataset, subsets: list[int]) -> dict[int, Predictions]:
        """Per-sample predictions (compacted by the task) of every subset on a whole split, for method hooks; the
        forwards in the run's precision."""
        self.set_threads(model, dataset)
        with self.progress() as bar, self.fabric.autocast():
            return predict_subsets(
                model,
                tracked(self.eval_loader(dataset, pad=True), bar, "predict"),
                subsets,
                device=self.fabric.device,
                encode_once=self.cfg.encode_once,
                gather=gather_concat,
                compact=self.task.compact,
            )

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """Every process's ``x`` concatenated in rank order. Shape: ``[n, ...]`` -> ``[world·n, ...]``."""
        return gather_concat(x)

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
        """Train for ``trainer.max_epochs`` epochs (continuing ``last.ckpt`` when ``resume``); see the module
        docstring. Reads top-down: setup -> restore -> per epoch (train_epoch -> validate_and_select ->
        save_checkpoints)."""
        run = self.setup(model, method, train_set)
        if resume:
            self.restore(run, model, method)
        if self.on_restore is not None:
            self.on_restore(run.state.step)  # logs: drop rows of steps that will be trained again
        with self.progress() as bar:  # a train task advanced per step, a val task per validation batch
            task = bar.add_task("train", total=max(self.cfg.max_epochs - run.start_epoch, 0) * run.steps_per_epoch)
            for epoch in range(run.start_epoch, self.cfg.max_epochs):
                if self.early_stop(run) is not None:
                    break  # trainer.early_stopping (also a resumed run that had stopped: it trains no further)
                sums = self.train_epoch(
                    run, model, method, train_set, epoch, lambda text: bar.update(task, advance=1, description=text)
                )
                improved, score = self.validate_and_select(run, model, method, val_set, epoch, sums)
                self.early_stop(run)  # marks the stopping epoch's record before it is saved
                self.save_checkpoints(run, model, method, epoch, improved, score)
        if resume:
            self.check_best(run)
        return FitResult(
            run.best_path, run.last_path, run.best_epoch, run.best_score, run.history, run.select_from,
            self.early_stop(run),
        )  # fmt: skip

    def early_stop(self, run: FitRun) -> int | None:
        """The epoch after which ``trainer.early_stopping`` stops training, derived from the history
        (``engine.early_stopping``), or None; the first time, marks that epoch's record and logs it."""
        stop = self.cfg.early_stopping
        epoch = early_stop_epoch(
            run.history, f"val/avg_{run.select_metric}", sign=run.sign, select_from=run.select_from,
            patience=stop.patience, min_delta=stop.min_delta,
        )  # fmt: skip
        last = run.history[-1] if run.history else {}
        if epoch is not None and last.get("epoch") == epoch and STOP_KEY not in last:
            last[STOP_KEY] = True
            self.log_fn({"early_stop_epoch": float(epoch)}, run.state.step)
            if self.fabric.is_global_zero:
                log.info(
                    "early stopping after epoch %d: val/avg_%s did not improve by more than %g for %d epochs",
                    epoch, run.select_metric, stop.min_delta, stop.patience,
                )  # fmt: skip
        return epoch

    def setup(self, model: MultimodalModel, method: Method, train_set: MultimodalDataset) -> FitRun:
        """Devices, precision (``*-true`` converts the model and the method), the same starting weights on every
        process, optimizer, loader, schedule, selection rule."""
        fabric, cfg = self.fabric, self.cfg
        select_metric = self.select_metric()
        model.to(fabric.device)
        method.to(fabric.device)
        convert_modules(fabric, model, method)
        broadcast_parameters(model, method)
        self.set_threads(model, train_set)
        params = [p for p in [*model.parameters(), *method.parameters()] if p.requires_grad]
        optimizer = cast(torch.optim.Optimizer, fabric.setup_optimizers(build_optimizer(params, cfg.optimizer)))
        loader, sampler = self.train_loader(train_set)
        schedule = build_schedule(optimizer, cfg.scheduler, len(loader), cfg.max_epochs)
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=False)
        return FitRun(
            optimizer=optimizer,
            schedule=schedule,
            loader=loader,
            sampler=sampler,
            params=params,
            state=TrainState(epoch=0, step=0, max_epochs=cfg.max_epochs, seed=self.seed),
            select_metric=select_metric,
            sign=1.0 if self.task.METRICS[select_metric].higher_is_better else -1.0,
            subsets=self.selection_subsets(model.modalities),
            select_from=self.selection_start(method),
            last_path=self.ckpt_dir / "last.ckpt",
            best_path=self.ckpt_dir / "best.ckpt",
        )

    def restore(self, run: FitRun, model: MultimodalModel, method: Method) -> None:
        """Continue from ``last.ckpt``: weights, method state, optimizer, schedule, step, selection and history.

        A folder without ``last.ckpt`` (a sub-model that had not started) starts at epoch 0. ``history.json``
        is rewritten from the checkpoint (a kill between ``last.ckpt`` and ``history.json`` left it behind).
        """
        if not run.last_path.is_file():
            if self.fabric.is_global_zero:
                log.info("resume: no %s yet; training %s from epoch 0", run.last_path, self.run_dir)
            return
        ckpt = load_checkpoint(run.last_path)
        load_model_state(model, ckpt["model"], run.last_path)
        method.load_state_dict(ckpt["method"])
        run.optimizer.load_state_dict(ckpt["optimizer"])
        run.schedule.load_state_dict(ckpt["scheduler"])
        run.start_epoch, run.state.step = ckpt["epoch"] + 1, ckpt["step"]
        run.best_score, run.best_epoch, run.history = ckpt["best_score"], ckpt["best_epoch"], list(ckpt["history"])
        run.resumed_from = ckpt["epoch"]
        self.keep_threads_of(ckpt, run.last_path)
        if self.fabric.is_global_zero:
            history = run.history
            self._write(
                "history.json", ckpt["epoch"], lambda: write_json_atomic(history, self.run_dir / "history.json")
            )
            log.info("resumed from %s after epoch %d", run.last_path, ckpt["epoch"])

    def train_epoch(
        self,
        run: FitRun,
        model: MultimodalModel,
        method: Method,
        train_set: MultimodalDataset,
        epoch: int,
        advance: Callable[[str], None],
    ) -> dict[str, float]:
        """One pass over the training split; returns the sums of the step terms. BatchNorm statistics are
        averaged over processes at the end."""
        fabric, cfg, state = self.fabric, self.cfg, run.state
        state.epoch = epoch
        torch.manual_seed(epoch_seed(self.seed, epoch, fabric.global_rank))
        run.sampler.set_epoch(epoch)
        model.train()
        method.train()
        sums: dict[str, float] = {}
        for batch in run.loader:
            train_set.record_unreadable(batch.unreadable)
            batch = batch.to(fabric.device)
            if self.restrict_to is not None:
                batch = batch.restrict(self.restrict_to)
            batch = augment_batch(batch, cfg.corrupt, self.seed, epoch)  # trainer.corrupt (off by default)
            batch = cast_to_model(batch, model)  # *-true: the inputs in the model's dtype (a no-op otherwise)
            terms = self.train_step(model, method, batch, state, run.optimizer, run.params, run.last_path)
            run.schedule.step()
            state.step += 1
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v
            if state.step % cfg.log_every_n_steps == 0:
                lr = float(run.schedule.get_last_lr()[0])
                self.log_fn({f"train_step/{k}": v for k, v in terms.items()} | {"lr": lr}, state.step)
            advance(f"epoch {epoch + 1}/{cfg.max_epochs} loss {terms['loss']:.4f}")
        average_buffers(model, method)
        return sums

    def validate_and_select(
        self,
        run: FitRun,
        model: MultimodalModel,
        method: Method,
        val_set: MultimodalDataset,
        epoch: int,
        sums: dict[str, float],
    ) -> tuple[bool, float]:
        """The method's epoch-end hook, the validation score (the selection metric averaged over the selection
        subsets), the history record, and whether this epoch is the new best (only from ``select_from`` on)."""
        state = run.state
        # engine.validation: the selection subsets every epoch (every subset for the curves when due), one pass
        # shared with the hook's ctx.validate
        every = [self.restrict_to] if self.restrict_to is not None else all_subsets(len(model.modalities))
        subsets, curves = epoch_subsets(run.subsets, every, epoch, self.cfg.max_epochs, self.cfg.val_all_subsets_every)
        validation = EpochValidation(self, model, val_set, subsets)
        ctx = EpochContext(validate=validation.predict, log=self.log_fn, run_dir=self.run_dir)
        method.on_epoch_end(model, state, ctx)
        metrics = validation.metrics()
        means = mean_scores([metrics[s].scores() for s in run.subsets])
        score = means[run.select_metric]
        train = {k: v / run.steps_per_epoch for k, v in sums.items()}
        record = {"epoch": epoch, "step": state.step} | {f"train/{k}": v for k, v in train.items()}
        record |= {f"val/avg_{run.select_metric}": score}
        every_means = mean_scores([metrics[s].scores() for s in subsets]) if curves else {}
        record |= {f"val_all/avg_{run.select_metric}": every_means[run.select_metric]} if curves else {}
        run.history.append(record)
        # logs: epoch means as train_epoch/<term> (steps log train_step/<term>), every metric as val/avg_<metric>
        logged = {f"train_epoch/{k}": v for k, v in train.items()} | {f"val/avg_{k}": v for k, v in means.items()}
        logged |= {f"val_all/avg_{k}": v for k, v in every_means.items()}
        self.log_fn(logged | {"epoch": epoch}, state.step)
        eligible = epoch >= run.select_from
        improved = eligible and (run.sign * score > run.sign * run.best_score if run.best_epoch >= 0 else True)
        if improved:
            run.best_score, run.best_epoch = score, epoch
        return improved, score

    def save_checkpoints(
        self, run: FitRun, model: MultimodalModel, method: Method, epoch: int, improved: bool, score: float
    ) -> None:
        """``best.ckpt`` (when improved), then ``last.ckpt``, then ``history.json``, from rank 0.

        Best before last: a run killed between the two writes resumes from the previous ``last.ckpt`` and
        redoes this epoch, rewriting the same ``best.ckpt``; ``last.ckpt`` never names a best epoch that
        ``best.ckpt`` does not hold.
        """
        if self.fabric.is_global_zero:
            model_state, method_state = model.state_dict(), method.state_dict()
            if improved:
                best = {
                    "model": model_state,
                    "method": method_state,
                    "epoch": epoch,
                    "score": score,
                    "provenance": self.provenance,
                }
                self._write("best.ckpt", epoch, lambda: save_atomic(best, run.best_path))
            last = {
                "model": model_state,
                "method": method_state,
                "optimizer": run.optimizer.state_dict(),
                "scheduler": run.schedule.state_dict(),
                "epoch": epoch,
                "step": run.state.step,
                "best_score": run.best_score,
                "best_epoch": run.best_epoch,
                "history": run.history,
                "provenance": self.provenance,
                "threads": torch.get_num_threads(),  # a resumed auto run keeps it (keep_threads_of)
            }
            self._write("last.ckpt", epoch, lambda: save_atomic(last, run.last_path))
            self._write("history.json", epoch, lambda: write_json_atomic(run.history, self.run_dir / "history.json"))
        self.fabric.barrier()

    @staticmethod
    def _write(name: str, epoch: int, write: Callable[[], Any]) -> None:
        fault_point("before", name, epoch)
        write()
        fault_point("after", name, epoch)

    def check_best(self, run: FitRun) -> None:
        """After a resumed fit: ``best.ckpt`` must hold the epoch the run selected. It does not only when the
        interrupted run wrote ``best.ckpt`` for an epoch that, trained again after the resume (with a changed
        ``max_epochs``, hence schedule), no longer improved; then the results describe ``best.ckpt``'s epoch."""
        if run.best_epoch < 0 or not run.best_path.is_file():
            return
        best = load_checkpoint(run.best_path)
        if best.get("epoch") != run.best_epoch:
            if self.fabric.is_global_zero:
                log.warning(
                    "%s holds epoch %s, written before the resume, not the selected epoch %d: reporting epoch %s",
                    run.best_path,
                    best.get("epoch"),
                    run.best_epoch,
                    best.get("epoch"),
                )
            run.best_epoch, run.best_score = int(best["epoch"]), float(best["score"])

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
        """Forward, a finiteness check agreed by every process, backward, gradient average, the method's
        gradient hook, clipping and the optimizer step; returns the step's terms as floats."""
        fabric = self.fabric
        with fabric.autocast():
            step = method(model, batch, state)
        finite = all_reduce(torch.isfinite(step.loss.detach()).float(), "min")
        if not bool(finite):
            terms = {k: float(v) for k, v in step.terms.items()}
            kept = last_path if last_path.is_file() else "none yet"
            raise NonFiniteLossError(
                f"non-finite loss {float(step.loss.detach())} at epoch {state.epoch}, step {state.step}; "
                f"terms: {terms}; last good checkpoint kept: {kept}"
            )
        fabric.backward(step.loss)
        sync_gradients(params)
        method.after_backward(model, state)
        if self.cfg.grad_clip > 0:
            fabric.clip_gradients(model, optimizer, max_norm=self.cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return {"loss": float(step.loss.detach())} | {k: float(v) for k, v in step.terms.items()}
