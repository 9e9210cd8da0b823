"""The training problem read from the cache alone: clip table + aligned features.

    problem = load_problem("demo", [("A", "egemaps"), ("V", "face-fer2013")])
    problem.blocks        # [N, ...] per feature spec, one id order: float32, or uint8 / float16 as
                          # cached (face crops, per-layer features), made float32 per batch
    problem.labels        # int [N] (-1 unlabelled) or 0/1 float [N, C] (NaN rows unlabelled; zero
                          # rows: labelled with none of the classes, SAMSEMO's fear-only scenes)
    problem.valence       # float [N], NaN where a clip has none
    problem.missing       # {clip id: why it is left out} (failed or absent in a feature)
    problem.track         # the challenge track whose submission file fits the corpus ('' none), and
    problem.candidates    # its candidate clips: every clip of its split in the clip table

A frame-level sequence (`logmel#frames`, `face-crops-crossbert#crops`) becomes a block [N, T, ...]:
its first `max_items` frames, zero-padded; its count travels as `#frames.length` or a mask.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cache import open_clips, open_features
from manifests.table import ordered_splits
from manifests.tracks import TRACKS
from .outliers import far_out_warnings

# cached dtypes kept in memory as they are (4x and 2x smaller than float32): the training loop and
# the estimators convert them per batch, exactly (every uint8 and float16 value is a float32)
COMPACT = (np.dtype(np.uint8), np.dtype(np.float16))


@dataclass
class Problem:
    dataset: str
    ids: np.ndarray
    split: np.ndarray
    specs: list[str]
    modalities: list[str]
    blocks: list[np.ndarray]
    classes: tuple[str, ...]
    multi_label: bool
    labels: np.ndarray
    valence: np.ndarray
    missing: dict[str, str] = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    fingerprints: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)   # what fuse.inputs.extras appended
    origin: np.ndarray | None = None   # object [N]: which members an appended row may join (fuse.inputs.extras), -1 every
    max_items: int | None = None       # frames kept of a sequence (see load_problem)
    track: str = ""                    # manifests.tracks key, from the clip table
    candidates: list[str] = field(default_factory=list)  # the track's candidate clip ids, missing ones too

    @property
    def shapes(self) -> list[tuple[int, ...]]:
        return [tuple(b.shape[1:]) for b in self.blocks]

    @property
    def labelled(self) -> np.ndarray:
        if self.multi_label:
            return ~np.isnan(self.labels).any(axis=1)
        return self.labels >= 0

    @property
    def has_valence(self) -> bool:
        return bool((~np.isnan(self.valence[self.labelled])).any())

    def index(self, split: str, labelled_only: bool = False) -> np.ndarray:
        mask = self.split == split
        if labelled_only:
            mask &= self.labelled
        return np.flatnonzero(mask)

    @property
    def splits(self) -> list[str]:
        """The corpus's splits (not the training-only rows of fuse.inputs.extras)."""
        return [s for s in ordered_splits(self.split.tolist()) if not s.startswith("(")]


def load_problem(dataset: str, features: list[tuple[str, str]], root=None, clips=None,
                 max_items: int | None = None) -> Problem:
    """Read `features` [(modality, spec)] of `dataset` aligned by clip id, with the clip table
    (`clips`: a ClipTable overriding the cached one). Clips failed or missing in any feature, or
    with non-finite values, are listed in `missing` and left out, never filled in; finite values far
    outside a feature's spread are kept, with a warning (fuse.inputs.outliers). A sequence is
    cut or zero-padded to `max_items` frames (the model's; None: sequences are refused)."""
    table = clips or open_clips(dataset, root=root)
    specs = [spec for _, spec in features]
    aligned = open_features(dataset, specs, root=root, ids=table.ids)
    sequences = [spec for spec in specs if aligned.shapes[spec][:1] == (None,)]
    if sequences and not max_items:
        raise ValueError(f"{', '.join(sequences)}: frame-level sequences; this model takes utterance-level "
                         "features (the sequence models crossbert, coattention take them)")
    blocks = [_block(aligned.array(spec), max_items) if spec in sequences else _block(aligned.array(spec))
              for spec in specs]
    ids = np.asarray(aligned.ids, dtype=object)
    missing = dict(aligned.missing)
    finite = np.ones(len(ids), bool)
    for spec, block in zip(specs, blocks):
        bad = nonfinite_rows(block)
        for cid in ids[bad & finite]:
            missing[cid] = f"{spec}: non-finite values"
        finite &= ~bad
    if not finite.all():  # (a copy of every block: only when a clip is left out)
        ids, blocks = ids[finite], [b[finite] for b in blocks]
    unchecked = {spec for spec in specs if aligned.provenance.get(spec, {}).get("far_out_check")}
    warnings = list(aligned.manifest_mismatch) + far_out_warnings(specs, blocks, ids, unchecked)
    return Problem(
        dataset=dataset, ids=ids, split=np.asarray(table.split_of(list(ids)), dtype=object),
        specs=specs, modalities=[m for m, _ in features], blocks=blocks,
        classes=tuple(table.classes), multi_label=bool(table.multi_label),
        labels=table.labels(list(ids)), valence=np.asarray(table.valence(list(ids)), dtype=np.float64),
        missing=missing, provenance=dict(aligned.provenance), fingerprints=dict(aligned.fingerprints),
        warnings=warnings, max_items=max_items if sequences else None, track=table.track,
        candidates=_candidates(table))


def _candidates(table) -> list[str]:
    """Every clip of the split a track's submission covers (none without a track)."""
    track = TRACKS.get(table.track)
    return table.split(track.split) if track and track.split in table.splits else []


def nonfinite_rows(block: np.ndarray, chunk_bytes: int = 64 << 20) -> np.ndarray:
    """[n] bool: the rows of `block` holding a NaN or an infinity (none in an integer block),
    checked a chunk of rows at a time: no temporary the size of the block (MER-sized spectrogram
    pieces: 0.5 GB)."""
    bad = np.zeros(len(block), bool)
    if block.dtype.kind not in "fc" or not len(block):
        return bad
    step = max(1, chunk_bytes // max(1, block[:1].nbytes))
    for start in range(0, len(block), step):
        part = block[start:start + step]
        bad[start:start + len(part)] = ~np.isfinite(part.reshape(len(part), -1)).all(axis=1)
    return bad


def _block(values, max_items: int | None = None) -> np.ndarray:
    """An aligned array (COMPACT dtypes kept, else float32); a list of [T, ...] sequences ->
    [N, max_items, ...], each cut to its first max_items frames and zero-padded."""
    if max_items is None:
        return np.asarray(values, dtype=values.dtype if values.dtype in COMPACT else np.float32)
    dtype = values[0].dtype if values and values[0].dtype in COMPACT else np.float32
    shape = values[0].shape[1:] if values else ()
    out = np.zeros((len(values), max_items) + shape, dtype=dtype)
    for i, v in enumerate(values):
        out[i, :min(len(v), max_items)] = v[:max_items]
    return out
