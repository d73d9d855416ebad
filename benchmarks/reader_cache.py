"""A user's own data through the manifest: ``.wav`` audio with the decoded-input cache vs the same audio as ``.npy``.

Generated in a temporary folder (``--keep DIR`` keeps it): ``--samples`` rows (default 1000, 10 classes) with

- ``image``: an 8×8 float32 ``.npy`` (a class-dependent blob plus noise);
- ``audio``: a spoken-digit-like 8 kHz mono 16-bit ``.wav`` of 0.5–1 s: two harmonics of a class pitch, a
  random onset, a decaying envelope and noise;
- ``audio`` again as ``.npy``: the wav reader's own output for that file (so both runs train on bit-identical
  inputs and must reach the same accuracy).

Each configuration trains ``--epochs`` (default 20) through the real API (``mmrobust.api.train``: build the
three splits, scan every file, train, evaluate every subset, write the run folder) in a fresh subprocess, and
its wall time from ``api.train`` call to return is measured. Configurations, interleaved per repeat (order
rotating), medians over ``--repeats``:

- ``npy``: the audio column as spectrogram ``.npy`` files (``dataset.cache`` default: memory);
- ``wav none``: ``.wav`` decoded every time (``dataset.cache=none``, the behaviour before the cache);
- ``wav memory``: ``.wav`` with the default memory cache (cold at every process start);
- ``wav disk cold``: ``dataset.cache=disk`` into an empty folder;
- ``wav disk warm``: the same folder again (a second run of the same data).

The ratio ``wav / npy`` is the figure of issue 16 (target: within 2×). Each row also gives the per-file read
cost of the reader (decode + resample + features vs ``np.load``), timed in this process without a cache.

Usage::

    python benchmarks/reader_cache.py                      # 1000 samples, 20 epochs, 3 repeats (~15 min on 2 cores)
    python benchmarks/reader_cache.py --quick              # seconds-long smoke run
    python benchmarks/reader_cache.py --workers 0 1 auto   # also compare DataLoader workers
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import _common as C

NAME = "reader_cache"
FILE_RATE = 8000
CONFIGS = ("npy", "wav none", "wav memory", "wav disk cold", "wav disk warm")


# ------------------------------------------------------------------------------------------------- data
def generate(root: Path, samples: int, classes: int, seed: int, audio_reader: dict[str, Any]) -> None:
    """Write the images, the wavs, the wavs' spectrograms and ``manifest_wav.csv`` / ``manifest_npy.csv``."""
    import soundfile

    from mmrobust.data.manifest import Manifest

    rng = np.random.default_rng(seed)
    for folder in ("image", "wav", "spec"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:8, 0:8]
    rows = []
    for i in range(samples):
        label = i % classes
        cy, cx = divmod(label * 7 % 16, 4)
        image = np.exp(-((yy - 1.5 - 1.7 * cy) ** 2 + (xx - 1.5 - 1.7 * cx) ** 2) / 3.0)
        np.save(root / f"image/{i}.npy", (image + 0.5 * rng.standard_normal((8, 8))).astype(np.float32))
        seconds = rng.uniform(0.5, 1.0)
        t = np.arange(round(FILE_RATE * seconds)) / FILE_RATE
        pitch = 180.0 * 1.12**label * rng.uniform(0.97, 1.03)
        onset = rng.uniform(0.0, 0.15)
        envelope = np.where(t >= onset, np.exp(-(t - onset) * rng.uniform(2.0, 5.0)), 0.0)
        voice = np.sin(2 * np.pi * pitch * t) + 0.5 * np.sin(2 * np.pi * 2.5 * pitch * t + rng.uniform(0, np.pi))
        wave = 0.3 * envelope * voice + 0.05 * rng.standard_normal(len(t))
        soundfile.write(root / f"wav/{i}.wav", np.clip(wave, -1, 1).astype(np.float32), FILE_RATE, subtype="PCM_16")
        rows.append([f"image/{i}.npy", f"wav/{i}.wav", f"spec/{i}.npy", label])
    header = ["image", "audio", "label"]
    with (root / "manifest_wav.csv").open("w", newline="") as f:
        csv.writer(f).writerows([header, *[[r[0], r[1], r[3]] for r in rows]])
    with (root / "manifest_npy.csv").open("w", newline="") as f:
        csv.writer(f).writerows([header, *[[r[0], r[2], r[3]] for r in rows]])
    # the spectrograms: the wav reader's own output (every split, so every file)
    for split in ("train", "val", "test"):
        ds = Manifest(
            str(root), ["image", "audio"], split, file="manifest_wav.csv", readers={"audio": audio_reader}, cache="none"
        )
        for i in range(len(ds)):
            spec = ds[i].inputs["audio"]
            assert spec is not None, ds.path(i, "audio")
            np.save(root / "spec" / f"{Path(ds.cells[i]['audio']).stem}.npy", spec.numpy())


def read_cost(root: Path, audio_reader: dict[str, Any], limit: int = 200) -> dict[str, float]:
    """Milliseconds per file of the wav reader and of the npy reader, uncached, in this process."""
    from mmrobust.data.manifest import Manifest

    costs = {}
    for kind, file, reader in (
        ("wav", "manifest_wav.csv", audio_reader),
        ("npy", "manifest_npy.csv", {"type": "npy"}),
    ):
        ds = Manifest(str(root), ["image", "audio"], "train", file=file, readers={"audio": reader}, cache="none")
        n = min(limit, len(ds))
        ds._read(0, "audio", None)  # imports, filter banks
        start = time.perf_counter()
        for i in range(n):
            ds._read(i, "audio", None)
        costs[f"{kind}_ms_per_file"] = 1000 * (time.perf_counter() - start) / n
    return costs


# ----------------------------------------------------------------------------------------------- one run
def overrides(args: argparse.Namespace, config: str, workers: str, cache_dir: Path) -> list[str]:
    kind, _, cache = config.partition(" ")
    audio = "{type:npy}" if kind == "npy" else json.dumps(args.audio_reader).replace('"', "").replace(" ", "")
    out = [
        "dataset=manifest",
        f"dataset.root={args.data}",
        f"dataset.file=manifest_{kind}.csv",
        "dataset.modalities=[image,audio]",
        f"dataset.readers={{image:{{type:npy}},audio:{audio}}}",
        f"model={args.model}",
        # the same encoder whatever the file type: model=auto would give the .npy spectrograms its image `conv`
        *(["model.encoders.audio.name=spectrogram_cnn"] if args.model == "auto" else []),
        f"trainer.threads={args.threads or 2}",  # fixed: an `auto` count could differ between configurations
        f"method={args.method}",
        f"trainer.max_epochs={args.epochs}",
        f"trainer.batch_size={args.batch_size}",
        f"trainer.num_workers={workers}",
        "trainer.progress=false",
        "trainer.loggers=[csv]",
        f"seed={args.seed}",
    ]
    if cache:
        mode = cache.split()[0]
        out.append(f"dataset.cache={mode}")
        if mode == "disk":
            out.append(f"dataset.cache_dir={cache_dir}")
    return out


def child(args: argparse.Namespace) -> dict[str, Any]:
    """Train one configuration in this (fresh) process; the wall time of ``api.train``."""
    import logging

    from mmrobust import api

    logging.disable(logging.WARNING)
    C.apply_threads(args.threads)
    before = C.cpu_snapshot()
    start = time.perf_counter()
    results = api.train(json.loads(args.child), run_dir=args.run_dir)
    wall = time.perf_counter() - start
    return {"wall_s": wall, "contention": C.contention(before, C.cpu_snapshot()), "accuracy": accuracies(results)}


def accuracies(results: Any, prefix: str = "") -> dict[str, float]:
    """Every ``...acc...`` number of the results dict of the test split, flattened (``subset/metric``)."""
    found: dict[str, float] = {}
    if isinstance(results, dict):
        for key, value in results.items():
            name = f"{prefix}/{key}" if prefix else str(key)
            if isinstance(value, (dict, list)):
                found.update(accuracies(value, name))
            elif isinstance(value, float) and "acc" in str(key).lower() and "test" in name:
                found[name] = value
    elif isinstance(results, list):
        for i, value in enumerate(results):
            found.update(accuracies(value, f"{prefix}/{i}"))
    return found


def run_once(args: argparse.Namespace, config: str, workers: str, cache_dir: Path, run_dir: Path) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        json.dumps(overrides(args, config, workers, cache_dir)),
    ]
    cmd += ["--run-dir", str(run_dir)] + (["--threads", str(args.threads)] if args.threads else [])
    C.log(f"[{NAME}] {config}, num_workers={workers}")
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.stderr.write(out.stderr[-4000:])
        raise SystemExit(f"{config} (num_workers={workers}) failed with exit code {out.returncode}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# -------------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    C.add_common_args(p, NAME)
    p.add_argument("--samples", type=int, default=None, help="rows of the manifest (default 1000; 100 with --quick)")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default 20; 2 with --quick)")
    p.add_argument("--repeats", type=int, default=None, help="runs per configuration (default 3; 1 with --quick)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--model", default="auto", help="model config of every run (default %(default)s)")
    p.add_argument("--method", default="full", help="method config of every run (default %(default)s)")
    p.add_argument("--workers", nargs="+", default=["auto"], help="trainer.num_workers values to compare")
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS, metavar="CONFIG")
    p.add_argument("--audio-reader", type=json.loads, default={"type": "audio", "seconds": 1.0},
                   help='the wav column\'s reader config as JSON (default %(default)s: the reader\'s defaults)')  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", default=None, help="generate the data in this folder and keep it")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--run-dir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return
    C.resolve_wait(args)
    args.samples = args.samples or (100 if args.quick else 1000)
    args.epochs = args.epochs or (2 if args.quick else 20)
    args.repeats = args.repeats or (1 if args.quick else 3)
    if "wav disk warm" in args.configs and "wav disk cold" not in args.configs:
        args.configs.append("wav disk cold")  # the warm run reuses the cold run's folder
    C.apply_threads(args.threads)
    info = C.machine_info()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="mmrobust_reader_cache_"))
    args.data = work / "data"
    try:
        C.log(f"[{NAME}] generating {args.samples} samples in {args.data}")
        generate(args.data, args.samples, args.classes, args.seed, args.audio_reader)
        costs = read_cost(args.data, args.audio_reader)
        order = [c for c in CONFIGS if c in args.configs]
        runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for r in range(args.repeats):
            cache_dir = work / f"cache{r}"
            shutil.rmtree(cache_dir, ignore_errors=True)
            rotated = order[r % len(order) :] + order[: r % len(order)]
            rotated.sort(key=lambda c: c == "wav disk warm")  # warm after cold within a repeat
            for workers in args.workers:
                for config in rotated:
                    C.wait_for_idle(args.wait_idle)
                    run_dir = work / "runs" / f"{config.replace(' ', '_')}_w{workers}_r{r}"
                    runs.setdefault((config, workers), []).append(run_once(args, config, workers, cache_dir, run_dir))
                    shutil.rmtree(run_dir, ignore_errors=True)
                shutil.rmtree(cache_dir, ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    results = []
    for (config, workers), rs in runs.items():
        stats = C.summary([x["wall_s"] for x in rs])
        base = runs.get(("npy", workers))
        ratio = stats["median_s"] / C.summary([x["wall_s"] for x in base])["median_s"] if base else None
        results.append(
            {
                "config": config,
                "num_workers": workers,
                "wall": stats,
                "ratio_to_npy": ratio,
                "other_cores": max(x["contention"]["other_cores"] for x in rs),
                "accuracy": rs[0]["accuracy"],
                "runs": rs,
            }
        )
    rows = [
        [
            r["config"],
            r["num_workers"],
            f"{r['wall']['median_s']:.1f}",
            f"{r['wall']['min_s']:.1f}–{r['wall']['max_s']:.1f}",
            "" if r["ratio_to_npy"] is None else f"{r['ratio_to_npy']:.2f}",
            f"{r['other_cores']:.2f}",
        ]
        for r in results
    ]
    headers = ["configuration", "num_workers", "median wall (s)", "range (s)", "wav / npy", "other processes (cores)"]
    print(f"## Manifest readers: wav with the decoded-input cache vs npy\n\nMachine: {C.machine_line(info)}\n")
    print(C.markdown_table(headers, rows))
    print(
        f"\n{args.samples} samples, {args.epochs} epochs, model {args.model}, method {args.method}, batch "
        f"{args.batch_size}; median of {args.repeats} runs of `api.train` each in a fresh process. Read cost per "
        f"file, uncached: wav {costs['wav_ms_per_file']:.2f} ms, npy {costs['npy_ms_per_file']:.3f} ms."
    )
    same = {json.dumps(r["accuracy"], sort_keys=True) for r in results if r["num_workers"] == args.workers[0]}
    print(f"Test accuracies identical across configurations: {len(same) == 1}")
    payload = {"benchmark": NAME, "machine": info, "args": vars(args) | {"data": str(args.data)}, "read_cost": costs}
    path = C.write_json(args.out, payload | {"results": results})
    C.log(f"[{NAME}] wrote {path}")


if __name__ == "__main__":
    main()
