"""The same CV protocol for estimators (LightGBM): one fit per (seed, fold), stopped early on
that fold's validation clips; standardization statistics from the training folds."""
from __future__ import annotations

import time

import numpy as np

from .folds import make_folds
from .loop import Fit, TrainConfig
from .models import MODELS
from .progress import Progress


def fit_estimators(problem, model: str, config, cfg: TrainConfig, progress: bool = True) -> Fit:
    started = time.perf_counter()
    cls = MODELS[model]
    tr = problem.index("train", labelled_only=True)
    x_all = cls.features([b[tr] for b in problem.blocks])
    labels, valence = problem.labels[tr], problem.valence[tr]
    folds = np.stack([make_folds(labels, cfg.folds, s, problem.multi_label) for s in cfg.seeds])
    S, K, C = len(cfg.seeds), cfg.folds, len(problem.classes)
    oof_probs, oof_valence = np.zeros((S, len(tr), C)), np.zeros((S, len(tr)))
    states, norms, history = [], [], []
    bar = Progress(S * K, f"{model}: {S} seed(s) x {K} folds", unit="fit", enabled=progress)
    for s, seed in enumerate(cfg.seeds):
        for k in range(K):
            val = folds[s] == k
            mean, std = (x_all[~val].mean(0), x_all[~val].std(0) + 1e-6) if cfg.standardize else (0.0, 1.0)
            x, x_val = (x_all[~val] - mean) / std, (x_all[val] - mean) / std
            est = cls(config, problem.shapes, problem.modalities, C, problem.multi_label)
            est.fit(x, labels[~val], valence[~val], x_val, labels[val], valence[val], seed=seed * 1000 + k)
            oof_probs[s, val], oof_valence[s, val] = est.predict(x_val)
            states.append(est)
            norms.append((np.asarray(mean, np.float32), np.asarray(std, np.float32)))
            history.append(est.history())
            bar.update(s * K + k + 1)
    bar.close()
    rounds = max(len(h) for h in history)
    curves = np.full((S * K, rounds), np.nan)
    for e, h in enumerate(history):
        curves[e, :len(h)] = -h  # validation loss, negated: higher is better like the other curves
    best = np.array([est.best_round() for est in states]).reshape(S, K)
    return Fit(train_index=tr, folds=folds, oof_probs=oof_probs, oof_valence=oof_valence, best_epoch=best,
               history=curves.reshape(S, K, -1), states=states, norms=norms,
               seconds=time.perf_counter() - started)


def predict_estimators(fit: Fit, blocks: list[np.ndarray], model: str) -> tuple[np.ndarray, np.ndarray]:
    """Every (seed, fold) estimator's outputs: probs [E, n, C], valence [E, n]."""
    x_all = MODELS[model].features(blocks)
    outs = [est.predict((x_all - mean) / std) for est, (mean, std) in zip(fit.states, fit.norms)]
    return np.stack([o[0] for o in outs]), np.stack([o[1] for o in outs])
