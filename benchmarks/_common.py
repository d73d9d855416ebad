"""Helpers shared by the benchmark scripts: machine info, timing statistics, tables, JSON, SURF model.

Not part of the package; the scripts import it as a sibling module (``python benchmarks/<script>.py``).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from mmrobust.batch import Batch
    from mmrobust.models.multimodal import MultimodalModel

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"

# The CASIA-SURF setting of the papers: three aligned image modalities at 112×112, two classes.
SURF_MODALITIES = ("rgb", "depth", "ir")
SURF_CLASSES = 2


def _cpuinfo() -> dict[str, str]:
    """The first processor block of /proc/cpuinfo (empty off Linux)."""
    info: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    for line in text.split("\n\n")[0].splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            info[key.strip()] = value.strip()
    return info


def machine_info(device: str = "cpu") -> dict[str, Any]:
    """What a figure depends on: CPU model and flags, cores, torch version and threads, load, date."""
    cpu = _cpuinfo()
    flags = set(cpu.get("flags", "").split())
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        affinity = os.cpu_count() or 0
    try:
        load = list(os.getloadavg())
    except OSError:  # pragma: no cover
        load = []
    info: dict[str, Any] = {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": cpu.get("model name", platform.processor() or "unknown"),
        "cpu_family_model_stepping": "/".join(cpu.get(k, "?") for k in ("cpu family", "model", "stepping")),
        "cpu_mhz": cpu.get("cpu MHz"),
        "simd": sorted(flags & {"avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile"}),
        "logical_cores": os.cpu_count(),
        "usable_cores": affinity,
        "loadavg_1_5_15_at_start": load,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_num_threads": torch.get_num_threads(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "mkl": torch.backends.mkl.is_available(),
        "device": device,
        "git_commit": _git_commit(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(device)
        info["cuda_version"] = torch.version.cuda
    return info


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def cpu_snapshot() -> dict[str, float]:
    """System-wide CPU seconds (busy, steal) from /proc/stat, this process's (and its waited-for
    children's) CPU seconds, and the wall clock; two snapshots tell how much CPU *other* processes used.
    """
    import resource

    snap = {"wall": time.perf_counter(), "busy": 0.0, "steal": 0.0}
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        tick = os.sysconf("SC_CLK_TCK")
        user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
        snap["busy"] = (user + nice + system + irq + softirq) / tick
        snap["steal"] = steal / tick
    except (OSError, ValueError):
        pass
    own = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        r = resource.getrusage(who)
        own += r.ru_utime + r.ru_stime
    snap["own"] = own
    return snap


def contention(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU used by other processes between two snapshots, in seconds and in average busy cores.

    ``other_cores`` near 0 means the benchmark had the machine to itself; near 1 on a 2-core machine
    means another process kept one core busy (and multi-threaded torch ops then wait for the preempted
    thread, which can slow small ops by 10× or more).
    """
    wall = after["wall"] - before["wall"]
    other = max((after["busy"] - before["busy"]) - (after["own"] - before["own"]), 0.0)
    return {
        "wall_s": wall,
        "own_cpu_s": after["own"] - before["own"],
        "other_cpu_s": other,
        "other_cores": other / wall if wall > 0 else 0.0,
        "steal_s": after["steal"] - before["steal"],
    }


def wait_for_idle(max_wait_s: float, threshold: float = 0.25, window_s: float = 2.0) -> dict[str, Any]:
    """Wait (up to ``max_wait_s``) until other processes use less than ``threshold`` cores on average
    over a ``window_s`` window. Returns what happened; the run goes on either way.
    """
    if max_wait_s <= 0:
        return {"waited_s": 0.0, "idle": None, "other_cores": None}
    start = time.perf_counter()
    while True:
        before = cpu_snapshot()
        time.sleep(window_s)
        other = contention(before, cpu_snapshot())["other_cores"]
        waited = time.perf_counter() - start
        if other < threshold:
            return {"waited_s": waited, "idle": True, "other_cores": other}
        if waited >= max_wait_s:
            log(f"machine still busy after {waited:.0f} s (other processes use {other:.2f} cores); running anyway")
            return {"waited_s": waited, "idle": False, "other_cores": other}
        if round(waited / window_s) % 5 == 1:  # every ~10 s
            log(f"waiting for the machine to go idle: other processes use {other:.2f} cores")


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[], Any], repeats: int, warmup: int, device: str = "cpu") -> list[float]:
    """Wall-clock seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return times


def summary(times: Sequence[float]) -> dict[str, float]:
    """Median, min, max and the inter-quartile range of a list of timings (seconds)."""
    ts = sorted(times)
    q = statistics.quantiles(ts, n=4) if len(ts) >= 2 else [ts[0], ts[0], ts[0]]
    return {
        "median_s": statistics.median(ts),
        "min_s": ts[0],
        "max_s": ts[-1],
        "q1_s": q[0],
        "q3_s": q[2],
        "n": len(ts),
    }


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def machine_line(info: dict[str, Any]) -> str:
    return (
        f"{info['cpu_model']} (family/model/stepping {info['cpu_family_model_stepping']}), "
        f"{info['usable_cores']} cores, torch {info['torch']}, {info['torch_num_threads']} threads, "
        f"device {info['device']}"
        + (f" ({info['cuda_device']})" if "cuda_device" in info else "")
        + f", {info['date_utc']}"
    )


def write_json(path: str | Path, payload: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(path)
    return path


def surf_config(width: int) -> dict[str, Any]:
    """The shipped SURF-baseline model config with ``encoder.width`` and ``fusion.width`` set."""
    import yaml  # PyYAML comes with hydra-core / omegaconf

    path = ROOT / "src" / "mmrobust" / "configs" / "model" / "surf_baseline.yaml"
    if path.is_file():
        config = yaml.safe_load(path.read_text())
    else:  # installed without the source tree
        from importlib import resources

        config = yaml.safe_load(resources.files("mmrobust.configs.model").joinpath("surf_baseline.yaml").read_text())
    config["encoder"]["width"] = width
    config["fusion"]["width"] = width
    return config


def surf_model_and_batch(
    width: int, batch_size: int, image_size: int = 112, seed: int = 0
) -> tuple[MultimodalModel, Batch]:
    """A SURF-baseline model (3 modalities, 3×size×size each) and a random full-modality batch."""
    from mmrobust.batch import Batch
    from mmrobust.models import build_model

    torch.manual_seed(seed)
    shapes = {m: (3, image_size, image_size) for m in SURF_MODALITIES}
    model = build_model(surf_config(width), SURF_MODALITIES, shapes, SURF_CLASSES)
    g = torch.Generator().manual_seed(seed)
    batch = Batch(
        inputs={m: torch.randn(batch_size, *shapes[m], generator=g) for m in SURF_MODALITIES},
        present=torch.ones(batch_size, len(SURF_MODALITIES), dtype=torch.bool),
        target=torch.randint(0, SURF_CLASSES, (batch_size,), generator=g),
        modalities=SURF_MODALITIES,
        index=torch.arange(batch_size),
    )
    return model, batch


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def add_common_args(parser: Any, name: str) -> None:
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run (tiny sizes, few repeats)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=None,
        help="wait up to this many seconds for other processes to stop using the CPU before measuring "
        "(default 30 per configuration; 0 with --quick)",
    )
    parser.add_argument("--out", default=str(RESULTS / f"{name}.json"), help="JSON results file (default: %(default)s)")


def resolve_wait(args: Any) -> None:
    if args.wait_idle is None:
        args.wait_idle = 0.0 if args.quick else 30.0


def apply_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
