"""Decision-level fusion of finished runs (USTC Eq. 10-11): posteriors and valences averaged with
weights k (sum 1) chosen on the runs' out-of-fold validation predictions, never on test clips.
The test splits are fused with the weights chosen on every fold; the CV figure is nested: each
fold scored with the weights chosen on its seed's other folds (fuse.evaluate.nested_fusion).

Runs of one sweep share seeds, hence folds; clips left out by any run are left out of the fusion.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cache import open_clips
from .evaluate import NESTED, choose_weights, fused, nested_fusion, oof_thresholds, score
from .metrics import mean_std
from .problem import Problem
from .run import write_predictions
from .saved_run import SavedRun


def _load(run: Path, split: str):
    """The run's scores of `split` (`cv`: out-of-fold), checked (a damaged file is named)."""
    return SavedRun(run).scores(split, ("ids", "probs", "valence") + (("folds",) if split == "cv" else ()))


def _common(loaded: list[dict]) -> list[str]:
    ids = set(loaded[0]["ids"].tolist())
    for d in loaded[1:]:
        ids &= set(d["ids"].tolist())
    return sorted(ids)


def _rows(d: dict, ids: list[str]) -> np.ndarray:
    index = {cid: i for i, cid in enumerate(d["ids"].tolist())}
    return np.array([index[c] for c in ids])


def _problem(dataset: str, cache_dir, ids: list[str], splits) -> Problem:
    table = open_clips(dataset, root=cache_dir)
    return Problem(dataset=dataset, ids=np.asarray(ids, dtype=object), split=np.asarray(splits, dtype=object),
                   specs=[], modalities=[], blocks=[], classes=tuple(table.classes), multi_label=table.multi_label,
                   labels=table.labels(ids), valence=table.valence(ids))


def fuse_runs(runs: list[Path], dataset: str, cache_dir, out: Path, step: float = 0.1) -> dict:
    """Fuse `runs` (run folders); writes predictions CSVs and metrics.json to `out`; returns the metrics."""
    cv = [_load(r, "cv") for r in runs]
    ids = _common(cv)
    problem = _problem(dataset, cache_dir, ids, ["train"] * len(ids))
    rows = [_rows(d, ids) for d in cv]
    folds = cv[0]["folds"][:, rows[0]]
    oof = [d["probs"][:, r] for d, r in zip(cv, rows)]
    oof_v = [d["valence"][:, r] for d, r in zip(cv, rows)]
    train_index = np.arange(len(ids))
    weights, _ = choose_weights(oof, oof_v, problem, train_index, folds, step)
    thresholds = oof_thresholds(problem, train_index, fused(weights, oof, oof_v)[0])
    per_seed, _, _, fold_weights = nested_fusion(oof, oof_v, problem, train_index, folds, step)
    metrics = {"runs": [r.name for r in runs], "weights": [float(w) for w in weights], "cv": mean_std(per_seed),
               "cv_weights": NESTED, "fold_weights": np.round(fold_weights, 6).tolist()}
    for split in _test_splits(runs[0]):
        metrics.update(_fuse_split(runs, split, weights, dataset, cache_dir, out, thresholds))
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def _test_splits(run: Path) -> list[str]:
    return sorted(p.stem for p in (run / "scores").glob("*.npz") if p.stem != "cv")


def _fuse_split(runs, split, weights, dataset, cache_dir, out, thresholds) -> dict:
    loaded = [_load(r, split) for r in runs]
    ids = _common(loaded)
    if not ids:
        return {}
    rows = [_rows(d, ids) for d in loaded]
    per_seed = sum(w * d["probs"][:, r] for w, d, r in zip(weights, loaded, rows))
    per_seed_v = sum(w * d["valence"][:, r] for w, d, r in zip(weights, loaded, rows))
    problem = _problem(dataset, cache_dir, ids, [split] * len(ids))
    write_predictions(out / "predictions" / f"{split}.csv", ids, per_seed.mean(0), per_seed_v.mean(0),
                      problem.classes, problem.multi_label, thresholds)
    labelled = problem.labelled
    if not labelled.any():
        return {}
    index = np.flatnonzero(labelled)
    return {split: mean_std([score(problem, index, per_seed[s][labelled], per_seed_v[s][labelled], thresholds)
                             for s in range(len(per_seed))])}
