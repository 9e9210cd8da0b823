"""Loader for a user's own corpus described by one CSV.

    id,path,split,label,valence,text
    clip01,videos/clip01.mp4,train,happy,2.5,I got the job!
    clip02,audio/clip02.wav,test,,,
    clip03,videos/clip03.mp4,train,happy;surprise,,

Paths are relative to the CSV's folder; `path` may be a video, an audio-only file or a SAMSEMO
scene folder (audio.wav and image_<i>.jpg, as extract.augment writes a scene's copies); label,
valence and text may be empty (an empty label: an unlabelled clip). A label cell may name several
emotions separated by ';' (multi-label corpora such as SAMSEMO), or be `(none)`: labelled with none
of the classes, an all-negative multi-label target. An optional `origin` column
names, for an augmented copy, the clip it was made from, then any clip whose speech was mixed into
it, ';'-separated (`fuse.train --augment` trains a copy only in the folds that train on all of them).
"""
from __future__ import annotations

import csv
from pathlib import Path

from dataclasses import replace

from .csvio import index_rows, parse_labels, parse_valence, read_rows
from .table import LABEL_SEP, MER_CLASSES, NO_CLASS, Clip, Manifest

REQUIRED = ("id", "path", "split")
COLUMNS = ("id", "path", "split", "label", "valence", "text")
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".opus")


def load(csv_path: Path, name: str) -> Manifest:
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"{name}: clip table {csv_path} does not exist")
    rows, bad = read_rows(csv_path, "id")
    missing = [c for c in REQUIRED if rows and c not in rows[0]]
    if missing:
        raise ValueError(f"{csv_path}: missing column(s) {missing}; expected id,path,split,label,valence,text")
    by_id, conflicts = index_rows(rows, "id", csv_path.name)
    root = csv_path.parent
    clips = [_clip(clip_id, row, root, conflicts.get(clip_id)) for clip_id, row in by_id.items()]
    # a row that could not be decoded still names a clip: keep it as a failure, not a silent gap
    clips += [Clip(id=i, split="unknown", error=reason) for i, reason in bad.items() if i not in by_id]
    labels = sorted({label for c in clips for label in parse_labels(c.label)} - {NO_CLASS})
    classes = MER_CLASSES if set(labels) <= set(MER_CLASSES) else tuple(labels)
    return Manifest(name, [_canonical_labels(c, classes) for c in clips], root=root, classes=classes)


def _canonical_labels(clip: Clip, classes: tuple[str, ...]) -> Clip:
    """'surprise; happy' -> 'happy;surprise': one spelling per label set, in class order."""
    if not clip.label or NO_CLASS in parse_labels(clip.label):  # (none) with a class: the clip table names it
        return clip
    label = LABEL_SEP.join(sorted(parse_labels(clip.label), key=classes.index))
    return clip if label == clip.label else replace(clip, label=label)


def _clip(clip_id: str, row: dict, root: Path, error: str | None) -> Clip:
    path = root / row["path"] if row.get("path") else None
    if error is None and (path is None or not (path.is_file() or path.is_dir())):  # a folder: a SAMSEMO scene
        error = f"media file {row.get('path') or '(empty path)'} not found next to the clip table"
    is_audio = path is not None and path.suffix.lower() in AUDIO_SUFFIXES
    return Clip(
        id=clip_id, split=row.get("split") or "train",
        video=None if is_audio else path, audio=path if is_audio else None,
        text=row.get("text") or None, label=row.get("label") or None,
        valence=parse_valence(row.get("valence"), clip_id), error=error, origin=row.get("origin") or None)


def write_table(path: Path, rows: list[dict]) -> Path:
    """Write a clip table CSV (COLUMNS, and `origin` when a row has one; missing values empty)
    that `load` reads back."""
    columns = COLUMNS + (("origin",) if any(row.get("origin") for row in rows) else ())
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in columns})
    return Path(path)
