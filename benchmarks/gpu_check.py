"""The GPU path, as one prepared script for a session that is lent a GPU (issue 14 item 8; no GPU has run this
code yet). It trains a few steps of the SURF network on generated face images with each precision, evaluates
every subset, exports ONNX and re-evaluates it, and writes what happened (or the one-line error) per check to
``OUT/gpu_check.json``:

    .venv/bin/python benchmarks/gpu_check.py --out "$OUT"                      # on the GPU machine
    .venv/bin/python benchmarks/gpu_check.py --out /tmp/gpu_check --device cpu  # dry run of the same flow here
"""

from __future__ import annotations

import argparse
import json
import time
import traceback
from pathlib import Path

from mmrobust import api

TINY = [
    "dataset=synthetic_faces", "dataset.image_size=64", "dataset.samples_per_split=[256,64,64]",
    "model=surf_baseline", "model.encoder.width=32", "model.fusion.width=32", "trainer.max_epochs=2",
    "trainer.batch_size=32", "eval.bona_fide_class=1", "trainer.progress=false",
]  # fmt: skip


def check(name: str, fn, report: dict) -> None:
    start = time.perf_counter()
    try:
        report[name] = {"ok": True, "result": fn()}
    except Exception as error:  # a check that fails is recorded, the others still run
        report[name] = {"ok": False, "error": f"{type(error).__name__}: {error}", "trace": traceback.format_exc()}
    report[name]["seconds"] = round(time.perf_counter() - start, 2)
    print(name, "ok" if report[name]["ok"] else report[name]["error"], f"({report[name]['seconds']} s)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    args = parser.parse_args()
    out = Path(args.out)
    report: dict = {}
    precisions = ["32-true", "16-mixed", "bf16-mixed"] if args.device == "cuda" else ["32-true"]
    for precision in precisions:
        run_dir = out / f"run_{precision}"

        def train(run_dir: Path = run_dir, precision: str = precision) -> dict:
            overrides = [*TINY, f"trainer.accelerator={args.device}", f"trainer.precision={precision}"]
            results = api.train(overrides, run_dir=run_dir)
            return {s: m["accuracy"] for s, m in results["metrics"]["test"].items()}

        check(f"train+eval {precision}", train, report)
    first = out / f"run_{precisions[0]}"
    check("eval again", lambda: {s: m["accuracy"] for s, m in api.evaluate(first)["metrics"]["test"].items()}, report)

    def export() -> str:
        from mmrobust.cli import main as cli

        cli(["export", str(first), "--format", "onnx", "--out", str(out / "model.onnx")])
        return str(out / "model.onnx")

    check("export onnx", export, report)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
