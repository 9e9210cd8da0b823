"""Several cached features of one dataset, aligned by clip id: what a fusion model reads.

    from cache import open_features
    feats = open_features("mer2023", ["hubert-large@18,19,20", "face-fer2013", "mfcc#stats"])
    feats.ids                       # clips usable in every feature (ok or flagged), sorted
    feats.missing                   # {clip id: "face-fer2013: no face found"}: excluded, never zero-filled
    a, v, m = feats.arrays()        # [n, 3, 1024] float16, [n, 7] ..., [n, 80] float32 in feats.ids order
    y = feats.clips.labels(feats.ids)

A spec is `FEATURE[#KEY][@LAYERS]` (cache.specs: `#KEY.length` the frame count of a sequence KEY,
int32 [n], read from its offsets; `@18,19,20`, `@-4:`, `@all` layers of a per-layer [N, L, D] array).
Only the chosen layers are read from disk. The object is picklable (paths and specs; each process
opens the files on first use), for training and sweep workers.
"""
from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path

import numpy as np

from .clips import clips_path, open_clips
from .reader import FeatureReader, list_features
from .specs import ALL, FeatureSpec, LayerSelectionError, parse_spec
from .writer import cache_root, feature_path

def open_features(dataset: str, specs, root=None, ids=None) -> "AlignedFeatures":
    """Align the features named by `specs` (a list, or one spec string) of `dataset`.

    Clips considered: `ids` if given (kept in that order), else the dataset's clip table (if the
    cache has one), else every clip of the features; a clip failed or absent in any feature is
    listed in `.missing` and left out of `.ids`."""
    specs = [specs] if isinstance(specs, str) else list(specs)
    if not specs:
        raise ValueError("open_features: name at least one feature spec")
    root = cache_root(root).resolve()  # workers may run elsewhere: keep the folder, not the cwd
    if len(set(specs)) != len(specs):
        raise ValueError(f"feature specs listed more than once: {sorted({s for s in specs if specs.count(s) > 1})}")
    parsed = {text: parse_spec(text) for text in specs}
    readers = {p.feature: _open(dataset, p.feature, root) for p in parsed.values()}
    layers = {text: _layers(p, readers[p.feature]) for text, p in parsed.items()}
    clips = open_clips(dataset, root) if clips_path(dataset, root).exists() else None
    if ids is not None:
        universe = list(ids)
        repeated = sorted(cid for cid, n in Counter(universe).items() if n > 1)
        if repeated:
            raise ValueError(f"ids: clips listed more than once: {repeated[:5]}")
    else:
        universe = clips.ids if clips else sorted(set().union(*(r.ids for r in readers.values())))
    missing = _missing(universe, readers)
    mismatch = _manifest_mismatch(readers, clips)
    for message in mismatch:
        warnings.warn(message, stacklevel=2)
    return AlignedFeatures(dataset, root, parsed, layers, [c for c in universe if c not in missing],
                           missing, clips, readers, mismatch)


def _open(dataset: str, feature: str, root: Path) -> FeatureReader:
    path = feature_path(root, dataset, feature)
    if not path.exists():
        cached = [p.stem + (" (unfinished)" if p.suffix == ".parts" else "") for p in list_features(root, dataset)]
        hint = " (its extraction is unfinished: re-run it to resume)" if path.with_suffix(".parts").is_dir() else ""
        raise FileNotFoundError(f"feature {feature!r} is not cached for dataset {dataset!r} under {root}{hint}; "
                                f"cached: {', '.join(cached) or 'none'}")
    return FeatureReader(path)


def _layers(spec: FeatureSpec, reader: FeatureReader) -> list[int] | None:
    """Layer indices the spec's selector picks (None: all), checked against the stored shape."""
    if spec.key is not None and spec.key not in reader.keys + reader.sequence_keys and not _is_length(spec, reader):
        raise ValueError(f"{spec.text}: feature {spec.feature!r} has no array or sequence {spec.key!r} "
                         f"(arrays: {', '.join(reader.keys)}; sequences: {', '.join(reader.sequence_keys) or 'none'}"
                         f"{'; a sequence KEY also gives KEY' + LENGTH if reader.sequence_keys else ''})")
    if _is_length(spec, reader):
        if spec.selector != ALL:
            raise LayerSelectionError(f"{spec.text}: a sequence length takes no layer selector")
        return None
    if spec.selector == ALL:
        return None
    shape = _stored(reader, spec.key).shape
    if len(shape) != 3:
        raise LayerSelectionError(f"{spec.text}: layer selector @{spec.selector.text} needs a per-layer "
                                  f"feature [N, L, D]; this one has shape {tuple(shape)}")
    try:
        return spec.selector.indices(shape[1])
    except LayerSelectionError as err:
        raise LayerSelectionError(f"{spec.feature}: {err}") from None


LENGTH = ".length"  # `#frames.length`: the frame count of sequence `frames`


def _is_length(spec: FeatureSpec, reader: FeatureReader) -> bool:
    return bool(spec.key) and spec.key.endswith(LENGTH) and spec.key[:-len(LENGTH)] in reader.sequence_keys


def _lengths(reader: FeatureReader, key: str, ids) -> np.ndarray:
    starts, stops = reader.spans(key, ids)
    return (stops - starts).astype(np.int32)


def _stored(reader: FeatureReader, key: str | None):
    """The h5py dataset of an array, or the values of a sequence ([sum T, ...])."""
    if key in reader.sequence_keys:
        return reader.sequence_dataset(key)
    return reader.dataset(key)


def _missing(universe: list[str], readers: dict[str, FeatureReader]) -> dict[str, str]:
    """{clip: 'feature: reason; ...'} for clips failed or absent in any feature."""
    why: dict[str, list[str]] = {}
    for name, reader in readers.items():
        row, status, reasons = reader._row, reader.status, reader.reasons
        for cid in universe:
            r = row.get(cid)
            if r is None:
                why.setdefault(cid, []).append(f"{name}: not cached")
            elif status[r] == "failed":
                why.setdefault(cid, []).append(f"{name}: {reasons[r] or 'failed'}")
    return {cid: "; ".join(parts) for cid, parts in why.items()}


def _manifest_mismatch(readers: dict[str, FeatureReader], clips) -> list[str]:
    if clips is None:
        return []
    out = []
    for name, reader in readers.items():
        theirs = reader.provenance.get("manifest_fingerprint")
        if theirs and theirs != clips.manifest_fingerprint:
            out.append(f"{name}: extracted from manifest {theirs}, but the clip table of '{clips.dataset}' "
                       f"is manifest {clips.manifest_fingerprint} (clips, labels or splits changed since): "
                       f"re-extract it or check that the change does not concern it")
    return out


class AlignedFeatures:
    """Features of one dataset in one clip order (`ids`); see the module docstring."""

    def __init__(self, dataset, root, parsed, layers, ids, missing, clips, readers, mismatch):
        self.dataset, self.root = dataset, Path(root)
        self._parsed, self._layers = parsed, layers
        self.ids, self.missing, self.clips = list(ids), dict(missing), clips
        self.manifest_mismatch = list(mismatch)
        self._readers = readers
        self._paths = {name: r.path for name, r in readers.items()}
        self.provenance = {t: readers[p.feature].provenance for t, p in parsed.items()}
        self.fingerprints = {t: readers[p.feature].attrs.get("fingerprint") for t, p in parsed.items()}
        self.shapes = {t: self._shape(p, readers[p.feature]) for t, p in parsed.items()}

    @property
    def specs(self) -> tuple[str, ...]:
        return tuple(self._parsed)

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return (f"AlignedFeatures({self.dataset!r}, {list(self.specs)}: {len(self.ids)} clips, "
                f"{len(self.missing)} missing)")

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_readers"] = {}  # h5py handles stay in their process; each process reopens
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)

    def arrays(self, ids=None) -> list:
        """One array per spec, rows in `ids` order (default `.ids`); see `array`."""
        return [self.array(spec, ids) for spec in self.specs]

    def array(self, spec: str, ids=None):
        """The rows of `ids` (default `.ids`, which they must be among) for `spec`: [n, ...] in the
        stored dtype, [n, k, D] for a per-layer selection (layers in the selector's order); a
        sequence spec gives a list of [T, ...] arrays."""
        if spec not in self._parsed:
            raise KeyError(f"{spec!r} is not one of the aligned specs {list(self.specs)}")
        ids = self.ids if ids is None else self._check(ids)
        p, layers = self._parsed[spec], self._layers[spec]
        reader = self._reader(p.feature)
        if _is_length(p, reader):
            return _lengths(reader, p.key[:-len(LENGTH)], ids)
        if p.key in reader.sequence_keys:
            return reader.sequences(p.key, ids, layers)
        return reader.array(p.key, ids, layers)

    def _reader(self, feature: str) -> FeatureReader:
        if feature not in self._readers:
            self._readers[feature] = FeatureReader(self._paths[feature])
        return self._readers[feature]

    def _check(self, ids) -> list[str]:
        usable = set(self.ids)
        bad = [cid for cid in ids if cid not in usable]
        if bad:
            shown = ", ".join(f"{cid} ({self.missing.get(cid, 'not among the aligned clips')})" for cid in bad[:5])
            raise KeyError(f"{len(bad)} clips are not usable in every feature: {shown}")
        return list(ids)

    def _shape(self, p: FeatureSpec, reader: FeatureReader) -> tuple:
        """Shape of one clip's value: (...) for an array, (None, ...) for a [T, ...] sequence."""
        if _is_length(p, reader):
            return ()
        stored = _stored(reader, p.key)
        per_clip = list(stored.shape[1:])
        if self._layers[p.text] is not None:
            per_clip[0] = len(self._layers[p.text])
        return (None, *per_clip) if p.key in reader.sequence_keys else tuple(per_clip)

