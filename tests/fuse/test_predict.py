"""fuse.predict scores another cached dataset with a saved run's fold models."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from fuse.predict import main
from manifests import Manifest

from tests.fuse.conftest import synthetic_corpus, write_cache


@pytest.fixture
def copy_cache(synth_run, tmp_path):
    """The run's cache (copied: the session's stays one dataset) plus `write(name, configs)`: a
    dataset holding the run's test clips with the same feature arrays."""
    cache, run = synth_run
    root = shutil.copytree(cache, tmp_path / "cache")
    ids = [i for split in ("test1", "test3") for i in pd.read_csv(run / "predictions" / f"{split}.csv")["name"]]
    manifest, arrays = synthetic_corpus()

    def write(name, configs=None):
        sub = Manifest(name, [manifest[i] for i in ids])
        write_cache(root, name, sub, {f: {i: arrays[f][i] for i in ids} for f in ("acoustic", "visual")},
                    configs=configs)
    return root, run, write


def predict(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_a_copy_of_the_test_clips_gets_the_runs_own_predictions(copy_cache, tmp_path):
    cache, run, write = copy_cache
    write("synth-copy")
    result = predict("--run", run, "--dataset", "synth-copy", "--cache", cache, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    for split in ("test1", "test3"):
        ours, theirs = (pd.read_csv(r / "predictions" / f"{split}.csv") for r in (out, run))
        assert list(ours.columns) == ["name", "discrete", "valence"]
        assert ours["name"].tolist() == theirs["name"].tolist()
        assert ours["discrete"].tolist() == theirs["discrete"].tolist()
        np.testing.assert_allclose(ours["valence"], theirs["valence"], atol=2e-6)
        ours, theirs = (np.load(r / "scores" / f"{split}.npz") for r in (out, run))
        np.testing.assert_allclose(ours["probs"], theirs["probs"], atol=1e-6)  # per seed, fold-averaged
    scored = json.loads((out / "metrics.json").read_text())
    trained = json.loads((run / "metrics.json").read_text())
    assert scored["clips"] == {"test1": 23, "test3": 6} and "test3" not in scored  # unlabelled
    for name in ("weighted_f1", "mse"):
        assert scored["test1"][name]["per_seed"] == pytest.approx(trained["test1"][name]["per_seed"], abs=1e-6)


def test_a_feature_made_with_another_config_is_refused(copy_cache, tmp_path):
    cache, run, write = copy_cache
    write("synth-other", configs={"visual": {"frames_per_second": 5}})
    result = predict("--run", run, "--dataset", "synth-other", "--cache", cache, "--out", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert "feature visual: this dataset's was made with another config" in result.output
    assert "frames_per_second" in result.output
    assert not (tmp_path / "out").exists()


def test_a_folder_that_is_not_a_run_is_refused(synth_run, tmp_path):
    cache, _ = synth_run
    result = predict("--run", tmp_path, "--dataset", "synth", "--cache", cache)
    assert result.exit_code == 2 and "is not a fuse.train run folder (no model.json)" in result.output


def test_labels_of_a_dataset_with_another_class_order_are_read_in_the_runs_order():
    from fuse.predict import remap_classes
    from fuse.inputs.problem import Problem

    problem = Problem("x", np.array(["a", "b", "c"], dtype=object), np.array(["test1"] * 3, dtype=object),
                      [], [], [], ("sad", "happy"), False, np.array([0, 1, -1]), np.zeros(3))
    remap_classes(problem, ["neutral", "happy", "sad"])
    assert problem.labels.tolist() == [2, 1, -1] and problem.classes == ("neutral", "happy", "sad")
    problem.classes = ("angry",)
    with pytest.raises(Exception, match="classes \\['angry'\\] that the run was not trained on"):
        remap_classes(problem, ["neutral", "happy"])
