"""Train the system(s) of a request: one model, or AFG's three structures (fused at decision level
by fuse.results.scoring.decision_weights: USTC Eq. 10-11)."""
from __future__ import annotations

from fuse.models import MODELS
from .estimators import fit_estimators
from .loop import fit, split_fit
from .members import System


def train_systems(problem, request, n_rates: int = 0) -> list:
    """The request's systems, one per config. With `n_rates` (request.train.lr_grid), one such list
    per learning rate, all trained as one model per config."""
    estimator = getattr(MODELS[request.model], "estimator", False)
    fits = []
    for config in request.configs:
        trainer = fit_estimators if estimator else fit
        result = trainer(problem, request.model, config, request.train, progress=not request.quiet)
        fits.append(split_fit(result, n_rates) if n_rates else [result])
    per_rate = [_systems(request, [f[g] for f in fits]) for g in range(max(n_rates, 1))]
    return per_rate if n_rates else per_rate[0]


def _systems(request, fits) -> list[System]:
    return [System(request.model, config, result,
                   f"structure{config.structure}" if len(request.configs) > 1 else request.model)
            for config, result in zip(request.configs, fits)]
