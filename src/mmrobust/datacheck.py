"""``mmrobust data check``: build every split of a dataset, read every input, and say what is wrong.

For each split and modality it shows the reader (type and settings) and the per-sample shape, and counts the
samples whose input is

- ``present``: read, of the expected shape, every value finite;
- ``empty cell``: absent by design (an empty manifest cell, a modality dropped by a synthetic dataset);
- ``unreadable``: a file that cannot be used — missing, not that format, over a memory cap, a decode error,
  the wrong shape;
- ``non-finite``: read, but holding NaN or Inf values,

so that ``present + empty cell + unreadable + non-finite = samples``. Class names and counts per split follow.
Every bad file is listed with its reason; beyond ``SHOWN`` of them the first are printed and all are written
to ``data_check_problems.txt`` in the current folder. ``check`` returns the number of problems (the command
exits 1 when it is not 0). An exception while checking one file or sample becomes a listed problem, never a
traceback; a dataset layout error stays the one line of ``mmrobust.errors``.

Two paths: the ``manifest`` dataset is checked file by file through its readers (``probe`` on the header,
then a full read); any other dataset is checked by loading every sample (``dataset[i]``) and collecting the
files it marks unreadable, merged with the dataset's own header ``check()`` counts when it has one.
"""

from __future__ import annotations

import inspect
import logging
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from mmrobust.api import compose_config
from mmrobust.data import DATASETS
from mmrobust.data.base import SPLITS, DatasetLayoutError, MultimodalDataset
from mmrobust.errors import one_line

SHOWN = 20  # problems printed on screen; all of them go to PROBLEMS_FILE beyond that
PROBLEMS_FILE = "data_check_problems.txt"
KINDS = ("present", "empty", "unreadable", "non-finite")
Tick = Callable[[], None]
# the reason categories of ``check_file`` -> those of ``MultimodalDataset.mark_unreadable`` (strict-mode messages)
MARK_REASON = {
    "missing": "missing",
    "wrong shape": "wrong shape",
    "non-finite": "non-finite",
    "over a memory cap": "too large",
}


@dataclass(frozen=True)
class Problem:
    """One bad input: ``where`` is a file path, or ``sample i`` when the dataset does not name the file."""

    split: str
    modality: str
    where: str
    reason: str

    def line(self) -> str:
        return f"{self.split}/{self.modality}: {self.where}: {self.reason}"


@dataclass
class SplitReport:
    """What ``data check`` found in one split."""

    split: str
    samples: int
    counts: dict[str, Counter[str]]  # modality -> {present, empty, unreadable, non-finite: samples}
    shapes: dict[str, tuple[int, ...] | None]
    readers: dict[str, str]
    class_names: tuple[str, ...]
    classes: Counter[int] | None  # class index -> samples; None for a task without one class per sample
    problems: list[Problem] = field(default_factory=list)


# --------------------------------------------------------------------------------------------- one input
def _message(error: BaseException, limit: int = 240) -> str:
    text = one_line(str(error)) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _shape(shape: Sequence[int] | None) -> str:
    return "?" if shape is None else f"[{', '.join(map(str, shape))}]"


def tensor_problem(x: Any, expected: Sequence[int] | None) -> tuple[str, str] | None:
    """``(kind, reason)`` when a decoded input has the wrong shape or non-finite values, else None."""
    if not isinstance(x, torch.Tensor):
        return "unreadable", f"decode error: the reader returned {type(x).__name__}, not a tensor"
    if expected is not None and tuple(x.shape) != tuple(expected):
        return "unreadable", f"wrong shape: got {_shape(x.shape)} expected {_shape(expected)}"
    bad = int((~torch.isfinite(x)).sum()) if x.is_floating_point() or x.is_complex() else 0
    if bad:
        return "non-finite", f"non-finite: {bad} of {x.numel()} values are NaN/Inf"
    return None


def check_file(reader: Callable[[Path], Any], path: Path, expected: Sequence[int] | None) -> tuple[str, str]:
    """Check one file with a manifest reader: ``("present", "")`` or ``(kind, reason)``.

    The header first (``reader.probe``: missing, not that format, over a memory cap, declared shape), then
    a full read (decode error, shape, NaN/Inf). Any exception becomes the reason; none escapes.
    """
    try:
        if not path.is_file():
            return "unreadable", "missing: no such file" if not path.exists() else "missing: not a file"
        probe = getattr(reader, "probe", None)
        try:
            shape = probe(path) if probe is not None else None
        except Exception as error:  # any header failure: the file is unusable
            text = _message(error)
            if "max_" in text:
                return "unreadable", f"over a memory cap: {text}"
            if "truncated" in text:
                return "unreadable", f"decode error: {text}"
            return "unreadable", f"not that format ({path.suffix or 'no suffix'}): {text}"
        if shape is not None and expected is not None and tuple(shape) != tuple(expected):
            return "unreadable", f"wrong shape: got {_shape(shape)} expected {_shape(expected)}"
        try:
            x = reader(path)
        except Exception as error:  # a corrupt file may raise anything from its decoder
            return "unreadable", f"decode error: {_message(error)}"
        found = tensor_problem(x, expected)
        return found if found is not None else ("present", "")
    except Exception as error:  # e.g. a permission error on the stat itself
        return "unreadable", f"cannot check: {type(error).__name__}: {_message(error)}"


# ------------------------------------------------------------------------------------------ one split
def reader_text(spec: dict[str, Any] | None, reader: object | None = None) -> str:
    """``type (key=value, ...)``: the configured options, completed by the reader's effective settings."""
    if spec is None:
        return "built in"
    options = dict(spec)
    name = options.pop("type", "?")
    if reader is not None:
        try:
            parameters = inspect.signature(type(reader).__init__).parameters.values()
        except (TypeError, ValueError):
            parameters = ()  # type: ignore[assignment]
        for p in parameters:
            if p.name == "self" or p.name in options or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            value = getattr(reader, p.name, None)
            if isinstance(value, tuple):
                value = list(value)
            if isinstance(value, (bool, int, float, str, list)):
                options[p.name] = value
    return f"{name} ({', '.join(f'{k}={v}' for k, v in options.items())})" if options else str(name)


def _class_counts(targets: Sequence[Any]) -> Counter[int] | None:
    if not all(isinstance(t, int) or (isinstance(t, torch.Tensor) and t.dim() == 0) for t in targets):
        return None
    return Counter(int(t) for t in targets)


def check_manifest(ds: Any, split: str, tick: Tick) -> SplitReport:
    """File by file through the manifest's own readers (each distinct file checked once per split)."""
    report = _empty_report(ds, split)
    report.classes = Counter(int(t) for t in ds.targets())
    for m in ds.modalities:
        reader, expected = ds.readers[m], ds.shapes.get(m)
        report.readers[m] = reader_text(ds.input_spec(m), reader)
        seen: dict[str, tuple[str, str]] = {}
        for i, cell in enumerate(ds.cells):
            tick()
            if not cell[m]:
                report.counts[m]["empty"] += 1
                continue
            path = ds.path(i, m)
            key = str(path)
            if key not in seen:
                seen[key] = check_file(reader, path, expected)
                kind, reason = seen[key]
                if kind != "present":
                    category, _, detail = reason.partition(": ")
                    # the dataset's own record of the file; in strict mode it stops here with one line
                    ds.mark_unreadable(m, key, detail or reason, MARK_REASON.get(category.split(" (")[0], "unreadable"))
                    report.problems.append(Problem(split, m, key, reason))
            report.counts[m][seen[key][0]] += 1
    return report


@contextmanager
def _recording(ds: MultimodalDataset) -> Iterator[dict[str, str]]:
    """``{path: "reason: detail"}`` of the files the dataset marks unreadable while in the block."""
    details: dict[str, str] = {}
    original = ds.mark_unreadable

    def mark(modality: str, path: str, error: Exception | str, reason: str = "unreadable") -> None:
        details.setdefault(str(path), f"{reason}: {_message(error) if isinstance(error, Exception) else error}")
        original(modality, path, error, reason)

    ds.mark_unreadable = mark  # type: ignore[method-assign]
    try:
        yield details
    finally:
        del ds.mark_unreadable  # back to the class's method


def check_samples(ds: MultimodalDataset, split: str, tick: Tick) -> SplitReport:
    """Any dataset: load every sample, check each input tensor, list the files the dataset marked."""
    report = _empty_report(ds, split)
    for m in ds.modalities:
        try:
            spec = ds.input_spec(m)
        except Exception:
            spec = None
        report.readers[m] = reader_text(spec) if spec is not None else f"built in ({type(ds).__name__})"
    targets: list[Any] = []
    with _recording(ds) as details:
        for i in range(len(ds)):
            tick()
            marked_before = len(ds.unreadable_files)
            try:
                sample = ds[i]
            except Exception as error:  # the whole sample failed: every modality of it is unusable
                reason = f"load error: {type(error).__name__}: {_message(error)}"
                report.problems.append(Problem(split, "*", f"sample {i}", reason))
                for m in ds.modalities:
                    report.counts[m]["unreadable"] += 1
                continue
            marked = {m for m, _, _ in sample.unreadable}
            if len(ds.unreadable_files) > marked_before:
                marked |= {m for m, _ in list(ds.unreadable_files.values())[marked_before:]}
            targets.append(sample.target)
            for m in ds.modalities:
                x = sample.inputs.get(m)
                if x is None:
                    report.counts[m]["unreadable" if m in marked else "empty"] += 1
                    continue
                found = tensor_problem(x, ds.shapes.get(m))
                if found is None:
                    report.counts[m]["present"] += 1
                else:
                    report.counts[m][found[0]] += 1
                    report.problems.append(Problem(split, m, f"sample {i}", found[1]))
    files = [Problem(split, m, path, details.get(path, reason)) for path, (m, reason) in ds.unreadable_files.items()]
    report.problems[:0] = files
    report.classes = _class_counts(targets) if ds.task == "classification" else None
    _merge_header_counts(ds, report)
    return report


def _merge_header_counts(ds: MultimodalDataset, report: SplitReport) -> None:
    """Merge the dataset's own ``check()`` counts (header level, e.g. a whole array file missing at build time
    that loading alone would see as an absent input): the larger number of unusable inputs wins."""
    own = getattr(ds, "check", None)
    if own is None:
        return
    try:
        header = own()
    except Exception as error:
        report.problems.append(Problem(report.split, "*", "header check", f"{type(error).__name__}: {_message(error)}"))
        return
    for m, c in header.items():
        counts = report.counts.setdefault(m, Counter())
        unreadable = max(int(c.get("unreadable", 0)), counts["unreadable"])
        empty = min(int(c.get("empty", 0)), counts["empty"]) if m in ds.modalities else int(c.get("empty", 0))
        counts["unreadable"], counts["empty"] = unreadable, empty
        counts["present"] = max(0, report.samples - empty - unreadable - counts["non-finite"])
        listed = sum(p.modality == m for p in report.problems)
        if unreadable and not listed:
            why = f"{unreadable} files missing or unreadable by the dataset's header check"
            report.problems.append(Problem(report.split, m, "(header check)", why))


def _empty_report(ds: MultimodalDataset, split: str) -> SplitReport:
    return SplitReport(
        split=split,
        samples=len(ds),
        counts={m: Counter() for m in ds.modalities},
        shapes={m: (tuple(s) if (s := ds.shapes.get(m)) is not None else None) for m in ds.modalities},
        readers={},
        class_names=tuple(ds.class_names),
        classes=None,
    )


# --------------------------------------------------------------------------------------------- output
def _inputs_table(reports: list[SplitReport]) -> Table:
    table = Table("modality", "reader", "shape (per sample)", title="inputs")
    for m in reports[0].readers:
        shapes = {r.split: _shape(r.shapes.get(m)) for r in reports}
        shape = (
            next(iter(shapes.values()))
            if len(set(shapes.values())) == 1
            else ", ".join(f"{s} {v}" for s, v in shapes.items())
        )
        table.add_row(escape(m), escape(reports[0].readers[m]), shape)
    return table


def _counts_table(name: str, reports: list[SplitReport]) -> Table:
    table = Table(title=f"dataset {name}")
    for col in ("split", "samples", "modality", "present", "empty cell", "unreadable", "non-finite"):
        table.add_column(col)
    for r in reports:
        for m, c in r.counts.items():
            table.add_row(r.split, str(r.samples), escape(m), *(str(c[k]) for k in KINDS))
    return table


def _classes_table(reports: list[SplitReport]) -> Table | None:
    counted = [r for r in reports if r.classes is not None]
    if not counted:
        return None
    names = max((r.class_names for r in reports), key=len)
    indices = sorted(set(range(len(names))).union(*(r.classes or {} for r in counted)))
    table = Table("class", *(r.split for r in counted), title="classes (samples per split)")
    for k in indices:
        name = names[k] if 0 <= k < len(names) else f"{k} (no name)"
        table.add_row(escape(name), *(str((r.classes or Counter())[k]) for r in counted))
    table.add_row("total", *(str(sum((r.classes or Counter()).values())) for r in counted))
    return table


def _write_problems(problems: list[Problem]) -> Path:
    """All problems, one per line, in ``PROBLEMS_FILE`` in the current folder (else the temp folder)."""
    text = "".join(p.line() + "\n" for p in problems)
    for folder in (Path.cwd(), Path(tempfile.gettempdir())):
        path = folder / PROBLEMS_FILE
        try:
            path.write_text(text, encoding="utf-8")
            return path
        except OSError:
            continue
    raise OSError(f"cannot write {PROBLEMS_FILE} in {Path.cwd()} or {tempfile.gettempdir()}")


def print_problems(console: Console, problems: list[Problem]) -> None:
    if not problems:
        console.print("no problem found: every input is present or an empty cell", highlight=False)
        return
    by_reason = Counter(p.reason.split(":")[0] for p in problems)
    summary = ", ".join(f"{n} {reason}" for reason, n in by_reason.most_common())
    noun = "problem" if len(problems) == 1 else "problems"
    console.print(f"{len(problems)} {noun} ({summary}):", markup=False, highlight=False)
    for p in problems[:SHOWN]:
        console.print(f"  {p.line()}", markup=False, highlight=False, soft_wrap=True)
    if len(problems) > SHOWN:
        path = _write_problems(problems)
        console.print(
            f"  … {len(problems) - SHOWN} more; all {len(problems)} are listed in {path}", markup=False, highlight=False
        )


# ------------------------------------------------------------------------------------------ the command
@contextmanager
def _quiet_dataset_warnings() -> Iterator[None]:
    """The datasets log their first unreadable file; here every one is listed, so silence that log."""
    logger = logging.getLogger("mmrobust.data")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def check(overrides: Sequence[str]) -> int:
    """Run ``mmrobust data check`` on the dataset of ``overrides``; return the number of problems found."""
    cfg = compose_config(overrides)
    spec = dict(cfg.dataset)
    name = spec.pop("name")
    console = Console()
    layout_status = getattr(DATASETS.get(name), "layout_status", None)  # datasets with an on-disk layout
    if layout_status is not None:
        layout = Table("expected path", "status", title=f"dataset {name}: expected layout under {spec.get('root')}")
        for path, status in layout_status(spec):
            layout.add_row(escape(str(path)), escape(str(status)))
        console.print(layout)
    with _quiet_dataset_warnings():
        datasets = []
        for split in SPLITS:
            try:
                datasets.append(DATASETS.build(name, {**spec, "split": split}, where="dataset"))
            except DatasetLayoutError:
                doc = inspect.getdoc(inspect.getmodule(DATASETS.get(name))) or ""
                console.print(f"expected layout ({name}):\n{doc}\n", markup=False, highlight=False)  # help on stdout
                raise  # the error itself stays one line on stderr
        reports = _read_everything(name, datasets)
    console.print(_inputs_table(reports))
    console.print(_counts_table(name, reports))
    classes = _classes_table(reports)
    if classes is not None:
        console.print(classes)
    problems = [p for r in reports for p in r.problems]
    print_problems(console, problems)
    return len(problems)


def _read_everything(name: str, datasets: list[MultimodalDataset]) -> list[SplitReport]:
    """One report per split, with a progress bar on an interactive terminal."""
    detailed = name == "manifest" and all(hasattr(ds, "cells") and hasattr(ds, "readers") for ds in datasets)
    steps = [len(ds) * (len(ds.modalities) if detailed else 1) for ds in datasets]
    err = Console(stderr=True)
    progress = Progress(console=err, transient=True) if err.is_terminal else None
    reports = []
    with progress if progress is not None else nullcontext():
        task = progress.add_task("reading every input", total=sum(steps)) if progress is not None else None

        def tick() -> None:
            if progress is not None and task is not None:
                progress.advance(task)

        for split, ds in zip(SPLITS, datasets):
            reports.append(check_manifest(ds, split, tick) if detailed else check_samples(ds, split, tick))
    return reports
