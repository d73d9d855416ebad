"""The decoded-input cache (``mmrobust.data.cache``) and ``trainer.num_workers: auto``.

Layout written by these tests (the manifest's, see ``mmrobust/data/manifest.py``)::

    root/manifest.csv     columns: img, audio, label, split (every row in train)
    root/img/<i>.npy      float32 [8, 8]
    root/audio/<i>.wav    8 kHz mono PCM, 0.25 s tone whose pitch depends on i
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from torch.utils.data import DataLoader

from mmrobust import config as config_module
from mmrobust.config import RunConfig, resolve_num_workers, validate_run_config
from mmrobust.data import Collate
from mmrobust.data.cache import InputCache, MemoryLRU, clear_memory_caches
from mmrobust.data.manifest import Manifest
from mmrobust.data.readers import NpyReader
from mmrobust.registry import ConfigError

AUDIO = {"type": "audio", "sample_rate": 8000, "seconds": 0.25}  # the reader's default features (a spectrogram)


class CountingNpy(NpyReader):
    """An ``npy`` reader that counts its decodes (a class attribute: not part of the reader's settings)."""

    calls = 0

    def read(self, path: Path) -> torch.Tensor:
        type(self).calls += 1
        return super().read(path)


@pytest.fixture(autouse=True)
def _fresh() -> None:
    clear_memory_caches()
    CountingNpy.calls = 0


def make_root(root: Path, n: int = 8) -> Path:
    rng = np.random.default_rng(0)
    (root / "img").mkdir(parents=True)
    (root / "audio").mkdir()
    rows = []
    for i in range(n):
        np.save(root / f"img/{i}.npy", rng.standard_normal((8, 8)).astype(np.float32))
        t = np.arange(2000) / 8000
        soundfile.write(
            root / f"audio/{i}.wav", (0.5 * np.sin(2 * np.pi * (300 + 50 * i) * t)).astype(np.float32), 8000
        )
        rows.append([f"img/{i}.npy", f"audio/{i}.wav", i % 2, "train"])
    with (root / "manifest.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["img", "audio", "label", "split"])
        w.writerows(rows)
    return root


def manifest(root: Path, **cache: object) -> Manifest:
    return Manifest(str(root), ["img", "audio"], readers={"audio": AUDIO}, **cache)  # type: ignore[arg-type]


def entry(n: int, value: float = 0.0) -> torch.Tensor:
    return torch.full((n,), value, dtype=torch.float32)  # n·4 bytes


# ----------------------------------------------------------------------------------------------- memory


def test_memory_lru_evicts_least_recently_used_by_bytes() -> None:
    lru = MemoryLRU(max_bytes=250)  # room for two 100-byte tensors
    key = {name: (name, 100, 0, 0, 0, "r") for name in "abc"}
    lru.put(key["a"], entry(25, 1))
    lru.put(key["b"], entry(25, 2))
    assert lru.get(key["a"]) is not None  # a is now the most recently used
    lru.put(key["c"], entry(25, 3))
    assert lru.get(key["b"]) is None and lru.get(key["a"]) is not None and lru.get(key["c"]) is not None
    assert lru.bytes == 200 and len(lru) == 2
    lru.put(("big", 1, 0, 0, 0, "r"), entry(100))  # 400 bytes > budget: not cached, nothing evicted
    assert len(lru) == 2 and lru.bytes == 200
    newer = ("a", 100, 1, 0, 0, "r")  # the same file, edited: the old entry goes at once
    lru.put(newer, entry(25, 9))
    assert lru.get(key["a"]) is None and float(lru.get(newer)[0]) == 9 and lru.bytes == 200  # type: ignore[index]


def test_memory_cache_hits_return_equal_copies(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.arange(6, dtype=np.float32))
    cache, reader = InputCache("memory", 1000), CountingNpy()
    first = cache.read(reader, tmp_path / "x.npy")
    first += 100  # a caller changing its tensor must not change the cached one
    second = cache.read(reader, tmp_path / "x.npy")
    assert torch.equal(second, torch.arange(6, dtype=torch.float32))
    assert CountingNpy.calls == 1 and (cache.hits, cache.misses) == (1, 1)


# ------------------------------------------------------------------------------------------------- disk


def test_disk_cache_hit_across_instances_and_miss_on_new_settings(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.arange(6, dtype=np.float32))
    folder = tmp_path / "cache"
    InputCache("disk", directory=str(folder)).read(CountingNpy(), tmp_path / "x.npy")
    later = InputCache("disk", directory=str(folder))  # another worker / a later run
    x = later.read(CountingNpy(), tmp_path / "x.npy")
    assert CountingNpy.calls == 1 and later.hits == 1 and torch.equal(x, torch.arange(6, dtype=torch.float32))
    assert [p.suffix for p in folder.rglob("*") if p.is_file()] == [".npy"]  # no temporary file left
    shifted = later.read(CountingNpy(mean=[1.0]), tmp_path / "x.npy")  # other reader settings: a miss
    assert CountingNpy.calls == 2 and torch.equal(shifted, torch.arange(6, dtype=torch.float32) - 1)


def test_damaged_disk_entry_is_decoded_again(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.ones(4, dtype=np.float32))
    cache, reader = InputCache("disk", directory=str(tmp_path / "cache")), CountingNpy()
    cache.read(reader, tmp_path / "x.npy")
    cache.entry_path(cache.key(reader, tmp_path / "x.npy")).write_bytes(b"not an array")
    assert torch.equal(cache.read(reader, tmp_path / "x.npy"), torch.ones(4)) and CountingNpy.calls == 2


@pytest.mark.parametrize("mode", ["memory", "disk"])
def test_edited_file_is_never_served_stale(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "x.npy"
    np.save(path, np.zeros(4, dtype=np.float32))
    cache, reader = InputCache(mode, directory=str(tmp_path / "cache")), CountingNpy()
    assert float(cache.read(reader, path).sum()) == 0
    np.save(path, np.ones(4, dtype=np.float32))  # same size, same inode
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a later mtime even on a coarse clock
    assert float(cache.read(reader, path).sum()) == 4
    tmp = tmp_path / "new.npy"
    np.save(tmp, np.full(4, 2, dtype=np.float32))
    os.utime(tmp, ns=(st.st_atime_ns, path.stat().st_mtime_ns))  # same size and mtime, but a new file
    os.replace(tmp, path)
    assert float(cache.read(reader, path).sum()) == 8
    assert float(cache.read(reader, path).sum()) == 8 and CountingNpy.calls == 3 and cache.hits == 1
    if mode == "disk":  # the entries of the earlier versions were replaced, not kept
        assert len(list((tmp_path / "cache").rglob("*.npy"))) == 1


def test_bad_cache_config_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"dataset\.cache: expected one of \['memory', 'disk', 'none'\]"):
        InputCache("ram")
    with pytest.raises(ConfigError, match=r"dataset\.cache_bytes: expected an integer > 0"):
        InputCache("memory", 0)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match=r"dataset\.cache_dir: cannot create .*file/sub"):
        InputCache("disk", directory=str(tmp_path / "file" / "sub"))


# ------------------------------------------------------------------------------------- through the dataset


def test_manifest_gives_identical_tensors_with_and_without_cache(tmp_path: Path) -> None:
    root = make_root(tmp_path / "data")
    plain = manifest(root, cache="none")
    expected = [plain[i].inputs for i in range(len(plain))]
    for cache in ({"cache": "memory"}, {"cache": "disk", "cache_dir": str(tmp_path / "c")}):
        ds = manifest(root, **cache)
        for _ in range(2):  # cold, then warm
            for i, want in enumerate(expected):
                got = ds[i].inputs
                assert all(torch.equal(got[m], want[m]) for m in want)  # type: ignore[arg-type]
        assert ds.cache.hits >= 2 * len(ds) and ds.shapes == plain.shapes


@pytest.mark.slow
def test_cache_is_worker_safe(tmp_path: Path) -> None:
    """Two DataLoader workers over a shared disk cache and per-worker memory caches give the batches of an
    uncached single-process loader, and leave one complete entry per file."""
    root = make_root(tmp_path / "data")

    def batches(ds: Manifest, workers: int) -> list[dict[str, torch.Tensor]]:
        loader = DataLoader(
            ds,
            batch_size=3,
            num_workers=workers,
            persistent_workers=workers > 0,
            collate_fn=Collate(ds.modalities, ds.shapes),
        )
        return [dict(b.inputs) for _ in range(2) for b in loader]

    expected = batches(manifest(root, cache="none"), 0)
    for cache in ({"cache": "disk", "cache_dir": str(tmp_path / "c")}, {"cache": "memory", "cache_bytes": 10**6}):
        got = batches(manifest(root, **cache), 2)
        assert len(got) == len(expected)
        for g, e in zip(got, expected):
            assert all(torch.equal(g[m], e[m]) for m in e)
    files = [p for p in (tmp_path / "c").rglob("*") if p.is_file()]
    assert len(files) == 2 * 8 and all(p.suffix == ".npy" for p in files)


# -------------------------------------------------------------------------------------------- num_workers


class Invariant:
    worker_invariant = True


class InMemory(Invariant):
    in_memory = True


@pytest.mark.parametrize(
    ("value", "dataset", "cores", "processes", "expected"),
    [
        ("auto", Invariant(), 2, 1, 0),  # 2 cores: the training step needs them
        ("auto", Invariant(), 3, 1, 2),
        ("auto", Invariant(), 16, 1, 4),
        ("auto", Invariant(), 16, 4, 3),  # 4 cores per process
        ("auto", object(), 16, 1, 0),  # may draw random numbers in load: workers would change results
        ("auto", InMemory(), 16, 1, 0),
        (3, object(), 2, 1, 3),  # an integer is used as given
        ("2", object(), 2, 1, 2),
    ],
)
def test_resolve_num_workers(
    monkeypatch: pytest.MonkeyPatch, value: int | str, dataset: object, cores: int, processes: int, expected: int
) -> None:
    monkeypatch.setattr(config_module, "usable_cores", lambda: cores)
    assert resolve_num_workers(value, dataset, processes) == expected


def test_num_workers_config_accepts_auto_and_integers_only() -> None:
    cfg = RunConfig()
    assert cfg.trainer.num_workers == "auto"
    for good in ("auto", 0, 2):
        cfg.trainer.num_workers = good
        validate_run_config(cfg)
    for bad in (-1, "many"):
        cfg.trainer.num_workers = bad
        with pytest.raises(ConfigError, match=r"trainer\.num_workers: expected an integer >= 0 or 'auto'"):
            validate_run_config(cfg)


@pytest.mark.slow
def test_training_results_do_not_depend_on_workers(tmp_path: Path) -> None:
    """A run with one persistent worker (train loader and kept eval loaders) equals the single-process run."""
    from mmrobust import api

    root = make_root(tmp_path / "data", n=24)
    rows = (root / "manifest.csv").read_text().splitlines()
    split = ["train"] * 12 + ["val"] * 6 + ["test"] * 6
    (root / "manifest.csv").write_text(
        "\n".join([rows[0], *(r[: r.rfind(",")] + f",{s}" for r, s in zip(rows[1:], split))])
    )
    common = [
        "dataset=manifest",
        f"dataset.root={root}",
        "dataset.modalities=[img,audio]",
        "dataset.readers={audio:{type:audio,sample_rate:8000,seconds:0.25}}",
        "model=mlp",
        "method=full",
        "trainer.max_epochs=2",
        "trainer.batch_size=4",
        "trainer.progress=false",
        "trainer.loggers=[csv]",
    ]
    results = [api.train([*common, f"trainer.num_workers={w}"], run_dir=tmp_path / f"run{w}") for w in (0, 1)]
    assert results[0]["metrics"] == results[1]["metrics"]
    histories = [json.loads((tmp_path / f"run{w}" / "history.json").read_text()) for w in (0, 1)]
    assert histories[0] == histories[1] and len(histories[0]) == 2  # the training losses, to the last bit
