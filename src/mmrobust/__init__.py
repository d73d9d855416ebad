"""mmrobust: robust multimodal learning (missing and imbalanced modalities) on one model, one trainer
and an every-subset evaluator."""

from mmrobust.batch import Batch
from mmrobust.subsets import all_subsets, subset_name

__version__ = "0.1.0"
__all__ = ["Batch", "__version__", "all_subsets", "subset_name"]
