"""The normalized clip table every dataset loader produces."""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

# MER 2023 class order (Lian et al. 2023, section 2)
MER_CLASSES = ("neutral", "angry", "happy", "sad", "worried", "surprise")
LABEL_SEP = ";"  # a multi-label cell: 'happy;surprise'
# a multi-label cell: labelled, and none of the classes (an all-negative target; SAMSEMO's fear-only
# scenes once fear is dropped); the parentheses keep it apart from any class name
NO_CLASS = "(none)"
SPLIT_ORDER = ("train", "val", "valid", "dev", "test", "test1", "test2", "test3")


def ordered_splits(names) -> list[str]:
    """Split names in reading order: train first, then validation and test splits, then any other by name."""
    known = {name: i for i, name in enumerate(SPLIT_ORDER)}
    return sorted(set(names), key=lambda n: (known.get(n, len(known)), n))


@dataclass(frozen=True)
class Clip:
    """One clip of a corpus.

    `error` is set when the clip cannot be processed at all (missing on disk, ambiguous duplicate
    id); `text_error` when only its transcript is unusable (e.g. not valid UTF-8). Extraction
    records either as a per-clip failure instead of stopping the run.
    """

    id: str
    split: str
    video: Path | None = None
    audio: Path | None = None
    text: str | None = None
    label: str | None = None
    valence: float | None = None
    error: str | None = None
    text_error: str | None = None
    origin: str | None = None  # the clip(s) an augmented copy was made from (`origin` CSV column)

    @property
    def labels(self) -> tuple[str, ...]:
        """The clip's emotions: () when unlabelled or labelled NO_CLASS, one for single-label
        corpora, several (SAMSEMO) when `label` lists them joined by ';' (in the manifest's class order)."""
        return tuple(self.label.split(LABEL_SEP)) if self.label and self.label != NO_CLASS else ()

    def signature(self, needs=("audio", "frames", "text")) -> str:
        """A cheap fingerprint of the clip's input that a feature `needs` (media size and
        modification time, transcript, error): the cache extracts a clip again when it changes, e.g.
        a corrupt file replaced by one of the same size."""
        parts = [f"error={self.error}"] if self.error else []
        media = self.media
        if media is not None and {"audio", "frames"} & set(needs):
            parts.append(_file_signature(media))
        if "text" in needs and (self.text is not None or self.text_error):
            text = self.text_error or self.text
            parts.append("text=" + hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:12])
        return ";".join(parts)

    @property
    def media(self) -> Path | None:
        """What to decode: the video file (or a SAMSEMO scene folder of audio.wav and frames), else
        the audio file."""
        return self.video or self.audio


def _file_signature(path: Path) -> str:
    """'size=N;mtime=NS' of a media file. The cache takes a signature of the older form 'size=N'
    as matching on the size alone (cache.store.same_input): old caches are not extracted again.
    A folder (SAMSEMO scene) gets 'files=N;size=TOTAL;folder=HASH' over every file's name, size and
    modification time: replacing one frame changes it."""
    if path.is_dir():
        return _folder_signature(path)
    if not path.is_file():
        return "media=missing"
    stat = path.stat()
    return f"size={stat.st_size};mtime={stat.st_mtime_ns}"


def _folder_signature(folder: Path) -> str:
    digest, total, n = hashlib.sha256(), 0, 0
    with os.scandir(folder) as entries:
        files = sorted((e for e in entries if e.is_file()), key=lambda e: e.name)
    for entry in files:
        stat = entry.stat()
        digest.update(f"{entry.name}:{stat.st_size}:{stat.st_mtime_ns};".encode())
        total, n = total + stat.st_size, n + 1
    return f"files={n};size={total};folder={digest.hexdigest()[:16]}"


@dataclass
class Manifest:
    """A dataset as one table of clips, ids unique, sorted by id."""

    name: str
    clips: list[Clip]
    root: Path | None = None
    classes: tuple[str, ...] = MER_CLASSES
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.clips = sorted(self.clips, key=lambda c: c.id)
        ids = [c.id for c in self.clips]
        if len(ids) != len(set(ids)):
            dup = sorted({i for i in ids if ids.count(i) > 1})
            raise ValueError(f"{self.name}: duplicate clip ids {dup[:5]}")
        self._index = {c.id: c for c in self.clips}

    def __len__(self) -> int:
        return len(self.clips)

    def __iter__(self):
        return iter(self.clips)

    def __getitem__(self, clip_id: str) -> Clip:
        return self._index[clip_id]

    @property
    def ids(self) -> list[str]:
        return [c.id for c in self.clips]

    @property
    def multi_label(self) -> bool:
        """Whether any clip has more than one label or none of the classes (NO_CLASS: SAMSEMO); then
        every clip's target is a set."""
        return any(len(c.labels) > 1 or c.label == NO_CLASS for c in self.clips)

    def split(self, name: str) -> list[Clip]:
        return [c for c in self.clips if c.split == name]

    def subset(self, ids) -> "Manifest":
        keep = set(ids)
        return Manifest(self.name, [c for c in self.clips if c.id in keep], self.root, self.classes)

    def fingerprint(self) -> str:
        """Hash of the table's content; file paths enter relative to the root, so moving a corpus
        does not change it."""
        rows = []
        for c in self.clips:
            row = asdict(c)
            if row["origin"] is None:  # absent for original clips: their tables hash as before
                del row["origin"]
            for key in ("video", "audio"):
                row[key] = self._relative(row[key])
            rows.append(row)
        blob = json.dumps(rows, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def _relative(self, path: Path | None) -> str | None:
        if path is None:
            return None
        if self.root is not None:
            try:
                return str(Path(path).relative_to(self.root))
            except ValueError:
                pass
        return Path(path).name

    def to_frame(self):
        """The table as a pandas DataFrame (one row per clip)."""
        import pandas as pd

        return pd.DataFrame([asdict(c) for c in self.clips])

    def summary(self) -> str:
        counts = {}
        for c in self.clips:
            counts[c.split] = counts.get(c.split, 0) + 1
        errors = sum(c.error is not None for c in self.clips)
        parts = ", ".join(f"{k} {counts[k]}" for k in ordered_splits(counts))
        return f"{self.name}: {len(self)} clips ({parts}); {errors} with errors"
