"""Datasets, collate and missing-modality policies."""

from mmrobust.data.base import DatasetLayoutError, MultimodalDataset, Sample
from mmrobust.data.collate import Collate
from mmrobust.data.manifest import Manifest
from mmrobust.data.synthetic import Synthetic
from mmrobust.data.uci_mfeat import UciMfeat
from mmrobust.registry import Registry

DATASETS: Registry[MultimodalDataset] = Registry("dataset")
DATASETS.register("uci_mfeat")(UciMfeat)
DATASETS.register("manifest")(Manifest)
DATASETS.register("synthetic")(Synthetic)

__all__ = [
    "DATASETS",
    "Collate",
    "DatasetLayoutError",
    "Manifest",
    "MultimodalDataset",
    "Sample",
    "Synthetic",
    "UciMfeat",
]
