"""Train the system(s) of a request: one model, or AFG's three structures fused at decision level
(USTC Eq. 10-11: the test splits fused with the weights chosen on every fold's out-of-fold
validation predictions; the run's CV figure nested over folds, fuse.evaluate.nested_fusion)."""
from __future__ import annotations

import numpy as np

from .estimators import fit_estimators
from .evaluate import choose_weights
from .loop import fit, split_fit
from .models import MODELS
from .run import System


def train_systems(problem, request, n_rates: int = 0):
    """(systems, decision weights). With `n_rates` (request.train.lr_grid), one such pair per
    learning rate, all trained as one model per config."""
    estimator = getattr(MODELS[request.model], "estimator", False)
    fits = []
    for config in request.configs:
        trainer = fit_estimators if estimator else fit
        result = trainer(problem, request.model, config, request.train, progress=not request.quiet)
        fits.append(split_fit(result, n_rates) if n_rates else [result])
    per_rate = [_systems(problem, request, [f[g] for f in fits]) for g in range(max(n_rates, 1))]
    return per_rate if n_rates else per_rate[0]


def _systems(problem, request, fits) -> tuple[list[System], np.ndarray]:
    systems = [System(request.model, config, result,
                      f"structure{config.structure}" if len(request.configs) > 1 else request.model)
               for config, result in zip(request.configs, fits)]
    if len(systems) == 1:
        return systems, np.ones(1)
    first = systems[0].fit
    weights, _ = choose_weights([s.fit.oof_probs for s in systems], [s.fit.oof_valence for s in systems],
                                problem, first.train_index, first.folds)
    return systems, weights
