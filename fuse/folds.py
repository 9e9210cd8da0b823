"""Cross-validation folds of the labelled training clips, seeded and saved with the run.

Single-label data: stratified K folds (every class in every validation fold where it can be);
multi-label: plain shuffled K folds. The MER 2023 baseline shuffles without a seed; here seed s
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
    if multi_label:
        splitter = KFold(n_folds, shuffle=True, random_state=seed).split(np.zeros(n))
    else:
        counts = np.bincount(labels)
        stratify = counts[counts > 0].min() >= n_folds  # a class rarer than K cannot be stratified
        kind = StratifiedKFold if stratify else KFold
        splitter = kind(n_folds, shuffle=True, random_state=seed).split(np.zeros(n), labels)
    for k, (_, val) in enumerate(splitter):
        fold[val] = k
    return fold
