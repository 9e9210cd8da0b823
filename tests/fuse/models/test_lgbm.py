"""The LightGBM estimator: its stopping rules, the valence it boosts from, reloading, and fits run
side by side, each checked against an independent computation."""
import numpy as np
import pytest
from sklearn.metrics import f1_score

from fuse.training.estimators import fit_estimators
from fuse.training.loop import TrainConfig
from fuse.models.lgbm import LGBM, LGBMConfig, LoadedLGBM
from fuse.inputs.problem import load_problem

from tests.fuse.conftest import synthetic_corpus, write_cache


@pytest.fixture(scope="module")
def problem(tmp_path_factory):
    # noisier than the shared corpus, so that boosting takes a few rounds to its best F1
    manifest, arrays = synthetic_corpus(noise=2.5)
    cache = write_cache(tmp_path_factory.mktemp("lgbm") / "cache", "synth", manifest, arrays)
    return load_problem("synth", [("A", "acoustic"), ("V", "visual")], root=cache)


def split(problem, n_val=30):
    tr = problem.index("train", labelled_only=True)
    x = LGBM.features([b[tr] for b in problem.blocks])
    y, v = problem.labels[tr], problem.valence[tr]
    return (x[n_val:], y[n_val:], v[n_val:]), (x[:n_val], y[:n_val], v[:n_val])


def fitted(problem, **config):
    (x, y, v), (xv, yv, vv) = split(problem)
    model = LGBM(LGBMConfig(**config), problem.shapes, problem.modalities, len(problem.classes))
    return model.fit(x, y, v, xv, yv, vv, seed=3)


def test_classifier_keeps_the_first_round_of_best_validation_combined_score(problem):
    model = fitted(problem)  # selection "combined": F1 - 0.25 * MSE of the valence the probabilities imply
    (_, y, v), (xv, yv, vv) = split(problem)
    booster = model.emotion[0]
    best = booster.current_iteration()
    means = np.array([v[y == c].mean() for c in range(len(problem.classes))])
    probs = [booster.predict(xv, num_iteration=r) for r in range(1, best + 1)]
    combined = [f1_score(yv, p.argmax(1), average="weighted") - 0.25 * np.mean((p @ means - vv) ** 2) for p in probs]
    assert 1 < best == model.best_round() and int(np.argmax(combined)) + 1 == best
    # a different round than F1 alone picks here, so the two rules are told apart
    assert fitted(problem, selection="f1").best_round() != best


def test_without_valence_the_combined_rule_stops_on_f1(problem):
    (x, y, v), (xv, yv, vv) = split(problem)
    nan = np.full_like(v, np.nan)
    rounds = [LGBM(LGBMConfig(selection=rule), problem.shapes, problem.modalities, len(problem.classes))
              .fit(x, y, nan, xv, yv, np.full_like(vv, np.nan), seed=3).best_round() for rule in ("combined", "f1")]
    assert rounds[0] == rounds[1]


def test_classifier_keeps_the_first_round_of_best_validation_f1(problem):
    model = fitted(problem, selection="f1")
    _, (xv, yv, _) = split(problem)
    booster = model.emotion[0]  # kept up to its best round
    best = booster.current_iteration()
    assert best == model.best_round() and len(model.history()) == best + model.config.early_stopping
    f1 = [f1_score(yv, booster.predict(xv, num_iteration=r).argmax(1), average="weighted") for r in range(1, best + 1)]
    assert 1 < best and int(np.argmax(f1)) + 1 == best  # the first round of the best F1 so far
    # the plotted curve is the validation log loss of every round
    probs = [booster.predict(xv, num_iteration=r)[np.arange(len(yv)), yv] for r in (1, best)]
    np.testing.assert_allclose(model.history()[[0, best - 1]], [-np.log(p).mean() for p in probs], rtol=1e-6)


def test_valence_is_boosted_from_the_class_mean_valence_the_classifier_implies(problem):
    model = fitted(problem)
    (x, y, v), (xv, _, _) = split(problem)
    means = np.array([v[y == c].mean() for c in range(len(problem.classes))])
    probs, valence = model.predict(xv)
    np.testing.assert_allclose(model.valence_means, means)
    np.testing.assert_allclose(valence, model.valence.predict(xv) + probs @ means, rtol=1e-6)
    plain = fitted(problem, valence_from_emotion=False)
    assert plain.valence_means is None
    np.testing.assert_array_equal(plain.predict(xv)[1], plain.valence.predict(xv))


@pytest.mark.parametrize("from_emotion", [True, False])
def test_a_reloaded_member_predicts_what_the_trained_one_did(problem, from_emotion):
    model = fitted(problem, valence_from_emotion=from_emotion)
    _, (xv, _, _) = split(problem)
    loaded = LoadedLGBM(model.state(), len(problem.classes), multi_label=False)
    for trained, reloaded in zip(model.predict(xv), loaded.predict(xv)):
        np.testing.assert_allclose(reloaded, trained, rtol=1e-9)


def test_fits_side_by_side_give_what_one_at_a_time_gives(problem):
    fits = [fit_estimators(problem, "lgbm", LGBMConfig(), TrainConfig(folds=3, seeds=(0, 1), threads=threads),
                           progress=False) for threads in (1, 3)]
    for name in ("oof_probs", "oof_valence", "best_epoch"):
        np.testing.assert_array_equal(getattr(fits[0], name), getattr(fits[1], name))
    assert fits[0].history.shape[:2] == (2, 3)
    assert np.abs(fits[0].oof_probs[0] - fits[0].oof_probs[1]).max() > 0  # seed 1: other folds, other model
