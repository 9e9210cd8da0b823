"""Reading cached features: a lazy, read-only view that slices on disk.

    from cache import open_feature
    feat = open_feature("demo", "is09")          # data/cache/demo/is09.h5
    feat.ids, feat.shape                          # clip ids, (N, 384)
    x = feat.array()                              # [N, 384] float32, rows of failed clips are NaN
    x = feat.array(ids=["sample_00000001"])       # sliced on disk, in the order asked
    x = feat.array(layers=[18, 19, 20])           # [N, L, D] -> [N, 3, D]: only those layers are read
    feat.status_of("sample_00000003"), feat.failures()
    feat.sequence("sample_00000001", key="frames")   # a ragged frame-level sequence
    feat.provenance                               # extractor, version, config, libraries, ...

A failed clip has no value: float arrays read NaN for it, string arrays None, and an integer or
bool array (e.g. `n_pieces`, face-crop pixels) refuses to hand out its row (ValueError naming the
clips; ask for `ids=feat.ok_ids()`), since any number there would be made up. A feature whose every
clip failed holds no array at all: asking for one raises EveryClipFailed with the first reason.

Every read is checked (cache.checksums): a file that is truncated or whose bytes changed raises
cache.DamagedFile naming it, never different values.

A reader is picklable: it keeps its path, and each process opens the file on first use.
"""
from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

import h5py
import numpy as np

from . import checksums
from .hdf5 import DamagedFile, members, named, open_read
from .store import FAILED, STATUS_NAMES, provenance_of
from .writer import cache_root, feature_path

MAX_GAP = 32  # rows skipped between two requested rows still read in one call (fewer calls)
CHUNK_BYTES = 64 << 20  # rows read in one call at most (read_rows: the temporary of a run)


class EveryClipFailed(ValueError):
    """A cached feature whose every clip failed: it holds no array to read."""


class FeatureReader:
    """A complete feature file opened read-only (once per process); arrays are read only when asked for."""

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.exists():
            parts = self.path.with_suffix(".parts")
            hint = " (its extraction is unfinished: re-run it to resume)" if parts.is_dir() else ""
            raise FileNotFoundError(f"no cached feature at {self.path}{hint}")
        # opened now: an unreadable file is an error here, not at the first read
        self._handle, self._pid = open_read(self.path), os.getpid()
        self._offsets_read: dict[str, np.ndarray] = {}

    @property
    def _file(self) -> h5py.File:
        if self._handle is None or self._pid != os.getpid():  # a forked worker opens its own
            self._handle, self._pid = open_read(self.path), os.getpid()
        return self._handle

    def _reading(self, what: str = ""):
        """Around every read: h5py's errors on a damaged file become DamagedFile naming it."""
        return named(self.path, what)

    def __getstate__(self):
        return {"path": self.path}

    def __setstate__(self, state):
        self.path, self._handle, self._pid, self._offsets_read = state["path"], None, None, {}

    def close(self):
        if self._handle is not None and self._pid == os.getpid():
            self._handle.close()
        self._handle = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @cached_property
    def ids(self) -> list[str]:
        with self._reading("/ids"):
            return list(checksums.read_strings(self._file, "ids"))

    @cached_property
    def _row(self) -> dict[str, int]:
        return {cid: i for i, cid in enumerate(self.ids)}

    @cached_property
    def _status_codes(self) -> np.ndarray:
        with self._reading("/status"):
            codes = self._file["status"][()]
        if len(codes) != len(self.ids) or (codes > FAILED).any():
            raise DamagedFile(self.path, "its status column does not fit its clip ids")
        return codes

    @cached_property
    def status(self) -> list[str]:
        return [STATUS_NAMES[s] for s in self._status_codes]

    @cached_property
    def reasons(self) -> list[str]:
        with self._reading("/reason"):
            return list(checksums.read_strings(self._file, "reason"))

    @cached_property
    def attrs(self) -> dict:
        with self._reading("its attributes"):
            return checksums.read_attrs(self._file)

    @cached_property
    def provenance(self) -> dict:
        return provenance_of(self.attrs)

    @property
    def name(self) -> str:
        return self.attrs["feature"]

    @cached_property
    def keys(self) -> list[str]:
        with self._reading("/arrays"):
            return list(members(self._file, "arrays"))

    @cached_property
    def sequence_keys(self) -> list[str]:
        with self._reading("/ragged"):
            return list(members(self._file, "ragged"))

    @property
    def primary(self) -> str:
        if not self.keys and not self.sequence_keys:
            reason = next(iter(self.failures().values()), "") if self.ids else ""
            raise EveryClipFailed(f"{self.name} ({self.path}): all {len(self.ids)} of its clips failed, so it holds "
                                  f"no array; the first failure: {reason or 'no reason recorded'}")
        return self.attrs.get("primary") or self.keys[0]

    @property
    def shape(self) -> tuple:
        return self.dataset().shape

    def dataset(self, key: str | None = None) -> h5py.Dataset:
        """The stored array `key` (default: the primary), unread (its reads are not named: read
        through `array`)."""
        if (key or self.primary) not in self.keys:
            raise KeyError(f"{self.name}: no array {key!r} (arrays: {', '.join(self.keys)}; "
                           f"sequences: {', '.join(self.sequence_keys) or 'none'})")
        with self._reading(f"/arrays/{key or self.primary}"):
            return self._file[f"arrays/{key or self.primary}"]

    def sequence_dataset(self, key: str) -> h5py.Dataset:
        """The concatenated values [sum T, ...] of sequence `key`, unread."""
        if key not in self.sequence_keys:
            raise KeyError(f"{self.name}: no sequence {key!r} (sequences: {', '.join(self.sequence_keys) or 'none'})")
        with self._reading(f"/ragged/{key}/values"):
            return self._file[f"ragged/{key}/values"]

    def status_of(self, clip_id: str) -> tuple[str, str]:
        row = self._row[clip_id]
        return self.status[row], self.reasons[row]

    def failures(self) -> dict[str, str]:
        return {cid: r for cid, s, r in zip(self.ids, self.status, self.reasons) if s == "failed"}

    def ok_ids(self) -> list[str]:
        return [cid for cid, s in zip(self.ids, self.status) if s != "failed"]

    def array(self, key: str | None = None, ids=None, layers=None) -> np.ndarray:
        """[n, ...] array of `key` (default: the primary array) for `ids` (default: all, in file order).

        `layers` (indices into axis 1 of a per-layer [N, L, D] array, any order, no repeats) reads
        only those layers from disk: [n, len(layers), D]. Stored dtype; see the module docstring
        for failed clips."""
        dset = self.dataset(key)
        rows = np.arange(len(self.ids)) if ids is None else np.asarray(self._rows(ids), dtype=np.int64)
        failed = self.failed_mask()[rows]
        if h5py.check_string_dtype(dset.dtype):  # str arrays (e.g. transcripts) come back as str
            with self._reading(dset.name):
                values = checksums.read_strings(self._file, dset.name)[rows]
            values[failed] = None
            return values
        if failed.any() and dset.dtype.kind not in "fc":  # no NaN to mark them: refuse, never invent
            names = [self.ids[r] for r in rows[failed]]
            more = f" (+{len(names) - 5} more)" if len(names) > 5 else ""
            raise ValueError(f"{self.name}: array '{dset.name.rsplit('/', 1)[1]}' is {dset.dtype} and has no value "
                             f"for the failed clips {names[:5]}{more}; ask for the usable ones: ids=feat.ok_ids()")
        check_layers(dset, layers)
        with self._reading(dset.name):
            return read_rows(dset, rows, layers)

    def sequence(self, clip_id: str, key: str | None = None) -> np.ndarray:
        """The frame-level sequence [T, ...] of one clip."""
        key = key or self.sequence_keys[0]
        return self.sequences(key, [clip_id])[0]

    def sequences(self, key: str, ids, layers=None) -> list[np.ndarray]:
        """[T, ...] per clip of `ids`, read as frame rows of the concatenated values (only the
        chosen `layers` of a [T, L, ...] sequence)."""
        values = self.sequence_dataset(key)
        check_layers(values, layers)
        starts, stops = self.spans(key, ids)
        frames = np.concatenate([np.arange(a, b) for a, b in zip(starts, stops)] or [np.zeros(0, np.int64)])
        with self._reading(values.name):
            values = read_rows(values, frames, layers)
        return np.split(values, np.cumsum(stops - starts)[:-1]) if len(ids) else []

    def spans(self, key: str, ids) -> tuple[np.ndarray, np.ndarray]:
        """(starts, stops) of the clips' frames in sequence `key`'s concatenated values."""
        rows = np.asarray(self._rows(ids), dtype=np.int64)
        offsets = self._offsets(key)
        return offsets[rows], offsets[rows + 1]

    def _offsets(self, key: str) -> np.ndarray:
        if key not in self._offsets_read:  # small (N + 1 int64): read and checked once
            with self._reading(f"/ragged/{key}"):
                offsets, n_values = self._file[f"ragged/{key}/offsets"][()], len(self._file[f"ragged/{key}/values"])
            if len(offsets) != len(self.ids) + 1 or (np.diff(offsets) < 0).any() or offsets[-1] != n_values:
                raise DamagedFile(self.path, f"the offsets of sequence {key!r} do not fit its values")
            self._offsets_read[key] = offsets
        return self._offsets_read[key]

    def _rows(self, ids) -> list[int]:
        missing = [cid for cid in ids if cid not in self._row]
        if missing:
            raise KeyError(f"{self.name}: clips not in the cache: {missing[:5]}")
        return [self._row[cid] for cid in ids]

    def size_on_disk(self) -> int:
        return self.path.stat().st_size

    def failed_mask(self) -> np.ndarray:
        return self._status_codes == FAILED


def check_layers(dset: h5py.Dataset, layers):
    """ValueError unless `layers` (None: all) are distinct indices into axis 1 of `dset`."""
    if layers is not None and (dset.ndim < 2 or len(set(int(i) for i in layers)) != len(layers)):
        raise ValueError(f"layers {list(layers)}: needs distinct indices into axis 1 of a [N, L, ...] array, "
                         f"not {dset.shape}")


def read_rows(dset: h5py.Dataset, rows: np.ndarray, layers=None) -> np.ndarray:
    """dset[rows][:, layers] without reading the other rows or layers (h5py takes one index
    list per read: rows are read as contiguous runs, layers as one sorted list) and without a
    second copy of the result: rows asked out of file order (or repeated) are placed where they
    were asked run by run, each run at most CHUNK_BYTES (a reorder of the whole result doubled
    the peak of loading MER-sized spectrogram pieces)."""
    if layers is not None:
        layers = [int(i) for i in layers]
    wanted, inverse = np.unique(rows, return_inverse=True)
    inverse = inverse.reshape(-1)
    chosen = sorted(layers) if layers is not None else None
    width = dset.shape[1:] if chosen is None else (len(chosen),) + dset.shape[2:]
    in_order = np.array_equal(inverse, np.arange(len(wanted)))
    out = np.empty((len(inverse),) + width, dset.dtype)
    if not in_order:  # the positions asked, grouped by the file row they ask for
        by_wanted = np.argsort(inverse, kind="stable")
        grouped = inverse[by_wanted]
    row_bytes = max(1, int(np.prod(width)) * dset.dtype.itemsize)
    for start, stop in _runs(wanted, max_rows=max(1, min(4096, CHUNK_BYTES // row_bytes))):
        first, last = int(wanted[start]), int(wanted[stop - 1]) + 1
        source = np.s_[first:last] if chosen is None else np.s_[first:last, chosen]
        if in_order and last - first == stop - start:  # a run without gaps: straight into `out`
            dset.read_direct(out, source, np.s_[start:stop])
            continue
        block = dset[source]
        if last - first != stop - start:
            block = block[wanted[start:stop] - first]
        if in_order:
            out[start:stop] = block
        else:
            positions = by_wanted[np.searchsorted(grouped, start):np.searchsorted(grouped, stop)]
            out[positions] = block[inverse[positions] - start]
    if chosen is not None and chosen != layers:
        out = out[:, [chosen.index(i) for i in layers]]
    return out


def _runs(rows: np.ndarray, max_gap: int = MAX_GAP, max_rows: int = 4096) -> list[tuple[int, int]]:
    """(start, stop) positions into sorted `rows` of the runs read in one call each."""
    cuts = [0, *(np.flatnonzero(np.diff(rows) > max_gap) + 1).tolist(), len(rows)]
    return [(lo, min(lo + max_rows, hi)) for a, hi in zip(cuts, cuts[1:]) for lo in range(a, hi, max_rows)]


def open_feature(dataset: str, feature: str, root=None) -> FeatureReader:
    """Open the cached `feature` of `dataset` under the cache root (see `cache_root`)."""
    return FeatureReader(feature_path(root, dataset, feature))


def list_features(root=None, dataset: str | None = None) -> list[Path]:
    """Feature files (complete) and unfinished extractions (`.parts` folders) under the root
    (not the clip table `_clips.h5`: a feature file's name never starts with '_')."""
    base = cache_root(root)
    folders = [base / dataset] if dataset else sorted(p for p in base.glob("*") if p.is_dir())
    found = []
    for folder in folders:
        found += sorted(p for p in folder.glob("*.h5") if not p.name.startswith("_"))
        found += sorted(p for p in folder.glob("*.parts") if not p.with_suffix(".h5").exists())
    return found
