"""The folds' kind reaches the run: stratified, or plain shuffled (a class rarer than the folds) with
a warning naming the class, its count and the folds."""
import dataclasses
import json

import numpy as np

from tests.fuse.conftest import synthetic_corpus, train_cli, write_cache


def test_a_run_with_every_class_in_every_fold_says_its_folds_are_stratified(synth_run):
    _, run = synth_run
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["folds"] == {"n": 5, "stratified": True}
    assert not any("--folds" in w for w in metrics["warnings"])


def test_a_class_rarer_than_the_folds_is_said_in_the_output_and_metrics(tmp_path, no_plots):
    manifest, arrays = synthetic_corpus(n_train=60, n_test=6, n_unlabelled=0)
    worried = [c for c in manifest.clips if c.split == "train" and c.label == "worried"]
    unlabel = {c.id for c in worried[3:]}  # 3 labelled worried training clips are left
    manifest.clips = [dataclasses.replace(c, label=None, valence=None) if c.id in unlabel else c
                      for c in manifest.clips]
    cache = write_cache(tmp_path / "cache", "synth", manifest, arrays)
    run = tmp_path / "run"
    result = train_cli("--cache", cache, "--out", run, "--features", "A=acoustic", "--epochs", "2", "--quiet")
    assert result.exit_code == 0, result.output
    why = ("class 'worried' has 3 labelled training clip(s), fewer than the 5 folds: plain shuffled folds, "
           "not stratified (2 or more validation folds hold no 'worried' clip; --folds 3 keeps them stratified)")
    assert f"warning: --folds 5: {why}" in result.output.splitlines()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["folds"] == {"n": 5, "stratified": False, "why": why}
    assert f"--folds 5: {why}" in metrics["warnings"]
    # and so they are: the folds saved with the run leave 'worried' out of at least 2 validation folds
    cv = np.load(run / "scores" / "cv.npz")
    worried_folds = set(cv["folds"][0][cv["labels"] == 4].tolist())
    assert len(worried_folds) <= 3


def test_fold_kind_is_what_make_folds_does():
    from fuse.inputs.folds import fold_kind, make_folds

    labels = np.repeat(np.arange(3), [8, 8, 2])
    assert fold_kind(labels, 2) == {"n": 2, "stratified": True}
    assert not fold_kind(labels, 3)["stratified"]
    stratified = make_folds(labels, 2, seed=0)
    assert all(np.bincount(stratified[labels == c]).tolist() == [n // 2, n // 2] for c, n in enumerate([8, 8, 2]))
    multi = fold_kind(np.zeros((6, 3)), 3, multi_label=True)
    assert multi == {"n": 3, "stratified": False, "why": "multi-label clips: plain shuffled folds"}
