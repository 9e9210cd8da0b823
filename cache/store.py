"""One HDF5 file per (dataset, feature), written crash-safely in parts and merged atomically.

Layout of a feature file (and of each part, which is a small feature file):

    /ids                  str [N]         clip ids, sorted
    /status               uint8 [N]       0 ok, 1 flagged (processed, see reason), 2 failed
    /reason               str [N]         why a clip is flagged or failed ('' when ok)
    /source               str [N]         signature of the clip's input (media size, transcript):
                                          a clip whose input changed is extracted again
    /arrays/<key>         [N, ...]        utterance-level ([N, D]) or per-layer ([N, L, D]) arrays;
                                          rows of failed clips are NaN (float), 0 (int) or '' (str)
    /ragged/<key>/values  [sum T, ...]    frame-level sequences, concatenated
    /ragged/<key>/offsets int64 [N + 1]   clip i is values[offsets[i]:offsets[i+1]]
    attrs                 feature, dataset, fingerprint, provenance (JSON), primary, format

Work in flight lives in `<feature>.parts/`: each part is written to a temporary name and renamed
when complete, so `kill -9` loses at most the clips not yet flushed. A file under its final name
is always complete and readable; `merge` replaces it atomically. How shards on several machines
share one folder (temporaries named by owner, fsync, the merge lease, lock-free readers) is
described in `cache.commit`; the merge itself, streamed in bounded blocks, in `cache.merge`.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from . import checksums
from .checksums import create_numbers, create_strings, seal_attrs
from .commit import atomic_write, owner
from .hdf5 import create

FORMAT = "mer-cache/1"
OK, FLAGGED, FAILED = 0, 1, 2
STATUS_NAMES = ("ok", "flagged", "failed")
STR = checksums.STR
_MTIME = re.compile(r";mtime=-?\d+")


class ConfigMismatch(RuntimeError):
    """A feature is already cached with a different extractor config."""


def feature_slug(feature: str) -> str:
    """File-name form of a feature name ('ssl:models/tiny' -> 'ssl_models_tiny')."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", feature).strip("_")


@dataclass
class Records:
    """Clips of one file or part, in memory."""

    ids: list[str] = field(default_factory=list)
    status: list[int] = field(default_factory=list)
    reason: list[str] = field(default_factory=list)
    source: list[str] = field(default_factory=list)  # signature of the clip's input (see Clip.signature)
    arrays: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    ragged: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    def add(self, clip_id, arrays, ragged, status, reason, source=""):
        self.ids.append(clip_id)
        self.status.append(status)
        self.reason.append(reason)
        self.source.append(source)
        for key, value in (arrays or {}).items():
            self.arrays.setdefault(key, {})[clip_id] = np.asarray(value)
        for key, value in (ragged or {}).items():
            self.ragged.setdefault(key, {})[clip_id] = np.asarray(value)

    def __len__(self):
        return len(self.ids)


def write_records(path: Path, records: Records, attrs: dict, primary: str | None = None):
    """Write `records` sorted by id to `path` through a temporary file and an atomic rename
    (`commit.atomic_write`: fsynced; on an error, a full disk included, nothing is left behind),
    every value under a checksum (cache.checksums)."""
    order = sorted(range(len(records)), key=lambda i: records.ids[i])
    ids = [records.ids[i] for i in order]
    with atomic_write(path) as tmp, create(tmp, path) as (f, _):
        create_strings(f, "ids", ids)
        create_numbers(f, "status", np.array([records.status[i] for i in order], np.uint8))
        create_strings(f, "reason", [records.reason[i] for i in order])
        create_strings(f, "source", [records.source[i] for i in order])
        for key, values in records.arrays.items():
            data = _stack(key, ids, values)
            (create_strings if data.dtype == object else create_numbers)(f, f"arrays/{key}", data)
        for key, values in records.ragged.items():
            _write_ragged(f, key, ids, values)
        for name, value in attrs.items():
            f.attrs[name] = value
        f.attrs["format"] = FORMAT
        f.attrs["primary"] = primary or next(iter(records.arrays), next(iter(records.ragged), ""))
        seal_attrs(f)


def _stack(key: str, ids: list[str], values: dict[str, np.ndarray]) -> np.ndarray:
    shapes = {v.shape for v in values.values()}
    if len(shapes) > 1:
        raise ValueError(f"array '{key}' has different shapes across clips: {sorted(shapes)[:3]}")
    sample = next(iter(values.values()))
    if sample.dtype.kind in "OUS":  # strings (e.g. transcripts): variable-length UTF-8
        out = np.full((len(ids),) + sample.shape, "", dtype=object)
        for row, cid in enumerate(ids):
            if cid in values:
                out[row, ...] = np.asarray(values[cid]).astype(object)  # `...`: a 0-d row takes the str
        return out
    fill = np.nan if np.issubdtype(sample.dtype, np.floating) else 0
    out = np.full((len(ids),) + sample.shape, fill, dtype=sample.dtype)
    for row, cid in enumerate(ids):
        if cid in values:
            out[row] = values[cid]
    return out


def _write_ragged(f: h5py.File, key: str, ids: list[str], values: dict[str, np.ndarray]):
    sample = next(iter(values.values()))
    lengths = [len(values[cid]) if cid in values else 0 for cid in ids]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    chunks = [values[cid] for cid in ids if cid in values]
    data = np.concatenate(chunks) if chunks else np.zeros((0,) + sample.shape[1:], sample.dtype)
    create_numbers(f, f"ragged/{key}/values", data, by_layer=False)  # a clip's frames are read whole
    create_numbers(f, f"ragged/{key}/offsets", offsets)


def row_form(value) -> tuple[tuple, str]:
    """(shape, 'text' or 'numbers') of one clip's array; ValueError if HDF5 cannot store it."""
    value = np.asarray(value)
    if value.dtype.kind in "OUS":
        for item in value.astype(object).ravel():
            if not isinstance(item, (str, bytes)):
                raise ValueError(f"holds a {type(item).__name__}, not a string")
            if isinstance(item, str):
                item.encode("utf-8")  # stored as UTF-8: a lone surrogate cannot be
        return value.shape, "text"
    if value.dtype.kind not in "biufc":
        raise ValueError(f"dtype {value.dtype} cannot be stored")
    return value.shape, "numbers"


def read_strings(f: h5py.File, name: str) -> list[str]:
    """A string column, checked against its checksum (cache.checksums.read_strings)."""
    return list(checksums.read_strings(f, name))


def read_sources(f: h5py.File) -> list[str]:
    """Per-clip input signatures ('' where unknown, e.g. imported features)."""
    if "source" not in f:
        return [""] * len(f["ids"])
    return read_strings(f, "source")


def same_input(stored: str, current: str | None) -> bool:
    """Whether a clip cached from input signature `stored` (see Clip.signature) was made from the
    input it has now. '' (unknown: imported features) matches anything. A signature written before
    the media's modification time was recorded ('size=N') matches on what it has (size,
    transcript): an old cache is not extracted again whole; a merge records the new signature."""
    if not stored or not current or stored == current:
        return True
    return "mtime=" not in stored and _MTIME.sub("", current) == stored


def part_name(shard: tuple[int, int]) -> str:
    """Part names sort in commit order (clocks of a cluster agree far better than a restart takes);
    the shard and the owner (pid@machine) keep concurrent writers apart."""
    return f"{time.time_ns():020d}-s{shard[0]}of{shard[1]}-{owner()}.h5"


def provenance_of(attrs: dict) -> dict:
    raw = attrs.get("provenance", "{}")
    return json.loads(raw.decode() if isinstance(raw, bytes) else raw)
