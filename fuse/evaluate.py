"""Scores of a trained run, by the MER 2023 protocol.

CV: per seed, each fold's validation clips scored at that fold's best epoch, averaged over the
folds (as the official script does). Test: per seed, the fold models' probabilities averaged, then
argmax (the official script averages raw logits instead), valence averaged. Both reported as
mean +- std over seeds; the "ensemble" row averages every seed's fold models (what the predictions
CSV holds). Multi-label: per-class thresholds from validation predictions only — for a CV fold,
those of the other folds; for test clips, all validation folds.

Decision-level fusion of several systems (USTC Eq. 10-11): the test splits are fused with the
weights chosen on every fold's out-of-fold predictions (choose_weights); the CV figure is nested
(nested_fusion): each fold is scored with the weights chosen on the other folds of its seed, so
no fold is scored with weights chosen on it.
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
    return [_mean_of([fold_score(problem, train_index, folds[s] == k, oof_probs[s], oof_valence[s])
                      for k in np.unique(folds[s])]) for s in range(len(folds))]


def fold_score(problem, train_index, val, probs, valence) -> dict:
    """Metrics of one validation fold (`val` bool [n]) of one seed's predictions (probs [n, C],
    valence [n]); multi-label thresholds chosen on the other folds' clips."""
    thresholds = (metrics.best_thresholds(problem.labels[train_index[~val]], probs[~val])
                  if problem.multi_label else None)
    return score(problem, train_index[val], probs[val], valence[val], thresholds)


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


NESTED = ("nested over folds: fold k of seed s is scored with the weights chosen on that seed's other folds "
          "(fold_weights); the test splits with the weights chosen on all folds (weights)")


def weight_grid(n: int, step: float = 0.1) -> list[np.ndarray]:
    """Every weight vector k [n] on the simplex (sum 1) with entries on a grid of `step`."""
    grid = np.round(np.arange(0, 1 + step / 2, step), 6)
    return [np.array(list(k) + [max(1 - sum(k), 0.0)]) for k in itertools.product(grid, repeat=n - 1)
            if 1 - sum(k) >= -1e-9]


def fused(weights, systems_oof, systems_valence):
    """sum_i k_i p_i and sum_i k_i v_i: the systems' outputs ([S, n, C] and [S, n] each) weighted."""
    return (sum(w * p for w, p in zip(weights, systems_oof)), sum(w * v for w, v in zip(weights, systems_valence)))


def fold_combined(systems_oof, systems_valence, problem, train_index, folds, grid) -> np.ndarray:
    """The combined score of every (grid weights g, seed s, fold k): [G, S, K]."""
    table = []
    for weights in grid:
        probs, valence = fused(weights, systems_oof, systems_valence)
        table.append([[fold_score(problem, train_index, folds[s] == k, probs[s], valence[s])["combined"]
                       for k in np.unique(folds[s])] for s in range(len(folds))])
    return np.asarray(table)


def choose_weights(systems_oof: list[np.ndarray], systems_valence: list[np.ndarray], problem, train_index,
                   folds, step: float = 0.1) -> tuple[np.ndarray, float]:
    """Decision-level fusion (USTC Eq. 10-11): weights k on the simplex (sum 1, grid `step`) that
    maximise the mean CV combined score of sum_i k_i p_i over seeds and folds: what the test splits
    are fused with. Returns (k, that score: tuned on every fold, not a CV figure)."""
    grid = weight_grid(len(systems_oof), step)
    mean = fold_combined(systems_oof, systems_valence, problem, train_index, folds, grid).mean(axis=(1, 2))
    best = _first_best(mean)
    return grid[best], float(mean[best])


def nested_fusion(systems_oof, systems_valence, problem, train_index, folds, step: float = 0.1):
    """The CV of decision-level fusion with no fold scored by weights chosen on it: per seed s and
    fold k, the weights that maximise the mean combined score of seed s's other folds, applied to
    fold k. Returns (per-seed metrics as cv_scores gives them, out-of-fold probabilities [S, n, C]
    and valence [S, n] so fused, fold weights [S, K, systems])."""
    grid = weight_grid(len(systems_oof), step)
    table = fold_combined(systems_oof, systems_valence, problem, train_index, folds, grid)
    probs, valence = np.zeros_like(systems_oof[0]), np.zeros_like(systems_valence[0])
    fold_weights, per_seed = np.zeros(table.shape[1:] + (len(systems_oof),)), []
    for s in range(len(folds)):
        per_fold = []
        for k, fold in enumerate(np.unique(folds[s])):
            weights = grid[_first_best(np.delete(table[:, s], k, axis=1).mean(1))]
            p, v = fused(weights, [x[s] for x in systems_oof], [x[s] for x in systems_valence])
            val = folds[s] == fold
            probs[s, val], valence[s, val], fold_weights[s, k] = p[val], v[val], weights
            per_fold.append(fold_score(problem, train_index, val, p, v))
        per_seed.append(_mean_of(per_fold))
    return per_seed, probs, valence, fold_weights


def _first_best(values) -> int:
    """The index of the largest value, the first one when others are within 1e-12 of it."""
    best = 0
    for i, value in enumerate(values):
        if value > values[best] + 1e-12:
            best = i
    return best
