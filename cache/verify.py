"""Integrity checks of one feature file or part, reading arrays in bounded blocks."""
from __future__ import annotations

import h5py
import numpy as np

from .merge import BLOCK_BYTES
from .store import FAILED, FORMAT, read_strings


def verify_file(path) -> list[str]:
    """Problems found in `path` (empty when it is sound)."""
    try:
        with h5py.File(path, "r") as f:
            return _check(f)
    except (OSError, KeyError) as err:
        return [f"unreadable: {err}"]


def _check(f: h5py.File) -> list[str]:
    problems = []
    if f.attrs.get("format") != FORMAT:
        problems.append(f"format {f.attrs.get('format')!r}, expected {FORMAT!r}")
    for attr in ("feature", "fingerprint", "provenance"):
        if attr not in f.attrs:
            problems.append(f"attribute '{attr}' missing")
    ids = read_strings(f, "ids")
    n, failed = len(ids), f["status"][()] == FAILED
    if len(set(ids)) != n:
        problems.append("duplicate clip ids")
    if ids != sorted(ids):
        problems.append("clip ids not sorted")
    if len(failed) != n or len(f["reason"]) != n or ("source" in f and len(f["source"]) != n):
        problems.append("status / reason / source length differs from ids")
    primary = f.attrs.get("primary")
    for key, dset in f.get("arrays", {}).items():
        if dset.shape[0] != n:
            problems.append(f"array {key}: {dset.shape[0]} rows for {n} clips")
        elif np.issubdtype(dset.dtype, np.floating):
            # NaN marks what is missing: a failed clip's whole row, or masked frames of a good clip
            finite = _rows_with_values(dset)
            _report(problems, ids, finite & failed, f"array {key}: values for clips marked failed")
            if key == primary:
                _report(problems, ids, ~finite & ~failed, f"array {key}: no value for clips not marked failed")
    for key, group in f.get("ragged", {}).items():
        offsets = group["offsets"][()]
        if len(offsets) != n + 1 or (np.diff(offsets) < 0).any() or offsets[-1] != len(group["values"]):
            problems.append(f"sequence {key}: offsets inconsistent with values")
    return problems


def _rows_with_values(dset: h5py.Dataset) -> np.ndarray:
    """bool [N]: rows of a float array [N, ...] with at least one finite value, read in blocks."""
    n = dset.shape[0]
    row_bytes = max(1, int(np.prod(dset.shape[1:], dtype=np.int64)) * dset.dtype.itemsize)
    step, out = max(1, BLOCK_BYTES // row_bytes), np.zeros(n, bool)
    for start in range(0, n, step):
        block = dset[start:start + step]
        out[start:start + len(block)] = np.isfinite(block.reshape(len(block), -1)).any(axis=1)
    return out


def _report(problems: list[str], ids: list[str], bad: np.ndarray, what: str):
    if bad.any():
        problems.append(f"{what}: {[ids[i] for i in np.flatnonzero(bad)[:3]]}")
