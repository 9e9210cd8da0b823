"""Training-only clips: augmented copies (`--augment DATASET`, from extract.augment) and
pseudo-labelled clips (`--pseudo FILE`, from fuse.semi; fuse.pseudo).

They are appended to the problem under the split TRAIN_ONLY and join the training rows of the
folds, never a validation fold and never a scored split. Each appended row carries an origin that
says which (seed, fold) members may train on it (`member_rows`), so that nothing a member trains on
was made from its validation fold:

* an augmented copy (CopyOf): the members whose training folds hold every clip it was made from,
  its origin and any clip whose speech it holds (extract.augment's babble). Folds are formed over
  the original clips when fuse.train runs, so no copy of a validation clip, and no copy holding a
  validation clip's speech, is ever trained on;
* per-member pseudo-labels (MadeWithout): the members whose validation clips were held out when
  they were made (fuse.semi makes them for each member from its training folds alone);
* NO_ORIGIN: every member (pseudo-labels made without this dataset's labelled clips).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from cache import open_clips
from cache.cli import Refused
from manifests.table import LABEL_SEP

TRAIN_ONLY = "(train-only)"
NO_ORIGIN = -1


@dataclass(frozen=True)
class CopyOf:
    """An augmented copy of problem row `origin` (whose label it carries) that also holds the media
    of rows `mixed_in` (labelled training clips whose speech was mixed into it)."""

    origin: int
    mixed_in: tuple[int, ...] = ()


@dataclass(frozen=True)
class MadeWithout:
    """Pseudo-labels made for the members validated on each of `held_out` (frozensets of problem
    rows: their validation clips), without those clips' labels."""

    held_out: frozenset[frozenset]


def add_augmented(problem, dataset: str, cache_dir=None) -> tuple[object, str]:
    """`problem` with the augmented copies cached as `dataset` (same features; a clip table whose
    `origin` names each copy's original clip, then any clip whose speech it holds, ';'-separated)
    appended as training-only rows. Copies whose origin is not a labelled training clip of the
    problem, or that hold the speech of a clip of another split, are left out."""
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
    keep, origin, skipped = _copies_of_training_clips(problem, copies, dict(zip(table.ids, table.origins())))
    if not keep:
        raise Refused(f"--augment {dataset}: no usable copy ({first_reason(skipped)})")
    keep = np.array(keep)
    extra = append_rows(problem, None, copies.labels[keep], list(copies.ids[keep]), copies.valence[keep], origin,
                        blocks=[b[keep] for b in copies.blocks])
    extra.warnings = problem.warnings + [f"--augment {dataset}: {w}" for w in copies.warnings]  # far-out copies
    return extra, summary(f"augmented ({dataset})", len(keep), skipped)


def _copies_of_training_clips(problem, copies, origins: dict) -> tuple[list[int], list[CopyOf], dict]:
    """(rows of `copies` to keep, each one's CopyOf, {copy left out: why}); `origins`: copy id ->
    its clip table `origin` cell."""
    train = problem.index("train", labelled_only=True)
    trainable = dict(zip(problem.ids[train], train.tolist()))  # labelled training clip id -> row
    split_of = dict(zip(problem.ids, problem.split))
    keep, origin, skipped = [], [], dict(copies.missing)
    for i, cid in enumerate(copies.ids):
        source, *mixed_in = origins.get(cid, "").split(LABEL_SEP)
        scored = [m for m in mixed_in if m not in trainable and split_of.get(m, "train") != "train"]
        if not source:
            skipped[cid] = "has no origin clip in the clip table"
        elif source not in trainable:
            skipped[cid] = f"its origin {source} is not a labelled training clip here"
        elif scored:
            skipped[cid] = f"it holds the speech of {scored[0]}, a clip of split {split_of[scored[0]]}"
        elif not copies.labelled[i]:
            skipped[cid] = "unlabelled"
        else:
            keep.append(i)  # mixed-in clips that are not labelled training clips are in no fold
            origin.append(CopyOf(trainable[source], tuple(trainable[m] for m in mixed_in if m in trainable)))
    return keep, origin, skipped


def member_rows(train_rows: np.ndarray, folds: np.ndarray, fold: int, extra_rows: np.ndarray,
                extra_origin: np.ndarray) -> np.ndarray:
    """Problem rows a member trains on: its training folds' clips (`train_rows[folds != fold]`) and
    the training-only rows whose origin allows it (the module's docstring)."""
    training = set(train_rows[folds != fold].tolist())
    validation = frozenset(train_rows[folds == fold].tolist())
    allowed = np.array([joins(o, training, validation) for o in extra_origin], dtype=bool)
    own = train_rows[folds != fold]
    return np.concatenate([own, extra_rows[allowed]]) if len(extra_rows) else own


def joins(origin, training: set, validation: frozenset) -> bool:
    """Whether a training-only row with `origin` joins the member that trains on problem rows
    `training` and is validated on `validation`."""
    if isinstance(origin, CopyOf):
        return origin.origin in training and all(m in training for m in origin.mixed_in)
    if isinstance(origin, MadeWithout):
        return validation in origin.held_out
    return origin == NO_ORIGIN


def append_rows(problem, rows, labels, ids, valence, origin: list, blocks=None):
    """A copy of `problem` with rows appended (feature rows `rows` of the problem itself, or
    `blocks`) under the split TRAIN_ONLY; `origin` [n]: each one's CopyOf, MadeWithout or NO_ORIGIN."""
    blocks = blocks if blocks is not None else [b[rows] for b in problem.blocks]
    n = len(ids)
    base_origin = problem.origin if problem.origin is not None else np.full(len(problem.ids), NO_ORIGIN, object)
    return replace(
        problem,
        ids=np.concatenate([problem.ids, np.asarray(ids, dtype=object)]),
        split=np.concatenate([problem.split, np.full(n, TRAIN_ONLY, dtype=object)]),
        blocks=[np.concatenate([b, x.astype(b.dtype)]) for b, x in zip(problem.blocks, blocks)],
        labels=np.concatenate([problem.labels, np.asarray(labels, dtype=problem.labels.dtype)]),
        valence=np.concatenate([problem.valence, np.asarray(valence, dtype=np.float64)]),
        origin=np.concatenate([base_origin, _objects(origin)]))


def _objects(items: list) -> np.ndarray:
    """A 1-d object array of `items` as they are (np.asarray would unpack tuples)."""
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def summary(kind: str, n: int, skipped: dict) -> str:
    note = f"; {len(skipped)} left out, e.g. {first_reason(skipped)}" if skipped else ""
    return f"{n} {kind} training-only clips{note}"


def first_reason(reasons: dict) -> str:
    if not reasons:
        return "the file lists none"
    cid, why = next(iter(reasons.items()))
    return f"{cid}: {why}"
