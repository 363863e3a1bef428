"""The cache of prepared logs: flat ``.npy`` arrays in a folder named by the data's fingerprint.

One entry per (file content, preprocessing settings, cache format)::

    <cache_dir>/<sha256 key>/
        offsets.npy items.npy [timestamps.npy] [behaviours.npy]   int64 / float64 flat arrays
        user_tokens.npy item_tokens.npy                           fixed-width unicode
        meta.json                                                 behaviour tokens, source,
                                                                  settings, rows, seconds

An entry is written in a scratch folder and renamed into place when complete, so a reader sees
a whole entry or none. Arrays are opened memory-mapped and read-only: training and evaluation
page in what they touch, and several processes share one copy in the page cache.
The cache lives in ``$DENOISEREC_CACHE`` or ``~/.cache/denoiserec/prepared``
(``$XDG_CACHE_HOME`` honoured).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.format import open_memmap

from denoiserec.atomic import _umask, atomic_write_text
from denoiserec.data.log import Interactions

CACHE_FORMAT = 1  # bump when the arrays or the preprocessing change meaning
HASH_BLOCK = 1 << 24


def cache_dir() -> Path:
    """Where prepared logs are kept."""
    if os.environ.get("DENOISEREC_CACHE"):
        return Path(os.environ["DENOISEREC_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "denoiserec" / \
        "prepared"


def file_digest(path: Path) -> str:
    """sha256 of the file's bytes, read in blocks."""
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(HASH_BLOCK):
            hasher.update(block)
    return hasher.hexdigest()


def cache_key(path: Path, settings: dict[str, Any]) -> str:
    """The entry's name: sha256 over the file content, its format and the settings."""
    payload = {"format": CACHE_FORMAT, "content": file_digest(path),
               "suffix": path.suffix.lower(), "settings": settings}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


@dataclass
class PreparedArrays:
    """The writable memory maps of an entry being written."""

    folder: Path
    offsets: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray | None
    behaviours: np.ndarray | None

    def finish(self, *, user_tokens: np.ndarray, item_tokens: np.ndarray,
               behaviour_tokens: tuple[str, ...] | None, source: str,
               settings: dict[str, Any], seconds: float) -> None:
        """Flush the arrays and write the tokens and ``meta.json`` (the last file)."""
        for array in (self.offsets, self.items, self.timestamps, self.behaviours):
            if array is not None:
                array.flush()
        np.save(self.folder / "user_tokens.npy", np.asarray(user_tokens, dtype=str))
        np.save(self.folder / "item_tokens.npy", np.asarray(item_tokens, dtype=str))
        meta = {"format": CACHE_FORMAT, "rows": len(self.items),
                "users": len(self.offsets) - 1, "items": len(item_tokens) - 1,
                "behaviour_tokens": behaviour_tokens, "source": source,
                "settings": settings, "prepare_seconds": round(seconds, 3)}
        atomic_write_text(self.folder / "meta.json", json.dumps(meta, indent=1))


@contextmanager
def write_prepared(key: str, root: Path | None, *, n_rows: int, n_users: int,
                   timestamps: bool, behaviours: bool) -> Iterator[PreparedArrays]:
    """Memory maps to fill; the entry appears under its key only if the block completes."""
    root = root or cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{key[:16]}.", dir=root))
    try:
        os.chmod(scratch, 0o777 & ~_umask())  # a plain mkdir's mode, not mkdtemp's 0700
        def array(name: str, dtype: str, size: int) -> np.ndarray:
            return open_memmap(scratch / f"{name}.npy", mode="w+", dtype=dtype, shape=(size,))

        arrays = PreparedArrays(
            folder=scratch, offsets=array("offsets", "<i8", n_users + 1),
            items=array("items", "<i8", n_rows),
            timestamps=array("timestamps", "<f8", n_rows) if timestamps else None,
            behaviours=array("behaviours", "<i8", n_rows) if behaviours else None)
        yield arrays
        del arrays
        target = root / key
        if target.exists():  # another process prepared it meanwhile: same content
            shutil.rmtree(scratch)
        else:
            os.replace(scratch, target)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise


def entry_bytes(key: str, root: Path | None = None) -> int:
    """Disk size of an entry (its files)."""
    folder = (root or cache_dir()) / key
    return sum(path.stat().st_size for path in folder.iterdir())


def load_prepared(key: str, name: str, root: Path | None = None) -> Interactions | None:
    """The entry ``key`` as memory-mapped, read-only ``Interactions``; None when absent."""
    folder = (root or cache_dir()) / key
    if not (folder / "meta.json").is_file():
        return None
    meta = json.loads((folder / "meta.json").read_text())

    def array(file: str) -> np.ndarray | None:
        path = folder / f"{file}.npy"
        return np.load(path, mmap_mode="r") if path.is_file() else None

    kinds = meta["behaviour_tokens"]
    return Interactions(
        offsets=array("offsets"), items=array("items"),
        user_tokens=array("user_tokens"), item_tokens=array("item_tokens"),
        timestamps=array("timestamps"), behaviours=array("behaviours"),
        behaviour_tokens=None if kinds is None else tuple(kinds), name=name)
