"""Training-only clips: pseudo-labelled clips (`--pseudo FILE`, from fuse.semi) and augmented copies
(`--augment DATASET`, from extract.augment).

They are appended to the problem under the split TRAIN_ONLY and join the training rows of the
folds, never a validation fold and never a scored split. A pseudo-labelled clip joins every
(seed, fold) member's training rows; a pseudo-label CSV naming a clip that the clip table labels (a
training clip, or a labelled clip of a test split) is refused. An augmented copy joins those of the
members whose training folds hold its origin clip: folds are formed over the original clips, so no
copy of a validation clip is ever trained on (`member_rows`).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from cache import open_clips
from cache.cli import Refused
from manifests.csvio import read_rows

TRAIN_ONLY = "(train-only)"
NO_ORIGIN = -1


def add_pseudo(problem, path) -> tuple[object, str]:
    """`problem` with the clips of a pseudo-label CSV (columns id, label; fuse.semi writes it)
    appended as training-only rows carrying those labels. Returns (problem, summary)."""
    path = Path(path)
    if not path.is_file():
        raise Refused(f"--pseudo {path}: no such file")
    try:
        rows, bad = read_rows(path, "id")
    except ValueError as err:
        raise Refused(f"--pseudo {path}: {err}") from None
    if not rows or "label" not in rows[0]:
        raise Refused(f"--pseudo {path}: needs 'id' and 'label' columns (fuse.semi writes them)")
    position = {cid: i for i, cid in enumerate(problem.ids)}
    taken, labels, skipped = [], [], dict(bad)
    for row in rows:
        cid, cell = row["id"], row["label"]
        if cid in position and problem.labelled[position[cid]]:
            _refuse_labelled(path, cid, problem.split[position[cid]])
        if cid not in position:
            skipped[cid] = "not among this run's clips (not cached, or failed in a feature)"
            continue
        names = [n for n in cell.split(";") if n]
        unknown = [n for n in names if n not in problem.classes]
        if not names or unknown or (len(names) > 1 and not problem.multi_label):
            raise Refused(f"--pseudo {path}: clip {cid} has label {cell!r}; classes: {', '.join(problem.classes)}")
        taken.append(position[cid])
        labels.append(_encode(names, problem))
    if not taken:
        raise Refused(f"--pseudo {path}: none of its {len(rows)} clips can be used ({_first(skipped)})")
    extra = _append(problem, np.array(taken), np.stack(labels), [f"{problem.ids[i]}#pseudo" for i in taken],
                    np.full(len(taken), np.nan), np.full(len(taken), NO_ORIGIN))
    return extra, _summary("pseudo-labelled", len(taken), skipped)


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


def add_augmented(problem, dataset: str, cache_dir=None) -> tuple[object, str]:
    """`problem` with the augmented copies cached as `dataset` (same features; a clip table whose
    `origin` names each copy's original clip) appended as training-only rows. Copies whose origin
    is not a labelled training clip of the problem are left out."""
    from .problem import load_problem

    try:
        table = open_clips(dataset, root=cache_dir)
        copies = load_problem(dataset, list(zip(problem.modalities, problem.specs)), root=cache_dir, clips=table,
                              max_items=problem.max_items)
    except (FileNotFoundError, KeyError, ValueError) as err:
        raise Refused(f"--augment {dataset}: {err}") from None
    if [tuple(s) for s in copies.shapes] != [tuple(s) for s in problem.shapes]:
        raise Refused(f"--augment {dataset}: feature shapes {copies.shapes} differ from {problem.shapes}")
    if tuple(copies.classes) != tuple(problem.classes):
        raise Refused(f"--augment {dataset}: classes {copies.classes} differ from {problem.classes}")
    origins = dict(zip(table.ids, table.origins()))
    train = problem.index("train", labelled_only=True)
    trainable = dict(zip(problem.ids[train], train.tolist()))  # labelled training clip id -> row
    keep, origin, skipped = [], [], dict(copies.missing)
    for i, cid in enumerate(copies.ids):
        source = origins.get(cid, "")
        if not source:
            skipped[cid] = "has no origin clip in the clip table"
        elif source not in trainable:
            skipped[cid] = f"its origin {source} is not a labelled training clip here"
        elif not copies.labelled[i]:
            skipped[cid] = "unlabelled"
        else:
            keep.append(i)
            origin.append(trainable[source])
    if not keep:
        raise Refused(f"--augment {dataset}: no usable copy ({_first(skipped)})")
    keep = np.array(keep)
    extra = _append(problem, None, copies.labels[keep], list(copies.ids[keep]), copies.valence[keep],
                    np.array(origin), blocks=[b[keep] for b in copies.blocks])
    extra.warnings = problem.warnings + [f"--augment {dataset}: {w}" for w in copies.warnings]  # far-out copies
    return extra, _summary(f"augmented ({dataset})", len(keep), skipped)


def member_rows(train_rows: np.ndarray, folds: np.ndarray, fold: int, extra_rows: np.ndarray,
                extra_origin: np.ndarray) -> np.ndarray:
    """Problem rows a member trains on: its training folds' clips (`train_rows[folds != fold]`),
    the training-only rows without an origin, and the copies whose origin is in those folds."""
    fold_of = dict(zip(train_rows.tolist(), folds.tolist()))
    own = train_rows[folds != fold]
    allowed = np.array([o == NO_ORIGIN or fold_of.get(int(o), fold) != fold for o in extra_origin], dtype=bool)
    return np.concatenate([own, extra_rows[allowed]]) if len(extra_rows) else own


def _encode(names, problem):
    if problem.multi_label:
        return np.array([c in names for c in problem.classes], dtype=np.float32)
    return problem.classes.index(names[0])


def _append(problem, rows, labels, ids, valence, origin, blocks=None):
    """A copy of `problem` with rows appended (feature rows `rows` of the problem itself, or
    `blocks`) under the split TRAIN_ONLY; `origin` [n] their origin rows (NO_ORIGIN: none)."""
    blocks = blocks if blocks is not None else [b[rows] for b in problem.blocks]
    n = len(ids)
    base_origin = problem.origin if problem.origin is not None else np.full(len(problem.ids), NO_ORIGIN)
    return replace(
        problem,
        ids=np.concatenate([problem.ids, np.asarray(ids, dtype=object)]),
        split=np.concatenate([problem.split, np.full(n, TRAIN_ONLY, dtype=object)]),
        blocks=[np.concatenate([b, x.astype(b.dtype)]) for b, x in zip(problem.blocks, blocks)],
        labels=np.concatenate([problem.labels, np.asarray(labels, dtype=problem.labels.dtype)]),
        valence=np.concatenate([problem.valence, np.asarray(valence, dtype=np.float64)]),
        origin=np.concatenate([base_origin, np.asarray(origin, dtype=np.int64)]))


def _summary(kind: str, n: int, skipped: dict) -> str:
    note = f"; {len(skipped)} left out, e.g. {_first(skipped)}" if skipped else ""
    return f"{n} {kind} training-only clips{note}"


def _first(reasons: dict) -> str:
    if not reasons:
        return "the file lists none"
    cid, why = next(iter(reasons.items()))
    return f"{cid}: {why}"
