"""Training methods. Importing this package registers every method."""

from mmrobust.methods import full, modality_dropout
from mmrobust.methods.base import METHODS, EpochContext, Method, StepOutput, TrainState

__all__ = ["METHODS", "EpochContext", "Method", "StepOutput", "TrainState", "full", "modality_dropout"]
