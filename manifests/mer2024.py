"""Loader for the MER 2024 release layout (Track 1, MER-SEMI; MERTools' MER2024 preprocess reads it).

    ROOT/video-labeled/                    labelled clips, <clip id>.<ext>: the train split
    ROOT/label-disdim.csv                  name, discrete (any other column is not read: the track
                                           scores emotion alone)
    ROOT/video-unlabeled-with-test2noise/  the unlabelled pool, test clips among them: the test split,
                                           every clip a candidate of the submission
    ROOT/*transcription-merge*.csv         optional: name, chinese (MERTools' ASR merged with the
                                           checked subtitles); else
    ROOT/label-transcription.csv           optional: name, chinese (the checked subtitles)

A label row for a clip of the unlabelled pool is a placeholder, not a label: the clip stays
unlabelled (one warning says how many). A labelled row without its video, or a clip id listed twice
with different rows, is a failed clip naming the cause; a missing folder or label file, or a file
without its columns, refuses the corpus naming the file.
"""
from __future__ import annotations

from pathlib import Path

from .csvio import index_rows, read_columns
from .mer2023 import media_files
from .table import MER_CLASSES, Clip, Manifest
from .transcripts import read_transcripts, transcript_fields

LABELLED, POOL, LABELS = "video-labeled", "video-unlabeled-with-test2noise", "label-disdim.csv"
TRANSCRIPT_FILES = ("*transcription-merge*.csv", "label-transcription.csv")  # first found is read


def load(root: Path, name: str = "mer2024") -> Manifest:
    root = Path(root)
    require(root, name, (LABELLED, POOL), (LABELS,), "MER 2024")
    labels, errors = label_rows(root / LABELS)
    labelled, pool = media_files(root / LABELLED), media_files(root / POOL)
    transcript = next((p for pattern in TRANSCRIPT_FILES for p in sorted(root.glob(pattern))), None)
    texts, text_errors = read_transcripts(transcript) if transcript else ({}, {})
    clips, warnings = [], label_warnings(labels, pool, LABELS, f"{POOL}/")
    for clip_id in sorted(set(labelled) | (set(labels) | set(errors)) - set(pool)):
        error = errors.get(clip_id) or (None if clip_id in labelled else
                                       f"listed in {LABELS} but no media file {LABELLED}/{clip_id}.* on disk")
        clips.append(Clip(id=clip_id, split="train", video=labelled.get(clip_id), error=error,
                          label=labels.get(clip_id, {}).get("discrete") or None,
                          **transcript_fields(texts.get(clip_id)), text_error=text_errors.get(clip_id)))
    clips += [Clip(id=clip_id, split="test", video=path, **transcript_fields(texts.get(clip_id)),
                   text_error=text_errors.get(clip_id)) for clip_id, path in pool.items()]
    return Manifest(name, clips, root=root, classes=MER_CLASSES, warnings=warnings, track="mer2024",
                    transcript_file=transcript.name if transcript else None)


def require(root: Path, name: str, folders, files, release: str):
    """FileNotFoundError naming what of a release's layout is not at `root`."""
    if not root.is_dir():
        raise FileNotFoundError(f"{name}: corpus folder {root} does not exist")
    absent = [f"{f}/" for f in folders if not (root / f).is_dir()] + [f for f in files if not (root / f).is_file()]
    if absent:
        raise FileNotFoundError(f"{name}: {root} has no {', '.join(absent)} (expected the {release} release layout)")


def label_rows(path: Path) -> tuple[dict[str, dict], dict[str, str]]:
    """{clip id: row} of a `name,discrete` file, and {clip id: why it failed} (undecodable row,
    conflicting duplicates); ValueError naming the file when a column is missing."""
    rows, errors = read_columns(path, ("name", "discrete"))
    labels, conflicts = index_rows(rows, "name", path.name)
    return labels, errors | conflicts


def label_warnings(labels: dict[str, dict], pool, source: str, pool_name: str) -> list[str]:
    """Warnings for labels of `source` outside the six classes, and for its placeholder rows of
    clips of the unlabelled `pool`."""
    out = [f"{cid}: label {row.get('discrete')!r} is not one of {MER_CLASSES}" for cid, row in labels.items()
           if cid not in pool and row.get("discrete") and row["discrete"] not in MER_CLASSES]
    placeholders = sorted(set(labels) & set(pool))
    if placeholders:
        out.append(f"{source} lists {len(placeholders)} clips of {pool_name} ({', '.join(placeholders[:3])}"
                   f"{' ...' if len(placeholders) > 3 else ''}): placeholders, kept unlabelled in the test split")
    return out
