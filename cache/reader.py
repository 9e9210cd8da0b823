"""Reading cached features: a lazy, read-only view that slices on disk.

    from cache import open_feature
    feat = open_feature("demo", "is09")          # data/cache/demo/is09.h5
    feat.ids, feat.shape                          # clip ids, (N, 384)
    x = feat.array()                              # [N, 384] float32, rows of failed clips are NaN
    x, ids = feat.array(ids=["sample_00000001"]), ...
    feat.status_of("sample_00000003"), feat.failures()
    feat.sequence("sample_00000001", key="frames")   # a ragged frame-level sequence
    feat.provenance                               # extractor, version, config, libraries, ...
"""
from __future__ import annotations

from functools import cached_property
from pathlib import Path

import h5py
import numpy as np

from .store import FAILED, STATUS_NAMES, provenance_of
from .writer import cache_root, feature_path


class FeatureReader:
    """A complete feature file opened read-only once; arrays are read only when asked for."""

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.exists():
            parts = self.path.with_suffix(".parts")
            hint = " (its extraction is unfinished: re-run it to resume)" if parts.is_dir() else ""
            raise FileNotFoundError(f"no cached feature at {self.path}{hint}")
        self._file = h5py.File(self.path, "r")

    def close(self):
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @cached_property
    def ids(self) -> list[str]:
        return [s.decode() if isinstance(s, bytes) else s for s in self._file["ids"][()]]

    @cached_property
    def _row(self) -> dict[str, int]:
        return {cid: i for i, cid in enumerate(self.ids)}

    @cached_property
    def status(self) -> list[str]:
        return [STATUS_NAMES[s] for s in self._file["status"][()]]

    @cached_property
    def reasons(self) -> list[str]:
        return [s.decode() if isinstance(s, bytes) else s for s in self._file["reason"][()]]

    @property
    def attrs(self) -> dict:
        return dict(self._file.attrs)

    @cached_property
    def provenance(self) -> dict:
        return provenance_of(self.attrs)

    @property
    def name(self) -> str:
        return self._file.attrs["feature"]

    @property
    def keys(self) -> list[str]:
        return list(self._file.get("arrays", {}))

    @property
    def sequence_keys(self) -> list[str]:
        return list(self._file.get("ragged", {}))

    @property
    def primary(self) -> str:
        return self._file.attrs.get("primary") or self.keys[0]

    @property
    def shape(self) -> tuple:
        return self._file[f"arrays/{self.primary}"].shape

    def status_of(self, clip_id: str) -> tuple[str, str]:
        row = self._row[clip_id]
        return self.status[row], self.reasons[row]

    def failures(self) -> dict[str, str]:
        return {cid: r for cid, s, r in zip(self.ids, self.status, self.reasons) if s == "failed"}

    def ok_ids(self) -> list[str]:
        return [cid for cid, s in zip(self.ids, self.status) if s != "failed"]

    def array(self, key: str | None = None, ids=None) -> np.ndarray:
        """[n, ...] array of `key` (default: the primary array) for `ids` (default: all, in file order)."""
        dset = self._file[f"arrays/{key or self.primary}"]
        if h5py.check_string_dtype(dset.dtype):  # str arrays (e.g. transcripts) come back as str
            values = dset.asstr()[()]
            return values if ids is None else values[np.asarray(self._rows(ids), dtype=int)]
        if ids is None:
            return dset[()]
        rows = self._rows(ids)
        order = np.argsort(rows)
        out = np.empty((len(rows),) + dset.shape[1:], dset.dtype)
        out[order] = dset[np.asarray(rows)[order]]  # h5py wants increasing indices
        return out

    def sequence(self, clip_id: str, key: str | None = None) -> np.ndarray:
        """The frame-level sequence [T, ...] of one clip."""
        key = key or self.sequence_keys[0]
        row = self._row[clip_id]
        offsets = self._file[f"ragged/{key}/offsets"]
        start, stop = int(offsets[row]), int(offsets[row + 1])
        return self._file[f"ragged/{key}/values"][start:stop]

    def _rows(self, ids) -> list[int]:
        missing = [cid for cid in ids if cid not in self._row]
        if missing:
            raise KeyError(f"{self.name}: clips not in the cache: {missing[:5]}")
        return [self._row[cid] for cid in ids]

    def size_on_disk(self) -> int:
        return self.path.stat().st_size

    def failed_mask(self) -> np.ndarray:
        return self._file["status"][()] == FAILED


def open_feature(dataset: str, feature: str, root=None) -> FeatureReader:
    """Open the cached `feature` of `dataset` under the cache root (see `cache_root`)."""
    return FeatureReader(feature_path(root, dataset, feature))


def list_features(root=None, dataset: str | None = None) -> list[Path]:
    """Feature files (complete) and unfinished extractions (`.parts` folders) under the root."""
    base = cache_root(root)
    folders = [base / dataset] if dataset else sorted(p for p in base.glob("*") if p.is_dir())
    found = []
    for folder in folders:
        found += sorted(folder.glob("*.h5")) + sorted(p for p in folder.glob("*.parts")
                                                      if not p.with_suffix(".h5").exists())
    return found
