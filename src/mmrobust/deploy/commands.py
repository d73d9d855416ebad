"""The ``mmrobust predict`` and ``mmrobust export`` commands (argument parsing and output files)."""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Sequence
from pathlib import Path

from mmrobust.registry import ConfigError

PREDICT_EPILOG = """INPUTS is a CSV with one column per modality (file paths relative to the CSV; an empty cell =
missing for that row); other columns (id, label, ...) are copied to the output. Or give one sample with
--input MODALITY=PATH (repeat). Files are read as in training (the reader stored in the checkpoint); a
dataset without a file reader takes .npy arrays already in model-input space. Classification writes a CSV
(carried columns, subset, prediction, p_<class>); segmentation writes one uint8 label PNG per row and
predictions.csv into the --out folder."""

EXPORT_EPILOG = """The graph's inputs are one float32 tensor per deployed modality (named by the modality) and
`present`, a bool [batch, M] mask; pass zeros for an absent modality. Output: `logits`. The spec (input
names, shapes, class names, modality order) is written beside the graph as <out>.json."""


def predict_command(args: Sequence[str]) -> None:
    from mmrobust.cli import ArgumentParser

    parser = ArgumentParser(
        prog="mmrobust predict",
        description="Predict with a trained model from its checkpoint alone (no dataset needed).",
        epilog=PREDICT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("path", metavar="RUN_OR_CKPT", help="run directory (its best checkpoint) or checkpoint file")
    parser.add_argument("inputs", metavar="INPUTS", nargs="?", default=None, help="manifest CSV of input files")
    parser.add_argument(
        "--input", action="append", default=[], metavar="MODALITY=PATH", help="one sample's file of a modality"
    )
    parser.add_argument(
        "--out", default=None, help="CSV file (classification; default: stdout) or folder (segmentation)"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--strict", action="store_true", help="stop at the first unusable file")
    ns = parser.parse_args(args)
    if (ns.inputs is None) == (not ns.input):
        parser.error("give either INPUTS (a manifest CSV) or --input MODALITY=PATH, not both and not neither")
    pairs: dict[str, str] = {}
    for item in ns.input:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            parser.error(f"--input {item!r}: expected MODALITY=PATH")
        if name in pairs:
            parser.error(f"--input: modality {name!r} given twice")
        pairs[name] = value
    from mmrobust.deploy.predict import predict, write_csv, write_label_maps

    predictions = predict(ns.path, ns.inputs if ns.inputs is not None else pairs, ns.batch_size, ns.strict)
    if predictions.problems:
        shown = "; ".join(str(p) for p in predictions.problems[:5])
        more = f"; … +{len(predictions.problems) - 5} more" if len(predictions.problems) > 5 else ""
        print(
            f"mmrobust: warning: {len(predictions.problems)} input files not usable, their modalities treated as "
            f"missing for those rows: {shown}{more}",
            file=sys.stderr,
        )
    empty = sum(1 for r in predictions.rows if not r["subset"])
    if empty:
        print(f"mmrobust: warning: {empty} rows have no usable modality and no prediction", file=sys.stderr)
    if predictions.spec.task == "segmentation":
        index = write_label_maps(predictions, Path(ns.out or "predictions"))
        print(f"saved: {len(predictions.rows)} label maps and {index}")
    elif ns.out is None:
        write_csv(predictions, sys.stdout)
    else:
        from mmrobust.engine.checkpoint import write_text_atomic

        text = io.StringIO()
        write_csv(predictions, text)
        write_text_atomic(text.getvalue(), Path(ns.out))
        print(f"saved: {ns.out} ({len(predictions.rows)} rows)")


def export_command(args: Sequence[str]) -> None:
    from mmrobust.cli import ArgumentParser
    from mmrobust.deploy.export import EXPORTERS, FORMATS

    parser = ArgumentParser(
        prog="mmrobust export",
        description="Export a trained model as one graph serving every modality subset.",
        epilog=EXPORT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("path", metavar="RUN_OR_CKPT", help="run directory (its best checkpoint) or checkpoint file")
    parser.add_argument("--format", default="onnx", choices=list(FORMATS))
    parser.add_argument("--out", default=None, help="graph file (default RUN_DIR/deploy/model.onnx or model.pt)")
    parser.add_argument(
        "--exporter",
        default="auto",
        choices=list(EXPORTERS),
        help="ONNX exporter: auto (dynamo, else legacy), dynamo or legacy",
    )
    ns = parser.parse_args(args)
    from mmrobust.deploy.export import export

    try:
        out = export(ns.path, ns.format, ns.out, ns.exporter)
    except ImportError as error:  # pragma: no cover - depends on the installed extras
        raise ConfigError(
            f"--format {ns.format}: {error}; install the export extra: pip install 'mmrobust[export]'"
        ) from error
    print(f"saved: {out} and {out.name}.json")
