"""Integrity checks of a feature file, a part or a clip table: every value is read back (in
bounded blocks) against its checksum, and the columns are checked against each other."""
from __future__ import annotations

from typing import NamedTuple

import h5py
import numpy as np

from . import checksums
from .checksums import power_of_two
from .clips import FORMAT as CLIPS_FORMAT
from .hdf5 import DamagedFile, members, named
from .store import FAILED, FORMAT, read_strings


class Checked(NamedTuple):
    problems: list[str]  # empty when the file is sound
    checksummed: bool    # False: written before checksums were stored, a changed byte goes unseen


def verify_file(path) -> Checked:
    """Problems found in the feature file or part `path`."""
    return _verify(path, _check_feature)


def verify_clips(path) -> Checked:
    """Problems found in a clip table (`_clips.h5`)."""
    return _verify(path, _check_clips)


def _verify(path, check) -> Checked:
    try:
        with named(path), h5py.File(path, "r") as f:
            checksummed = checksums.has_checksums(f)
            problems, finite = _read_back(path, f, checksummed)
            return Checked(problems or check(f, finite), checksummed)
    except DamagedFile as err:
        return Checked([err.cause], False)


def _read_back(path, f: h5py.File, checksummed: bool) -> tuple[list[str], dict[str, np.ndarray]]:
    """Read every value of `f` (checked against its checksums): (the problems found, {float
    dataset: bool [N], its rows with a finite value})."""
    problems, datasets, finite = [], [], {}
    f.visititems(lambda name, obj: datasets.append(name) if isinstance(obj, h5py.Dataset) else None)
    for name in ["its attributes"] + datasets:
        try:
            with named(path, f"/{name}"):
                if name == "its attributes":
                    checksums.read_attrs(f)
                elif h5py.check_string_dtype(f[name].dtype) is not None:
                    checksums.read_strings(f, name)
                else:
                    finite[name] = _rows_with_values(f[name])
        except DamagedFile as err:
            problems.append(err.cause)
    if checksummed:
        problems += [f"/{name}: stored without a checksum" for name in checksums.unchecked(f)]
    return problems, finite


def blocks(dset: h5py.Dataset):
    """dset's rows, checksums.BLOCK_BYTES at a time (whole chunks: both are powers of two rows)."""
    row_bytes = max(1, int(np.prod(dset.shape[1:], dtype=np.int64)) * dset.dtype.itemsize)
    step = power_of_two(checksums.BLOCK_BYTES // row_bytes)
    for start in range(0, dset.shape[0], step):
        yield start, dset[start:start + step]


def _check_feature(f: h5py.File, finite: dict[str, np.ndarray]) -> list[str]:
    problems = []
    if f.attrs.get("format") != FORMAT:
        problems.append(f"format {f.attrs.get('format')!r}, expected {FORMAT!r}")
    for attr in ("feature", "fingerprint", "provenance"):
        if attr not in f.attrs:
            problems.append(f"attribute '{attr}' missing")
    ids = read_strings(f, "ids")
    n, status = len(ids), f["status"][()]
    if len(set(ids)) != n:
        problems.append("duplicate clip ids")
    if ids != sorted(ids):
        problems.append("clip ids not sorted")
    if len(status) != n or len(f["reason"]) != n or ("source" in f and len(f["source"]) != n):
        problems.append("status / reason / source length differs from ids")
        return problems
    if (status > FAILED).any():
        problems.append(f"status codes other than 0, 1, 2: {sorted(set(status[status > FAILED].tolist()))[:3]}")
    problems += _check_arrays(f, ids, status == FAILED, finite)
    for key, group in members(f, "ragged").items():
        offsets = group["offsets"][()]
        if len(offsets) != n + 1 or (np.diff(offsets) < 0).any() or offsets[-1] != len(group["values"]):
            problems.append(f"sequence {key}: offsets inconsistent with values")
    return problems


def _check_arrays(f: h5py.File, ids: list[str], failed: np.ndarray, finite: dict[str, np.ndarray]) -> list[str]:
    problems, n, primary = [], len(ids), f.attrs.get("primary")
    for key, dset in members(f, "arrays").items():
        if dset.shape[0] != n:
            problems.append(f"array {key}: {dset.shape[0]} rows for {n} clips")
        elif np.issubdtype(dset.dtype, np.floating):
            # NaN marks what is missing: a failed clip's whole row, or masked frames of a good clip
            has_value = finite[f"arrays/{key}"]
            _report(problems, ids, has_value & failed, f"array {key}: values for clips marked failed")
            if key == primary:
                _report(problems, ids, ~has_value & ~failed, f"array {key}: no value for clips not marked failed")
    return problems


def _check_clips(f: h5py.File, _finite) -> list[str]:
    problems = []
    if f.attrs.get("format") != CLIPS_FORMAT:
        problems.append(f"format {f.attrs.get('format')!r}, expected {CLIPS_FORMAT!r}")
    ids = read_strings(f, "ids")
    if len(set(ids)) != len(ids) or ids != sorted(ids):
        problems.append("clip ids not unique and sorted")
    lengths = {name: len(f[name]) for name in ("split", "label", "valence", "origin") if name in f}
    if any(n != len(ids) for n in lengths.values()):
        problems.append(f"columns of other lengths than its {len(ids)} ids: {lengths}")
    for attr in ("dataset", "classes", "multi_label", "manifest_fingerprint"):
        if attr not in f.attrs:
            problems.append(f"attribute '{attr}' missing")
    return problems


def _rows_with_values(dset: h5py.Dataset) -> np.ndarray:
    """bool [N]: rows of an array [N, ...] with at least one finite value, read in blocks."""
    out = np.zeros(dset.shape[0], bool)
    for start, block in blocks(dset):
        out[start:start + len(block)] = np.isfinite(block.reshape(len(block), -1)).any(axis=1)
    return out


def _report(problems: list[str], ids: list[str], bad: np.ndarray, what: str):
    if bad.any():
        problems.append(f"{what}: {[ids[i] for i in np.flatnonzero(bad)[:3]]}")
