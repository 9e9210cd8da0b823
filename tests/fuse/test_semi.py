"""MER-SEMI sample selection (Algorithm 1): thresholds by hand, the command on a trained run, its
per-member pseudo-labels (made without the member's validation fold), and fuse.train --pseudo
training each member on its own, on the source run's folds only."""
import dataclasses
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from fuse.selection import class_thresholds, select
from fuse.semi import main

from fuse import loop

from .conftest import synthetic_corpus, train_cli, write_cache
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


@pytest.fixture(scope="module")
def selected(synth_run, tmp_path_factory):
    """(cache, run, CSV, fuse.semi's output) of `fuse.semi --quantile 0.3` on the synthetic run's test3."""
    cache, run = synth_run
    out = tmp_path_factory.mktemp("semi") / "pseudo.csv"
    result = semi_cli("--run", run, "--dataset", "synth", "--unlabelled", "test3", "--quantile", "0.3",
                      "--cache", cache, "--out", out)
    assert result.exit_code == 0, result.output
    return cache, run, out, result.output


def test_the_command_selects_test3_clips_by_the_runs_thresholds(selected, tmp_path):
    cache, run, out, output = selected
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
    assert f"selected {len(expected)} of {len(scores['ids'])} unlabelled clips" in output
    assert expected, "the test needs at least one selected clip"
    # beside it, the per-member pseudo-labels: one entry per (seed, fold) member of the run
    members = json.loads(out.with_name("pseudo.members.json").read_text())
    assert [(m["seed"], m["fold"]) for m in members["members"]] == [(s, k) for s in range(2) for k in range(5)]
    assert members["training_clips"] == cv["ids"].tolist()
    assert members["fold_of"] == {str(s): cv["folds"][s].tolist() for s in range(2)}
    assert "per-member pseudo-labels:" in output and "members (seed x fold)" in output


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
    mine = tmp_path / "mine.csv"  # a file of the user's where the per-member labels would go
    mine.with_name("mine.members.json").write_text("my notes")
    kept = semi_cli("--run", run, "--unlabelled", "test3", "--out", mine, *base)
    assert kept.exit_code == 2 and "mine.members.json beside it" in kept.output
    assert mine.with_name("mine.members.json").read_text() == "my notes" and not mine.exists()
    assert not list(tmp_path.glob("**/semi-*.csv"))


def test_a_members_pseudo_labels_are_made_without_its_validation_fold(tmp_path):
    """Member (0, 0)'s pseudo-labels do not change when everything about its validation fold's clips
    (features, valence) changes; those of a member that trains on them, and the whole run's, do."""
    manifest, arrays = synthetic_corpus()
    args = ["--features", "A=acoustic;V=visual", "--folds", "3", "--epochs", "3", "--quiet"]
    caches = {"same": write_cache(tmp_path / "same", "synth", manifest, arrays)}
    assert train_cli("--cache", caches["same"], "--out", tmp_path / "run-same", *args).exit_code == 0
    cv = np.load(tmp_path / "run-same" / "scores" / "cv.npz")
    fold0 = set(cv["ids"][cv["folds"][0] == 0])
    rng = np.random.default_rng(9)
    changed = manifest.__class__(manifest.name, [dataclasses.replace(c, valence=-c.valence) if c.id in fold0 else c
                                                 for c in manifest.clips])
    noise = {f: {cid: (rng.normal(size=v.shape) * 5).astype(np.float32) if cid in fold0 else v
                 for cid, v in values.items()} for f, values in arrays.items()}
    caches["changed"] = write_cache(tmp_path / "changed", "synth", changed, noise)
    members, frames = {}, {}
    for name, cache in caches.items():
        run = tmp_path / f"run-{name}"
        if name != "same":
            assert train_cli("--cache", cache, "--out", run, *args).exit_code == 0
        out = tmp_path / f"{name}.csv"
        result = semi_cli("--run", run, "--dataset", "synth", "--unlabelled", "test3", "--quantile", "0.3",
                          "--cache", cache, "--out", out)
        assert result.exit_code == 0, result.output
        blob = json.loads(out.with_name(f"{name}.members.json").read_text())
        members[name] = {(m["seed"], m["fold"]): m for m in blob["members"]}
        frames[name] = pd.read_csv(out)
    assert members["same"][0, 0] == members["changed"][0, 0]
    assert members["same"][0, 0]["selected"], "the test needs selected clips"
    assert members["same"][0, 1] != members["changed"][0, 1]      # it trains on fold 0: it sees the change
    assert not frames["same"].equals(frames["changed"])          # the whole run's fold models saw fold 0


def test_fuse_train_trains_each_member_on_its_own_pseudo_labels(selected, tmp_path, monkeypatch, no_plots):
    cache, _, csv, _ = selected
    seen, real = [], loop._Data.__init__
    monkeypatch.setattr(loop._Data, "__init__", lambda self, problem, *a, **k: real(self, problem, *a, **k) or
                        seen.append((problem, self)))
    run = tmp_path / "run"
    result = train_cli("--cache", cache, "--features", "A=acoustic;V=visual", "--epochs", "2", "--seeds", "2",
                       "--quiet", "--pseudo", csv, "--out", run)
    assert result.exit_code == 0, result.output
    assert "each member its own, selected from its training folds by fuse.semi" in result.output
    problem, data = seen[0]
    members = json.loads(csv.with_name("pseudo.members.json").read_text())["members"]
    for e, member in enumerate(members):
        rows = data.train_rows[e].numpy()
        trained = [problem.ids[r] for r in data.rows[rows[rows >= 0]]]
        pseudo = {tuple(cid.split("#pseudo:")) for cid in trained if "#pseudo:" in cid}
        assert pseudo == {(cid, label) for cid, label, _ in member["selected"]}, (member["seed"], member["fold"])
        for cid, label, _ in member["selected"]:
            row = list(problem.ids).index(f"{cid}#pseudo:{label}")
            assert problem.classes[problem.labels[row]] == label
    cv = np.load(run / "scores" / "cv.npz")
    assert not {c for c in cv["ids"] if "#pseudo" in c}          # never validated


@pytest.mark.parametrize("change, phrase", [
    (["--folds", "3"], "(5 folds), this run has --folds 3: give --folds 5"),
    (["--seeds", "3"], "this run's seed(s) 2 have none: give at most --seeds 2"),
    (["--features", "A=acoustic"], "1 here are not among the source run's (e.g. clip0007)"),
    ("folds", "with seed 1 2 clips fall in other folds here"),
    ("csv", "was not written with this CSV"),
], ids=["folds", "seeds", "clips", "fold-of", "csv-changed"])
def test_a_run_whose_folds_are_not_the_source_runs_is_refused(selected, tmp_path, change, phrase):
    cache, _, csv, _ = selected
    pseudo = tmp_path / "pseudo.csv"
    shutil.copy(csv, pseudo)
    members = json.loads(csv.with_name("pseudo.members.json").read_text())
    if change == "folds":  # two clips of seed 1 swap folds
        fold_of = members["fold_of"]["1"]
        i, j = fold_of.index(0), fold_of.index(1)
        fold_of[i], fold_of[j] = 1, 0
    (tmp_path / "pseudo.members.json").write_text(json.dumps(members))
    if change == "csv":
        pseudo.write_text(pseudo.read_text() + "clip0119,test3,happy,0.99\n")
    options = {"--features": "A=acoustic;V=visual", "--seeds": "2", "--epochs": "2"}
    if isinstance(change, list):
        options[change[0]] = change[1]
    result = train_cli("--cache", cache, *[x for kv in options.items() for x in kv], "--quiet", "--pseudo", pseudo,
                       "--out", tmp_path / "run")
    assert result.exit_code == 2, result.output
    assert phrase in result.output
    assert not (tmp_path / "run").exists()


def test_without_per_member_labels_the_csv_is_written_and_says_fuse_train_refuses_it(synth_run, tmp_path):
    cache, run = synth_run
    out = tmp_path / "pseudo.csv"
    out.with_name("pseudo.members.json").write_text(json.dumps({"kind": "fuse.semi per-member pseudo-labels"}))
    two = tmp_path / "two-folds"  # an inner CV of a member's training folds needs 3 folds or more
    assert train_cli("--cache", cache, "--features", "A=acoustic", "--folds", "2", "--epochs", "2", "--quiet",
                     "--out", two).exit_code == 0
    result = semi_cli("--run", two, "--dataset", "synth", "--unlabelled", "test3", "--quantile", "0.3",
                      "--cache", cache, "--out", out)
    assert result.exit_code == 0, result.output
    assert "no per-member pseudo-labels" in result.output and "--folds 3 or more" in result.output
    assert "fuse.train --pseudo refuses this file" in result.output
    assert out.is_file() and not out.with_name("pseudo.members.json").exists()   # an earlier one of fuse.semi's: gone
