"""`lgbm`: LightGBM gradient-boosted trees on the concatenated features, an estimator rather than a
network: a classifier for the emotion (one binary model per class when multi-label) and a
regressor for the valence, each stopped early on the validation fold.

Settings for wide dense inputs (three 1024-d features): 63 histogram bins, a third of the columns
per tree, row subsampling, small leaves; per-layer blocks enter as the mean of their layers.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import MODELS


@dataclass(frozen=True)
class LGBMConfig:
    n_estimators: int = 1000
    learning_rate: float = 0.05
    num_leaves: int = 15
    min_child_samples: int = 10
    colsample_bytree: float = 0.3
    subsample: float = 0.8
    max_bin: int = 63
    early_stopping: int = 50


class LGBM:
    """fit(blocks, labels, valence, val_blocks, val_labels, val_valence, seed); predict(blocks)."""

    name = "lgbm"
    estimator = True
    Config = LGBMConfig

    def __init__(self, config: LGBMConfig, shapes, modalities, n_classes: int, multi_label: bool = False):
        self.config, self.n_classes, self.multi_label = config, n_classes, multi_label
        self.emotion, self.valence = [], None

    @staticmethod
    def features(blocks: list[np.ndarray]) -> np.ndarray:
        """[n, sum D]: blocks concatenated, per-layer blocks averaged over their layers."""
        return np.concatenate([b.mean(axis=1) if b.ndim == 3 else b for b in blocks], axis=1)

    def _params(self, seed: int) -> dict:
        c = self.config
        return dict(n_estimators=c.n_estimators, learning_rate=c.learning_rate, num_leaves=c.num_leaves,
                    min_child_samples=c.min_child_samples, colsample_bytree=c.colsample_bytree,
                    subsample=c.subsample, subsample_freq=1, max_bin=c.max_bin, random_state=seed,
                    deterministic=True, force_col_wise=True, n_jobs=2, verbose=-1)

    def fit(self, x, labels, valence, x_val, labels_val, valence_val, seed: int = 0):
        import lightgbm as lgb

        stop = [lgb.early_stopping(self.config.early_stopping, verbose=False)]
        if self.multi_label:
            self.emotion = [lgb.LGBMClassifier(**self._params(seed)).fit(
                x, labels[:, c], eval_set=[(x_val, labels_val[:, c])], callbacks=stop)
                for c in range(self.n_classes)]
        else:
            self.emotion = [lgb.LGBMClassifier(objective="multiclass", num_class=self.n_classes,
                                               **self._params(seed)).fit(
                x, labels, eval_set=[(x_val, labels_val)], callbacks=stop)]
        known, known_val = ~np.isnan(valence), ~np.isnan(valence_val)
        self.valence = None
        if known.any() and known_val.any():
            self.valence = lgb.LGBMRegressor(**self._params(seed)).fit(
                x[known], valence[known], eval_set=[(x_val[known_val], valence_val[known_val])], callbacks=stop)
        return self

    def predict(self, x) -> tuple[np.ndarray, np.ndarray]:
        """x [n, D] -> probabilities [n, C], valence [n] (NaN without a valence model)."""
        if self.multi_label:
            probs = np.stack([m.predict_proba(x)[:, 1] for m in self.emotion], axis=1)
        else:
            probs = self._full_proba(self.emotion[0], x)
        valence = self.valence.predict(x) if self.valence is not None else np.full(len(x), np.nan)
        return probs, valence

    def _full_proba(self, model, x):
        # a class absent from a training fold has no column: put it back as probability 0
        out = np.zeros((len(x), self.n_classes))
        out[:, model.classes_] = model.predict_proba(x)
        return out

    def history(self) -> np.ndarray:
        """Validation loss per boosting round of the emotion model (for the training-curve plot)."""
        results = self.emotion[0].evals_result_
        return np.asarray(next(iter(next(iter(results.values())).values())))

    def best_round(self) -> int:
        return int(self.emotion[0].best_iteration_ or self.config.n_estimators)

    def state(self) -> dict:
        return {"emotion": [m.booster_.model_to_string() for m in self.emotion],
                "valence": self.valence.booster_.model_to_string() if self.valence is not None else None,
                "classes": [m.classes_.tolist() for m in self.emotion]}


MODELS["lgbm"] = LGBM


def from_state(config, state: dict, n_classes: int, multi_label: bool) -> "LoadedLGBM":
    return LoadedLGBM(state, n_classes, multi_label)


class LoadedLGBM:
    """A saved LGBM member, for scoring (boosters rebuilt from their model strings)."""

    def __init__(self, state: dict, n_classes: int, multi_label: bool):
        import lightgbm as lgb

        self.emotion = [lgb.Booster(model_str=text) for text in state["emotion"]]
        self.valence = lgb.Booster(model_str=state["valence"]) if state["valence"] else None
        self.classes, self.n_classes, self.multi_label = state["classes"], n_classes, multi_label

    def predict(self, x):
        if self.multi_label:
            probs = np.stack([b.predict(x) for b in self.emotion], axis=1)
        else:
            probs = np.zeros((len(x), self.n_classes))
            probs[:, self.classes[0]] = self.emotion[0].predict(x).reshape(len(x), -1)
        valence = self.valence.predict(x) if self.valence is not None else np.full(len(x), np.nan)
        return probs, valence
