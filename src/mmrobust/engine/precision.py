"""``trainer.precision`` applied to a model that is never wrapped (no ``DistributedDataParallel``, no Fabric wrapper).

Lightning Fabric owns the precision plugin (``fabric.strategy.precision``), but it applies it only through
``fabric.setup_module``, which is not usable here: with ``strategy=ddp`` it wraps the model in DDP (methods run
several forwards per backward, see ``engine.trainer``), and its ``_FabricModule`` applies the precision to
``forward`` alone, while methods call ``model.encode`` / ``fuse`` / ``neck`` / ``head`` directly. So the plugin's
three parts are applied here, explicitly, on the unwrapped model:

- **parameters** (``*-true``: ``bf16-true``, ``16-true``, ``64-true``): :func:`convert_modules` converts the
  parameters and floating buffers of the model and of the method (its teacher, its heads) with the plugin's
  ``convert_module``; ``*-mixed`` and ``32-true`` leave them in float32.
- **inputs**: :func:`cast_inputs` casts the floating inputs of a batch to the model's floating dtype (so only a
  converted model changes them; ``present`` stays bool, targets keep their dtype).
- **forwards**: every forward (training steps of every method, validation, test, corrupted-input evaluation)
  runs inside ``fabric.autocast()``: ``torch.autocast(device, bfloat16 | float16)`` for ``*-mixed``, a default
  dtype of the converted dtype for ``*-true`` (tensors a forward creates match the model), nothing for
  ``32-true``.

Losses: under ``*-mixed`` the matmuls and convolutions run in half precision and the losses autocast lists in
float32 (cross entropy, NLL, KL, MSE, ...) run in float32; under ``*-true`` everything runs in the converted dtype.
Evaluation metrics always receive float32 logits (``evaluation.evaluator``).
"""

from __future__ import annotations

from dataclasses import replace

import torch
from lightning.fabric import Fabric
from torch import nn

from mmrobust.batch import Batch
from mmrobust.registry import ConfigError

FP16_AUTOCAST = ("16-mixed", "16")  # Lightning's name for fp16 autocast and its short form


def check_precision_device(precision: str, device: torch.device) -> None:
    """Refuse fp16 autocast on the CPU (Lightning would silently train in bf16-mixed instead).

    Raises:
        ConfigError: ``trainer.precision=16-mixed`` on a CPU device.
    """
    if str(precision) in FP16_AUTOCAST and device.type == "cpu":
        raise ConfigError(
            f"trainer.precision: {precision} (fp16 autocast) needs a GPU; on the CPU use bf16-mixed (or 32-true)"
        )


def convert_modules(fabric: Fabric, *modules: nn.Module) -> None:
    """Convert ``modules`` in place to the parameter dtype of ``fabric``'s precision (``*-true``: bf16, fp16 or
    fp64 parameters and floating buffers; a no-op for ``*-mixed`` and ``32-true``)."""
    plugin = fabric.strategy.precision
    for module in modules:
        plugin.convert_module(module)  # Module.to(dtype): in place, the Parameter objects are kept


def floating_dtype(module: object) -> torch.dtype | None:
    """The dtype of the first floating parameter (or buffer) of ``module``; None when it has none or is not a
    torch module (e.g. an exported model)."""
    if not isinstance(module, nn.Module):
        return None
    for t in (*module.parameters(), *module.buffers()):
        if t.is_floating_point():
            return t.dtype
    return None


def cast_inputs(batch: Batch, dtype: torch.dtype | None) -> Batch:
    """``batch`` with its floating inputs in ``dtype``; the same object when nothing changes (float32 runs).

    Shape: inputs[m] ``[B, ...]`` -> same; ``present``, ``target`` and ``index`` untouched.
    """
    if dtype is None or all(not x.is_floating_point() or x.dtype == dtype for x in batch.inputs.values()):
        return batch
    inputs = {m: x.to(dtype) if x.is_floating_point() else x for m, x in batch.inputs.items()}
    return replace(batch, inputs=inputs)


def cast_to_model(batch: Batch, model: object) -> Batch:
    """``cast_inputs(batch, floating_dtype(model))``: the inputs in the dtype of the model that reads them."""
    return cast_inputs(batch, floating_dtype(model))
