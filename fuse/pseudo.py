"""`fuse.train --pseudo FILE`: pseudo-labelled clips as training-only rows (fuse.extras).

FILE is a CSV with `id` and `label` columns. fuse.semi writes one (COLUMNS: the selection of its
whole run) and, beside it, the per-member pseudo-labels (`members_path`): for each (seed, fold)
member of the run it selected from, the clips and labels selected from that member's training
folds alone (fuse.semi_members). With them, each member of this run trains on its own member's
pseudo-labels, none of which was made with its validation fold's labels. That needs this run's
folds to be the source run's: the folds come from make_folds over the labelled training clips
(their labels, in clip-table order), the number of folds and the seed, so the same clips in the
same order, --folds and seeds give the same folds; they are computed here and compared clip by
clip with the recorded ones, and any difference is refused (exit 2), named. A fuse.semi CSV
without its per-member file is refused: its labels come from fold models that trained on every
validation fold. Any other CSV (pseudo-labels made without this dataset's labels) joins every
member's training rows.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from cache.cli import Refused
from manifests.csvio import read_rows
from .extras import NO_ORIGIN, MadeWithout, append_rows, first_reason, summary
from .folds import make_folds

COLUMNS = ("id", "split", "label", "score")  # fuse.semi's pseudo-label CSV
KIND = "fuse.semi per-member pseudo-labels"
MEMBER_KEYS = ("kind", "run", "csv_sha256", "folds", "seeds", "training_clips", "fold_of", "members")


def members_path(csv_path) -> Path:
    """Where fuse.semi writes the per-member pseudo-labels of the CSV `csv_path`."""
    csv_path = Path(csv_path)
    return csv_path.with_name(f"{csv_path.stem}.members.json")


def written_by_semi(path: Path) -> bool:
    """Whether the file starts with fuse.semi's CSV header."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.readline().strip() == ",".join(COLUMNS)
    except (OSError, UnicodeDecodeError):
        return False


def add_pseudo(problem, path, train) -> tuple[object, str]:
    """`problem` with the clips of the pseudo-label CSV `path` appended as training-only rows
    carrying their labels: per member with fuse.semi's per-member file, else for every member.
    `train`: the run's TrainConfig (seeds, folds). Returns (problem, summary)."""
    path = Path(path)
    if not path.is_file():
        raise Refused(f"--pseudo {path}: no such file")
    if members_path(path).is_file():
        return _per_member(problem, path, read_members(path), train)
    if written_by_semi(path):
        raise Refused(f"--pseudo {path}: a fuse.semi CSV without its per-member pseudo-labels "
                      f"({members_path(path).name} beside it): its labels come from fold models that trained on "
                      f"every validation fold, so training each fold on them would leak that fold's labels into "
                      f"the CV; run fuse.semi again (it writes both)")
    return _every_member(problem, path)


def _every_member(problem, path: Path):
    try:
        rows, bad = read_rows(path, "id")
    except ValueError as err:
        raise Refused(f"--pseudo {path}: {err}") from None
    if not rows or "label" not in rows[0]:
        raise Refused(f"--pseudo {path}: needs 'id' and 'label' columns (fuse.semi writes them)")
    position = {cid: i for i, cid in enumerate(problem.ids)}
    taken, labels, skipped = [], [], dict(bad)
    for row in rows:
        label = _label(problem, path, position, row["id"], row["label"], skipped)
        if label is not None:
            taken.append(position[row["id"]])
            labels.append(label)
    if not taken:
        raise Refused(f"--pseudo {path}: none of its {len(rows)} clips can be used ({first_reason(skipped)})")
    extra = append_rows(problem, np.array(taken), np.stack(labels), [f"{problem.ids[i]}#pseudo" for i in taken],
                        np.full(len(taken), np.nan), [NO_ORIGIN] * len(taken))
    return extra, summary("pseudo-labelled", len(taken), skipped) + " (each in every member's training rows)"


def _per_member(problem, path: Path, members: dict, train):
    """Each (clip, label) that some member selected, once, joining the members that selected it."""
    folds = source_folds(problem, path, members, train)
    tr = problem.index("train", labelled_only=True)
    position = {cid: i for i, cid in enumerate(problem.ids)}
    made, counts, skipped = {}, [], {}
    for member in members["members"]:
        if member["seed"] not in folds:
            continue  # a seed of the source run that this run does not train
        held_out = frozenset(tr[folds[member["seed"]] == member["fold"]].tolist())
        counts.append(len(member["selected"]))
        for cid, cell, _ in member["selected"]:
            label = _label(problem, path, position, cid, cell, skipped)
            if label is not None:
                made.setdefault((cid, cell, label), []).append(held_out)
    if not made:
        raise Refused(f"--pseudo {path}: no member's pseudo-labels can be used ({first_reason(skipped)})")
    keys = sorted(made)
    extra = append_rows(problem, np.array([position[c] for c, _, _ in keys]), np.array([k[2] for k in keys]),
                        [f"{c}#pseudo:{cell}" for c, cell, _ in keys], np.full(len(keys), np.nan),
                        [MadeWithout(frozenset(made[k])) for k in keys])
    note = summary("pseudo-labelled", len({c for c, _, _ in keys}), skipped)
    return extra, (f"{note} (each member its own, selected from its training folds by fuse.semi on run "
                   f"{members['run']}: {min(counts)}-{max(counts)} per member)")


def read_members(csv_path: Path) -> dict:
    """The per-member pseudo-labels beside `csv_path`, checked: fuse.semi's, whole, written with
    that CSV. Anything else is refused (exit 2)."""
    path = members_path(csv_path)
    try:
        blob = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise Refused(f"--pseudo {csv_path}: {path.name} beside it is damaged ({type(err).__name__}: {err}); "
                      f"run fuse.semi again") from None
    if not isinstance(blob, dict) or blob.get("kind") != KIND or any(k not in blob for k in MEMBER_KEYS):
        raise Refused(f"--pseudo {csv_path}: {path.name} beside it is not fuse.semi's per-member pseudo-labels "
                      f"(or is damaged); run fuse.semi again")
    if blob["csv_sha256"] != hashlib.sha256(Path(csv_path).read_bytes()).hexdigest():
        raise Refused(f"--pseudo {csv_path}: {path.name} beside it was not written with this CSV (the CSV was "
                      f"changed or replaced since); run fuse.semi again")
    return blob


def source_folds(problem, path: Path, members: dict, train) -> dict[int, np.ndarray]:
    """{seed: fold of each labelled training clip} for this run's seeds, as the training loop will
    form them (make_folds), after checking them clip by clip against the source run's."""
    source = f"--pseudo {path}: its per-member pseudo-labels hold the folds of run {members['run']}"
    if train.folds != members["folds"]:
        raise Refused(f"{source} ({members['folds']} folds), this run has --folds {train.folds}: give "
                      f"--folds {members['folds']}")
    lacking = [s for s in train.seeds if str(s) not in members["fold_of"]]
    if lacking:
        raise Refused(f"{source} (seeds {', '.join(map(str, members['seeds']))}); this run's seed(s) "
                      f"{', '.join(map(str, lacking))} have none: give at most --seeds {len(members['seeds'])}")
    tr = problem.index("train", labelled_only=True)
    ids, theirs = problem.ids[tr].tolist(), members["training_clips"]
    if ids != theirs:
        raise Refused(f"{source}, and its labelled training clips differ from this run's: "
                      f"{_clips_differ(problem, ids, theirs)}")
    out = {}
    for seed in train.seeds:
        ours = make_folds(problem.labels[tr], train.folds, seed, problem.multi_label)
        recorded = members["fold_of"][str(seed)]
        differ = np.flatnonzero(ours != np.asarray(recorded))
        if len(differ):
            i = differ[0]
            raise Refused(f"{source}, and with seed {seed} {len(differ)} clips fall in other folds here (e.g. "
                          f"{ids[i]}: fold {ours[i]} here, {recorded[i]} there; other labels?)")
        out[seed] = ours
    return out


def _clips_differ(problem, ids: list, theirs: list) -> str:
    here, there = set(ids) - set(theirs), set(theirs) - set(ids)
    parts = []
    if here:
        parts.append(f"{len(here)} here are not among the source run's (e.g. {min(here)})")
    if there:
        first = min(there)
        why = f": {problem.missing[first]}" if first in problem.missing else ""
        parts.append(f"{len(there)} of the source run's are not here (e.g. {first}{why})")
    return "; ".join(parts) or "the same clips in another order (so other folds)"


def _label(problem, path, position, cid: str, cell: str, skipped: dict):
    """The encoded label of clip `cid` (cell: class names, ';'-separated), or None (reason in `skipped`)
    for a clip this run does not have; refuses a labelled clip or an unknown class."""
    if cid not in position:
        skipped[cid] = "not among this run's clips (not cached, or failed in a feature)"
        return None
    if problem.labelled[position[cid]]:
        _refuse_labelled(path, cid, problem.split[position[cid]])
    names = [n for n in cell.split(";") if n]
    unknown = [n for n in names if n not in problem.classes]
    if not names or unknown or (len(names) > 1 and not problem.multi_label):
        raise Refused(f"--pseudo {path}: clip {cid} has label {cell!r}; classes: {', '.join(problem.classes)}")
    if problem.multi_label:
        return np.array([c in names for c in problem.classes], dtype=np.float32)
    return problem.classes.index(names[0])


def _refuse_labelled(path, cid: str, split: str):
    """A clip the clip table labels is never pseudo-labelled: a training clip has its label, and a
    labelled clip of another split is one that split's scores are measured on (trained on, they
    would measure nothing)."""
    if split == "train":
        raise Refused(f"--pseudo {path}: clip {cid} is a labelled training clip; pseudo-labels are "
                      f"for clips without a label")
    raise Refused(f"--pseudo {path}: clip {cid} is a labelled clip of split {split}: training on it would "
                  f"leak its label into that split's scores; pseudo-labels are for clips without a label "
                  f"(MER-SEMI: test3)")
