"""A damaged run folder is never trusted: fuse.predict and fuse.semi refuse it (exit 2) naming the
run, the file and the cause, before writing anything. Each damage is done to a copy of a real run."""
import json
import shutil

import pytest
from click.testing import CliRunner

from fuse.predict import main as predict_main
from fuse.semi import main as semi_main

from tests.fuse.conftest import torch_threads, train_cli

REMEDY = "train the run again (fuse.train, with the options in its config.json)"


def truncate(path):
    path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])


def flip_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # inside the tensor data: torch.load reads such a file silently
    path.write_bytes(bytes(data))


def remove(path):
    shutil.rmtree(path) if path.is_dir() else path.unlink()


def invoke(command, *args):
    return CliRunner().invoke(command, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def lgbm_run(synth_run, tmp_path_factory):
    """(cache, run folder) of a small LightGBM run (1 seed x 2 folds) on the session's synthetic cache."""
    from fuse.models.lgbm import LGBM

    cache, _ = synth_run
    run = tmp_path_factory.mktemp("lgbm-run") / "run"
    params = LGBM._params
    with pytest.MonkeyPatch.context() as patch, torch_threads(1):
        patch.setattr(LGBM, "_params", lambda self, seed: {**params(self, seed), "n_jobs": 1})
        result = train_cli("--cache", cache, "--out", run, "--features", "A=acoustic", "--model", "lgbm",
                           "--folds", "2", "--quiet")
    assert result.exit_code == 0, result.output
    return cache, run


def damaged_copy(source, tmp_path, name, damage):
    run = shutil.copytree(source, tmp_path / "run")
    damage(run / name)
    return run


@pytest.mark.parametrize("name, damage, cause", [
    ("weights/attention/seed1-fold3.pt", truncate, "is damaged (its SHA-256 differs"),
    ("weights/attention/seed0-fold0.pt", flip_byte, "is damaged (its SHA-256 differs"),
    ("weights/attention/seed0-fold2.pt", remove, "is missing"),
    ("weights", remove, "weights/ is missing"),
    ("model.json", truncate, "is damaged (JSONDecodeError"),
    ("metrics.json", truncate, "is damaged (JSONDecodeError"),
], ids=["truncated-weights", "flipped-byte-in-weights", "missing-fold", "no-weights-folder", "broken-model-json",
        "broken-metrics-json"])
def test_predict_refuses_a_damaged_run(synth_run, tmp_path, name, damage, cause):
    cache, source = synth_run
    run = damaged_copy(source, tmp_path, name, damage)
    result = invoke(predict_main, "--run", run, "--dataset", "synth", "--cache", cache, "--out", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert f"run {run}: {name.rstrip('/')}" in result.output and cause in result.output and REMEDY in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output  # one line, no traceback
    assert not (tmp_path / "out").exists()


def test_predict_refuses_a_truncated_estimator(lgbm_run, tmp_path):
    cache, source = lgbm_run
    name = "weights/lgbm/seed0-fold1.lgbm.json"
    run = damaged_copy(source, tmp_path, name, truncate)
    result = invoke(predict_main, "--run", run, "--dataset", "synth", "--cache", cache, "--out", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert f"run {run}: {name} is damaged (its SHA-256 differs" in result.output and REMEDY in result.output
    assert not (tmp_path / "out").exists()


def test_an_old_run_without_digests_still_names_a_truncated_weight(synth_run, tmp_path):
    """Runs written before model.json kept SHA-256s: the load itself fails, and is named."""
    cache, source = synth_run
    name = "weights/attention/seed0-fold1.pt"
    run = damaged_copy(source, tmp_path, name, truncate)
    meta = json.loads((run / "model.json").read_text())
    del meta["sha256"]
    (run / "model.json").write_text(json.dumps(meta))
    result = invoke(predict_main, "--run", run, "--dataset", "synth", "--cache", cache, "--out", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert f"run {run}: {name} is damaged (" in result.output and REMEDY in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name, damage, cause", [
    ("scores/cv.npz", truncate, "is damaged (BadZipFile"),
    ("scores/cv.npz", remove, "is missing"),
    ("scores/test3.npz", truncate, "is damaged (BadZipFile"),
    ("model.json", truncate, "is damaged (JSONDecodeError"),
], ids=["truncated-cv", "missing-cv", "truncated-test3-scores", "broken-model-json"])
def test_semi_refuses_a_damaged_run(synth_run, tmp_path, name, damage, cause):
    cache, source = synth_run
    run = damaged_copy(source, tmp_path, name, damage)
    out = tmp_path / "pseudo.csv"
    result = invoke(semi_main, "--run", run, "--dataset", "synth", "--unlabelled", "test3", "--cache", cache,
                    "--out", out)
    assert result.exit_code == 2, result.output
    assert f"run {run}: {name} {cause}" in result.output and REMEDY in result.output
    assert not out.exists()


def test_semi_refuses_damaged_weights_it_needs(synth_run, tmp_path):
    """Without the run's own scores of the split, fuse.semi scores it with the fold models."""
    cache, source = synth_run
    run = damaged_copy(source, tmp_path, "scores/test3.npz", remove)
    truncate(run / "weights/attention/seed0-fold4.pt")
    out = tmp_path / "pseudo.csv"
    result = invoke(semi_main, "--run", run, "--dataset", "synth", "--unlabelled", "test3", "--cache", cache,
                    "--out", out)
    assert result.exit_code == 2, result.output
    assert f"run {run}: weights/attention/seed0-fold4.pt is damaged" in result.output
    assert not out.exists()


def test_decision_fusion_of_a_sweep_names_a_damaged_run(synth_run, tmp_path):
    from fuse.results.decision import fuse_runs
    from fuse.training.saved_run import DamagedRun

    cache, source = synth_run
    good = shutil.copytree(source, tmp_path / "good")
    bad = damaged_copy(source, tmp_path, "scores/cv.npz", truncate)
    with pytest.raises(DamagedRun, match=f"run {bad}: scores/cv.npz is damaged \\(BadZipFile"):
        fuse_runs([good, bad], "synth", cache, tmp_path / "fusion")
    assert not (tmp_path / "fusion").exists()
