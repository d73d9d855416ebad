"""The bad-input catalogue: every bad input either stops with ONE stderr line naming the key or file and
what is expected (non-zero exit, no traceback), or is handled as documented (a missing / corrupt /
wrong-shape / non-finite / oversized file -> that modality absent for that sample, counted once per file;
strict mode -> stop naming the file).

Error cases run in process through ``mmrobust.cli.main`` (fast); three run through the real console
script in a subprocess to prove that what a user sees is one line and no traceback.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmrobust.cli import main
from mmrobust.config import RunConfig, validate_against_data
from mmrobust.data import DATASETS
from mmrobust.data.base import DatasetLayoutError
from mmrobust.engine.checkpoint import CheckpointError, load_model_state
from mmrobust.registry import ConfigError
from tests.conftest import MMROBUST, TINY_CLI, run_cli, tiny_dataset, tiny_model
from tests.data.fake_seg_layouts import make_nyuv2, write_png8
from tests.errors.layouts import (
    MODALITIES,
    bad_checkpoint,
    edit_manifest,
    make_manifest,
    npy_with_header,
    png_bomb,
)

SYN = ["train", "dataset=synthetic", *TINY_CLI]
UCI = ["train", "dataset=uci_mfeat", "trainer.max_epochs=1", "trainer.progress=false", "trainer.tensorboard=false"]


@pytest.fixture(autouse=True)
def drop_hydra_log_handlers() -> Iterator[None]:
    """In-process Hydra runs attach logging handlers to the root logger bound to this test's captured
    streams; remove them afterwards so later tests do not log into closed streams."""
    before = list(logging.root.handlers)
    yield
    for handler in [h for h in logging.root.handlers if h not in before]:
        logging.root.removeHandler(handler)


def assert_one_line(code: int, err: str, pattern: str, expected_code: int | None = None) -> None:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}:\n{err}"
    assert lines[0].startswith("mmrobust: "), lines[0]
    assert re.search(pattern, lines[0]), f"{pattern!r} not in {lines[0]!r}"
    assert code != 0
    if expected_code is not None:
        assert code == expected_code, (code, lines[0])


# ------------------------------------------------------------------------------------------ error table
@dataclass(frozen=True)
class Bad:
    """A bad input: ``argv(tmp_path)`` builds what it needs on disk and returns the command line."""

    name: str
    argv: Callable[[Path], list[str]]
    pattern: str
    code: int | None = 2


def train(*overrides: str, base: list[str] = SYN) -> Callable[[Path], list[str]]:
    return lambda tmp: [*base, *overrides, f"hydra.run.dir={tmp / 'run'}"]


def manifest_check(setup: Callable[[Path], None] | None = None, *extra: str) -> Callable[[Path], list[str]]:
    """``mmrobust data check`` on the default tiny manifest after ``setup(root)`` damaged it."""

    def argv(tmp: Path) -> list[str]:
        root = make_manifest(tmp / "root")
        if setup is not None:
            setup(root)
        return ["data", "check", "dataset=manifest", f"dataset.root={root}", MODALITIES, *extra]

    return argv


def labels(*values: object, split: bool = True) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        make_manifest(root, list(values), split=split, rows=len(values))

    return setup


def rewrite(text: str | bytes) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        path = root / "manifest.csv"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())

    return setup


def cell(row: int, column: str, value: str) -> Callable[[Path], None]:
    return lambda root: edit_manifest(root, row, column, value)


def replace_file(rel: str, write: Callable[[Path], object]) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        (root / rel).unlink()
        write(root / rel)

    return setup


def nyu_damage(kind: str) -> Callable[[Path], None]:
    """Damage the first training sample of a fake NYUv2 layout: a label map of another size, label values
    above 40, or an 8-bit depth PNG where 16-bit is expected."""

    def setup(root: Path) -> None:
        name = (root / "train.txt").read_text().split()[0]
        label, depth = root / "train" / "labels_40" / f"{name}.png", root / "train" / "depth" / f"{name}.png"
        if kind == "label_size":
            write_png8(label, np.zeros((8, 8)))
        elif kind == "label_values":
            write_png8(label, np.full(np.asarray(Image.open(label)).shape, 41))
        else:
            write_png8(depth, np.asarray(Image.open(depth)) // 256)

    return setup


def nyu_train(damage: Callable[[Path], None] | None, *extra: str) -> Callable[[Path], list[str]]:
    def argv(tmp: Path) -> list[str]:
        root = make_nyuv2(tmp / "nyu")
        if damage is not None:
            damage(root)
        return ["train", "dataset=nyuv2", f"dataset.root={root}", "dataset.size=[32,48]", "dataset.augment=null",
                "model=seg_small", "trainer.max_epochs=1", "trainer.batch_size=4", "trainer.progress=false",
                "trainer.tensorboard=false", "dataset.strict=true", *extra, f"hydra.run.dir={tmp / 'run'}"]

    return argv


def eval_of(kind: str) -> Callable[[Path], list[str]]:
    def argv(tmp: Path) -> list[str]:
        return ["eval", str(bad_checkpoint(tmp / f"{kind}.ckpt", kind))]

    return argv


HEADER = "vec,img,label,split\n"
ROW = "vec/0.npy,img/0.png,{label},{split}\n"

BAD: list[Bad] = [
    # ---- run config: ranges and names (validate_run_config)
    Bad("batch_size=0", train("trainer.batch_size=0"), r"trainer\.batch_size: expected an integer > 0, got 0"),
    Bad("batch_size<0", train("trainer.batch_size=-4"), r"trainer\.batch_size: .*> 0, got -4"),
    Bad("batch_size too big", train("trainer.batch_size=100000"), r"trainer\.batch_size: 100000 is larger"),
    Bad("batch_size float", train("trainer.batch_size=1.5"), r"trainer\.batch_size"),
    Bad("eval_batch_size=0", train("trainer.eval_batch_size=0"), r"trainer\.eval_batch_size: .*> 0"),
    Bad("log_every_n_steps=0", train("trainer.log_every_n_steps=0"), r"trainer\.log_every_n_steps: .*> 0"),
    Bad("seed=-1", train("seed=-1"), r"seed: expected an integer in \[0, 4294967295\], got -1"),
    Bad("seed=2^32", train("seed=4294967296"), r"seed: expected an integer in \[0, 4294967295\]"),
    Bad("num_workers=-1", train("trainer.num_workers=-1"), r"trainer\.num_workers: expected an integer >= 0"),
    Bad("max_epochs=0", train("trainer.max_epochs=0"), r"trainer\.max_epochs: expected an integer > 0, got 0"),
    Bad("max_epochs=-1", train("trainer.max_epochs=-1"), r"trainer\.max_epochs: .*got -1"),
    Bad("max_epochs not a number", train("trainer.max_epochs=many"), r"trainer\.max_epochs"),
    Bad("devices=0", train("trainer.devices=0"), r"trainer\.devices: expected an integer > 0"),
    Bad("num_nodes=0", train("trainer.num_nodes=0"), r"trainer\.num_nodes: expected an integer > 0"),
    Bad("grad_clip<0", train("trainer.grad_clip=-1"), r"trainer\.grad_clip: expected a number >= 0"),
    Bad("lr=0", train("trainer.optimizer.lr=0"), r"trainer\.optimizer\.lr: expected a number > 0, got 0"),
    Bad("lr<0", train("trainer.optimizer.lr=-0.1"), r"trainer\.optimizer\.lr: .*-0\.1"),
    Bad("lr=nan", train("trainer.optimizer.lr=nan"), r"trainer\.optimizer\.lr: expected a number > 0"),
    Bad("optimizer name", train("trainer.optimizer.name=adam"), r"trainer\.optimizer\.name: .*'adamw', 'sgd'"),
    Bad("momentum>1", train("trainer.optimizer.momentum=1.5"), r"trainer\.optimizer\.momentum: .*\[0, 1\)"),
    Bad("weight_decay<0", train("trainer.optimizer.weight_decay=-1"), r"trainer\.optimizer\.weight_decay"),
    Bad("betas length", train("trainer.optimizer.betas=[0.9]"), r"trainer\.optimizer\.betas: expected two"),
    Bad("scheduler name", train("trainer.scheduler.name=step"), r"trainer\.scheduler\.name: .*'cosine'"),
    Bad("milestones decreasing", train("trainer.scheduler.milestones=[5,3]"), r"milestones: .*increasing"),
    Bad("milestones zero", train("trainer.scheduler.milestones=[0,3]"), r"trainer\.scheduler\.milestones"),
    Bad("gamma=0", train("trainer.scheduler.gamma=0"), r"trainer\.scheduler\.gamma: expected a number > 0"),
    Bad("warmup<0", train("trainer.scheduler.warmup_epochs=-1"), r"trainer\.scheduler\.warmup_epochs"),
    Bad("precision", train("trainer.precision=8-mixed"), r"trainer\.precision: expected one of .*'32-true'"),
    Bad("threshold", train("eval.threshold=roc"), r"eval\.threshold: expected one of \['argmax', 'val'\]"),
    Bad("threshold=val alone", train("eval.threshold=val"), r"eval\.bona_fide_class: .*eval\.threshold=val"),
    Bad("bona_fide_class<0", train("eval.bona_fide_class=-1"), r"eval\.bona_fide_class: expected a class index"),
    Bad("eval.splits unknown", train("eval.splits=[test,holdout]"), r"eval\.splits: .*'holdout'"),
    Bad("eval.splits empty", train("eval.splits=[]"), r"eval\.splits: expected a non-empty list"),
    Bad("select_subsets twice", train("trainer.select_subsets=[a,a]"), r"trainer\.select_subsets: .*distinct"),
    # ---- Hydra / OmegaConf / registries
    Bad("unknown trainer key", train("trainer.nope=1"), r"trainer\.nope"),
    Bad("unknown method", train("method=nope"), r"Could not find 'method/nope'"),
    Bad("unknown method key", train("+method.alpha=3"), r"method\.alpha: unknown key; accepted keys"),
    Bad("override syntax", train("trainer.max_epochs=[1"), r"trainer\.max_epochs=\[1|parse"),
    Bad("unknown encoder", train("model.encoder.name=vit"), r"unknown encoder 'vit'; valid encoder names"),
    Bad("dropout=1.5", train("model.encoder.dropout=1.5"), r"model\.encoder: dropout probability .*1\.5"),
    Bad("keep=1.5", train("method.distribution={name:independent,keep:1.5}"), r"method\.distribution\.keep"),
    Bad("subset weights<0", train("method.distribution={name:weighted,subsets:[a],weights:[-1]}"), r"weights"),
    # ---- synthetic dataset keys
    Bad("modalities=[]", train("dataset.modalities=[]", "dataset.snr=[]"), r"dataset\.modalities: .*empty list"),
    Bad("modalities=[a,a]", train("dataset.modalities=[a,a]", "dataset.snr=[1,1]"), r"duplicates \['a'\]"),
    Bad("missing_rate=1.5", train("dataset.missing_rate=1.5"), r"dataset\.missing_rate: expected a probability"),
    Bad("shared<0", train("dataset.shared=-0.1"), r"dataset\.shared: expected a number in \[0, 1\]"),
    Bad("num_classes=1", train("dataset.num_classes=1"), r"dataset\.num_classes: expected an integer >= 2"),
    Bad("empty val split", train("dataset.samples_per_split=[16,0,8]"), r"dataset\.samples_per_split"),
    Bad("snr length", train("dataset.snr=[1.0]"), r"dataset\.snr: needs one value per modality"),
    Bad("unknown uci view", train("dataset.views=[fou,xyz]", base=UCI), r"dataset\.views: .*xyz"),
    Bad("uci views twice", train("dataset.views=[fou,fou]", base=UCI), r"dataset\.views: .*duplicates"),
    Bad("uci fractions", train("dataset.fractions=[0.5,0.3,0.3]", base=UCI), r"dataset\.fractions"),
    # ---- manifest layout and labels (mmrobust data check)
    Bad(
        "manifest missing",
        lambda tmp: ["data", "check", "dataset=manifest", f"dataset.root={tmp}", MODALITIES],
        r"manifest file .*manifest\.csv is missing; expected layout",
    ),
    Bad("manifest root unset", lambda tmp: ["data", "check", "dataset=manifest", MODALITIES], r"dataset\.root"),
    Bad("missing column", manifest_check(None, "dataset.modalities=[vec,depth]"), r"missing columns \['depth'\]"),
    Bad(
        "duplicate column",
        manifest_check(rewrite(HEADER.replace("img", "vec") + ROW.format(label=0, split="train"))),
        r"duplicate column names \['vec'\]",
    ),
    Bad(
        "non-UTF-8",
        manifest_check(rewrite((HEADER + "vec/0.npy,img/0.png,caf\xe9,train\n").encode("latin-1"))),
        r"manifest\.csv: not UTF-8 text \(line 2",
    ),
    Bad("empty file", manifest_check(rewrite(b"")), r"manifest\.csv: the file is empty"),
    Bad("header only", manifest_check(rewrite(HEADER)), r"manifest\.csv: no rows"),
    Bad("ragged row", manifest_check(rewrite(HEADER + "vec/0.npy,img/0.png,0\n")), r"lines \[2\] do not have the 4"),
    Bad("empty label", manifest_check(cell(3, "label", "")), r"empty 'label' cell at lines \[5\]"),
    Bad("mixed labels", manifest_check(cell(3, "label", "cat")), r"mixes integer labels .* class names \(lines \[5\]"),
    Bad(
        "Cat vs cat",
        manifest_check(labels(*(["cat", "dog"] * 5 + ["Cat", "dog"]))),
        r"labels \['Cat', 'cat'\] differ only by case \(lines \[2, 4,",
    ),
    Bad("single class", manifest_check(labels(*[3] * 12)), r"single class \('3'\); classification needs at least 2"),
    Bad("negative label", manifest_check(cell(0, "label", "-1")), r"negative 'label' at lines \[2\]"),
    Bad("unknown split value", manifest_check(cell(0, "split", "training")), r"'split' has values \['training'\]"),
    Bad(
        "empty val split",
        manifest_check(lambda r: [edit_manifest(r, i, "split", "train") for i in (8, 9)]),
        r"the val split is empty \(no row has split=val\)",
    ),
    Bad("fractions leave none", manifest_check(labels(0, 1, split=False)), r"the (val|test) split is empty"),
    Bad(
        "fractions length",
        manifest_check(labels(*[0, 1] * 6, split=False), "+dataset.fractions=[0.5,0.5]"),
        r"dataset\.fractions: expected 3 fractions",
    ),
    Bad(
        "fractions sum",
        manifest_check(labels(*[0, 1] * 6, split=False), "+dataset.fractions=[0.5,0.3,0.3]"),
        r"dataset\.fractions: .*sum to 1",
    ),
    Bad("manifest modalities=[]", manifest_check(None, "dataset.modalities=[]"), r"dataset\.modalities: .*empty"),
    Bad("manifest modalities twice", manifest_check(None, "dataset.modalities=[vec,vec]"), r"duplicates \['vec'\]"),
    Bad("label as modality", manifest_check(None, "dataset.modalities=[vec,label]"), r"'label' is the label column"),
    Bad("unknown reader", manifest_check(None, "+dataset.readers.img.type=jpeg2000"), r"unknown reader 'jpeg2000'"),
    Bad("reader for no modality", manifest_check(None, "+dataset.readers.rgb.type=image"), r"\['rgb'\] are not"),
    Bad(
        "unguessable suffix",
        manifest_check(lambda r: [edit_manifest(r, i, "vec", f"v{i}.bin") for i in range(12)]),
        r"dataset\.readers\.vec\.type: cannot guess a reader",
    ),
    Bad("max_array_bytes=0", manifest_check(None, "dataset.max_array_bytes=0"), r"dataset\.max_array_bytes: .*> 0"),
    Bad(
        "declared shape fits no file",
        manifest_check(None, "+dataset.readers.vec={type:npy,shape:[6]}"),
        r"dataset\.readers\.vec\.shape: declared \(6,\).*\(4,\)",
    ),
    # ---- strict mode: stop naming the file
    Bad(
        "strict missing file",
        manifest_check(lambda r: (r / "img/3.png").unlink(), "dataset.strict=true"),
        r"dataset error: cannot read img file .*img/3\.png \(missing\)",
    ),
    Bad(
        "strict garbage npy",
        manifest_check(replace_file("vec/2.npy", lambda p: p.write_bytes(b"junk")), "dataset.strict=true"),
        r"cannot read vec file .*vec/2\.npy \(unreadable\)",
    ),
    Bad(
        "strict wrong shape",
        manifest_check(replace_file("vec/5.npy", lambda p: np.save(p, np.zeros(7, "f4"))), "dataset.strict=true"),
        r"vec/5\.npy \(wrong shape\).*\(7,\), expected \(4,\)",
    ),
    Bad(
        "strict NaN",
        manifest_check(
            replace_file("vec/9.npy", lambda p: np.save(p, np.full(4, np.nan, "f4"))), "dataset.strict=true"
        ),
        r"vec/9\.npy \(non-finite\)",
    ),
    Bad(
        "strict 16 GiB npy header",
        manifest_check(replace_file("vec/1.npy", lambda p: npy_with_header(p, (2**32,))), "dataset.strict=true"),
        r"vec/1\.npy \(too large\).*16384\.0 MiB, over dataset\.max_array_bytes",
    ),
    Bad(
        "strict PNG bomb",
        manifest_check(replace_file("img/4.png", png_bomb), "dataset.strict=true"),
        r"img/4\.png \(too large\).*dataset\.max_image_pixels",
    ),
    # ---- checkpoints (mmrobust eval)
    Bad("eval missing path", lambda tmp: ["eval", str(tmp / "none.ckpt")], r"none\.ckpt: the file does not exist"),
    Bad("eval truncated", eval_of("truncated"), r"truncated\.ckpt: .*truncated or corrupt"),
    Bad("eval random bytes", eval_of("random"), r"random\.ckpt: it is not a PyTorch checkpoint"),
    Bad("eval JSON", eval_of("json"), r"json\.ckpt: it is a JSON/text file"),
    Bad("eval empty file", eval_of("empty"), r"empty\.ckpt: the file is empty"),
    Bad("eval malicious pickle", eval_of("unsafe"), r"unsafe\.ckpt: refused as unsafe.*\(posix\.getpid\)"),
    Bad("eval no model entry", eval_of("no_model"), r"no_model\.ckpt: not an mmrobust checkpoint \(no 'model'"),
    Bad("eval a tensor file", eval_of("tensor"), r"tensor\.ckpt: not an mmrobust checkpoint"),
    Bad("eval a folder without run", lambda tmp: ["eval", str(tmp)], r"not an mmrobust run directory", None),
    Bad("eval bad split", lambda tmp: ["eval", str(tmp), "--split", "holdout"], r"invalid choice: 'holdout'"),
    Bad("eval no path", lambda tmp: ["eval"], r"required: path"),
    # ---- segmentation (fake NYUv2 layout)
    Bad("seg label map of another size", nyu_train(nyu_damage("label_size")), r"labels_40/\d+\.png is 8x8 but its rgb file .* is 32x48", None),
    Bad("seg label values outside the classes", nyu_train(nyu_damage("label_values")), r"labels_40/\d+\.png has values 41 outside the classes", None),
    Bad("seg depth PNG not 16-bit", nyu_train(nyu_damage("depth_8bit")), r"depth/\d+\.png is not a 16-bit greyscale PNG", None),
    Bad("seg method without segmentation", nyu_train(None, "method=arl"), r"arl does not support segmentation \(.+\)", None),
    Bad("seg bona fide class", nyu_train(None, "eval.bona_fide_class=1"), r"eval\.bona_fide_class", None),
    Bad("seg root missing", lambda tmp: ["train", "dataset=nyuv2", f"dataset.root={tmp / 'none'}"], r"none", None),
    # ---- report, commands, environment
    Bad("report without results", lambda tmp: ["report", str(tmp)], r"no results\.json", None),
    Bad("unknown command", lambda tmp: ["bogus"], r"unknown command 'bogus'; valid commands: train"),
    Bad("data without check", lambda tmp: ["data", "list"], r"mmrobust data check dataset=NAME"),
    Bad(
        "output folder under a file",
        lambda tmp: [*SYN, f"hydra.run.dir={(tmp / 'f').touch() or tmp / 'f' / 'run'}"],
        r"f/run: Not a directory",
        1,
    ),
]


@pytest.mark.parametrize("case", BAD, ids=[c.name for c in BAD])
def test_bad_input_is_one_clear_line(case: Bad, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(case.argv(tmp_path), capsys)
    assert_one_line(code, err, case.pattern, case.code)


# ------------------------------------------------------------------------------- handled as documented
def build(root: Path, split: str = "train", **extra: object):
    return DATASETS.build("manifest", {"root": str(root), "modalities": ["vec", "img"], "split": split, **extra})


HANDLED = {  # damage to one file of the train split -> that modality absent for that sample, counted as reason
    "missing file": ("vec/3.npy", lambda p: None, "missing"),
    "garbage npy": ("vec/3.npy", lambda p: p.write_bytes(b"not an array"), "unreadable"),
    "zero-byte png": ("img/3.png", lambda p: p.write_bytes(b""), "unreadable"),
    "truncated npy": ("vec/3.npy", lambda p: npy_with_header(p, (4,), data=b"\0\0"), "unreadable"),
    "object npy": ("vec/3.npy", lambda p: np.save(p, np.array([{}], dtype=object), allow_pickle=True), "unreadable"),
    "wrong shape npy": ("vec/3.npy", lambda p: np.save(p, np.zeros((2, 2), "f4")), "wrong shape"),
    "wrong size png": ("img/3.png", lambda p: Image.new("RGB", (7, 6)).save(p), "wrong shape"),
    "NaN npy": ("vec/3.npy", lambda p: np.save(p, np.array([0, np.nan, 1, 2], "f4")), "non-finite"),
    "Inf npy": ("vec/3.npy", lambda p: np.save(p, np.array([0, np.inf, 1, 2], "f4")), "non-finite"),
    "16 GiB npy header": ("vec/3.npy", lambda p: npy_with_header(p, (2**32,)), "too large"),
    "PNG bomb": ("img/3.png", png_bomb, "too large"),
}


@pytest.mark.parametrize("damage", sorted(HANDLED))
def test_bad_file_is_absent_for_its_sample_and_counted_once(damage: str, tmp_path: Path) -> None:
    rel, write, reason = HANDLED[damage]
    root = make_manifest(tmp_path / "root")
    (root / rel).unlink()
    write(root / rel)
    modality = rel.split("/")[0]
    ds = build(root)
    for _ in range(3):  # three "epochs": the file is still one file
        samples = [ds[i] for i in range(len(ds))]
    assert samples[3].inputs[modality] is None
    assert all(s.inputs[modality] is not None for i, s in enumerate(samples) if i != 3)
    assert ds.unreadable == {modality: 1}
    assert ds.unreadable_summary() == {modality: {reason: 1}}
    assert set(ds.unreadable_files) == {str(root / rel)}
    with pytest.raises(DatasetLayoutError, match=re.escape(rel)):  # strict: stop with the file
        strict = build(root, strict=True)
        [strict[i] for i in range(len(strict))]


def test_image_pixel_cap_is_read_from_config(tmp_path: Path) -> None:
    root = make_manifest(tmp_path / "root")
    readers = {"img": {"type": "image", "size": [6, 6]}}
    assert build(root, max_image_pixels=36, readers=readers).unreadable.total() == 0  # 6x6 = 36: at the cap
    ds = build(root, max_image_pixels=35, readers=readers)
    assert ds.unreadable == {"img": 8} and ds.unreadable_summary() == {"img": {"too large": 8}}


def test_array_byte_cap_is_read_from_config(tmp_path: Path) -> None:
    root = make_manifest(tmp_path / "root")
    readers = {"vec": {"type": "npy", "shape": [4]}}
    assert build(root, max_array_bytes=16, readers=readers).unreadable.total() == 0  # 4 float32 = 16 bytes
    assert build(root, max_array_bytes=15, readers=readers).unreadable == {"vec": 8}
    with pytest.raises(DatasetLayoutError, match=r"no readable 'vec' file in the train split \(8 too large\)"):
        build(root, max_array_bytes=15)  # nothing to take the shape from


@pytest.mark.parametrize(
    ("name", "write", "expected_names", "expected_train"),
    [
        ("integer labels stay integers", lambda r: make_manifest(r, [0, 2] * 6), ("0", "1", "2"), [0, 2] * 4),
        ("names are sorted", lambda r: make_manifest(r, ["dog", "cat"] * 6), ("cat", "dog"), [1, 0] * 4),
        (
            "BOM accepted",
            lambda r: (
                make_manifest(r),
                r.joinpath("manifest.csv").write_bytes(b"\xef\xbb\xbf" + r.joinpath("manifest.csv").read_bytes()),
            ),
            ("0", "1"),
            [0, 1] * 4,
        ),
        (
            "blank lines skipped",
            lambda r: (
                make_manifest(r),
                r.joinpath("manifest.csv").write_text(r.joinpath("manifest.csv").read_text() + "\n\n"),
            ),
            ("0", "1"),
            [0, 1] * 4,
        ),
    ],
)
def test_valid_manifest_variants(name: str, write, expected_names, expected_train, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    write(root)
    train, test = build(root), build(root, "test")
    assert train.class_names == test.class_names == expected_names  # the mapping, the same in every split
    assert train.targets() == expected_train
    assert train.unreadable.total() == 0


def test_integer_label_with_whitespace_is_still_an_integer(tmp_path: Path) -> None:
    root = make_manifest(tmp_path / "root")
    edit_manifest(root, 0, "label", " 0 ")
    assert build(root).class_names == ("0", "1")


def test_data_check_help_prints_usage(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["data", "check", "--help"], ["data", "--help"], ["data", "check", "-h"]):
        code, out, err = run_cli(argv, capsys)
        assert code == 0 and "usage: mmrobust data check" in out and err == ""


def test_data_check_counts_bad_files_and_exits_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_manifest(tmp_path / "root")
    (root / "img/0.png").unlink()
    np.save(root / "vec/1.npy", np.full(4, np.nan, "f4"))
    code, out, err = run_cli(["data", "check", "dataset=manifest", f"dataset.root={root}", MODALITIES], capsys)
    assert code == 1 and "Traceback" not in err
    assert re.search(r"train\s*│\s*8\s*│\s*vec\s*│\s*7\s*│\s*0\s*│\s*0\s*│\s*1", out), out  # non-finite
    assert re.search(r"train\s*│\s*8\s*│\s*img\s*│\s*7\s*│\s*0\s*│\s*1", out), out


# ---------------------------------------------------------------------------------------- API-level checks
def test_select_subsets_and_bona_fide_class_are_checked_against_the_data() -> None:
    cfg = RunConfig()
    cfg.trainer.select_subsets = ["a+zzz"]
    with pytest.raises(ConfigError, match=r"trainer\.select_subsets: 'a\+zzz': unknown modality 'zzz'"):
        validate_against_data(cfg, ("a", "b"), 2)
    cfg = RunConfig()
    cfg.eval.bona_fide_class = 5
    with pytest.raises(ConfigError, match=r"eval\.bona_fide_class: expected a class index in \[0, 1\], got 5"):
        validate_against_data(cfg, ("a", "b"), 2)
    cfg.eval.bona_fide_class = 1
    validate_against_data(cfg, ("a", "b"), 2)


def test_checkpoint_of_another_model_names_keys_and_shapes(tmp_path: Path) -> None:
    ds = tiny_dataset()
    model = tiny_model(ds)
    other = tiny_model(tiny_dataset(dim=7))  # same keys, other input size
    with pytest.raises(
        CheckpointError,
        match=r"other\.ckpt does not fit this model: shape mismatch .*\(8, 7\) vs \(8, 6\)|"
        r"other\.ckpt does not fit this model: shape mismatch .*\(16, 7\) vs \(16, 6\)",
    ):
        load_model_state(model, other.state_dict(), tmp_path / "other.ckpt")
    state = dict(model.state_dict())
    state["extra.weight"] = torch.zeros(1)
    del state[next(iter(model.state_dict()))]
    with pytest.raises(CheckpointError, match=r"missing keys \[encoders\..*unexpected keys \[extra\.weight\]"):
        load_model_state(model, state, tmp_path / "x.ckpt")
    load_model_state(model, other.state_dict() | model.state_dict(), tmp_path / "ok.ckpt")  # a fitting state loads


# ---------------------------------------------------------------------------------- environment and flags
def test_keyboard_interrupt_is_one_line_exit_130(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import mmrobust.experiment

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # what Ctrl-C raises in the middle of training

    monkeypatch.setattr(mmrobust.experiment, "run", interrupted)
    code, _, err = run_cli([*SYN, f"hydra.run.dir={tmp_path / 'run'}"], capsys)
    assert_one_line(code, err, r"interrupted: stopped by the user before any checkpoint .* overwrite=true hydra", 130)


def test_debug_env_shows_the_traceback(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MMROBUST_DEBUG", "1")
    with pytest.raises(ConfigError, match=r"trainer\.batch_size"):
        main([*SYN, "trainer.batch_size=0", f"hydra.run.dir={tmp_path / 'run'}"])


def test_unreadable_files_are_listed_in_results_json_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_manifest(tmp_path / "root", rows=24)
    (root / "img/0.png").unlink()  # found when the split is built
    np.save(root / "vec/1.npy", np.full(4, np.nan, "f4"))  # found only when read, every epoch
    np.save(root / "vec/2.npy", np.zeros(3, "f4"))  # wrong shape
    run = tmp_path / "run"
    model = ["model=mlp", "model.encoder.hidden=[8]", "model.encoder.out_features=4", "model.fusion.out_features=6"]
    trainer = ["trainer.batch_size=4", "trainer.max_epochs=3", "trainer.progress=false", "trainer.tensorboard=false"]
    argv = ["train", "dataset=manifest", f"dataset.root={root}", MODALITIES, *model, *trainer, f"hydra.run.dir={run}"]
    code, _, err = run_cli(argv, capsys)
    assert code == 0, err
    results = json.loads((run / "results.json").read_text())
    # files, not reads (3 epochs + evaluation), by reason
    assert results["unreadable"]["train"] == {"img": {"missing": 1}, "vec": {"wrong shape": 1, "non-finite": 1}}
    assert results["unreadable"]["val"] == {} and results["unreadable"]["test"] == {}
    for key in ("test",):
        assert all(np.isfinite(m["accuracy"]) for m in results["metrics"][key].values())


# -------------------------------------------------------------------------------- the real console script
def console(args: list[str], env: dict[str, str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MMROBUST, *args], env=env, capture_output=True, text=True, timeout=240, **kwargs)


@pytest.mark.slow
def test_console_script_config_errors_are_one_line(tmp_path: Path, cli_env: dict[str, str]) -> None:
    out = console([*SYN[1:], "trainer.log_every_n_steps=0", f"hydra.run.dir={tmp_path / 'r'}"], cli_env)
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0, out.stderr
    assert out.stderr.startswith("mmrobust: config error: trainer.log_every_n_steps: expected an integer > 0")
    # (the unsafe-checkpoint refusal and the other one-line errors run in process: CASES above)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_FSIZE and SIGXFSZ semantics of Linux")
def test_console_script_disk_full_names_the_file(tmp_path: Path, cli_env: dict[str, str]) -> None:
    import resource
    import signal

    def limit_file_size() -> None:  # a real write failure: files may not grow past 30 kB (last.ckpt is ~50 kB)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (30_000, 30_000))

    run = tmp_path / "run"
    out = console([*SYN, f"hydra.run.dir={run}"], cli_env, preexec_fn=limit_file_size)
    assert out.returncode == 1, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("mmrobust: error: cannot write ") and "last.ckpt" in lines[-1], out.stderr
    assert "Traceback" not in out.stderr
    assert not list(run.rglob("*.tmp"))  # the failed writer removed its temporary file
