"""What a run may do with its folder: start fresh, resume, or overwrite — never silently mix two runs.

Called with the folder's lock held (``run_lock.RunLock``):

- a folder that already holds a run (``config.yaml`` or a checkpoint) is refused unless ``resume=true``
  or ``overwrite=true``; Hydra's own files (``.hydra/``, the job log) do not count, Hydra writes them for the
  new run before mmrobust starts;
- ``overwrite=true`` deletes the previous run's files (checkpoints, logs, results, tables, sub-model folders)
  and says so in one log line; nothing is moved or kept;
- ``resume=true`` needs the folder's ``config.yaml`` and at least one checkpoint (strict: a folder where no
  epoch was ever saved is refused, naming it, instead of silently starting from scratch), and the new
  resolved config may differ from the saved one only in the keys of ``RESUME_MUTABLE``; anything else (a
  changed lr, a changed method name, ...) is one line naming each changed key with its old and new value.

``RESUME_MUTABLE`` (what may change on resume, and why it is harmless):

- ``resume``, ``overwrite``: how this invocation treats the folder;
- ``trainer.max_epochs``: train longer (or stop earlier); the learning-rate schedule is recomputed for the
  new total, so a longer cosine schedule is stretched from the resumed step on;
- ``trainer.progress``, ``trainer.tensorboard``, ``trainer.loggers``, ``trainer.logger_options``,
  ``trainer.log_every_n_steps``: display and logging only;
- ``trainer.num_workers``: data loading processes; samples and their per-index randomness do not change;
- ``trainer.eval_batch_size``, ``trainer.encode_once``: how evaluation is batched (the same predictions);
- ``eval.splits``, ``eval.threshold``, ``eval.corrupt.*``: which splits are reported and how, after training
  (never used in training or model selection).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmrobust.engine.run_lock import LOCK_NAME, RunFolderError

log = logging.getLogger(__name__)

RESUME_MUTABLE = frozenset(
    {
        "resume",
        "overwrite",
        "trainer.max_epochs",
        "trainer.progress",
        "trainer.tensorboard",
        "trainer.loggers",
        "trainer.logger_options",
        "trainer.log_every_n_steps",
        "trainer.num_workers",
        "trainer.eval_batch_size",
        "trainer.encode_once",
        "eval.splits",
        "eval.threshold",
        "eval.corrupt.conditions",
        "eval.corrupt.fraction",
        "eval.corrupt.modalities",
        "eval.corrupt.seed",
    }
)
HYDRA_ENTRIES = (".hydra",)  # written by Hydra for the new run before mmrobust starts
_MISSING = "<absent>"


def checkpoints_in(run_dir: Path) -> list[Path]:
    """Every checkpoint of the run (main model and sub-models: ``**/checkpoints/*.ckpt``)."""
    return sorted(run_dir.rglob("checkpoints/*.ckpt"))


def holds_run(run_dir: Path) -> bool:
    """True when ``run_dir`` holds (part of) an earlier run: its ``config.yaml`` or any checkpoint."""
    return (run_dir / "config.yaml").is_file() or bool(checkpoints_in(run_dir))


def _ours(entry: Path) -> bool:
    """Entries of the run folder that overwrite deletes: everything but Hydra's files and the lock."""
    if entry.name in HYDRA_ENTRIES or entry.name == LOCK_NAME:
        return False
    return not (entry.is_file() and entry.suffix == ".log")  # Hydra's job log, open by this very run


def clear_run(run_dir: Path) -> list[str]:
    """Delete the previous run's files in ``run_dir`` (see ``_ours``); returns the deleted names."""
    deleted = []
    for entry in sorted(run_dir.iterdir()):
        if not _ours(entry):
            continue
        is_dir = entry.is_dir() and not entry.is_symlink()
        if is_dir:
            shutil.rmtree(entry)
        else:
            entry.unlink()
        deleted.append(entry.name + ("/" if is_dir else ""))
    return deleted


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists stay values (a changed list is one changed key)."""
    if isinstance(tree, Mapping):
        if not tree and prefix:
            return {prefix: {}}
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out |= flatten(value, f"{prefix}.{key}" if prefix else str(key))
        return out
    return {prefix: tree}


def changed_keys(saved: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{key: (old, new)}`` of the keys that differ and may not change on resume (see ``RESUME_MUTABLE``)."""
    old_flat, new_flat = flatten(saved), flatten(new)
    changed = {}
    for key in sorted(old_flat.keys() | new_flat.keys()):
        if key in RESUME_MUTABLE or key.startswith("trainer.logger_options."):  # a logger's nested options
            continue
        a, b = old_flat.get(key, _MISSING), new_flat.get(key, _MISSING)
        if a != b:
            changed[key] = (a, b)
    return changed


def prepare_run_folder(run_dir: Path, *, resume: bool, overwrite: bool, saved_config: Any, config: Any) -> None:
    """Apply the folder policy of the module docstring before anything is written.

    Args:
        run_dir: the run folder (its lock held by this process).
        resume: ``resume=true``.
        overwrite: ``overwrite=true``.
        saved_config: the folder's ``config.yaml`` as plain containers, or None when there is none.
        config: the new resolved config as plain containers.

    Raises:
        RunFolderError: one line naming the folder (and, for a changed config, every changed key).
    """
    if resume and overwrite:
        raise RunFolderError("resume=true and overwrite=true: choose one (continue the run, or replace it)")
    used = holds_run(run_dir)
    if resume:
        if saved_config is None:
            raise RunFolderError(
                f"resume=true: {run_dir} holds no run to resume (no config.yaml); check the folder "
                "(hydra.run.dir=...) or start a new run without resume=true"
            )
        if not checkpoints_in(run_dir):
            raise RunFolderError(
                f"resume=true: {run_dir} holds no checkpoint (no epoch of that run was saved); start it again "
                "with overwrite=true instead of resume=true"
            )
        changed = changed_keys(saved_config, config)
        if changed:
            listed = "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in ((k, *v) for k, v in changed.items()))
            raise RunFolderError(
                f"resume=true: the config differs from {run_dir / 'config.yaml'} in keys that cannot change on "
                f"resume: {listed} (only {', '.join(sorted(RESUME_MUTABLE))} may change; start a new run instead)"
            )
        return
    if used and not overwrite:
        raise RunFolderError(
            f"run folder {run_dir} already holds a run (config.yaml or checkpoints); pass resume=true to continue "
            "it, overwrite=true to delete it and start again, or choose another folder (hydra.run.dir=...)"
        )
    if used:
        deleted = clear_run(run_dir)
        log.warning("overwrite=true: deleted the previous run in %s: %s", run_dir, ", ".join(deleted))
