"""Missing AND corrupted modalities: the QMF / UDML noise protocol on top of the every-subset evaluation.

Protocol (``eval.corrupt``, or ``mmrobust eval RUN corrupt=gaussian:5,salt:10``): for each condition
``KIND:STRENGTH`` and each corrupted modality ``m`` (``eval.corrupt.modalities``, default every modality in turn),
exactly ``round(fraction·N)`` of the ``N`` samples of the split (QMF: 50 %) get ``m`` corrupted by
``corruption.corrupt``; then every modality subset is evaluated on that corrupted split, with the streaming
metrics of ``evaluator.evaluate_subsets``. The split is the table's: the first of ``eval.splits`` after training,
the first requested split for ``mmrobust eval`` (default ``test``).

- Which samples are corrupted depends on ``(eval.corrupt.seed, m)`` only, and each sample's noise on
  ``(seed, dataset index, m)`` (``corruption.corrupt_indexed``): the corrupted split is the same for every
  condition, batch size and number of processes, so conditions compare on the same samples, and ``gaussian:10``
  is the same noise as ``gaussian:5`` twice as large.
- A sample where ``m`` is absent in the data stays as is (absent is absent); it still counts in the fraction.
- Subsets without ``m`` are evaluated too (the encoders run once per batch, so they cost nothing extra): their
  values equal the clean ones, since fusion zeroes the features of absent modalities (a test checks it). They are
  kept so that each condition's table is complete (Average / Worst rows over every subset).
- PAD thresholds fixed on the clean validation split (``eval.threshold=val``) are applied unchanged.

``results.json`` gets a ``corrupted`` key (``corrupted_results``)::

    {"split": "test", "fraction": 0.5, "seed": 0,
     "conditions": [{"modality": "a", "kind": "gaussian", "strength": 5.0, "corrupted_samples": 32,
                     "metrics": {"a": {"accuracy": 0.61, ...}, "b": {...}, "a+b": {...}}}, ...]}

``metrics`` has the layout of ``results["metrics"][split]`` (subset name -> metric -> fraction).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mmrobust.atomic_io import write_json_atomic
from mmrobust.batch import Batch
from mmrobust.config import EvalCorruptConfig
from mmrobust.corruption import chosen_samples, corrupt_indexed, parse_corruptions
from mmrobust.evaluation.evaluator import evaluate_subsets
from mmrobust.registry import ConfigError
from mmrobust.subsets import subset_name
from mmrobust.tasks.base import SubsetMetric

EVAL_KEYS = ("corrupt", "corrupt.fraction", "corrupt.modalities", "corrupt.seed")


@dataclass(frozen=True)
class Condition:
    """One corrupted evaluation: modality ``modality`` corrupted by ``kind`` at ``strength``."""

    modality: str
    kind: str
    strength: float


def corrupted_batches(
    batches: Iterable[Batch], modality: str, kind: str, strength: float, chosen: Any, seed: int
) -> Iterator[Batch]:
    """``batches`` with ``modality`` corrupted in the samples whose dataset index is ``chosen`` (and present).

    Shape: chosen ``[N]`` bool over dataset indices; batch.inputs[modality] ``[B, ...]`` -> same.
    """
    for batch in batches:
        j = batch.modalities.index(modality)
        mask = chosen[batch.index.cpu()] & batch.present[:, j].cpu()  # [B]
        x = corrupt_indexed(batch.inputs[modality], kind, strength, batch.index, seed, j, mask)
        yield replace(batch, inputs={**batch.inputs, modality: x})


def evaluate_corrupted(
    trainer: Any, model: Any, dataset: Any, subsets: Sequence[int], protocol: EvalCorruptConfig
) -> dict[Condition, dict[int, SubsetMetric]]:
    """Streaming metrics of every subset for every condition of ``protocol`` (see the module docstring).

    ``trainer`` gives the loader (its shard in a distributed run), the task, the device and ``encode_once``.
    """
    out: dict[Condition, dict[int, SubsetMetric]] = {}
    if not protocol.conditions:
        return out
    modalities = list(protocol.modalities) or list(dataset.modalities)
    for m in modalities:
        chosen = chosen_samples(len(dataset), protocol.fraction, protocol.seed, dataset.modalities.index(m))
        for kind, strength in parse_corruptions(list(protocol.conditions)):
            batches = corrupted_batches(trainer.eval_loader(dataset), m, kind, strength, chosen, protocol.seed)
            out[Condition(m, kind, strength)] = evaluate_subsets(
                model,
                batches,
                list(subsets),
                trainer.task,
                device=trainer.fabric.device,
                encode_once=trainer.cfg.encode_once,
            )
    return out


def add_corrupted(
    into: dict[Condition, dict[int, SubsetMetric]],
    trainer: Any,
    model: Any,
    dataset: Any,
    subsets: Sequence[int],
    protocol: EvalCorruptConfig,
) -> None:
    """``evaluate_corrupted`` of one job's model merged into ``into`` (runners with one model per subset)."""
    for condition, metrics in evaluate_corrupted(trainer, model, dataset, subsets, protocol).items():
        into.setdefault(condition, {}).update(metrics)


def corrupted_results(
    raw: Mapping[Condition, Mapping[int, SubsetMetric]],
    results: Mapping[str, Any],
    split: str,
    protocol: EvalCorruptConfig,
    num_samples: int,
) -> dict[str, Any]:
    """``{"corrupted": ...}`` for ``results.json`` (schema in the module docstring); ``{}`` without conditions.

    ``results``: the run's clean results (its ``modalities`` and PAD ``thresholds``, applied unchanged)."""
    if not raw:
        return {}
    modalities, thresholds = results["modalities"], results.get("thresholds")
    conditions = []
    for c, by_subset in raw.items():
        ordered = sorted(by_subset.items(), key=lambda kv: (kv[0].bit_count(), kv[0]))
        metrics = {}
        for s, metric in ordered:
            name = subset_name(s, modalities)
            options = {"threshold": thresholds[name]} if thresholds else {}
            metrics[name] = metric.scores(**options)
        count = int(
            chosen_samples(num_samples, protocol.fraction, protocol.seed, list(modalities).index(c.modality)).sum()
        )
        conditions.append(
            {"modality": c.modality, "kind": c.kind, "strength": c.strength, "corrupted_samples": count}
            | {"metrics": metrics}
        )
    return {
        "corrupted": {
            "split": split,
            "fraction": protocol.fraction,
            "seed": protocol.seed,
            "conditions": conditions,
        }
    }


def merge_corrupted(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any]:
    """The ``corrupted`` section of a run after another corrupted evaluation: conditions of the same protocol
    (split, fraction, seed) are kept unless re-evaluated; a different protocol replaces them all."""
    same = old is not None and all(old.get(k) == new.get(k) for k in ("split", "fraction", "seed"))
    if not same or old is None:
        return dict(new)

    def key(c: Mapping[str, Any]) -> tuple[str, str, float]:
        return c["modality"], c["kind"], float(c["strength"])

    fresh = {key(c) for c in new["conditions"]}
    kept = [c for c in old["conditions"] if key(c) not in fresh]
    return dict(new) | {"conditions": kept + list(new["conditions"])}


def parse_eval_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``mmrobust eval`` arguments ``corrupt=gaussian:5,salt:10``, ``corrupt.fraction=0.5``,
    ``corrupt.modalities=[rgb,depth]``, ``corrupt.seed=0`` -> the changed fields of ``EvalCorruptConfig``."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in EVAL_KEYS:
            raise ConfigError(f"{item!r}: expected one of {', '.join(k + '=...' for k in EVAL_KEYS)}")
        if key == "corrupt":
            out["conditions"] = [f"{k}:{s:g}" for k, s in parse_corruptions(value)]
        elif key == "corrupt.modalities":
            out["modalities"] = [v.strip() for v in value.strip().strip("[]").split(",") if v.strip()]
        else:
            field, cast = ("fraction", float) if key == "corrupt.fraction" else ("seed", int)
            try:
                out[field] = cast(value)
            except ValueError:
                raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    return out


def save_corrupted_into_run(section: Mapping[str, Any], path: Path) -> None:
    """Merge a ``corrupted`` section into a run's ``results.json`` (``merge_corrupted``; atomic write), so that
    ``mmrobust report RUN`` finds the corrupted evaluation of ``mmrobust eval RUN corrupt=...``."""
    results = json.loads(path.read_text())
    results["corrupted"] = merge_corrupted(results.get("corrupted"), section)
    write_json_atomic(results, path)
