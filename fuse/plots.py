"""Plots of a run: confusion matrices and the validation score over epochs per fold."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay  # noqa: E402


def confusion_matrices(path: Path, panels: list[tuple[str, np.ndarray, np.ndarray]], classes):
    """One row-normalised confusion matrix per (title, true labels [n], predicted labels [n])."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.2), squeeze=False)
    for ax, (title, true, predicted) in zip(axes[0], panels):
        ConfusionMatrixDisplay.from_predictions(
            true, predicted, labels=list(range(len(classes))), display_labels=list(classes),
            normalize="true", values_format=".2f", cmap="Blues", colorbar=False, ax=ax)
        ax.set_title(f"{title} (n={len(true)})")
        ax.tick_params(axis="x", labelrotation=45)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def training_curves(path: Path, history: np.ndarray, best: np.ndarray, ylabel: str, title: str):
    """history [S, K, epochs] validation score; best [S, K] best epoch: one line per fold of seed 0,
    the mean over folds and seeds in black."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    epochs = np.arange(1, history.shape[-1] + 1)
    for k in range(history.shape[1]):
        line, = ax.plot(epochs, history[0, k], lw=1, alpha=0.7, label=f"fold {k + 1}")
        b = int(best[0, k])
        ax.plot(b + 1, history[0, k, b], "o", color=line.get_color())
    ax.plot(epochs, np.nanmean(history, axis=(0, 1)), color="black", lw=2, label="mean")
    ax.set_xlabel("epoch" if "loss" not in ylabel else "boosting round")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
