"""fuse.train on the synthetic cache: the run folder, fold averaging, determinism, failed clips and
multi-label thresholds, each checked against an independent computation from the saved outputs."""
import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import f1_score

from fuse import metrics
from fuse.saved_run import SavedRun
from manifests import MER_CLASSES

from .conftest import FAILED_VISUAL, SYNTH_RUN_ARGS, synthetic_corpus, train_cli, write_cache

METRICS = ("weighted_f1", "accuracy", "mse", "combined")


def truth(ids, multi_label=False):
    """Labels and valence of clips from the synthetic manifest itself (not the cache reader)."""
    manifest, _ = synthetic_corpus(multi_label=multi_label)
    clips = [manifest[i] for i in ids]
    valence = np.array([c.valence for c in clips])
    if multi_label:
        return np.array([[name in c.label.split(";") for name in MER_CLASSES] for c in clips], int), valence
    return np.array([MER_CLASSES.index(c.label) for c in clips]), valence


def png_size(path):
    blob = path.read_bytes()
    assert blob[:8] == b"\x89PNG\r\n\x1a\n" and blob[12:16] == b"IHDR", f"{path.name} is not a PNG"
    return int.from_bytes(blob[16:20], "big"), int.from_bytes(blob[20:24], "big")


def test_run_folder_holds_config_metrics_predictions_weights_and_plots(synth_run):
    cache, run = synth_run
    m = json.loads((run / "metrics.json").read_text())
    assert {"cv", "test1", "ensemble", "clips", "seconds", "config", "features", "best_epoch"} <= set(m)
    for part in ("cv", "test1"):
        for name in METRICS:
            entry = m[part][name]
            assert set(entry) == {"mean", "std", "per_seed"} and len(entry["per_seed"]) == 2
            assert entry["mean"] == pytest.approx(np.mean(entry["per_seed"]))
            assert entry["std"] == pytest.approx(np.std(entry["per_seed"]))
    assert "test3" not in m and m["clips"] == {"cv": 89, "test1": 23, "test3": 6}  # test3 is unlabelled
    assert m["seconds"] > 0
    assert m["config"] == json.loads((run / "config.json").read_text())
    assert m["config"]["features"] == {"acoustic": "A", "visual": "V"}
    assert m["config"]["train"]["seeds"] == [0, 1] and m["config"]["train"]["epochs"] == 10
    for feature in ("acoustic", "visual"):
        assert {k: m["features"][feature][k] for k in ("extractor", "version", "config")} == \
            {"extractor": feature, "version": "1", "config": {}}
    assert np.array(m["best_epoch"]).shape == (2, 5) and 0 <= np.min(m["best_epoch"]) <= np.max(m["best_epoch"]) < 10

    assert (run / "predictions" / "test1.csv").read_text().splitlines()[0] == "name,discrete,valence"
    assert len(pd.read_csv(run / "predictions" / "test3.csv")) == 6
    names = sorted(p.name for p in (run / "weights" / "attention").iterdir())
    assert names == sorted(f"seed{s}-fold{k}.pt" for s in (0, 1) for k in range(5))
    blob = torch.load(run / "weights" / "attention" / "seed1-fold4.pt", weights_only=False)
    assert {"state", "norms"} <= set(blob) and all(torch.isfinite(v).all() for v in blob["state"].values())
    for plot in ("confusion.png", "curves.png"):
        width, height = png_size(run / plot)
        assert width > 200 and height > 200


def test_reported_metrics_are_those_of_the_saved_predictions(synth_run):
    """CV: per seed, the mean over folds of each validation fold's scores; test: per seed, the scores
    of the fold-averaged probabilities."""
    _, run = synth_run
    m = json.loads((run / "metrics.json").read_text())
    cv = np.load(run / "scores" / "cv.npz")
    labels, valence = truth(cv["ids"])
    for s in range(2):
        per_fold = [(f1_score(labels[v], cv["probs"][s, v].argmax(1), average="weighted"),
                     np.mean((cv["valence"][s, v] - valence[v]) ** 2))
                    for v in (cv["folds"][s] == k for k in range(5))]
        assert m["cv"]["weighted_f1"]["per_seed"][s] == pytest.approx(np.mean([f for f, _ in per_fold]))
        assert m["cv"]["mse"]["per_seed"][s] == pytest.approx(np.mean([e for _, e in per_fold]))
    test = np.load(run / "scores" / "test1.npz")
    labels, valence = truth(test["ids"])
    for s in range(2):
        assert m["test1"]["weighted_f1"]["per_seed"][s] == pytest.approx(
            f1_score(labels, test["probs"][s].argmax(1), average="weighted"))
        assert m["test1"]["mse"]["per_seed"][s] == pytest.approx(np.mean((test["valence"][s] - valence) ** 2))
    assert m["test1"]["weighted_f1"]["mean"] > 0.9  # the problem is separable


def test_test_predictions_average_probabilities_over_folds_then_seeds(synth_run):
    """Rebuild every fold model from the run folder and score the test clips' cached arrays."""
    _, run = synth_run
    meta = json.loads((run / "model.json").read_text())
    saved = np.load(run / "scores" / "test1.npz")
    ids = list(saved["ids"])
    _, arrays = synthetic_corpus()
    blocks = [np.stack([arrays[feature][i] for i in ids]) for feature in ("acoustic", "visual")]
    (system,) = SavedRun(run).systems()
    probs, valence = system.predict(blocks, meta["shapes"], meta["modalities"], meta["classes"], False, "cpu")
    assert probs.shape == (10, len(ids), 6) and valence.shape == (10, len(ids))
    members = probs.reshape(2, 5, len(ids), 6)   # seed s, fold k = member s * 5 + k
    np.testing.assert_allclose(members.sum(-1), 1, atol=1e-5)  # softmax probabilities, not logits
    assert np.abs(members - members.mean(1, keepdims=True)).max() > 1e-3  # the fold models differ
    np.testing.assert_allclose(saved["probs"], members.mean(1), atol=1e-6)
    np.testing.assert_allclose(saved["valence"], valence.reshape(2, 5, -1).mean(1), atol=1e-5)

    frame = pd.read_csv(run / "predictions" / "test1.csv")
    assert frame["name"].tolist() == ids
    assert frame["discrete"].tolist() == [MER_CLASSES[c] for c in saved["probs"].mean(0).argmax(1)]
    np.testing.assert_allclose(frame["valence"], saved["valence"].mean(0), atol=1e-6)


@pytest.mark.parametrize("kept", ["all", "members' standardized inputs", "nothing"])
def test_the_same_command_twice_gives_identical_results(synth_run, tmp_path, no_plots, monkeypatch, kept):
    from fuse import loop

    # the validation inputs, and each member's standardized copy of the inputs, are kept when they
    # fit; gathered and standardized again every batch or epoch otherwise: the same numbers
    if kept != "all":
        monkeypatch.setattr(loop, "VAL_CACHE_BYTES", 0)
    if kept == "nothing":
        monkeypatch.setattr(loop, "INPUT_CACHE_BYTES", 0)
    cache, run = synth_run
    result = train_cli("--cache", cache, "--out", tmp_path / "again", *SYNTH_RUN_ARGS)
    assert result.exit_code == 0, result.output
    again = tmp_path / "again"
    for split in ("test1", "test3"):
        assert (again / "predictions" / f"{split}.csv").read_bytes() == (run / "predictions" / f"{split}.csv").read_bytes()
    for name in ("cv", "test1"):
        first, second = np.load(run / "scores" / f"{name}.npz"), np.load(again / "scores" / f"{name}.npz")
        assert all(np.array_equal(first[k], second[k]) for k in first.files)
    first, second = (json.loads((r / "metrics.json").read_text()) for r in (run, again))
    first.pop("seconds"), second.pop("seconds")
    assert first == second


def test_lgbm_seed_results_do_not_depend_on_how_many_seeds_run(synth_run, tmp_path, lgbm_one_thread, no_plots):
    # (the neural loop draws dropout masks and batch orders for all members together, so there
    # seed 0's results change with --seeds)
    cache, _ = synth_run
    for seeds in (1, 2):
        result = train_cli("--cache", cache, "--features", "A=acoustic", "--model", "lgbm", "--folds", "3",
                           "--lr", "0.3", "--seeds", seeds, "--out", tmp_path / f"s{seeds}", "--quiet")
        assert result.exit_code == 0, result.output
    one, two = (np.load(tmp_path / f"s{s}" / "scores" / "test1.npz") for s in (1, 2))
    np.testing.assert_array_equal(one["probs"][0], two["probs"][0])
    assert np.abs(two["probs"][0] - two["probs"][1]).max() > 0  # seed 1 is another model


def test_a_clip_failed_in_one_feature_is_left_out_by_id_not_filled(synth_run, tmp_path, no_plots):
    cache, run = synth_run
    for csv in (run / "predictions").glob("*.csv"):
        assert not set(FAILED_VISUAL) & set(pd.read_csv(csv)["name"]), csv.name
    for npz in (run / "scores").glob("*.npz"):
        assert not set(FAILED_VISUAL) & set(np.load(npz)["ids"]), npz.name
    missing = pd.read_csv(run / "missing.csv")
    assert dict(zip(missing["id"], missing["reason"])) == {cid: f"visual: {why}" for cid, why in FAILED_VISUAL.items()}

    result = train_cli("--cache", cache, "--features", "A=acoustic", "--model", "mlp", "--epochs", "2",
                       "--folds", "2", "--out", tmp_path / "acoustic", "--quiet")
    assert result.exit_code == 0, result.output
    alone = tmp_path / "acoustic"
    assert "clip0007" in set(np.load(alone / "scores" / "cv.npz")["ids"])
    assert "clip0101" in set(pd.read_csv(alone / "predictions" / "test1.csv")["name"])
    assert not (alone / "missing.csv").exists()
    assert json.loads((alone / "metrics.json").read_text())["clips"] == {"cv": 90, "test1": 24, "test3": 6}


def test_multi_label_thresholds_never_see_the_clips_they_score(tmp_path, monkeypatch, no_plots):
    manifest, arrays = synthetic_corpus(multi_label=True)
    cache = write_cache(tmp_path / "cache", "synth", manifest, arrays)
    calls, real = [], metrics.best_thresholds

    def recording(labels, probs, *args, **kwargs):
        calls.append((np.array(labels), np.array(probs)))
        return real(labels, probs, *args, **kwargs)

    monkeypatch.setattr(metrics, "best_thresholds", recording)
    run = tmp_path / "run"
    result = train_cli("--cache", cache, "--features", "A=acoustic;V=visual", "--epochs", "8", "--seeds", "2",
                       "--out", run, "--quiet")
    assert result.exit_code == 0, result.output

    cv, test = np.load(run / "scores" / "cv.npz"), np.load(run / "scores" / "test1.npz")
    S, n = cv["folds"].shape
    labels, _ = truth(cv["ids"], multi_label=True)
    # every row any threshold search saw is one out-of-fold validation prediction of a training clip
    oof = {tuple(row): (s, i) for s in range(S) for i, row in enumerate(cv["probs"][s])}
    assert len(oof) == S * n
    seen = []
    for call_labels, call_probs in calls:
        rows = [oof.get(tuple(row)) for row in call_probs]
        assert None not in rows, "a threshold search saw a prediction that is not out-of-fold"
        np.testing.assert_array_equal(call_labels, labels[[i for _, i in rows]])
        seen.append(frozenset(rows))
    test_rows = {tuple(row) for p in (*test["probs"], test["probs"].mean(0)) for row in p}
    assert not test_rows & {tuple(row) for _, p in calls for row in p}
    # a CV fold's thresholds come from the other folds of its seed; the test thresholds from all of them
    other_folds = {frozenset((s, i) for i in np.flatnonzero(cv["folds"][s] != k)) for s in range(S) for k in range(5)}
    everything = frozenset((s, i) for s in range(S) for i in range(n))
    assert set(seen) == other_folds | {everything} and len(calls) == S * 5 + 1

    # and those are the thresholds behind the reported scores and the predictions CSV
    m = json.loads((run / "metrics.json").read_text())
    for s in range(S):
        per_fold = []
        for k in range(5):
            val = cv["folds"][s] == k
            t = real(labels[~val], cv["probs"][s, ~val])
            per_fold.append(f1_score(labels[val], cv["probs"][s, val] >= t, average="weighted", zero_division=0))
        assert m["cv"]["weighted_f1"]["per_seed"][s] == pytest.approx(np.mean(per_fold))
    thresholds = real(np.concatenate([labels] * S), cv["probs"].reshape(S * n, -1))
    assert json.loads((run / "model.json").read_text())["thresholds"] == pytest.approx(thresholds.tolist())
    frame = pd.read_csv(run / "predictions" / "test1.csv")
    assert list(frame.columns) == ["name", *MER_CLASSES, "valence"]
    expected = (test["probs"].mean(0) >= thresholds).astype(int)
    np.testing.assert_array_equal(frame[list(MER_CLASSES)].to_numpy(), expected)
    test_labels, _ = truth(test["ids"], multi_label=True)
    assert m["test1"]["weighted_f1"]["per_seed"][1] == pytest.approx(
        f1_score(test_labels, test["probs"][1] >= thresholds, average="weighted", zero_division=0))
    # it learned: well above marking every class (weighted F1 ~0.36 here); 8 epochs on 90 clips
    # scores 0.74-0.89 over data and dropout seeds
    all_on = f1_score(test_labels, np.ones_like(test_labels), average="weighted", zero_division=0)
    assert m["test1"]["weighted_f1"]["mean"] > max(0.7, all_on + 0.3)


def test_the_result_table_shows_a_spread_only_over_several_seeds(synth_run):
    """Two seeds: mean ± std per cell; one seed: the value alone, not a std of 0."""
    from fuse.outputs import Result

    _, run = synth_run
    m = json.loads((run / "metrics.json").read_text())
    table = Result(run, m, "title").table().splitlines()
    cv = next(line for line in table if line.startswith("cv "))
    assert f"{m['cv']['weighted_f1']['mean']:.3f} ± {m['cv']['weighted_f1']['std']:.3f}" in cv
    one = {**m, **{split: metrics.mean_std([{k: v["per_seed"][0] for k, v in m[split].items()}])
                   for split in ("cv", "test1")}}
    table = Result(run, one, "title").table().splitlines()
    cv = next(line for line in table if line.startswith("cv "))
    assert "±" not in cv and f"{m['cv']['weighted_f1']['per_seed'][0]:.3f}" in cv
    assert "(unlabelled: predictions only)" in next(line for line in table if line.startswith("test3"))


def test_splits_are_reported_train_first_then_tests_in_order(tmp_path):
    """However the clip table orders its clips (here by id: test1's first, train's last), results
    list the splits as people read them: train, test1, test3."""
    import dataclasses

    from manifests.table import Manifest

    from fuse.problem import load_problem

    manifest, arrays = synthetic_corpus(n_train=20, n_test=8, n_unlabelled=4)
    named = {c.id: f"{c.split}-{c.id}" for c in manifest.clips}
    clips = [dataclasses.replace(c, id=named[c.id]) for c in manifest.clips]
    arrays = {"acoustic": {named[k]: v for k, v in arrays["acoustic"].items()}}
    cache = write_cache(tmp_path / "cache", "synth", Manifest("synth", clips), arrays)
    problem = load_problem("synth", [("A", "acoustic")], root=cache)
    assert problem.split[0] == "test1" and problem.split[-1] == "train"  # the table's own order
    assert problem.splits == ["train", "test1", "test3"]


def test_early_stopping_keeps_each_members_best_epoch_before_it_stops(tmp_path):
    """--patience N (e2el: 3, Lightning's default in SAMSEMO's run.py): a member's best epoch is
    chosen among its epochs up to N without improvement; training itself is what it is without."""
    from fuse.loop import TrainConfig, fit
    from fuse.models import make_config
    from fuse.problem import load_problem

    manifest, arrays = synthetic_corpus(noise=2.0)
    cache = write_cache(tmp_path / "cache", "synth", manifest, arrays)
    problem = load_problem("synth", [("A", "acoustic")], root=cache)
    config = make_config("mlp")
    full = fit(problem, "mlp", config, TrainConfig(folds=3, seeds=(0, 1), epochs=60, lr=3e-3), progress=False)
    early = fit(problem, "mlp", config, TrainConfig(folds=3, seeds=(0, 1), epochs=60, lr=3e-3, patience=2), progress=False)
    stops = []
    for s in range(2):
        for k in range(3):
            history = early.history[s, k]
            seen = np.flatnonzero(~np.isnan(history))
            last = seen[-1]
            assert seen.tolist() == list(range(last + 1))  # recorded up to its stop, nothing after
            np.testing.assert_allclose(history[:last + 1], full.history[s, k, :last + 1])  # same training
            best = early.best_epoch[s, k]
            assert best == int(np.argmax(history[:last + 1]))
            assert last == best + 2 or last == 59  # two epochs without a better score, or the last epoch
            stops.append(last)
    assert early.history.shape[-1] == max(stops) + 1 < 60  # the run ends once every member has stopped
    assert (early.best_epoch <= full.best_epoch).all() and (early.best_epoch < full.best_epoch).any()


def test_clips_with_none_of_the_classes_train_and_score_as_all_negative_rows(tmp_path, no_plots):
    """SAMSEMO's fear-only scenes (label NO_CLASS): all-zero targets in the folds and in the test
    scores, as its run.py trains and scores them, never left out as unlabelled."""
    from dataclasses import replace

    from manifests import Manifest
    from manifests.table import NO_CLASS

    manifest, arrays = synthetic_corpus(multi_label=True)
    none = {c.id for c in manifest if c.split in ("train", "test1") and int(c.id[4:]) % 7 == 3}
    clips = [replace(c, label=NO_CLASS) if c.id in none else c for c in manifest]
    cache = write_cache(tmp_path / "cache", "synth", Manifest("synth", clips), arrays)
    run = tmp_path / "run"
    result = train_cli("--cache", cache, "--features", "A=acoustic;V=visual", "--epochs", "4", "--out", run, "--quiet")
    assert result.exit_code == 0, result.output
    m = json.loads((run / "metrics.json").read_text())
    assert m["clips"] == {"cv": 90, "test1": 24, "test3": 6}
    cv, test = np.load(run / "scores" / "cv.npz"), np.load(run / "scores" / "test1.npz")
    trained = [i for i, cid in enumerate(cv["ids"]) if cid in none]
    assert len(trained) == sum(c.split == "train" for c in clips if c.id in none) > 0
    assert (cv["labels"][trained] == 0).all() and cv["labels"].sum(1).min() == 0
    labels, _ = truth(test["ids"], multi_label=True)
    labels[[i for i, cid in enumerate(test["ids"]) if cid in none]] = 0
    thresholds = np.array(json.loads((run / "model.json").read_text())["thresholds"])
    assert m["test1"]["weighted_f1"]["mean"] == pytest.approx(
        f1_score(labels, test["probs"][0] >= thresholds, average="weighted", zero_division=0))
