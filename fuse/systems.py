"""Train the system(s) of a request: one model, or AFG's three structures fused at decision level
(USTC Eq. 10-11, weights chosen on the out-of-fold validation predictions)."""
from __future__ import annotations

import numpy as np

from .estimators import fit_estimators
from .evaluate import choose_weights
from .loop import fit
from .models import MODELS
from .run import System


def train_systems(problem, request) -> tuple[list[System], np.ndarray]:
    estimator = getattr(MODELS[request.model], "estimator", False)
    systems = []
    for config in request.configs:
        trainer = fit_estimators if estimator else fit
        result = trainer(problem, request.model, config, request.train, progress=not request.quiet)
        label = f"structure{config.structure}" if len(request.configs) > 1 else request.model
        systems.append(System(request.model, config, result, label))
    if len(systems) == 1:
        return systems, np.ones(1)
    first = systems[0].fit
    weights, _ = choose_weights([s.fit.oof_probs for s in systems], [s.fit.oof_valence for s in systems],
                                problem, first.train_index, first.folds)
    return systems, weights
