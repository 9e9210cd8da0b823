"""MER-SEMI sample selection, Algorithm 1 of the MER 2023 baseline (Lian et al. 2023, section 2.3):
class-specific confidence thresholds from correctly classified labelled clips, and the unlabelled
clips whose confidence exceeds the threshold of their predicted class.

    thresholds = class_thresholds(probs, labels, quantile=0.5)     # [C]
    chosen, predicted, confidence = select(unlabelled_probs, thresholds)
"""
from __future__ import annotations

import numpy as np


def class_thresholds(probs: np.ndarray, labels: np.ndarray, quantile: float) -> np.ndarray:
    """lambda [C]: per class, the `quantile` of max(probs) over the clips of that class predicted
    correctly (Algorithm 1, lines 1-11); +inf for a class with none. probs [n, C], labels int [n]."""
    predicted, confidence = probs.argmax(1), probs.max(1)
    out = np.full(probs.shape[1], np.inf)
    for j in range(probs.shape[1]):
        correct = confidence[(labels == j) & (predicted == j)]
        if len(correct):
            out[j] = np.quantile(correct, quantile)
    return out


def select(probs: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(selected bool [n], predicted class [n], confidence [n]): s_i > lambda of its predicted
    class (Algorithm 1, lines 13-19)."""
    predicted, confidence = probs.argmax(1), probs.max(1)
    return confidence > thresholds[predicted], predicted, confidence
