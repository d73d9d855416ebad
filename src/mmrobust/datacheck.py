"""``mmrobust data check``: build every split of a dataset config and say what is present and missing."""

from __future__ import annotations

import inspect
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from mmrobust.api import compose_config
from mmrobust.data import DATASETS
from mmrobust.data.base import SPLITS, DatasetLayoutError, MultimodalDataset


def modality_counts(dataset: MultimodalDataset) -> dict[str, dict[str, int]]:
    """Per modality: samples with a readable input, samples where it is missing (empty or unreadable)."""
    check = getattr(dataset, "check", None)
    if check is not None:
        return check()
    counts = {m: {"present": 0, "empty": 0, "unreadable": 0} for m in dataset.modalities}
    for i in range(len(dataset)):
        for m, x in dataset[i].inputs.items():
            counts[m]["present" if x is not None else "empty"] += 1
    return counts


def check(overrides: Sequence[str]) -> None:
    cfg = compose_config(overrides)
    spec = dict(cfg.dataset)
    name = spec.pop("name")
    console = Console()
    layout_status = getattr(DATASETS.get(name), "layout_status", None)  # datasets with an on-disk layout
    if layout_status is not None:
        layout = Table("expected path", "status", title=f"dataset {name}: expected layout under {spec.get('root')}")
        for path, status in layout_status(spec):
            layout.add_row(path, status)
        console.print(layout)
    table = Table(title=f"dataset {name}")
    for col in ("split", "samples", "modality", "present", "empty cell", "unreadable"):
        table.add_column(col)
    for split in SPLITS:
        try:
            ds = DATASETS.build(name, {**spec, "split": split}, where="dataset")
        except DatasetLayoutError:
            doc = inspect.getdoc(inspect.getmodule(DATASETS.get(name))) or ""
            console.print(f"expected layout ({name}):\n{doc}\n", markup=False, highlight=False)  # help on stdout
            raise  # the error itself stays one line on stderr
        for m, c in modality_counts(ds).items():
            table.add_row(split, str(len(ds)), m, str(c["present"]), str(c["empty"]), str(c["unreadable"]))
    console.print(table)
