"""Training methods. Importing this package imports every module in it, which registers each method."""

import importlib
import pkgutil

from mmrobust.methods.base import METHODS, EpochContext, Method, MethodContext, StepOutput, TrainState

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["METHODS", "EpochContext", "Method", "MethodContext", "StepOutput", "TrainState"]
