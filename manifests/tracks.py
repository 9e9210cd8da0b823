"""The challenge tracks whose submission file stage 2 writes, with the rules their organisers'
scripts hold it to (zeroQiaoba/MERTools: MER2025_Track1/submission.py writes `name,discrete` over
track_all_candidates.csv; evaluation.py reads those two columns, asserts one row per candidate and
maps each `discrete` to one of the six classes; MER 2024's baseline predicts every clip of its
unlabelled pool the same way).

A layout names its track (Manifest.track, kept in the cache's clip table); fuse.train and
fuse.predict write `submission.csv` by it and keep it only when check_submission passes.
"""
from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from .table import MER_CLASSES

SHOWN_IDS = 5  # clip ids a message names


@dataclass(frozen=True)
class Track:
    title: str
    split: str                 # the split whose clips are the candidates: one row each
    columns: tuple[str, ...]   # the submission's header, in order
    score: str                 # what the organisers score
    classes: tuple[str, ...] = MER_CLASSES


TRACKS = {
    "mer2024": Track("MER 2024 Track 1 (MER-SEMI)", "test", ("name", "discrete"),
                     "weighted F1 over the six classes (no valence)"),
    "mer2025": Track("MER 2025 Track 1 (MER-SEMI)", "test", ("name", "discrete"),
                     "weighted F1 over the six classes (no valence)"),
}


class SubmissionError(ValueError):
    """A submission file that breaks its track's rules; the message names the file and the rule."""


def check_submission(path: Path, track: Track, candidates, shown_as: str | None = None) -> int:
    """Check the CSV at `path` against `track`'s rules for the candidate clip ids: the header is
    exactly track.columns, one row per candidate and no other, each `discrete` one of the track's
    classes. Returns the number of rows; SubmissionError naming the file (`shown_as`, default
    `path`) and each broken rule otherwise."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    path = shown_as or path
    header = rows[0] if rows else []
    if tuple(header) != track.columns:
        raise SubmissionError(f"{path}: header {','.join(header) or '(none)'}; {track.title} wants "
                              f"{','.join(track.columns)}")
    names = [row[0] if row else "" for row in rows[1:]]
    wanted, counts = set(candidates), Counter(names)
    problems = [(f"{len(ids)} {what}", ids) for what, ids in (
        ("candidate clips have no row", sorted(wanted - set(names))),
        ("rows name no candidate clip", sorted(set(names) - wanted)),
        ("clips have several rows", sorted(n for n, k in counts.items() if k > 1)),
        ("rows do not have one value per column", [r[0] if r else "(empty)" for r in rows[1:]
                                                   if len(r) != len(track.columns)]),
        (f"rows have a discrete value outside {', '.join(track.classes)}",
         [r[0] for r in rows[1:] if len(r) == len(track.columns) and r[1] not in track.classes]))]
    problems = [(what, ids) for what, ids in problems if ids]
    if problems:
        raise SubmissionError(f"{path}: " + "; ".join(
            f"{what} ({', '.join(ids[:SHOWN_IDS])}{' ...' if len(ids) > SHOWN_IDS else ''})"
            for what, ids in problems))
    return len(names)
