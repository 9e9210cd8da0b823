"""Loader for the MER 2023 release layout (also written by the demo corpus).

    ROOT/train/ test1/ test2/ test3/      video files named <clip id>.<ext>
    ROOT/train-label.csv                  name, discrete, valence
    ROOT/test{1,2,3}-label.csv            optional, same columns
    ROOT/*transcription*.csv              optional: name, sentence (or chinese, english: manifests.transcripts)
"""
from __future__ import annotations

from pathlib import Path

from .csvio import index_rows, parse_valence, read_rows
from .table import MER_CLASSES, Clip, Manifest
from .transcripts import read_transcripts, transcript_fields

SPLIT_DIRS = ("train", "test1", "test2", "test3")
MEDIA_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".flv", ".mpg", ".wav", ".flac", ".mp3")


def load(root: Path, name: str = "mer2023") -> Manifest:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{name}: corpus folder {root} does not exist")
    if not any((root / s).is_dir() for s in SPLIT_DIRS):
        raise FileNotFoundError(f"{name}: {root} has none of the folders {', '.join(SPLIT_DIRS)}/ "
                                "(expected the MER 2023 release layout)")
    files = sorted(root.glob("*transcription*.csv"))
    texts, text_errors = read_transcripts(files[0]) if files else ({}, {})
    clips, warnings = [], []
    for split in SPLIT_DIRS:
        clips += _split_clips(root, split, texts, text_errors, warnings)
    return Manifest(name, clips, root=root, classes=MER_CLASSES, warnings=warnings,
                    transcript_file=files[0].name if files else None)


def _split_clips(root, split, texts, text_errors, warnings) -> list[Clip]:
    media = media_files(root / split)
    label_file = root / f"{split}-label.csv"
    labels, errors = {}, {}
    if label_file.exists():
        rows, errors = read_rows(label_file, "name")
        labels, conflicts = index_rows(rows, "name", label_file.name)
        errors.update(conflicts)
    clips = []
    for clip_id in sorted(set(media) | set(labels) | set(errors)):
        row = labels.get(clip_id, {})
        error = errors.get(clip_id)
        if error is None and clip_id not in media:
            error = f"listed in {label_file.name} but no media file {split}/{clip_id}.* on disk"
        label = row.get("discrete") or None
        if label is not None and label not in MER_CLASSES:
            warnings.append(f"{clip_id}: label {label!r} is not one of {MER_CLASSES}")
        clips.append(Clip(
            id=clip_id, split=split, video=media.get(clip_id),
            **transcript_fields(texts.get(clip_id)), text_error=text_errors.get(clip_id),
            label=label, valence=parse_valence(row.get("valence"), clip_id), error=error))
    return clips


def media_files(folder: Path) -> dict[str, Path]:
    """{clip id: media file} of a release folder (none when it is absent)."""
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in MEDIA_SUFFIXES}
