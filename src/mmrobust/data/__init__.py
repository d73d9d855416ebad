"""Datasets, collate and missing-modality policies."""

from mmrobust.data.avmnist import AvMnist
from mmrobust.data.base import DatasetLayoutError, MultimodalDataset, Sample
from mmrobust.data.casia_surf import CasiaSurf
from mmrobust.data.cefa import CeFA
from mmrobust.data.cityscapes import Cityscapes
from mmrobust.data.collate import Collate
from mmrobust.data.crema_d import CremaD
from mmrobust.data.kinetics_sounds import KineticsSounds
from mmrobust.data.manifest import Manifest
from mmrobust.data.nyuv2 import NYUv2
from mmrobust.data.sunrgbd import SunRgbd
from mmrobust.data.synthetic import Synthetic
from mmrobust.data.synthetic_rgbd import SyntheticRgbd
from mmrobust.data.uci_mfeat import UciMfeat
from mmrobust.registry import Registry

DATASETS: Registry[MultimodalDataset] = Registry("dataset")
DATASETS.register("uci_mfeat")(UciMfeat)
DATASETS.register("manifest")(Manifest)
DATASETS.register("synthetic")(Synthetic)
DATASETS.register("nyuv2")(NYUv2)
DATASETS.register("sunrgbd")(SunRgbd)
DATASETS.register("cityscapes")(Cityscapes)
DATASETS.register("synthetic_rgbd")(SyntheticRgbd)
DATASETS.register("casia_surf")(CasiaSurf)
DATASETS.register("cefa")(CeFA)
DATASETS.register("crema_d")(CremaD)
DATASETS.register("kinetics_sounds")(KineticsSounds)
DATASETS.register("avmnist")(AvMnist)

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
