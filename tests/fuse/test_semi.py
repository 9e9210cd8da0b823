"""MER-SEMI sample selection (Algorithm 1): thresholds by hand, the command on a trained run, and
its pseudo-labels trained on."""
import json
import shutil

import numpy as np
import pandas as pd
from click.testing import CliRunner

from fuse.semi import class_thresholds, main, select

from .conftest import train_cli
from .test_train import truth


def semi_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_thresholds_and_selection_match_a_hand_computation():
    # 3 classes; training clips (probabilities, label)
    probs = np.array([[0.9, 0.05, 0.05],   # class 0, correct, 0.9
                      [0.6, 0.3, 0.1],     # class 0, correct, 0.6
                      [0.7, 0.2, 0.1],     # class 0, correct, 0.7
                      [0.8, 0.1, 0.1],     # class 1, WRONG (predicted 0): must not count anywhere
                      [0.2, 0.5, 0.3],     # class 1, correct, 0.5
                      [0.1, 0.3, 0.6]])    # class 1, wrong (predicted 2); class 2 has no clip at all
    labels = np.array([0, 0, 0, 1, 1, 1])
    t = class_thresholds(probs, labels, 0.5)
    # class 0: median of {0.9, 0.6, 0.7} = 0.7; class 1: {0.5} -> 0.5; class 2: none -> inf
    assert t[0] == 0.7 and t[1] == 0.5 and np.isinf(t[2])
    assert np.isclose(class_thresholds(probs, labels, 0.25)[0], 0.65)   # linear: 0.6 + 0.5 * (0.7 - 0.6)
    unlabelled = np.array([[0.75, 0.2, 0.05],   # class 0, 0.75 > 0.7: selected
                           [0.7, 0.2, 0.1],     # class 0, 0.7 = threshold: not selected (strict)
                           [0.3, 0.55, 0.15],   # class 1, 0.55 > 0.5: selected
                           [0.1, 0.1, 0.8]])    # class 2: no threshold, never selected
    chosen, predicted, score = select(unlabelled, t)
    assert chosen.tolist() == [True, False, True, False]
    assert predicted.tolist() == [0, 0, 1, 2] and score[2] == 0.55


def test_the_command_selects_test3_clips_by_the_runs_thresholds(synth_run, tmp_path):
    cache, run = synth_run
    out = tmp_path / "pseudo.csv"
    result = semi_cli("--run", run, "--dataset", "synth", "--unlabelled", "test3", "--quantile", "0.3",
                      "--cache", cache, "--out", out)
    assert result.exit_code == 0, result.output
    # independent: thresholds from the saved out-of-fold predictions and the manifest's labels
    cv = np.load(run / "scores" / "cv.npz")
    labels, _ = truth(cv["ids"])
    oof = cv["probs"].mean(0)
    predicted, confidence = oof.argmax(1), oof.max(1)
    thresholds = [np.quantile(confidence[(labels == j) & (predicted == j)], 0.3) for j in range(oof.shape[1])]
    scores = np.load(run / "scores" / "test3.npz")
    probs = scores["probs"].mean(0)
    expected = {cid: j for cid, p, j in zip(scores["ids"], probs, probs.argmax(1)) if p.max() > thresholds[j]}
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["id", "split", "label", "score"]
    classes = json.loads((run / "model.json").read_text())["classes"]
    assert {cid: classes.index(lab) for cid, lab in zip(frame["id"], frame["label"])} == expected
    assert set(frame["split"]) <= {"test3"} and list(frame["id"]) == sorted(frame["id"])
    assert f"selected {len(expected)} of {len(scores['ids'])} unlabelled clips" in result.output
    assert expected, "the test needs at least one selected clip"
    # and fuse.train takes the file as pseudo-labels
    trained = train_cli("--cache", cache, "--features", "A=acoustic;V=visual", "--epochs", "2", "--quiet",
                        "--pseudo", out, "--out", tmp_path / "run")
    assert trained.exit_code == 0, trained.output
    assert json.loads((tmp_path / "run" / "config.json").read_text())["training_only_clips"] == len(expected)


def test_refusals_exit_2_before_any_work(synth_run, tmp_path):
    cache, run = synth_run
    base = ["--dataset", "synth", "--cache", cache]
    not_a_run = semi_cli("--run", tmp_path, "--unlabelled", "test3", *base)
    assert not_a_run.exit_code == 2 and "not a fuse.train run folder" in not_a_run.output
    bad_quantile = semi_cli("--run", run, "--unlabelled", "test3", "--quantile", "1.5", *base)
    assert bad_quantile.exit_code == 2 and "--quantile" in bad_quantile.output
    no_split = semi_cli("--run", run, "--unlabelled", "test9", *base)
    assert no_split.exit_code == 2 and "has splits" in no_split.output
    multi = tmp_path / "multi"
    shutil.copytree(run, multi)
    meta = json.loads((multi / "model.json").read_text())
    (multi / "model.json").write_text(json.dumps({**meta, "multi_label": True}))
    refused = semi_cli("--run", multi, "--unlabelled", "test3", *base)
    assert refused.exit_code == 2 and "multi-label" in refused.output
    assert not list(tmp_path.glob("**/semi-*.csv"))
