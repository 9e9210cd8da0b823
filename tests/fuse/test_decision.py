"""Decision-level fusion (USTC Eq. 10-11): the CV figure is nested over folds (each fold scored
with the weights chosen on the other folds of its seed), checked against a computation by hand;
the test splits keep the weights chosen on every fold."""
import itertools
import json

import numpy as np
import pytest
from sklearn.metrics import f1_score

from fuse.decision import fuse_runs
from fuse.evaluate import choose_weights, nested_fusion
from fuse.problem import Problem

from .conftest import train_cli
from .test_train import truth

pytestmark = pytest.mark.usefixtures("no_plots")


def grid_by_hand(n):
    """The weight vectors on the simplex, on a 0.1 grid, in itertools order."""
    out = []
    for head in itertools.product(range(11), repeat=n - 1):
        if sum(head) <= 10:
            out.append(np.array([*head, 10 - sum(head)]) / 10)
    return out


def combined(labels, valence, probs, predicted_valence):
    return f1_score(labels, probs.argmax(1), average="weighted") - 0.25 * np.mean((predicted_valence - valence) ** 2)


def nested_by_hand(oofs, vals, labels, valence, folds):
    """Per seed: the mean over folds k of fold k's combined score under the weights that maximise
    the mean combined score of the seed's other folds (the first of equals, in grid order)."""
    per_seed = []
    for s in range(len(folds)):
        K = folds[s].max() + 1
        fold_scores = []
        for k in range(K):
            best, best_value = None, -np.inf
            for w in grid_by_hand(len(oofs)):
                p, v = sum(x * o[s] for x, o in zip(w, oofs)), sum(x * o[s] for x, o in zip(w, vals))
                value = np.mean([combined(labels[folds[s] == j], valence[folds[s] == j], p[folds[s] == j],
                                          v[folds[s] == j]) for j in range(K) if j != k])
                if value > best_value + 1e-12:
                    best, best_value = w, value
            p, v = sum(x * o[s] for x, o in zip(best, oofs)), sum(x * o[s] for x, o in zip(best, vals))
            val = folds[s] == k
            fold_scores.append(combined(labels[val], valence[val], p[val], v[val]))
        per_seed.append(np.mean(fold_scores))
    return per_seed


def test_each_fold_is_scored_with_weights_chosen_on_the_other_folds():
    rng = np.random.default_rng(3)
    S, n, C = 2, 60, 6
    labels, valence = rng.integers(0, C, n), rng.normal(size=n)
    folds = np.stack([rng.permutation(np.arange(n) % 5) for _ in range(S)])
    # two noisy systems: the first helps on folds 0-1 of each seed, the second on folds 2-4, so the
    # weights the other folds choose differ from fold to fold
    oofs = [rng.dirichlet(np.ones(C), size=(S, n)) for _ in range(2)]
    for s in range(S):
        for i, helped in enumerate((folds[s] < 2, folds[s] >= 2)):
            oofs[i][s, helped] += 0.5 * np.eye(C)[labels[helped]]
    vals = [valence + rng.normal(scale=1.0 + i, size=(S, n)) for i in range(2)]
    problem = Problem(dataset="x", ids=np.array([f"c{i}" for i in range(n)], dtype=object),
                      split=np.array(["train"] * n, dtype=object), specs=[], modalities=[], blocks=[],
                      classes=tuple(map(str, range(C))), multi_label=False, labels=labels, valence=valence)
    train_index = np.arange(n)
    per_seed, probs, fused_valence, fold_weights = nested_fusion(oofs, vals, problem, train_index, folds)
    expected = nested_by_hand(oofs, vals, labels, valence, folds)
    assert [m["combined"] for m in per_seed] == pytest.approx(expected)
    # the out-of-fold predictions: each fold's clips fused with that fold's weights
    for s, k in itertools.product(range(S), range(5)):
        val = folds[s] == k
        np.testing.assert_allclose(probs[s, val], sum(w * o[s, val] for w, o in zip(fold_weights[s, k], oofs)))
    # weights tuned on every fold score higher on them than the nested figure: the optimism removed
    _, tuned = choose_weights(oofs, vals, problem, train_index, folds)
    assert tuned > np.mean(expected) + 0.01


def test_fused_runs_report_a_nested_cv(synth_run, tmp_path):
    cache, _ = synth_run
    runs = []
    for i, features in enumerate(("A=acoustic", "V=visual")):
        run = tmp_path / f"run{i}"
        result = train_cli("--cache", cache, "--features", features, "--epochs", "3", "--seeds", "2", "--quiet",
                           "--out", run)
        assert result.exit_code == 0, result.output
        runs.append(run)
    metrics = fuse_runs(runs, "synth", cache, tmp_path / "fusion")
    cv = [np.load(r / "scores" / "cv.npz") for r in runs]
    ids = sorted(set.intersection(*(set(d["ids"]) for d in cv)))
    pick = [np.array([list(d["ids"]).index(i) for i in ids]) for d in cv]
    labels, valence = truth(ids)
    expected = nested_by_hand([d["probs"][:, p] for d, p in zip(cv, pick)],
                              [d["valence"][:, p] for d, p in zip(cv, pick)], labels, valence,
                              cv[0]["folds"][:, pick[0]])
    assert metrics["cv"]["combined"]["per_seed"] == pytest.approx(expected)
    assert "nested over folds" in metrics["cv_weights"]
    saved = json.loads((tmp_path / "fusion" / "metrics.json").read_text())
    assert saved["cv"] == metrics["cv"] and len(saved["fold_weights"]) == 2
