"""Cross-validation folds of the labelled training clips, seeded and saved with the run.

Single-label data: stratified K folds (every class in every validation fold), unless a class has
fewer clips than folds: plain shuffled K folds then, which the run's metrics.json ("folds") and
printed result (a warning) say; multi-label: plain shuffled K folds. The MER 2023 baseline shuffles without a seed; here seed s
always gives the same folds, so runs of different models with seed s are paired.
"""
from __future__ import annotations

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold


def make_folds(labels: np.ndarray, n_folds: int, seed: int, multi_label: bool = False) -> np.ndarray:
    """Fold number (0..n_folds-1) of each clip: int [n]. labels int [n] or 0/1 [n, C]."""
    n = len(labels)
    if n < n_folds:
        raise ValueError(f"{n} labelled training clips cannot make {n_folds} folds")
    fold = np.empty(n, dtype=np.int64)
    kind = StratifiedKFold if fold_kind(labels, n_folds, multi_label)["stratified"] else KFold
    splitter = kind(n_folds, shuffle=True, random_state=seed).split(np.zeros(n), None if multi_label else labels)
    for k, (_, val) in enumerate(splitter):
        fold[val] = k
    return fold


def fold_kind(labels: np.ndarray, n_folds: int, multi_label: bool = False, classes=None) -> dict:
    """How make_folds splits `labels`: {"n": K, "stratified": bool, "why": reason (when not)}.
    A class with fewer clips than folds cannot be stratified: plain shuffled folds then.
    `classes`: the class names, for the reason."""
    if multi_label:
        return {"n": n_folds, "stratified": False, "why": "multi-label clips: plain shuffled folds"}
    counts = np.bincount(labels)
    present = np.flatnonzero(counts)
    rarest = present[np.argmin(counts[present])]
    if counts[rarest] >= n_folds:
        return {"n": n_folds, "stratified": True}
    name, n = classes[rarest] if classes is not None else str(rarest), int(counts[rarest])
    remedy = f"; --folds {n} keeps them stratified" if n >= 2 else ""
    return {"n": n_folds, "stratified": False,
            "why": f"class {name!r} has {n} labelled training clip(s), fewer than the {n_folds} folds: plain shuffled "
                   f"folds, not stratified ({n_folds - n} or more validation folds hold no {name!r} clip{remedy})"}
