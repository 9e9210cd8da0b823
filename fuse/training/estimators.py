"""The same CV protocol for estimators (LightGBM): one fit per (seed, fold), stopped early on
that fold's validation clips; standardization statistics from the training folds.

The fits run side by side in a thread pool, each single-threaded (LightGBM releases the GIL).
On a shared machine this is far faster than one fit at a time on several OpenMP threads, whose
per-split barriers wait on every descheduled thread (measured on 2 loaded cores, MER-sized
fold: 2 threads 5x slower than 1); and the results do not depend on the number of workers.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from fuse.inputs.extras import member_rows
from fuse.inputs.folds import make_folds
from fuse.models import MODELS
from .loop import Fit, TrainConfig, training_only
from .progress import Progress


def fit_estimators(problem, model: str, config, cfg: TrainConfig, progress: bool = True) -> Fit:
    """Train `model` on the labelled training clips of `problem` with K-fold CV for every seed,
    `cfg.threads` fits at a time (default: one per CPU core)."""
    started = time.perf_counter()
    tr = problem.index("train", labelled_only=True)
    extra_rows, extra_origin = training_only(problem)
    features = MODELS[model].features
    labels, valence = problem.labels[tr], problem.valence[tr]
    folds = np.stack([make_folds(labels, cfg.folds, s, problem.multi_label) for s in cfg.seeds])
    S, K, C = len(cfg.seeds), cfg.folds, len(problem.classes)

    def fit_fold(member: int):
        s, k = divmod(member, K)
        val = folds[s] == k
        train = member_rows(tr, folds[s], k, extra_rows, extra_origin)  # problem rows
        x = features([b[train] for b in problem.blocks])
        x_val = features([b[tr[val]] for b in problem.blocks])
        mean, std = (x.mean(0), x.std(0) + 1e-6) if cfg.standardize else (0.0, 1.0)
        x, x_val = (x - mean) / std, (x_val - mean) / std
        est = MODELS[model](config, problem.shapes, problem.modalities, C, problem.multi_label)
        est.fit(x, problem.labels[train], problem.valence[train], x_val, labels[val], valence[val],
                seed=cfg.seeds[s] * 1000 + k)
        return est, (np.asarray(mean, np.float32), np.asarray(std, np.float32)), est.predict(x_val)

    bar = Progress(S * K, f"{model}: {S} seed(s) x {K} folds", unit="fit", enabled=progress)
    with ThreadPoolExecutor(max_workers=min(cfg.threads or cpu_cores(), S * K)) as pool:
        futures = [pool.submit(fit_fold, e) for e in range(S * K)]
        try:
            for done, future in enumerate(futures, 1):
                future.result()
                bar.update(done)
        except BaseException:  # a failed or interrupted fit: drop the fits not yet started
            for future in futures:
                future.cancel()
            raise
    bar.close()
    states, norms, oof = zip(*(f.result() for f in futures))
    oof_probs, oof_valence = np.zeros((S, len(tr), C)), np.zeros((S, len(tr)))
    for e, (probs, predicted) in enumerate(oof):
        s, k = divmod(e, K)
        oof_probs[s, folds[s] == k], oof_valence[s, folds[s] == k] = probs, predicted
    best = np.array([est.best_round() for est in states]).reshape(S, K)
    return Fit(train_index=tr, folds=folds, oof_probs=oof_probs, oof_valence=oof_valence, best_epoch=best,
               history=_curves(states, S, K), states=list(states), norms=list(norms),
               seconds=time.perf_counter() - started)


def _curves(states, S: int, K: int) -> np.ndarray:
    """[S, K, rounds] validation loss per round, negated (higher is better like the other curves),
    NaN-padded after each fit's last round."""
    history = [est.history() for est in states]
    curves = np.full((S * K, max(len(h) for h in history)), np.nan)
    for e, h in enumerate(history):
        curves[e, :len(h)] = -h
    return curves.reshape(S, K, -1)


def cpu_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def predict_estimators(fit: Fit, blocks: list[np.ndarray], model: str) -> tuple[np.ndarray, np.ndarray]:
    """Every (seed, fold) estimator's outputs: probs [E, n, C], valence [E, n]."""
    x_all = MODELS[model].features(blocks)
    outs = [est.predict((x_all - mean) / std) for est, (mean, std) in zip(fit.states, fit.norms)]
    return np.stack([o[0] for o in outs]), np.stack([o[1] for o in outs])
