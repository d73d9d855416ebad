"""A cache of decoded inputs: a reader's output for one file, kept in memory (LRU by bytes) or on disk.

What is cached is what a file reader returns (decoded, resampled, turned into a spectrogram, normalized):
deterministic work that is the same every epoch. Random augmentation comes after, on the batch, and is never
cached. The key of an entry is

    (absolute path, size, mtime_ns, inode, ctime_ns, reader fingerprint)

where the file fields come from one ``os.stat`` per read (so an edited or replaced file is a miss, never stale
data) and the reader fingerprint hashes the reader's class, the source of its module(s), the mmrobust version
and every attribute of the reader object (sample rate, FFT size, mean/std, memory caps, ...): changed reader
settings or reader code are a miss too. Readers must be deterministic (the same file gives the same tensor).

Modes (``dataset.cache``):

- ``memory`` (default): an LRU of at most ``cache_bytes`` bytes per process, shared by the datasets (train /
  val / test) of that process built with the same budget. A DataLoader worker process has its own cache of
  ``cache_bytes / num_workers`` bytes (workers do not share memory), so the train loader's workers together
  hold at most ``cache_bytes``. A tensor larger than the budget is not cached. Hits return a copy.
- ``disk``: one ``.npy`` file per entry under ``cache_dir`` (default ``$XDG_CACHE_HOME/mmrobust/inputs``, i.e.
  ``~/.cache/mmrobust/inputs``), shared by worker processes and by later runs. Writes are atomic (a temporary
  file in the same folder, then ``os.replace``), so concurrent workers never see half a file; an entry of an
  edited file replaces the older entry of the same file and reader. The folder is not size-limited: delete it
  to reclaim the space. A failed write (disk full, read-only folder) is logged once and reading goes on.
- ``none``: every read decodes the file.

Cost of a hit: one ``os.stat`` plus a copy (memory) or an ``np.load`` (disk), microseconds for the small inputs
of a classification model, against about a millisecond to decode, resample and transform a short wav file.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import logging
import os
import re
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmrobust.registry import ConfigError

log = logging.getLogger(__name__)

CACHE_MODES = ("memory", "disk", "none")
DEFAULT_CACHE_BYTES = 2**30  # 1 GiB per process
CACHE_FORMAT = 1  # bump when the key or the file layout changes
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")  # object addresses in a repr differ between processes

Key = tuple[str, int, int, int, int, str]


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/mmrobust/inputs`` (``~/.cache/mmrobust/inputs`` when the variable is not set)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mmrobust" / "inputs"


class MemoryLRU:
    """At most ``max_bytes`` bytes of tensors, the least recently used dropped first.

    ``get`` and ``put`` are O(1); an entry replaced by a newer key of the same path (an edited file) is dropped
    at once rather than aged out.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.entries: OrderedDict[Key, torch.Tensor] = OrderedDict()
        self.by_path: dict[str, Key] = {}
        self.lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, key: Key) -> torch.Tensor | None:
        with self.lock:
            x = self.entries.get(key)
            if x is not None:
                self.entries.move_to_end(key)
            return x

    def put(self, key: Key, x: torch.Tensor) -> None:
        size = x.element_size() * x.numel()
        with self.lock:
            old = self.by_path.get(key[0])
            if old is not None:
                self._drop(old)
            if size > self.max_bytes:
                return
            while self.entries and self.bytes + size > self.max_bytes:
                self._drop(next(iter(self.entries)))
            self.entries[key] = x
            self.by_path[key[0]] = key
            self.bytes += size

    def _drop(self, key: Key) -> None:
        x = self.entries.pop(key, None)
        if x is not None:
            self.bytes -= x.element_size() * x.numel()
        if self.by_path.get(key[0]) == key:
            del self.by_path[key[0]]


# One store per budget in this process, shared by the datasets built with that budget; a forked DataLoader
# worker starts with empty stores (of budget / num_workers) rather than the parent's entries.
_STORES: dict[int, MemoryLRU] = {}
_STORES_PID = os.getpid()


def process_store(max_bytes: int) -> MemoryLRU:
    """The memory store of this process for the budget ``max_bytes`` (divided by the number of workers
    when called in a DataLoader worker)."""
    global _STORES_PID
    if os.getpid() != _STORES_PID:
        _STORES.clear()
        _STORES_PID = os.getpid()
    store = _STORES.get(max_bytes)
    if store is None:
        info = torch.utils.data.get_worker_info()
        store = _STORES[max_bytes] = MemoryLRU(max_bytes // info.num_workers if info else max_bytes)
    return store


def clear_memory_caches() -> None:
    """Empty every memory store of this process (tests start each case cold)."""
    _STORES.clear()


def _describe(value: Any) -> Any:
    """A JSON-able, process-independent description of a reader attribute."""
    if isinstance(value, torch.Tensor):
        data = value.detach().cpu().contiguous()
        digest = hashlib.sha256(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"").hexdigest()
        return ["tensor", str(data.dtype), list(data.shape), digest]
    if isinstance(value, np.ndarray):
        return ["ndarray", str(value.dtype), list(value.shape), hashlib.sha256(value.tobytes()).hexdigest()]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_describe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _describe(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if callable(value) and hasattr(value, "__qualname__"):
        return f"{getattr(value, '__module__', '?')}.{value.__qualname__}"
    return _ADDRESS.sub("", repr(value))


_SOURCE_DIGESTS: dict[type, str] = {}


def _class_source_digest(cls: type) -> str:
    """Hash of the source files of ``cls`` and its base classes (a code change invalidates disk entries)."""
    known = _SOURCE_DIGESTS.get(cls)
    if known is not None:
        return known
    h = hashlib.sha256()
    for klass in cls.__mro__:
        if klass is object:
            continue
        try:
            h.update(Path(inspect.getfile(klass)).read_bytes())
        except (TypeError, OSError):
            h.update(klass.__qualname__.encode())
    digest = _SOURCE_DIGESTS[cls] = h.hexdigest()
    return digest


def reader_fingerprint(reader: Any) -> str:
    """A hash of everything that decides what ``reader`` returns for a file: its class and the source of its
    module(s), the mmrobust version, the cache format and every attribute of the object."""
    import mmrobust

    cls = type(reader)
    try:
        fields = vars(reader)
    except TypeError:  # an object without a __dict__: its class and source decide
        fields = {}
    attrs = {name: _describe(value) for name, value in sorted(fields.items())}
    payload = {
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "source": _class_source_digest(cls),
        "version": getattr(mmrobust, "__version__", "?"),
        "format": CACHE_FORMAT,
        "attrs": attrs,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


class InputCache:
    """Reads files through a reader, with the cache of ``mode`` (see the module docstring).

    Args:
        mode: ``memory``, ``disk`` or ``none``.
        max_bytes: memory budget per process (``memory``).
        directory: the folder of the ``.npy`` entries (``disk``); None = ``default_cache_dir()``.

    ``hits`` / ``misses`` count the lookups of this object in this process.
    """

    def __init__(self, mode: str = "memory", max_bytes: int = DEFAULT_CACHE_BYTES, directory: str | None = None):
        if mode not in CACHE_MODES:
            raise ConfigError(f"dataset.cache: expected one of {list(CACHE_MODES)}, got {mode!r}")
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
            raise ConfigError(f"dataset.cache_bytes: expected an integer > 0 (bytes), got {max_bytes!r}")
        self.mode = mode
        self.max_bytes = max_bytes
        self.directory = Path(directory).expanduser() if directory else default_cache_dir()
        if mode == "disk":
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise ConfigError(
                    f"dataset.cache_dir: cannot create {self.directory} ({error.strerror or error}); "
                    "set a writable folder or dataset.cache=memory"
                ) from error
        self.hits = 0
        self.misses = 0
        self._fingerprints: dict[int, tuple[Any, str]] = {}  # id(reader) -> (reader kept alive, fingerprint)
        self._write_failed = False

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_fingerprints"] = {}  # recomputed in the worker (ids differ there)
        return state

    def fingerprint(self, reader: Any) -> str:
        """The reader's fingerprint, computed at its first read (settings are fixed once reading begins)."""
        known = self._fingerprints.get(id(reader))
        if known is None:
            known = self._fingerprints[id(reader)] = (reader, reader_fingerprint(reader))
        return known[1]

    def key(self, reader: Any, path: Path) -> Key:
        """The cache key of ``path`` read by ``reader``; raises FileNotFoundError for a missing file."""
        where = os.path.abspath(path)
        st = os.stat(where)
        return (where, st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns, self.fingerprint(reader))

    def read(self, reader: Callable[[Path], torch.Tensor], path: Path) -> torch.Tensor:
        """``reader(path)``, from the cache when an entry with the same key exists.

        Shape: whatever the reader returns (e.g. ``[1, F, T]``); a hit is bit-identical to a fresh read.
        """
        if self.mode == "none":
            return reader(path)
        key = self.key(reader, path)
        if self.mode == "memory":
            store = process_store(self.max_bytes)
            x = store.get(key)
            if x is not None:
                self.hits += 1
                return x.clone()
            self.misses += 1
            x = reader(path)
            store.put(key, x.clone())
            return x
        return self._read_disk(reader, path, key)

    # ------------------------------------------------------------------------------------------------ disk
    def entry_path(self, key: Key) -> Path:
        """``<dir>/<2 hex>/<hash of path and reader>.<hash of the file's stat>.npy``."""
        stem = hashlib.sha256(f"{key[0]}\0{key[5]}".encode()).hexdigest()[:32]
        stat = hashlib.sha256(repr(key[1:5]).encode()).hexdigest()[:16]
        return self.directory / stem[:2] / f"{stem}.{stat}.npy"

    def _read_disk(self, reader: Callable[[Path], torch.Tensor], path: Path, key: Key) -> torch.Tensor:
        entry = self.entry_path(key)
        try:
            array = np.load(entry, allow_pickle=False)
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as error:  # a damaged entry (truncated, not .npy): decode again
            log.warning("input cache entry %s is unreadable (%s); decoding %s again", entry, error, path)
        else:
            self.hits += 1
            return torch.from_numpy(array)
        self.misses += 1
        x = reader(path)
        self._write(entry, x)
        return x

    def _write(self, entry: Path, x: torch.Tensor) -> None:
        try:
            array = x.detach().cpu().numpy()
        except TypeError:  # a dtype numpy lacks (bfloat16): not cached
            return
        tmp = entry.with_name(f".{entry.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            with tmp.open("wb") as f:
                np.save(f, array, allow_pickle=False)
            os.replace(tmp, entry)
            stem = entry.name.split(".", 1)[0]
            for older in entry.parent.glob(f"{stem}.*.npy"):  # entries of an earlier version of this file
                if older.name != entry.name:
                    older.unlink(missing_ok=True)
        except OSError as error:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            if not self._write_failed:
                self._write_failed = True
                log.warning("cannot write the input cache in %s (%s); reading goes on uncached", entry.parent, error)
