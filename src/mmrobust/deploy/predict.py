"""Predictions of a deployed model on rows of modality files (``mmrobust predict``, ``api.predict``).

Each row is predicted from the modalities it has (the availability mask), exactly as the evaluator runs the
model on a subset. Classification rows get ``subset`` (the modalities used, ``a+b``), ``prediction`` (a class
name) and one ``p_<class>`` per class, the softmax ``p_k = exp(z_k) / Σ_j exp(z_j)`` of the logits. Segmentation
rows get ``subset`` and ``labels``, the per-pixel argmax as a uint8 ``[H, W]`` map of class indices (the void
label 255 is never predicted). A row without any usable modality gets an empty ``subset`` and no prediction.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmrobust.batch import Batch
from mmrobust.deploy.inputs import InputReader, InputRow, Problem, manifest_rows, pair_rows
from mmrobust.deploy.loading import load_deployed
from mmrobust.deploy.spec import ModelSpec
from mmrobust.models.multimodal import MultimodalModel
from mmrobust.subsets import subset_name

log = logging.getLogger(__name__)
MAX_UINT8_CLASSES = 255  # class indices 0..254 fit a uint8 map next to the void label 255


@dataclass(frozen=True)
class Predictions:
    """The rows of a prediction run (dicts in input order) and the files that could not be used."""

    rows: list[dict[str, Any]]
    problems: list[Problem]
    spec: ModelSpec
    carried: tuple[str, ...] = ()  # the input columns copied to every row

    def columns(self) -> list[str]:
        """The CSV columns of classification rows: carried columns, subset, prediction, p_<class> (a carried
        column of one of these names is replaced by the prediction's)."""
        made = ["subset", "prediction", *(f"p_{c}" for c in self.spec.class_names)]
        return [*(c for c in self.carried if c not in made), *made]


def subset_of(present: torch.Tensor, modalities: Sequence[str]) -> str:
    """The ``a+b`` name of one row's mask ``[M]``; empty when no modality is present."""
    bits = sum(1 << j for j, p in enumerate(present.tolist()) if p)
    return subset_name(bits, modalities) if bits else ""


@torch.no_grad()
def predict_rows(
    model: MultimodalModel, spec: ModelSpec, rows: Sequence[InputRow], batch_size: int = 64, strict: bool = False
) -> Predictions:
    """Predict ``rows`` in batches of ``batch_size`` (see the module docstring)."""
    if batch_size < 1:
        raise ValueError(f"--batch-size: expected a positive integer, got {batch_size}")
    if spec.task == "segmentation" and spec.num_classes > MAX_UINT8_CLASSES:
        raise ValueError(f"segmentation label maps are uint8: {spec.num_classes} classes are more than 255")
    reader = InputReader(spec, strict=strict)
    out: list[dict[str, Any]] = []
    model.eval()
    for start in range(0, len(rows), batch_size):
        chunk = list(rows[start : start + batch_size])
        inputs, present = reader.read(chunk, first=start)
        have = present.any(dim=1)  # [B]
        results: list[dict[str, Any]] = [
            {**row.carried, "subset": subset_of(present[i], spec.modalities)} for i, row in enumerate(chunk)
        ]
        if bool(have.any()):
            keep = have.nonzero().flatten()
            batch = Batch(
                inputs={m: x[keep] for m, x in inputs.items()},
                present=present[keep],
                target=torch.zeros(len(keep), dtype=torch.long),
                modalities=spec.modalities,
            )
            logits = model(batch)  # [b, K] or [b, K, H, W]
            for k, i in enumerate(keep.tolist()):
                results[i] |= _decode(logits[k], spec)
        for i in (~have).nonzero().flatten().tolist():
            results[i] |= _empty(spec)
        out += results
    return Predictions(out, reader.problems, spec, tuple(rows[0].carried) if rows else ())


def _decode(logits: torch.Tensor, spec: ModelSpec) -> dict[str, Any]:
    if spec.task == "segmentation":  # [K, H, W] -> [H, W]
        return {"labels": logits.argmax(dim=0).to(torch.uint8).numpy()}
    probs = logits.float().softmax(dim=0)  # [K]
    row: dict[str, Any] = {"prediction": spec.class_names[int(probs.argmax())]}
    return row | {f"p_{c}": float(p) for c, p in zip(spec.class_names, probs.tolist())}


def _empty(spec: ModelSpec) -> dict[str, Any]:
    if spec.task == "segmentation":
        return {"labels": None}
    return {"prediction": ""} | {f"p_{c}": None for c in spec.class_names}


def predict(
    path: str | Path,
    inputs: str | Path | Mapping[str, str | Path],
    batch_size: int = 64,
    strict: bool = False,
) -> Predictions:
    """Predict with the model of a checkpoint or run directory ``path`` (its spec alone; no dataset).

    ``inputs``: a manifest CSV (one column per modality) or ``{modality: file}`` for one sample.
    """
    model, spec = load_deployed(path)
    rows = pair_rows(inputs, spec) if isinstance(inputs, Mapping) else manifest_rows(inputs, spec)
    return predict_rows(model, spec, rows, batch_size, strict)


def write_csv(predictions: Predictions, out: Any) -> None:
    """Classification rows as CSV into the open text file ``out`` (probabilities with 6 decimals)."""
    columns = predictions.columns()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in predictions.rows:
        writer.writerow({k: (f"{v:.6f}" if isinstance(v, float) else "" if v is None else v) for k, v in row.items()})


def write_label_maps(predictions: Predictions, folder: Path) -> Path:
    """Segmentation: one PNG per row (``row_<i>.png``, uint8 class indices) and ``predictions.csv`` (the
    carried columns, ``subset`` and ``labels``, the PNG name; empty for a row without a usable modality)."""
    from PIL import Image

    from mmrobust.engine.checkpoint import write_text_atomic

    folder.mkdir(parents=True, exist_ok=True)
    width = max(5, len(str(len(predictions.rows))))
    lines: list[dict[str, Any]] = []
    for i, row in enumerate(predictions.rows):
        record = {k: v for k, v in row.items() if k != "labels"}
        labels = row.get("labels")
        if labels is not None:
            name = f"row_{i:0{width}d}.png"
            Image.fromarray(np.ascontiguousarray(labels, dtype=np.uint8)).save(folder / name)
            record["labels"] = name
        else:
            record["labels"] = ""
        lines.append(record)
    text = io.StringIO()
    columns = list(lines[0]) if lines else ["subset", "labels"]
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(lines)
    index = folder / "predictions.csv"
    write_text_atomic(text.getvalue(), index)
    return index
