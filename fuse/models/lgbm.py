"""`lgbm`: LightGBM gradient-boosted trees on the concatenated features, an estimator rather than a
network: a classifier for the emotion (one binary model per class when multi-label) and a
regressor for the valence, each stopped early on the validation fold. The (single-label)
classifier stops on the score that chooses the neural models' best epoch, weighted F1 - 0.25 *
valence MSE, with the valence its probabilities imply (class-mean valences weighted by them), so
that its probabilities are chosen for the valence too (on the IS10 demo corpus this lowered the
valence MSE from 2.87 to 2.68: docs/BENCHMARKS.md); without valence, on weighted F1. The regressor
stops on valence MSE; multi-label classifiers on binary log loss per class.

Made for wide dense inputs (three 1024-d features) and for small corpora alike: the features are
binned once per fold into one `lgb.Dataset` that every task trains from (binning 3072 columns
costs as much as a hundred boosting rounds); few histogram bins and a fifth of the columns per
tree keep each round cheap; split thresholds drawn at random (extra trees) regularise, which
helped on both small corpora and deep features; one thread per fit (the folds run side by side
instead, see fuse/training/estimators.py). The valence regressor boosts from the valence the emotion classifier
implies (class-mean valences weighted by its probabilities), as joint emotion-valence decoders
decode valence from emotion: on small corpora, trees alone fit valence poorly.
Per-layer blocks enter as the mean of their layers.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fuse import metrics
from . import MODELS

SELECTIONS = ("combined", "f1", "loss")
MIN_GAIN = 1e-4  # the smallest gain in combined score that counts as a better round (below the printed precision)


@dataclass(frozen=True)
class LGBMConfig:
    n_estimators: int = 1000          # at most; early stopping ends most fits far sooner
    learning_rate: float = 0.1
    num_leaves: int = 4
    min_child_samples: int = 5
    colsample_bytree: float = 0.2     # columns drawn per tree: histograms are built for these only
    subsample: float = 1.0            # rows drawn per round
    max_bin: int = 31
    reg_lambda: float = 1.0
    extra_trees: bool = True          # random split thresholds: better on small, noisy corpora (docs/BENCHMARKS.md)
    early_stopping: int = 30          # rounds without a better validation score
    selection: str = "combined"       # single-label emotion stopped on: combined (F1 - 0.25 * MSE of the
                                      # valence it implies), f1 (weighted F1) or loss (log loss)
    valence_from_emotion: bool = True  # single-label: valence boosted from the classifier's expected valence

    def __post_init__(self):
        if self.selection not in SELECTIONS:
            raise ValueError(f"lgbm selection {self.selection!r}: choose from {SELECTIONS}")


class LGBM:
    """fit(x, labels, valence, x_val, labels_val, valence_val, seed); predict(x)."""

    name = "lgbm"
    estimator = True
    Config = LGBMConfig

    def __init__(self, config: LGBMConfig, shapes, modalities, n_classes: int, multi_label: bool = False):
        self.config, self.n_classes, self.multi_label = config, n_classes, multi_label
        self.emotion, self.valence, self.valence_means, self.curves = [], None, None, []

    @staticmethod
    def features(blocks: list[np.ndarray]) -> np.ndarray:
        """[n, sum D]: blocks concatenated, per-layer blocks averaged over their layers."""
        blocks = [np.asarray(b, dtype=np.float32) for b in blocks]  # compact cached dtypes
        return np.concatenate([b.mean(axis=1) if b.ndim == 3 else b for b in blocks], axis=1)

    def _params(self, seed: int) -> dict:
        """LightGBM parameters shared by the binning and every task of one fit; one thread (several
        fits run side by side, and OpenMP barriers on a shared machine cost more than they save)."""
        c = self.config
        return dict(learning_rate=c.learning_rate, num_leaves=c.num_leaves, min_child_samples=c.min_child_samples,
                    colsample_bytree=c.colsample_bytree, subsample=c.subsample, subsample_freq=1,
                    max_bin=c.max_bin, reg_lambda=c.reg_lambda, extra_trees=c.extra_trees, seed=seed,
                    deterministic=True, force_col_wise=True, n_jobs=1, verbose=-1)

    def fit(self, x, labels, valence, x_val, labels_val, valence_val, seed: int = 0):
        """x [n, D] float32, labels int [n] (or 0/1 [n, C]), valence float [n] (NaN: unknown);
        the same for the validation fold."""
        import lightgbm as lgb

        params = self._params(seed)
        train = lgb.Dataset(x, params=params, free_raw_data=True).construct()  # bins found once
        valid = train.create_valid(x_val, params=params).construct()
        known, known_val = np.flatnonzero(~np.isnan(valence)), np.flatnonzero(~np.isnan(valence_val))
        has_valence = len(known) > 0 and len(known_val) > 0
        means = _class_means(labels[known], valence[known], self.n_classes) \
            if has_valence and not self.multi_label else None
        if self.multi_label:
            self.emotion = [self._task(train, valid, labels[:, c], labels_val[:, c], params, objective="binary")
                            for c in range(self.n_classes)]
        else:
            self.emotion = [self._task(train, valid, labels, labels_val, params, **self._stopping(means, valence_val))]
        self.valence = None
        if has_valence:
            train, valid = _rows(train, known), _rows(valid, known_val)
            if self.config.valence_from_emotion and means is not None:
                # boosting starts from the valence the classifier implies (LightGBM's init_score)
                self.valence_means = means
                train.set_init_score(self._emotion_probs(x[known]) @ self.valence_means)
                valid.set_init_score(self._emotion_probs(x_val[known_val]) @ self.valence_means)
            self.valence = self._task(train, valid, valence[known], valence_val[known_val], params,
                                      objective="regression")
        return self

    def _stopping(self, means, valence_val) -> dict:
        """How the single-label classifier stops (config.selection), as arguments of _task; combined
        falls back to F1 without valence. The log loss is evaluated too, for the training curve."""
        selection = "f1" if self.config.selection == "combined" and means is None else self.config.selection
        multiclass = dict(objective="multiclass", num_class=self.n_classes)
        if selection == "loss":
            return dict(multiclass, metric="multi_logloss")
        first = self._combined(means, valence_val) if selection == "combined" else self._weighted_f1
        # the combined score creeps up for as long as the probabilities sharpen, even once every
        # validation clip is classified right: rounds that add less than MIN_GAIN do not count
        gain = MIN_GAIN if selection == "combined" else 0.0
        return dict(multiclass, feval=[first, self._log_loss], metric="None", min_delta=gain)

    def _task(self, train, valid, target, target_val, params, feval=None, min_delta=0.0, **objective):
        """One booster trained from the binned fold, stopped on the first validation metric
        (that of `feval` if given, else the objective's)."""
        import lightgbm as lgb

        curve = {}
        booster = lgb.train({**params, **objective}, train.set_label(target), self.config.n_estimators,
                            valid_sets=[valid.set_label(target_val)], valid_names=["validation"], feval=feval,
                            callbacks=[lgb.early_stopping(self.config.early_stopping, first_metric_only=True,
                                                          verbose=False, min_delta=min_delta),
                                       lgb.record_evaluation(curve)])
        booster.free_dataset()
        self.curves.append(list(curve["validation"].values())[-1])  # the loss (last when stopped on a score)
        return booster

    @staticmethod
    def _weighted_f1(probs, data):
        return "weighted_f1", metrics.quick_weighted_f1(data.get_label(), probs.argmax(1), probs.shape[1]), True

    @staticmethod
    def _combined(means: np.ndarray, valence_val: np.ndarray):
        """An feval: the combined score of a round's probabilities on the validation fold, with the
        valence they imply (probabilities @ class-mean valences of the training fold)."""
        known = ~np.isnan(valence_val)
        target = valence_val[known]

        def combined(probs, data):
            f1 = metrics.quick_weighted_f1(data.get_label(), probs.argmax(1), probs.shape[1])
            mse = float(np.mean((probs[known] @ means - target) ** 2))  # metrics.valence_mse, unchecked
            return "combined", metrics.combined_score(f1, mse), True
        return combined

    @staticmethod
    def _log_loss(probs, data):
        # what sklearn's log_loss computes, without its input checks (it runs every round)
        picked = probs[np.arange(len(probs)), data.get_label().astype(int)]
        return "multi_logloss", float(-np.log(np.clip(picked, 1e-15, None)).mean()), False

    def _emotion_probs(self, x) -> np.ndarray:
        # one thread, as in training: LightGBM keeps its thread count in a process-wide setting
        # that each call overwrites, so fits running side by side must all ask for the same count
        if self.multi_label:
            return np.stack([b.predict(x, num_threads=1) for b in self.emotion], axis=1)
        return self.emotion[0].predict(x, num_threads=1).reshape(len(x), self.n_classes)

    def predict(self, x) -> tuple[np.ndarray, np.ndarray]:
        """x [n, D] -> probabilities [n, C], valence [n] (NaN without a valence model)."""
        probs = self._emotion_probs(x)
        return probs, _valence(self.valence, self.valence_means, x, probs, threads=1)

    def history(self) -> np.ndarray:
        """Validation loss per boosting round of the (first) emotion model, for the training-curve plot."""
        return np.asarray(self.curves[0])

    def best_round(self) -> int:
        return int(self.emotion[0].best_iteration or self.emotion[0].current_iteration())

    def state(self) -> dict:
        """Model strings cut at each booster's best round (what `LoadedLGBM` reads back)."""
        cut = lambda b: b.model_to_string(num_iteration=b.best_iteration)  # noqa: E731
        return {"emotion": [cut(b) for b in self.emotion],
                "valence": cut(self.valence) if self.valence is not None else None,
                "valence_means": self.valence_means.tolist() if self.valence_means is not None else None,
                "classes": [[0, 1]] * self.n_classes if self.multi_label else [list(range(self.n_classes))]}


MODELS["lgbm"] = LGBM


def _rows(data, used: np.ndarray):
    """The binned set itself when every row is used, else a subset sharing its bins."""
    return data if len(used) == data.num_data() else data.subset(used).construct()


def _class_means(labels: np.ndarray, valence: np.ndarray, n_classes: int) -> np.ndarray:
    """[C] mean valence per class; the overall mean for a class without clips."""
    return np.array([valence[labels == c].mean() if (labels == c).any() else valence.mean()
                     for c in range(n_classes)])


def _valence(regressor, means, x, probs, threads: int = 0) -> np.ndarray:
    """Valence [n]: the regressor's output, plus the expected valence it was boosted from (if any)."""
    if regressor is None:
        return np.full(len(x), np.nan)
    start = probs @ np.asarray(means) if means is not None else 0.0
    return regressor.predict(x, num_threads=threads) + start


def from_state(config, state: dict, n_classes: int, multi_label: bool) -> "LoadedLGBM":
    return LoadedLGBM(state, n_classes, multi_label)


class LoadedLGBM:
    """A saved LGBM member, for scoring (boosters rebuilt from their model strings)."""

    def __init__(self, state: dict, n_classes: int, multi_label: bool):
        import lightgbm as lgb

        self.emotion = [lgb.Booster(model_str=text) for text in state["emotion"]]
        self.valence = lgb.Booster(model_str=state["valence"]) if state["valence"] else None
        self.valence_means = state.get("valence_means")
        self.classes, self.n_classes, self.multi_label = state["classes"], n_classes, multi_label

    def predict(self, x):
        if self.multi_label:
            probs = np.stack([b.predict(x) for b in self.emotion], axis=1)
        else:
            probs = np.zeros((len(x), self.n_classes))
            probs[:, self.classes[0]] = self.emotion[0].predict(x).reshape(len(x), -1)
        return probs, _valence(self.valence, self.valence_means, x, probs)
