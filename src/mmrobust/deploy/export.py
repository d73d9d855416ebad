"""``mmrobust export``: the deployed model as one ONNX or TorchScript graph, with its spec as JSON beside it.

The graph is ``DeployedGraph`` (``deploy/graph.py``): inputs one float32 tensor per deployed modality (named
by the modality) and ``present``, a bool ``[batch, D]`` mask; output ``logits``. The batch axis is dynamic.
An absent modality: pass zeros and a False column; the graph uses the mask as the model's forward does.

ONNX uses ``torch.onnx.export`` with the dynamo exporter (``torch.export``; needs ``onnxscript``). A model
whose forward branches on the data (e.g. ESANet runs a stream only when some sample has it) cannot be
captured by ``torch.export``; then the legacy TorchScript-based exporter traces it with every modality present
(every stream computed, the mask selecting), and ``exporter`` in the JSON says which one was used.
TorchScript uses ``torch.jit.trace`` the same way.

The JSON (``<out>.json``, e.g. ``model.onnx.json``) holds ``format``, ``exporter``, ``inputs`` (name, shape
with ``"batch"``, dtype, in graph order), ``outputs``, ``modalities`` (the order of the mask columns),
``class_names``, ``task`` and the full ``spec``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path
from typing import Any

import torch

from mmrobust.deploy.graph import DeployedGraph
from mmrobust.deploy.loading import load_deployed, resolve_checkpoint
from mmrobust.deploy.spec import ModelSpec
from mmrobust.engine.checkpoint import write_json_atomic
from mmrobust.registry import ConfigError

log = logging.getLogger(__name__)
FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
EXPORTERS = ("auto", "dynamo", "legacy")
MASK = "present"
OUTPUT = "logits"


def example_inputs(spec: ModelSpec, batch: int = 2) -> tuple[torch.Tensor, ...]:
    """Random inputs of every deployed modality and an all-True mask (every stream is traced)."""
    generator = torch.Generator().manual_seed(0)
    xs = [torch.randn(batch, *spec.inputs[m].shape, generator=generator) for m in spec.deployed]
    return (*xs, torch.ones(batch, len(spec.deployed), dtype=torch.bool))


def describe_graph(spec: ModelSpec, fmt: str, exporter: str) -> dict[str, Any]:
    """The JSON written beside the graph (see the module docstring)."""
    inputs = [
        {"name": m, "shape": ["batch", *spec.inputs[m].shape], "dtype": spec.inputs[m].dtype} for m in spec.deployed
    ]
    inputs.append(
        {"name": MASK, "shape": ["batch", len(spec.deployed)], "dtype": "bool", "columns": list(spec.deployed)}
    )
    out_shape: list[Any] = ["batch", spec.num_classes]
    if spec.task == "segmentation":
        out_shape += ["height", "width"]
    return {
        "format": fmt,
        "exporter": exporter,
        "task": spec.task,
        "inputs": inputs,
        "outputs": [{"name": OUTPUT, "shape": out_shape, "dtype": "float32"}],
        "modalities": list(spec.deployed),
        "class_names": list(spec.class_names),
        "spec": spec.to_dict(),
    }


def _onnx_dynamo(graph: DeployedGraph, args: tuple[torch.Tensor, ...], names: list[str], out: Path) -> None:
    batch = torch.export.Dim("batch", min=1)
    # torch logs warnings while it exports or fails to (e.g. "torchvision is not installed", the graph of a
    # data-dependent branch); the outcome is reported by the caller instead
    logging.disable(logging.WARNING)
    try:
        quiet = (contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()))
        with quiet[0], quiet[1], warnings.catch_warnings():  # its progress lines and warnings
            warnings.simplefilter("ignore")
            torch.onnx.export(
                graph,
                args,
                str(out),
                input_names=names,
                output_names=[OUTPUT],
                dynamic_shapes=(tuple({0: batch} for _ in args),),
                dynamo=True,
                external_data=False,
                verbose=False,
            )
    finally:
        logging.disable(logging.NOTSET)


def _onnx_legacy(graph: DeployedGraph, args: tuple[torch.Tensor, ...], names: list[str], out: Path) -> None:
    axes = {name: {0: "batch"} for name in [*names, OUTPUT]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings: the mask selects; the traced branches are the full ones
        torch.onnx.export(
            graph, args, str(out), input_names=names, output_names=[OUTPUT], dynamic_axes=axes, dynamo=False
        )


def export_onnx(graph: DeployedGraph, spec: ModelSpec, out: Path, exporter: str = "auto") -> str:
    """Write ``graph`` as ONNX to ``out``; returns the exporter used (``dynamo`` or ``legacy``)."""
    args = example_inputs(spec)
    names = [*spec.deployed, MASK]
    if exporter in ("auto", "dynamo"):
        try:
            _onnx_dynamo(graph, args, names, out)
            return "dynamo"
        except Exception as error:
            if exporter == "dynamo":
                first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                raise ConfigError(f"--exporter dynamo: torch.export cannot capture this model ({first})") from error
            log.info("the dynamo exporter failed (%s); using the legacy exporter", type(error).__name__)
    _onnx_legacy(graph, args, names, out)
    return "legacy"


def export_torchscript(graph: DeployedGraph, spec: ModelSpec, out: Path) -> str:
    """Trace ``graph`` with ``torch.jit.trace`` and save it to ``out``; returns ``"trace"``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(graph, example_inputs(spec), check_trace=False)
        torch.jit.save(traced, str(out))
    return "trace"


def default_out(path: str | Path, fmt: str) -> Path:
    """``RUN_DIR/deploy/model<suffix>`` of the run of ``path`` (a run directory or one of its checkpoints)."""
    path = Path(path)
    folder = path if path.is_dir() else resolve_checkpoint(path).parent.parent
    return folder / "deploy" / f"model{FORMATS[fmt]}"


def export(path: str | Path, fmt: str = "onnx", out: str | Path | None = None, exporter: str = "auto") -> Path:
    """Export the deployed model of a checkpoint or run directory; returns the graph's path (the JSON is
    ``<graph>.json``). ``exporter`` (ONNX only): ``auto`` (dynamo, else legacy), ``dynamo`` or ``legacy``."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format: expected one of {list(FORMATS)}, got {fmt!r}")
    if exporter not in EXPORTERS:
        raise ConfigError(f"--exporter: expected one of {list(EXPORTERS)}, got {exporter!r}")
    model, spec = load_deployed(path)
    if MASK in spec.deployed:
        raise ConfigError(f"a modality is named {MASK!r}, the name of the graph's mask input; rename it to export")
    target = Path(out) if out is not None else default_out(path, fmt)
    target.parent.mkdir(parents=True, exist_ok=True)
    graph = DeployedGraph(model, spec).eval()
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        if fmt == "onnx":
            try:
                import onnx  # noqa: F401  (the exporters need it)
            except ImportError as error:
                raise ConfigError("--format onnx needs the export extra: pip install 'mmrobust[export]'") from error
            used = export_onnx(graph, spec, tmp, exporter)
        else:
            used = export_torchscript(graph, spec, tmp)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    write_json_atomic(describe_graph(spec, fmt, used), target.with_name(target.name + ".json"))
    return target
