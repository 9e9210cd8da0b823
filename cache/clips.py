"""The dataset's clip table in the cache: what stage 2 needs of the corpus, without the corpus.

`<cache>/<dataset>/_clips.h5` (the leading '_' keeps it apart from feature files: a feature's
file name never starts with one), written atomically like the feature files:

    /ids      str [N]       clip ids, sorted
    /split    str [N]       train, test1, ...
    /label    str [N]       emotion(s): 'happy', 'happy;surprise' (multi-label), '' unlabelled
    /valence  float64 [N]   NaN where the clip has none
    /origin   str [N]       optional: the id of the clip an augmented copy was made from, '' for
                            an original (written when any clip has one: extract.augment's copies)
    attrs     dataset, manifest_fingerprint (as in each feature's provenance), classes (JSON list,
              class order), multi_label, source (what wrote it), created, format

    from cache import open_clips
    clips = open_clips("demo")
    train = clips.split("train")
    y, v = clips.labels(train), clips.valence(train)   # int64 [n] (-1: unlabelled), float64 [n]
"""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np

from manifests.table import ordered_splits

from .store import STR
from .writer import cache_root

FORMAT = "mer-cache-clips/1"
FILE_NAME = "_clips.h5"
LABEL_SEP = ";"


def clips_path(dataset: str, root=None) -> Path:
    return cache_root(root) / dataset / FILE_NAME


def write_clips(manifest, dataset: str | None = None, root=None, source: str = "manifest") -> Path:
    """Write the clip table of `manifest` (a manifests.Manifest, every split, unlabelled clips too)
    for `dataset` (default: the manifest's name); replaces any table there, atomically."""
    return write_table(ClipTable.from_manifest(manifest, dataset, source), root)


def write_table(table: "ClipTable", root=None) -> Path:
    """Write a ClipTable as its dataset's clip table; replaces any table there, atomically."""
    path = clips_path(table.dataset, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with h5py.File(tmp, "w") as f:
            _write_columns(f, table)
            f.attrs.update(dataset=table.dataset, manifest_fingerprint=table.manifest_fingerprint,
                           classes=json.dumps(list(table.classes)), multi_label=table.multi_label,
                           source=table.source, format=FORMAT,
                           created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        os.replace(tmp, path)  # concurrent shards: each rename is whole, the last one wins
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _write_columns(f: h5py.File, table: "ClipTable"):
    for name, values in (("ids", table.ids), ("split", table._split), ("label", table._label)):
        f.create_dataset(name, data=np.array(values, dtype=object), dtype=STR)
    f.create_dataset("valence", data=table._valence)
    if any(table._origin):
        f.create_dataset("origin", data=np.array(table._origin, dtype=object), dtype=STR)


def _remove_stale_temporaries(path: Path):
    """Temporaries of writers killed mid-write (their process is gone)."""
    for tmp in path.parent.glob(f".{path.name}.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            tmp.unlink(missing_ok=True)


def open_clips(dataset: str, root=None) -> "ClipTable":
    """The clip table of `dataset` under the cache root, loaded into memory."""
    path = clips_path(dataset, root)
    if not path.exists():
        raise FileNotFoundError(
            f"no clip table for dataset '{dataset}' ({path}): it is written by `python -m extract "
            f"--dataset {dataset} ...`; for imported features, write it with `python -m cache clips "
            f"{dataset} --layout L --root DIR` or `--clips FILE.csv` (or the same options of `cache import-npy`)")
    with h5py.File(path, "r") as f:
        columns = {name: list(f[name].asstr()[()]) for name in ("ids", "split", "label")}
        origins = list(f["origin"].asstr()[()]) if "origin" in f else None
        return ClipTable(dataset=str(f.attrs["dataset"]), ids=columns["ids"], splits_of=columns["split"],
                         label_cells=columns["label"], valences=f["valence"][()], origins=origins,
                         classes=tuple(json.loads(f.attrs["classes"])), multi_label=bool(f.attrs["multi_label"]),
                         manifest_fingerprint=str(f.attrs["manifest_fingerprint"]),
                         source=str(f.attrs["source"]), created=str(f.attrs["created"]), path=path)


class ClipTable:
    """A dataset's clips in memory (small, picklable): ids, splits, labels, valence.

    Labels: single-label datasets give class indices (int64, -1 for an unlabelled clip);
    multi-label ones give 0/1 indicators (float32 [n, C], a NaN row for an unlabelled clip)."""

    def __init__(self, dataset, ids, splits_of, label_cells, valences, classes, multi_label,
                 manifest_fingerprint, source="", created="", path=None, origins=None):
        self.dataset, self.ids, self.classes = dataset, list(ids), tuple(classes)
        self.multi_label, self.manifest_fingerprint = multi_label, manifest_fingerprint
        self.source, self.created, self.path = source, created, path
        self._split, self._label = list(splits_of), list(label_cells)
        self._valence = np.asarray(valences, np.float64)
        self._origin = list(origins) if origins is not None else [""] * len(self.ids)
        self._row = {cid: i for i, cid in enumerate(self.ids)}
        known = set(self.classes)
        # a label outside the class list cannot be a target: named when asked for, never guessed
        self.problems = {cid: f"label {cell!r} is not one of the classes {list(self.classes)}"
                         for cid, cell in zip(self.ids, self._label)
                         if cell and not set(cell.split(LABEL_SEP)) <= known}

    @classmethod
    def from_manifest(cls, manifest, dataset: str | None = None, source: str = "manifest") -> "ClipTable":
        """The table of a manifests.Manifest, in memory (e.g. to override the cached one)."""
        clips = sorted(manifest, key=lambda c: c.id)
        return cls(dataset or manifest.name, [c.id for c in clips], [c.split for c in clips],
                   [c.label or "" for c in clips], [np.nan if c.valence is None else c.valence for c in clips],
                   manifest.classes, manifest.multi_label, manifest.fingerprint(), source=source,
                   origins=[c.origin or "" for c in clips])

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, clip_id) -> bool:
        return clip_id in self._row

    def __repr__(self) -> str:
        kind = "multi-label" if self.multi_label else "single-label"
        return f"ClipTable({self.dataset!r}: {len(self)} clips, {self.splits}, {kind})"

    @property
    def splits(self) -> dict[str, int]:
        """{split: clip count}: train first, then validation and test splits, then any other by name."""
        counts: dict[str, int] = {}
        for name in self._split:
            counts[name] = counts.get(name, 0) + 1
        return {name: counts[name] for name in ordered_splits(counts)}

    def split(self, name: str) -> list[str]:
        """Ids of the clips of split `name` (sorted)."""
        if name not in self.splits:
            raise KeyError(f"{self.dataset}: no split {name!r} (splits: {', '.join(self.splits)})")
        return [cid for cid, s in zip(self.ids, self._split) if s == name]

    def split_of(self, ids=None) -> list[str]:
        return [self._split[r] for r in self._rows(ids)]

    def label_names(self, ids=None) -> list[tuple[str, ...]]:
        """Each clip's emotions as names: () when unlabelled."""
        return [self._names(r) for r in self._rows(ids)]

    def _names(self, row: int) -> tuple[str, ...]:
        return tuple(self._label[row].split(LABEL_SEP)) if self._label[row] else ()

    def labelled(self, ids=None) -> np.ndarray:
        """bool [n]: the clip has a label (train only on these)."""
        return np.array([bool(self._label[r]) for r in self._rows(ids)], dtype=bool)

    def labels(self, ids=None) -> np.ndarray:
        """Targets of `ids` (default: all, sorted). Single-label: int64 [n] class indices, -1 when
        unlabelled; multi-label: float32 [n, C] 0/1, a NaN row when unlabelled."""
        rows = self._rows(ids)
        bad = {self.ids[r]: self.problems[self.ids[r]] for r in rows if self.ids[r] in self.problems}
        if bad:
            shown = "; ".join(f"clip {cid}: {why}" for cid, why in list(bad.items())[:5])
            raise ValueError(f"{self.dataset}: {len(bad)} clips have unknown labels: {shown}")
        index = {name: i for i, name in enumerate(self.classes)}
        names = [self._names(r) for r in rows]
        if not self.multi_label:
            return np.array([index[n[0]] if n else -1 for n in names], dtype=np.int64)
        out = np.zeros((len(rows), len(self.classes)), np.float32)
        for i, clip_labels in enumerate(names):
            if clip_labels:
                out[i, [index[n] for n in clip_labels]] = 1
            else:
                out[i] = np.nan
        return out

    def origins(self, ids=None) -> list[str]:
        """The clip each one was augmented from ('' for an original)."""
        return [self._origin[r] for r in self._rows(ids)]

    def valence(self, ids=None) -> np.ndarray:
        """float64 [n]: valence of `ids`, NaN where the clip has none."""
        return self._valence[self._rows(ids)]

    def to_frame(self):
        """pandas DataFrame: id, split, label ('' unlabelled, 'a;b' multi-label), valence."""
        import pandas as pd

        return pd.DataFrame({"id": self.ids, "split": self._split, "label": self._label,
                             "valence": self._valence})

    def _rows(self, ids) -> list[int]:
        if ids is None:
            return list(range(len(self.ids)))
        if isinstance(ids, str):
            raise TypeError("ids: a list of clip ids, not one string")
        unknown = [cid for cid in ids if cid not in self._row]
        if unknown:
            raise KeyError(f"{self.dataset}: clips not in the clip table: {unknown[:5]}"
                           + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""))
        return [self._row[cid] for cid in ids]
