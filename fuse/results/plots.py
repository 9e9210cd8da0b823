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


def curves_title(model: str, system: str, seed: int) -> str:
    """'attention, seed 1'; a system with a name of its own (afg's structure2) in brackets."""
    return f"{model}{f' ({system})' if system not in ('', model) else ''}, seed {seed}"


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


def pair_heatmap(path: Path, frame, title: str = "CV combined score"):
    """Best CV combined score of each feature pair (diagonal: the feature alone). frame: leaderboard
    rows with columns A, L, V (feature or empty), n_modalities, cv_combined."""
    best = frame.drop_duplicates(subset=[c for c in ("A", "L", "V") if c in frame], keep="first")
    features = [f"{m}:{r[m]}" for _, r in best.iterrows() for m in "ALV" if isinstance(r.get(m), str)]
    names = list(dict.fromkeys(features))
    grid = np.full((len(names), len(names)), np.nan)
    for _, r in best[best["n_modalities"] <= 2].iterrows():
        used = [names.index(f"{m}:{r[m]}") for m in "ALV" if isinstance(r.get(m), str)]
        i, j = (used[0], used[0]) if len(used) == 1 else used
        grid[i, j] = grid[j, i] = r["cv_combined"]
    fig, ax = plt.subplots(figsize=(1.1 * len(names) + 2.5, 0.9 * len(names) + 1.8))
    image = ax.imshow(grid, cmap="viridis")
    for (i, j), v in np.ndenumerate(grid):
        if not np.isnan(v):
            ax.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=8,
                    color="white" if v < np.nanmean(grid) else "black")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_title(title)
    fig.colorbar(image, ax=ax, shrink=0.8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def fusion_gain(path: Path, gains):
    """Bars: CV combined gain of each multimodal set over its best single-modality part."""
    fig, ax = plt.subplots(figsize=(7, 0.4 * max(len(gains), 3) + 1.2))
    order = gains.sort_values("gain")
    ax.barh(order["set"], order["gain"], color=["tab:green" if g > 0 else "tab:red" for g in order["gain"]])
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel("CV combined: fused - best single modality")
    ax.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
