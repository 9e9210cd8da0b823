"""MER 2023 metrics (Lian et al. 2023, section 3.7), computed with scikit-learn.

    weighted F1 over the classes (Eq. 10), valence MSE (Eq. 11), combined = F1 - 0.25 * MSE (Eq. 12);
    F1 alone when a dataset has no valence. Multi-label clips (SAMSEMO): F1 over the label
    indicator matrix, weighted and macro, plus one F1 per class.
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, mean_squared_error

VALENCE_WEIGHT = 0.25  # Eq. 12


def combined_score(weighted_f1: float, mse: float | None) -> float:
    """MER 2023's combined metric; the F1 alone when there is no valence (MSE None or NaN)."""
    if mse is None or np.isnan(mse):
        return float(weighted_f1)
    return float(weighted_f1 - VALENCE_WEIGHT * mse)


def valence_mse(valence: np.ndarray, predicted: np.ndarray) -> float:
    """MSE over the clips that have a valence (NaN marks none); NaN when no clip has one."""
    valence, predicted = np.asarray(valence, float), np.asarray(predicted, float)
    known = ~np.isnan(valence)
    return float(mean_squared_error(valence[known], predicted[known])) if known.any() else float("nan")


def quick_weighted_f1(labels: np.ndarray, predicted: np.ndarray, n_classes: int) -> float:
    """f1_score(labels, predicted, average="weighted", zero_division=0) for class ids in
    [0, n_classes), by counting, without scikit-learn's input checks (a millisecond a call): for the
    scores that pick a best epoch or boosting round, computed every epoch or round."""
    labels, predicted = np.asarray(labels, dtype=np.int64), np.asarray(predicted, dtype=np.int64)
    support = np.bincount(labels, minlength=n_classes)
    tp = np.bincount(labels[labels == predicted], minlength=n_classes)
    both = support + np.bincount(predicted, minlength=n_classes)  # 2 tp + fp + fn
    f1 = np.divide(2.0 * tp, both, out=np.zeros(n_classes), where=both > 0)
    return float(f1 @ support / support.sum()) if support.sum() else 0.0


def weighted_average_precision(labels: np.ndarray, probs: np.ndarray) -> float:
    """average_precision_score(labels, probs, average="weighted") for 0/1 labels [n, C]: classes
    without a positive clip weigh 0 there, so they are left out here, which changes nothing but
    scikit-learn's warning for each (per epoch and member, on a small validation fold)."""
    from sklearn.metrics import average_precision_score

    labels, probs = np.asarray(labels), np.asarray(probs)
    present = labels.sum(axis=0) > 0
    if not present.any():
        return float("nan")
    return float(average_precision_score(labels[:, present], probs[:, present], average="weighted"))


def single_label_scores(labels: np.ndarray, probs: np.ndarray, valence=None, predicted_valence=None) -> dict:
    """labels int [n], probs float [n, C] -> weighted_f1, accuracy, mse, combined."""
    predicted = np.asarray(probs).argmax(axis=1)
    f1 = float(f1_score(labels, predicted, average="weighted", zero_division=0))
    out = {"weighted_f1": f1, "accuracy": float(accuracy_score(labels, predicted))}
    return _with_valence(out, valence, predicted_valence)


def multi_label_scores(labels: np.ndarray, probs: np.ndarray, thresholds: np.ndarray, valence=None,
                       predicted_valence=None, classes=None) -> dict:
    """labels 0/1 [n, C], probs [n, C], thresholds [C] -> weighted/macro F1, per-class F1, exact-match
    accuracy, mse, combined."""
    labels = np.asarray(labels).astype(int)
    predicted = (np.asarray(probs) >= np.asarray(thresholds)[None, :]).astype(int)
    per_class = f1_score(labels, predicted, average=None, zero_division=0)
    out = {"weighted_f1": float(f1_score(labels, predicted, average="weighted", zero_division=0)),
           "macro_f1": float(f1_score(labels, predicted, average="macro", zero_division=0)),
           "accuracy": float(accuracy_score(labels, predicted))}
    names = classes or [str(i) for i in range(labels.shape[1])]
    out["per_class_f1"] = {name: float(v) for name, v in zip(names, per_class)}
    return _with_valence(out, valence, predicted_valence)


def best_thresholds(labels: np.ndarray, probs: np.ndarray, grid=np.linspace(0.05, 0.95, 19)) -> np.ndarray:
    """Per class, the threshold on `probs` that maximises that class's F1 on these (validation)
    clips; 0.5 for a class with no positive clip. labels 0/1 [n, C], probs [n, C] -> [C]."""
    labels, probs = np.asarray(labels).astype(int), np.asarray(probs)
    out = np.full(labels.shape[1], 0.5)
    for c in range(labels.shape[1]):
        if labels[:, c].any():
            # one scikit-learn call per class: column t is the class thresholded at grid[t]
            scores = f1_score(np.repeat(labels[:, [c]], len(grid), axis=1), probs[:, [c]] >= grid[None, :],
                              average=None, zero_division=0)
            out[c] = grid[int(np.argmax(scores))]
    return out


def _with_valence(out: dict, valence, predicted_valence) -> dict:
    mse = float("nan") if valence is None else valence_mse(valence, predicted_valence)
    out["mse"] = None if np.isnan(mse) else mse
    out["combined"] = combined_score(out["weighted_f1"], mse)
    return out


def mean_std(runs: list[dict]) -> dict:
    """[{metric: value}, ...] over seeds -> {metric: {"mean", "std", "per_seed"}}; a dict of numbers
    (per-class F1) gives one such entry per key; None values are left out."""
    out = {}
    for key, value in runs[0].items():
        if isinstance(value, dict):
            out[key] = mean_std([r[key] for r in runs])
        elif isinstance(value, (int, float)):
            values = [r[key] for r in runs if r[key] is not None]
            out[key] = {"mean": float(np.mean(values)), "std": float(np.std(values)),
                        "per_seed": [float(v) for v in values]}
    return out


def show_mean_std(mean, std, seeds=None, digits: int = 3) -> str:
    """'mean ± std' for a table; the mean alone over one seed (its std of 0 says nothing); '-' for none."""
    if mean is None or mean != mean:
        return "-"
    if seeds == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"
