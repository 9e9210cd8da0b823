"""Pooling hidden states over valid frames, exact across padding and across windows of a long clip.

Each forward pass gives, per segment (a clip or one window of a long clip), the frame count and the
per-layer mean and sum of squared deviations of its valid frames; `combine` merges the windows of
a clip into the moments of all its frames (Chan et al.'s parallel update), so a clip split into
windows gets the frame-weighted mean and std of all its frames.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class Moments:
    """Per-layer statistics of `n` frames: mean and m2 (sum of squared deviations), float64 [L, D]."""

    n: int
    mean: np.ndarray
    m2: np.ndarray

    @property
    def std(self) -> np.ndarray:
        """Population standard deviation over the frames (0 for a single frame), float64 [L, D]."""
        return np.sqrt(np.maximum(self.m2, 0.0) / self.n)


def window_bounds(n_samples: int, window: int) -> list[tuple[int, int]]:
    """(start, stop) of near-equal windows of at most `window` samples covering [0, n_samples).

    Near-equal rather than fixed windows plus a remainder: no tiny last window with too few frames."""
    count = max(1, math.ceil(n_samples / window))
    edges = np.linspace(0, n_samples, count + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def masked_moments(hidden, lengths) -> list[Moments]:
    """Moments over the first `lengths[b]` frames of each row.

    hidden: torch float [L, B, T, D] (any device and dtype); lengths: torch int [B].
    Returns one Moments per row b (float64 numpy)."""
    import torch

    hidden = hidden.float()
    steps = torch.arange(hidden.shape[2], device=hidden.device)
    mask = (steps[None, :] < lengths.to(hidden.device)[:, None]).float()[None, :, :, None]  # [1, B, T, 1]
    n = mask.sum(dim=2)                                                                   # [1, B, 1]
    mean = (hidden * mask).sum(dim=2) / n                                                 # [L, B, D]
    m2 = (((hidden - mean[:, :, None]) * mask) ** 2).sum(dim=2)                           # [L, B, D]
    mean, m2 = mean.double().cpu().numpy(), m2.double().cpu().numpy()
    return [Moments(int(lengths[b]), mean[:, b], m2[:, b]) for b in range(hidden.shape[1])]


def combine(parts: list[Moments]) -> Moments:
    """The moments of the union of the parts' frames."""
    total = parts[0]
    for part in parts[1:]:
        n = total.n + part.n
        delta = part.mean - total.mean
        mean = total.mean + delta * (part.n / n)
        m2 = total.m2 + part.m2 + delta ** 2 * (total.n * part.n / n)
        total = Moments(n, mean, m2)
    return total


def average_pool_time(frames: np.ndarray, factor: int) -> np.ndarray:
    """Mean of each run of `factor` consecutive frames (the last run may be shorter): [T, D] -> [ceil(T/f), D]."""
    if factor <= 1:
        return frames
    t = frames.shape[0]
    starts = np.arange(0, t, factor)
    sums = np.add.reduceat(frames.astype(np.float64), starts, axis=0)
    counts = np.minimum(starts + factor, t) - starts
    return sums / counts[:, None]
