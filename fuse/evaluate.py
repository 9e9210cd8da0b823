"""Scores of a trained run, by the MER 2023 protocol.

CV: per seed, each fold's validation clips scored at that fold's best epoch, averaged over the
folds (as the official script does). Test: per seed, the fold models' probabilities averaged, then
argmax (the official script averages raw logits instead), valence averaged. Both reported as
mean +- std over seeds; the "ensemble" row averages every seed's fold models (what the predictions
CSV holds). Multi-label: per-class thresholds from validation predictions only — for a CV fold,
those of the other folds; for test clips, all validation folds.
"""
from __future__ import annotations

import itertools

import numpy as np

from . import metrics


def score(problem, rows, probs, valence, thresholds=None) -> dict:
    """Metrics of predictions for problem rows `rows` (probs [n, C], valence [n])."""
    true_valence = problem.valence[rows] if problem.has_valence else None
    if problem.multi_label:
        return metrics.multi_label_scores(problem.labels[rows], probs, thresholds, true_valence, valence,
                                          list(problem.classes))
    return metrics.single_label_scores(problem.labels[rows], probs, true_valence, valence)


def cv_scores(problem, train_index, folds, oof_probs, oof_valence) -> list[dict]:
    """Per seed: fold-averaged validation metrics. folds [S, n]; oof_* [S, n, ...]."""
    out = []
    for s in range(len(folds)):
        per_fold = []
        for k in np.unique(folds[s]):
            val = folds[s] == k
            thresholds = (metrics.best_thresholds(problem.labels[train_index[~val]], oof_probs[s, ~val])
                          if problem.multi_label else None)
            per_fold.append(score(problem, train_index[val], oof_probs[s, val], oof_valence[s, val], thresholds))
        out.append(_mean_of(per_fold))
    return out


def oof_thresholds(problem, train_index, oof_probs) -> np.ndarray | None:
    """Per-class thresholds from all validation predictions of one or more seeds ([S, n, C])."""
    if not problem.multi_label:
        return None
    labels = np.concatenate([problem.labels[train_index]] * len(oof_probs))
    return metrics.best_thresholds(labels, oof_probs.reshape(-1, oof_probs.shape[-1]))


def _mean_of(per_fold: list[dict]) -> dict:
    """Fold metrics averaged over the folds (per-class dicts per class)."""
    out = {}
    for key, value in per_fold[0].items():
        if isinstance(value, dict):
            out[key] = _mean_of([f[key] for f in per_fold])
        elif isinstance(value, float):
            values = [f[key] for f in per_fold if f[key] is not None]
            out[key] = float(np.mean(values)) if values else None
    return out


def choose_weights(systems_oof: list[np.ndarray], systems_valence: list[np.ndarray], problem, train_index,
                   folds, step: float = 0.1) -> tuple[np.ndarray, float]:
    """Decision-level fusion (USTC Eq. 10-11): weights k on the simplex (sum 1, grid `step`) that
    maximise the mean CV combined score of sum_i k_i p_i over seeds. Returns (k, that score)."""
    n = len(systems_oof)
    grid = np.round(np.arange(0, 1 + step / 2, step), 6)
    best, best_score = None, -np.inf
    for k in itertools.product(grid, repeat=n - 1):
        last = 1 - sum(k)
        if last < -1e-9:
            continue
        weights = np.array(list(k) + [max(last, 0.0)])
        probs = sum(w * p for w, p in zip(weights, systems_oof))
        valence = sum(w * v for w, v in zip(weights, systems_valence))
        value = np.mean([s["combined"] for s in cv_scores(problem, train_index, folds, probs, valence)])
        if value > best_score + 1e-12:
            best, best_score = weights, value
    return best, float(best_score)
