"""Loader for the MER 2025 Track 1 (MER-SEMI) release layout (MERTools' MER2025_Track1 preprocess
reads it).

    ROOT/video/<clip id>.mp4          the release's clips (only those the two lists name are read)
    ROOT/audio/<clip id>.wav          optional: the clips' audio, extracted by the organisers
    ROOT/track1_train_disdim.csv      name, discrete: the train split (other columns are not read:
                                      the track scores emotion alone)
    ROOT/track_all_candidates.csv     name: the test split, every clip a candidate of the submission
                                      (a `discrete` column there is a placeholder, never read)
    ROOT/subtitle_chieng.csv          optional: name, chinese, english

A clip is decoded from its video, or from its audio when only that is there. A listed clip without
either, one listed in both lists, or one listed twice with different rows is a failed clip naming
the cause; a missing list, or a list without its columns, refuses the corpus naming the file.
"""
from __future__ import annotations

from pathlib import Path

from .csvio import read_columns
from .mer2023 import media_files
from .mer2024 import label_rows, label_warnings, require
from .table import MER_CLASSES, Clip, Manifest
from .transcripts import read_transcripts, transcript_fields

TRAIN, CANDIDATES, SUBTITLES = "track1_train_disdim.csv", "track_all_candidates.csv", "subtitle_chieng.csv"


def load(root: Path, name: str = "mer2025") -> Manifest:
    root = Path(root)
    require(root, name, ("video",), (TRAIN, CANDIDATES), "MER 2025 Track 1")
    labels, errors = label_rows(root / TRAIN)
    rows, bad = read_columns(root / CANDIDATES, ("name",))
    candidates = {r["name"] for r in rows if r.get("name")} | set(bad)
    errors |= bad | {cid: f"listed in both {TRAIN} and {CANDIDATES}" for cid in set(labels) & candidates}
    videos, audios = media_files(root / "video"), media_files(root / "audio")
    subtitles = root / SUBTITLES
    texts, text_errors = read_transcripts(subtitles) if subtitles.is_file() else ({}, {})
    clips = []
    for clip_id in sorted(set(labels) | candidates | set(errors)):
        split, source = ("test", CANDIDATES) if clip_id in candidates else ("train", TRAIN)
        video, audio = videos.get(clip_id), audios.get(clip_id)
        error = errors.get(clip_id) or (None if video or audio else
                                       f"listed in {source} but no media file video/{clip_id}.* (nor audio/) on disk")
        label = labels.get(clip_id, {}).get("discrete") if split == "train" else None
        clips.append(Clip(id=clip_id, split=split, video=video, audio=audio, label=label or None, error=error,
                          **transcript_fields(texts.get(clip_id)), text_error=text_errors.get(clip_id)))
    return Manifest(name, clips, root=root, classes=MER_CLASSES, track="mer2025",
                    warnings=label_warnings(labels, set(), TRAIN, ""),
                    transcript_file=SUBTITLES if subtitles.is_file() else None)
