"""The fingerprint of prepared logs: a sha256 over everything a model is trained and evaluated on.

Per log: the CSR offsets and item ids (int64, little-endian), the behaviours and the noise
labels where present, and the raw user and item ids; a missing log (no separate evaluation
log) counts too. Two preparations give the same digest exactly when they give the same
sequences of the same raw items with the same labels.
"""

from __future__ import annotations

import hashlib

import numpy as np

from denoiserec.data.log import Interactions


def _update(hasher: hashlib._Hash, tag: str, payload: bytes) -> None:
    hasher.update(f"{tag}:{len(payload)}:".encode())
    hasher.update(payload)


def _tokens(values: np.ndarray) -> bytes:
    return "\x1f".join(map(str, values)).encode()


def log_digest(*logs: Interactions | None) -> str:
    """sha256 (hex) of ``logs`` in order (see the module docstring)."""
    hasher = hashlib.sha256()
    for log in logs:
        if log is None:
            _update(hasher, "none", b"")
            continue
        _update(hasher, "offsets", np.ascontiguousarray(log.offsets, dtype="<i8").tobytes())
        _update(hasher, "items", np.ascontiguousarray(log.items, dtype="<i8").tobytes())
        if log.behaviours is not None:
            _update(hasher, "behaviours",
                    np.ascontiguousarray(log.behaviours, dtype="<i8").tobytes())
        if log.is_noise is not None:
            _update(hasher, "noise", np.packbits(log.is_noise).tobytes())
        _update(hasher, "users", _tokens(log.user_tokens))
        _update(hasher, "item_tokens", _tokens(log.item_tokens))
    return hasher.hexdigest()
