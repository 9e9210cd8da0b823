"""MER 2023 metrics on fixed predictions: against a hand computation and scikit-learn."""
import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, mean_squared_error

from fuse import metrics

# 8 clips of 3 classes; predictions as one-hot-ish probabilities
LABELS = np.array([0, 0, 0, 1, 1, 2, 2, 2])
PREDICTED = np.array([0, 0, 1, 1, 1, 2, 2, 0])
NAN = float("nan")
VALENCE = np.array([1.0, NAN, -1.0, 0.5, NAN, 2.0, NAN, NAN])   # NaN: the clip has no valence
PREDICTED_VALENCE = np.array([1.5, 9.0, -1.0, 0.5, -9.0, 1.0, 9.0, 9.0])


def probabilities(predicted, n_classes=3):
    probs = np.full((len(predicted), n_classes), 0.1)
    probs[np.arange(len(predicted)), predicted] = 0.8
    return probs


def hand_weighted_f1(labels, predicted):
    """Per class precision, recall and F1 by counting, averaged with the class supports as weights."""
    total = 0.0
    for c in np.unique(labels):
        tp = np.sum((predicted == c) & (labels == c))
        precision = tp / max(np.sum(predicted == c), 1)
        recall = tp / np.sum(labels == c)
        f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
        total += f1 * np.sum(labels == c)
    return total / len(labels)


def test_single_label_scores_match_a_hand_computation_and_sklearn():
    out = metrics.single_label_scores(LABELS, probabilities(PREDICTED), VALENCE, PREDICTED_VALENCE)
    # class 0: P 2/3 R 2/3; class 1: P 2/3 R 1 (F1 0.8); class 2: P 1 R 2/3 (F1 0.8); supports 3, 2, 3
    assert hand_weighted_f1(LABELS, PREDICTED) == pytest.approx((3 * 2 / 3 + 2 * 0.8 + 3 * 0.8) / 8)
    assert out["weighted_f1"] == pytest.approx(0.75) == hand_weighted_f1(LABELS, PREDICTED)
    assert out["weighted_f1"] == pytest.approx(f1_score(LABELS, PREDICTED, average="weighted"))
    assert out["accuracy"] == pytest.approx(6 / 8) == accuracy_score(LABELS, PREDICTED)
    # the 4 clips with a valence: squared errors 0.25, 0, 0, 1
    assert out["mse"] == pytest.approx(1.25 / 4)
    known = ~np.isnan(VALENCE)
    assert out["mse"] == pytest.approx(mean_squared_error(VALENCE[known], PREDICTED_VALENCE[known]))
    assert out["combined"] == pytest.approx(0.75 - 0.25 * 0.3125) == pytest.approx(0.671875)


def test_combined_score_is_f1_minus_a_quarter_of_mse_or_f1_alone():
    assert metrics.combined_score(0.8, 0.4) == pytest.approx(0.7)
    assert metrics.combined_score(0.8, None) == 0.8
    assert metrics.combined_score(0.8, float("nan")) == 0.8
    without = metrics.single_label_scores(LABELS, probabilities(PREDICTED))
    assert without["mse"] is None and without["combined"] == without["weighted_f1"] == pytest.approx(0.75)
    # a dataset whose clips have no valence at all: NaN everywhere is "no valence", not an MSE of NaN
    unknown = metrics.single_label_scores(LABELS, probabilities(PREDICTED), np.full(8, NAN), PREDICTED_VALENCE)
    assert unknown["mse"] is None and unknown["combined"] == pytest.approx(0.75)


def test_multi_label_scores_threshold_per_class_and_match_sklearn():
    labels = np.array([[1, 0, 1], [1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]])
    probs = np.array([[0.7, 0.2, 0.4], [0.6, 0.5, 0.1], [0.2, 0.45, 0.3], [0.55, 0.1, 0.35], [0.3, 0.3, 0.0]])
    thresholds = np.array([0.5, 0.4, 0.3])
    predicted = np.array([[1, 0, 1], [1, 1, 0], [0, 1, 1], [1, 0, 1], [0, 0, 0]])
    assert ((probs >= thresholds) == predicted).all()  # the example is what it says
    out = metrics.multi_label_scores(labels, probs, thresholds, classes=["a", "b", "c"])
    # per class: a TP 2 FP 1 FN 1 -> 2/3; b TP 2 -> 1; c TP 2 FP 1 FN 0 -> 0.8
    assert out["per_class_f1"] == pytest.approx({"a": 2 / 3, "b": 1.0, "c": 0.8})
    assert out["macro_f1"] == pytest.approx((2 / 3 + 1 + 0.8) / 3)
    assert out["weighted_f1"] == pytest.approx((3 * 2 / 3 + 2 * 1 + 2 * 0.8) / 7)
    assert out["weighted_f1"] == pytest.approx(f1_score(labels, predicted, average="weighted"))
    assert out["accuracy"] == pytest.approx(2 / 5)  # exact match: clips 0 and 1
    assert out["mse"] is None and out["combined"] == out["weighted_f1"]


def test_best_thresholds_find_the_separating_grid_point_per_class():
    # class 0 is perfectly separated by any threshold in (0.58, 0.62]: on the grid, 0.60 only;
    # class 1 by (0.18, 0.22]: 0.20; class 2 has no positive clip: 0.5
    probs = np.array([[0.62, 0.22, 0.9], [0.7, 0.4, 0.1], [0.9, 0.05, 0.3],
                      [0.1, 0.12, 0.6], [0.3, 0.18, 0.2], [0.58, 0.1, 0.7]])
    labels = np.array([[1, 1, 0], [1, 1, 0], [1, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]])
    assert metrics.best_thresholds(labels, probs) == pytest.approx([0.60, 0.20, 0.5])
    # the chosen thresholds score F1 1 on these clips, which no other grid point does for class 0
    scores = metrics.multi_label_scores(labels, probs, metrics.best_thresholds(labels, probs))
    assert scores["per_class_f1"]["0"] == scores["per_class_f1"]["1"] == 1.0
    assert metrics.multi_label_scores(labels, probs, np.array([0.55, 0.2, 0.5]))["per_class_f1"]["0"] < 1


def test_mean_std_over_seeds_keeps_numbers_and_per_class_dicts():
    runs = [{"weighted_f1": 0.5, "mse": None, "per_class_f1": {"a": 1.0}},
            {"weighted_f1": 0.7, "mse": None, "per_class_f1": {"a": 0.0}}]
    out = metrics.mean_std(runs)
    assert set(out) == {"weighted_f1", "per_class_f1"}  # no valence: no mse entry
    assert out["per_class_f1"]["a"]["mean"] == 0.5 and out["per_class_f1"]["a"]["per_seed"] == [1.0, 0.0]
    assert out["weighted_f1"]["per_seed"] == [0.5, 0.7]
    assert (out["weighted_f1"]["mean"], out["weighted_f1"]["std"]) == pytest.approx((0.6, 0.1))  # population std


@pytest.mark.parametrize("seed", range(5))
def test_quick_weighted_f1_is_scikit_learns(seed):
    rng = np.random.default_rng(seed)
    n_classes = 6
    labels = rng.integers(0, n_classes - seed % 2, 40)  # odd seeds: a class never true, only predicted
    predicted = np.where(rng.random(40) < 0.5, labels, rng.integers(0, n_classes, 40))
    expected = f1_score(labels, predicted, average="weighted", zero_division=0)
    assert metrics.quick_weighted_f1(labels, predicted, n_classes) == pytest.approx(expected, abs=1e-12)
    assert metrics.quick_weighted_f1(LABELS, PREDICTED, 3) == pytest.approx(hand_weighted_f1(LABELS, PREDICTED))


def test_weighted_average_precision_is_scikit_learns_without_its_warning():
    """A class no clip has (the last one here) weighs 0 in scikit-learn's weighted average: left
    out, the value is the same and no warning is raised for it."""
    import warnings

    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(0)
    labels = (rng.random((30, 4)) < 0.4).astype(int)
    labels[:, 3] = 0
    probs = np.clip(labels * 0.5 + rng.random((30, 4)) * 0.6, 0, 1)
    with pytest.warns(UserWarning, match="No positive class"):
        expected = average_precision_score(labels, probs, average="weighted")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert metrics.weighted_average_precision(labels, probs) == pytest.approx(expected, abs=1e-12)
    labels[:, 3] = rng.random(30) < 0.5  # with every class present: exactly scikit-learn's
    assert metrics.weighted_average_precision(labels, probs) == \
        pytest.approx(average_precision_score(labels, probs, average="weighted"), abs=1e-12)
