"""The dataset's clip table in the cache: what stage 2 needs of the corpus, without the corpus.

`<cache>/<dataset>/_clips.h5` (the leading '_' keeps it apart from feature files: a feature's
file name never starts with one), written atomically like the feature files, under checksums
(cache.checksums). It shrinks only when asked: writing a table that lacks clips the cached one
holds raises ClipsDropped unless `replace=True` (the command lines' --replace-clips).

    /ids      str [N]       clip ids, sorted
    /split    str [N]       train, test1, ...
    /label    str [N]       emotion(s): 'happy', 'happy;surprise' (multi-label), '' unlabelled,
                            '(none)' labelled with none of the classes (multi-label: all-negative)
    /valence  float64 [N]   NaN where the clip has none
    /origin   str [N]       optional: the id of the clip an augmented copy was made from (then any
                            clip whose speech it holds, ';'-separated), '' for an original
                            (written when any clip has one: extract.augment's copies)
    attrs     dataset, manifest_fingerprint (as in each feature's provenance), classes (JSON list,
              class order), multi_label, source (what wrote it), created, format

    from cache import open_clips
    clips = open_clips("demo")
    train = clips.split("train")
    y, v = clips.labels(train), clips.valence(train)   # int64 [n] (-1: unlabelled), float64 [n]
                                                       # (multi-label: float32 [n, C], NaN rows unlabelled)
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np

from manifests.table import NO_CLASS, ordered_splits

from . import checksums
from .checksums import create_numbers, create_strings, seal_attrs
from .commit import atomic_write, remove_stale_temporaries
from .hdf5 import CLIP_TABLE, DamagedFile, create, named
from .writer import cache_root

FORMAT = "mer-cache-clips/1"
FILE_NAME = CLIP_TABLE
LABEL_SEP = ";"
SHOWN_IDS = 5  # clip ids a message names


class ClipsDropped(ValueError):
    """Writing a clip table would drop clips the cached one holds (and was not asked to)."""

    def __init__(self, path: Path, dropped: list[str], kept: int):
        self.path, self.dropped = path, dropped
        more = f" and {len(dropped) - SHOWN_IDS} more" if len(dropped) > SHOWN_IDS else ""
        super().__init__(
            f"the clip table {path} holds {len(dropped)} clips this corpus lacks "
            f"({', '.join(dropped[:SHOWN_IDS])}{more}); replacing it would drop them from the table "
            f"(the corpus has {kept} clips). Pass --replace-clips to replace it, or check the corpus")


def clips_path(dataset: str, root=None) -> Path:
    return cache_root(root) / dataset / FILE_NAME


def write_clips(manifest, dataset: str | None = None, root=None, source: str = "manifest",
                replace: bool = False) -> Path:
    """Write the clip table of `manifest` (a manifests.Manifest, every split, unlabelled clips too)
    for `dataset` (default: the manifest's name); see write_table."""
    return write_table(ClipTable.from_manifest(manifest, dataset, source), root, replace)


def write_table(table: "ClipTable", root=None, replace: bool = False) -> Path:
    """Write a ClipTable as its dataset's clip table, atomically (concurrent shards: each rename is
    whole, the last one wins). A table there with clips `table` lacks is replaced only when
    `replace`: ClipsDropped otherwise (DamagedFile when it cannot be read)."""
    path = clips_path(table.dataset, root)
    if not replace:
        dropped, _ = changes(table, root)
        if dropped:
            raise ClipsDropped(path, dropped, len(table))
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent, f".{path.name}.tmp-*")
    with atomic_write(path) as tmp, create(tmp, path) as (f, _):
        _write_columns(f, table)
        f.attrs.update(dataset=table.dataset, manifest_fingerprint=table.manifest_fingerprint,
                       classes=json.dumps(list(table.classes)), multi_label=table.multi_label,
                       source=table.source, format=FORMAT,
                       created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        seal_attrs(f)
    return path


def changes(table: "ClipTable", root=None) -> tuple[list[str], str]:
    """What writing `table` would change of its dataset's cached table: (ids it would drop,
    sorted; the rest in words, '' when nothing). DamagedFile if the cached table is damaged."""
    path = clips_path(table.dataset, root)
    if not path.exists():
        return [], ""
    old = open_clips(table.dataset, root)
    dropped = sorted(set(old.ids) - set(table.ids))
    added = len(set(table.ids) - set(old.ids))
    rows = [(cid, old._row[cid], table._row[cid]) for cid in table.ids if cid in old._row]
    changed = sum(1 for _, a, b in rows
                  if (old._split[a], old._label[a]) != (table._split[b], table._label[b])
                  or not np.array_equal(old._valence[a], table._valence[b], equal_nan=True))
    words = [f"{n} clips {what}" for n, what in ((len(dropped), "dropped"), (added, "added"),
                                                  (changed, "with a new label, split or valence")) if n]
    return dropped, ", ".join(words)


def _write_columns(f: h5py.File, table: "ClipTable"):
    for name, values in (("ids", table.ids), ("split", table._split), ("label", table._label)):
        create_strings(f, name, values)
    create_numbers(f, "valence", table._valence)
    if any(table._origin):
        create_strings(f, "origin", table._origin)


def open_clips(dataset: str, root=None) -> "ClipTable":
    """The clip table of `dataset` under the cache root, loaded into memory."""
    path = clips_path(dataset, root)
    if not path.exists():
        raise FileNotFoundError(
            f"no clip table for dataset '{dataset}' ({path}): it is written by `python -m extract "
            f"--dataset {dataset} ...`; for imported features, write it with `python -m cache clips "
            f"{dataset} --layout L --root DIR` or `--clips FILE.csv` (or the same options of `cache import-npy`)")
    with named(path), h5py.File(path, "r") as f:
        columns = {name: list(checksums.read_strings(f, name)) for name in ("ids", "split", "label")}
        origins = list(checksums.read_strings(f, "origin")) if "origin" in f else None
        attrs = checksums.read_attrs(f)
        with named(path, "/valence"):
            valences = f["valence"][()]
        table = ClipTable(dataset=str(attrs["dataset"]), ids=columns["ids"], splits_of=columns["split"],
                          label_cells=columns["label"], valences=valences, origins=origins,
                          classes=tuple(json.loads(attrs["classes"])), multi_label=bool(attrs["multi_label"]),
                          manifest_fingerprint=str(attrs["manifest_fingerprint"]),
                          source=str(attrs["source"]), created=str(attrs["created"]), path=path)
    if len(set(map(len, (table.ids, table._split, table._label, table._valence)))) > 1:
        raise DamagedFile(path, "its columns (ids, split, label, valence) differ in length")
    return table


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
        # a label outside the class list cannot be a target: named when asked for, never guessed
        problems = {cid: self._cell_problem(cell) for cid, cell in zip(self.ids, self._label)}
        self.problems = {cid: why for cid, why in problems.items() if why}

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
        cell = self._label[row]
        return tuple(cell.split(LABEL_SEP)) if cell and cell != NO_CLASS else ()

    def _cell_problem(self, cell: str) -> str | None:
        """Why a label cell cannot be a target, or None ('' unlabelled; NO_CLASS only multi-label)."""
        if cell == NO_CLASS and not self.multi_label:
            return f"label {cell!r} (none of the classes) is an all-negative target: only a multi-label table has one"
        if cell and cell != NO_CLASS and not set(cell.split(LABEL_SEP)) <= set(self.classes):
            return f"label {cell!r} is not one of the classes {list(self.classes)}"
        return None

    def labelled(self, ids=None) -> np.ndarray:
        """bool [n]: the clip has a label, NO_CLASS included (train only on these)."""
        return np.array([bool(self._label[r]) for r in self._rows(ids)], dtype=bool)

    def labels(self, ids=None) -> np.ndarray:
        """Targets of `ids` (default: all, sorted). Single-label: int64 [n] class indices, -1 when
        unlabelled; multi-label: float32 [n, C] 0/1, a NaN row when unlabelled, a zero row when
        labelled NO_CLASS (trained and scored as all-negative, as SAMSEMO's run.py does)."""
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
        for i, (r, clip_labels) in enumerate(zip(rows, names)):
            if not self._label[r]:
                out[i] = np.nan
            out[i, [index[n] for n in clip_labels]] = 1
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
