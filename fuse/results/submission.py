"""The submission file of the corpus's challenge track (manifests.tracks), beside the predictions:

    <run>/submission.csv    MER 2024 / 2025 Track 1: name,discrete, one row per candidate clip
                            (every clip of the test split), in the clip table's order

It is written only when the problem has a track, and kept only when it passes the track's own
check (manifests.tracks.check_submission); otherwise the run says why there is none (a candidate
failed in a feature has no prediction: missing.csv names it).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from manifests.tracks import TRACKS, SubmissionError, check_submission

FILE_NAME = "submission.csv"


def write_submission(folder: Path, problem, split: str, rows, probs) -> dict | None:
    """Write `folder`/submission.csv from the ensemble probabilities `probs` [n, C] of problem
    `rows` of `split` when that split is the track's; returns what metrics.json records of it
    ({"file", "track", "rows"}, or {"track", "error"} when it breaks the track's rules and is not
    kept), or None when the split has no submission."""
    track = TRACKS.get(problem.track)
    if track is None or split != track.split:
        return None
    path = Path(folder) / FILE_NAME
    predicted = dict(zip(problem.ids[rows], (problem.classes[i] for i in probs.argmax(axis=1))))
    names = [cid for cid in problem.candidates if cid in predicted]
    # the track's two columns: the clip, its predicted class
    pd.DataFrame(dict(zip(track.columns, (names, [predicted[n] for n in names])))).to_csv(path, index=False)
    try:
        n = check_submission(path, track, problem.candidates, shown_as=FILE_NAME)
    except SubmissionError as err:
        path.unlink()
        return {"track": track.title, "error": f"not written, {err}"}
    return {"file": FILE_NAME, "track": track.title, "rows": n}


def describe(entry: dict | None) -> str | None:
    """One line for the result table: where the submission is, or why there is none."""
    if not entry:
        return None
    if "error" in entry:
        return f"{entry['track']}: {entry['error']}"
    return f"{entry['track']}: {entry['file']}, {entry['rows']} candidate clips (name,discrete)"
