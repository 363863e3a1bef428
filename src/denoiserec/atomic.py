"""File safety: atomic writes and pid lock files.

Atomic writes render the content in memory, write it to a temporary file in the target folder,
then ``os.replace`` it into place, so a crash never leaves a half-written file where a good one
was; the file gets the permissions a plain ``open`` would give it (``0666`` less the user's
umask), not ``mkstemp``'s ``0600``. A write that fails (read-only folder, full disk) raises a
one-line :class:`~denoiserec.errors.OutputError` naming the file.

A lock file holds the pid of its owner and the process's start time (``pid start``), and
appears with them already in it (written to a temporary file, then hard-linked into place), so
no reader ever sees an empty lock. A lock whose process is gone is taken over, so a crashed
process blocks nothing; so is one whose pid now belongs to a process started at another time
(the pid was reused after a ``kill -9``).
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from denoiserec.errors import OutputError


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, writer: Callable[[BinaryIO], object]) -> None:
    """Render with ``writer``, write a temporary file in the same folder, ``os.replace`` it.

    Raises:
        OutputError: the folder or the file cannot be written (read-only, disk full, ...).
    """
    buffer = io.BytesIO()  # rendered first, so that a full disk is an OSError of one plain
    writer(buffer)  # write (torch.save would raise a RuntimeError from inside its writer)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise OutputError(f"cannot write {path}: {err.strerror or err}") from err
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o666 & ~_umask())
            handle.write(buffer.getbuffer())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise OutputError(f"cannot write {path}: {err.strerror or err}") from err
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, lambda handle: handle.write(text.encode()))


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def start_time(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, Linux ``/proc``); None unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]  # field 22: starttime


def _lock_text(lock: Path) -> list[str]:
    try:
        return lock.read_text().split()
    except FileNotFoundError:
        return []


def lock_holder(lock: Path) -> int | None:
    """The pid written in ``lock``, None when there is no lock (or no pid in it)."""
    fields = _lock_text(lock)
    return int(fields[0]) if fields and fields[0].isdigit() else None


def holder_alive(lock: Path) -> bool:
    """The process that wrote ``lock`` still runs: its pid is alive and, where the lock
    records a start time, that pid's process started then (not a later one reusing it)."""
    holder, fields = lock_holder(lock), _lock_text(lock)
    if holder is None or not pid_alive(holder):
        return False
    return len(fields) < 2 or start_time(holder) in (None, fields[1])


def _take(lock: Path) -> bool:
    """Create ``lock`` holding our pid and start time; False if it already exists."""
    tmp = lock.with_name(f".{lock.name}.{os.getpid()}.tmp")
    tmp.write_text(f"{os.getpid()} {start_time(os.getpid()) or ''}".strip())
    try:
        os.link(tmp, lock)
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    return True


@contextmanager
def pid_lock(lock: Path) -> Iterator[bool]:
    """Hold ``lock`` for the ``with`` block: yields True, or False (holding nothing) when a live
    process, this one included, holds it. A lock left by a process that is gone is taken over."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    while not _take(lock):
        try:
            seen = lock.stat().st_ino
        except FileNotFoundError:  # released meanwhile: try again
            continue
        if holder_alive(lock):
            yield False
            return
        try:  # remove the stale lock unless another process replaced it meanwhile
            if lock.stat().st_ino == seen:
                lock.unlink()
        except FileNotFoundError:
            pass
    try:
        yield True
    finally:
        lock.unlink(missing_ok=True)
