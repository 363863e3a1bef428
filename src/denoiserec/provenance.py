"""Which code produced a number: the package version and, in a git checkout, the commit.

Every ``metrics.json`` records :func:`code_version`, so a report can print the commit beside
each figure (``denoiserec report``). ``dirty`` says the checkout had uncommitted changes, in
which case the commit alone does not reproduce the number.
"""

from __future__ import annotations

import functools
import importlib.metadata
import subprocess
from pathlib import Path
from typing import Any


def _git(*args: str) -> str | None:
    source = Path(__file__).resolve().parent
    try:
        done = subprocess.run(["git", "-C", str(source), *args], capture_output=True,
                              text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):  # no git on the machine
        return None
    return done.stdout.strip() if done.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def code_version() -> dict[str, Any]:
    """``{"version", "commit", "dirty"}``; commit and dirty are None outside a git checkout."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    try:
        version = importlib.metadata.version("denoiserec")
    except importlib.metadata.PackageNotFoundError:  # a source tree not installed
        version = None
    return {"version": version, "commit": commit,
            "dirty": None if status is None else bool(status)}
