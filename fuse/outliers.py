"""Inputs far outside a feature's own spread: finite values no extractor gives (3e38 written into a
row, a unit mixed up) that would otherwise train silently (non-finite ones are left out earlier).

Per dimension (a column of a block [N, ...] seen as [N, F]) the spread is robust: 1.4826 x the
median absolute deviation from the median over the clips (the standard deviation for normal data),
so the far-out rows themselves do not widen it. No dimension's spread is taken below the block's
typical one (the median of its dimensions' positive spreads): a constant or sparse dimension has
none, and openSMILE functionals that are numerically zero (1e-9) on most clips and real on a few
would otherwise be 1e7 spreads out. A value is far out beyond FAR_OUT spreads from its dimension's
median; the demo's real features reach 7e2 (is10), 3e2 (egemaps).
Statistics come from up to SAMPLE_ROWS clips, and every pass works on slices of at most
SLICE_BYTES as float32, so per-layer features [N, L, D] and float16 blocks are never copied whole;
uint8 blocks (pixels) are bounded by their dtype and not checked, nor is a feature whose extractor
says its values have no spread to measure against (provenance `far_out_check`: e2el-spectrogram's
linear mel power, where speech is 1e5 spreads above the silence and padding of most clips).
"""
from __future__ import annotations

import numpy as np

FAR_OUT = 1e5          # robust spreads from the median
SAMPLE_ROWS = 1024     # clips the medians and spreads are taken over
SLICE_BYTES = 64 << 20
SHOWN = 3              # clips named in a warning


def far_out_warnings(specs: list[str], blocks: list[np.ndarray], ids: np.ndarray, unchecked=()) -> list[str]:
    """One warning per feature spec whose block has clips beyond FAR_OUT spreads: how many, a few
    ids, and the farthest value (its dimension, its distance in spreads). Specs in `unchecked` are
    skipped."""
    out = []
    for spec, block in zip(specs, blocks):
        if block.dtype == np.uint8 or not len(block) or spec in unchecked:
            continue
        columns = block.reshape(len(block), -1)
        median, spread = robust_spread(columns)
        distance = row_distances(columns, median, spread)
        far = np.flatnonzero(distance > FAR_OUT)
        if len(far):
            out.append(_message(spec, columns, ids, far, distance, median, spread, block.shape[1:]))
    return out


def robust_spread(columns: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(median [F], spread [F]) float64 of columns [N, F] over up to SAMPLE_ROWS rows; spread > 0."""
    rows = columns
    if len(columns) > SAMPLE_ROWS:
        rows = columns[np.sort(np.random.default_rng(seed).choice(len(columns), SAMPLE_ROWS, replace=False))]
    median, spread = np.empty(columns.shape[1]), np.empty(columns.shape[1])
    step = max(1, SLICE_BYTES // (4 * len(rows)))
    for start in range(0, columns.shape[1], step):
        x = rows[:, start:start + step].astype(np.float32)
        m = np.median(x, axis=0)
        median[start:start + step] = m
        spread[start:start + step] = 1.4826 * np.median(np.abs(x - m), axis=0)
    positive = spread[spread > 0]
    typical = np.median(positive) if len(positive) else 1.0
    return median, np.maximum(spread, typical)


def row_distances(columns: np.ndarray, median: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """float32 [N]: each row's largest |x - median| / spread over its columns (inf past float32)."""
    out = np.empty(len(columns), dtype=np.float32)
    median, spread = median.astype(np.float32), spread.astype(np.float32)
    step = max(1, SLICE_BYTES // (4 * columns.shape[1]))
    with np.errstate(over="ignore"):
        for start in range(0, len(columns), step):
            x = columns[start:start + step].astype(np.float32)  # a copy: changed in place below
            x -= median
            np.abs(x, out=x)
            x /= spread
            out[start:start + step] = x.max(axis=1)
    return out


def _message(spec, columns, ids, far, distance, median, spread, shape) -> str:
    worst = far[np.argmax(distance[far])]
    distances = np.abs(columns[worst].astype(np.float64) - median) / spread
    column = int(np.argmax(distances))
    index = np.unravel_index(column, shape)
    named = ", ".join(str(ids[i]) for i in far[:SHOWN]) + (f" and {len(far) - SHOWN} more" if len(far) > SHOWN else "")
    return (f"{spec}: {len(far)} clip(s) with values over {FAR_OUT:.0e} robust spreads from the feature's "
            f"median ({named}); the farthest, {ids[worst]}, has {float(columns[worst, column]):.3g} at index "
            f"{index[0] if len(index) == 1 else tuple(map(int, index))} ({distances[column]:.2g} spreads; median "
            f"{median[column]:.3g}, spread {spread[column]:.3g}): check how these clips were extracted")
