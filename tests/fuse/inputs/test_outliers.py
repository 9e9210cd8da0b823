"""Finite values far outside a feature's own spread (3e38 in a row) are trained and scored with a
warning, never silently; the real demo features raise none."""
import json
import shutil

import h5py
import numpy as np
import pytest

from fuse.predict import main as predict_main
from fuse.inputs.problem import load_problem

from tests.fuse.conftest import train_cli
from tests.fuse.training.test_saved_run import invoke

# the demo's pooled features, per-layer float16 vectors, a 4-D float16 block, uint8 crops, and
# frame sequences (cut to their first 50 frames)
DEMO_SPECS = ["egemaps", "face-fer2013", "mfcc", "logmel", "text-minilm", "e2el-spectrogram#pieces",
              "face-crops#crops", "logmel#frames", "text-minilm#tokens"]


@pytest.fixture(scope="module")
def absurd_cache(demo_cache, tmp_path_factory):
    """A copy of the demo cache whose egemaps row 3 (a training clip) holds 3e38 in dimension 17,
    written into the HDF5 file as any writer would. Returns (cache root, that clip's id)."""
    root = shutil.copytree(demo_cache, tmp_path_factory.mktemp("absurd") / "cache")
    with h5py.File(root / "demo" / "egemaps.h5", "r+") as f:
        f["arrays/functionals"][3, 17] = 3e38
        clip = f["ids"][3].decode()
    return root, clip


def test_of_the_real_demo_features_only_a_row_set_to_3e38_is_far_out(absurd_cache):
    root, clip = absurd_cache
    problem = load_problem("demo", [("A", spec) for spec in DEMO_SPECS], root=root, max_items=50)
    assert len(problem.ids) > 80
    (warning,) = problem.warnings  # none for the other features, nor for the other clips
    assert warning.startswith(f"egemaps: 1 clip(s) with values over 1e+05 robust spreads from the feature's median "
                              f"({clip}); the farthest, {clip}, has 3e+38 at index 17")


def test_fuse_train_and_predict_warn_of_a_3e38_row(absurd_cache, tmp_path):
    root, clip = absurd_cache
    run = tmp_path / "run"
    result = train_cli("--cache", root, "--dataset", "demo", "--features", "A=egemaps", "--epochs", "2",
                       "--folds", "2", "--quiet", "--out", run)
    assert result.exit_code == 0, result.output
    warning = (f"egemaps: 1 clip(s) with values over 1e+05 robust spreads from the feature's median ({clip}); "
               f"the farthest, {clip}, has 3e+38 at index 17")
    assert f"warning: {warning}" in result.output
    assert any(w.startswith(warning) for w in json.loads((run / "metrics.json").read_text())["warnings"])
    result = invoke(predict_main, "--run", run, "--dataset", "demo", "--cache", root, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert f"warning: {warning}" in result.output
    assert any(w.startswith(warning) for w in json.loads((tmp_path / "out" / "metrics.json").read_text())["warnings"])


def _ids(n):
    return np.array([f"clip{i:04d}" for i in range(n)], dtype=object)


def test_constant_and_sparse_dimensions_of_a_per_layer_float16_block_are_not_far_out():
    from fuse.inputs.outliers import far_out_warnings

    rng = np.random.default_rng(0)
    block = (rng.normal(size=(300, 4, 16)) * 0.01).astype(np.float16)
    block[:, 0, 0] = 7                      # constant
    block[:, 1, 2] = 0
    block[::50, 1, 2] = 0.03                # sparse: zero but for a few real values
    block[:, 2, 3] *= 1e-3                  # a dimension of a smaller scale of its own ...
    block[::60, 2, 3] = 0.02                # ... with a few values of the block's scale
    pixels = np.full((300, 8), 255, np.uint8)
    pixels[5] = 0                           # uint8: bounded by its dtype, never far out
    assert far_out_warnings(["x", "crops"], [block, pixels], _ids(300)) == []
    block[123, 3, 5] = 60000                # float16's range: 6e6 spreads out
    block[7, 0, 0] = 30000                  # in the constant dimension: the block's typical spread
    (warning,) = far_out_warnings(["x", "crops"], [block, pixels], _ids(300))
    assert warning.startswith("x: 2 clip(s) with values over 1e+05 robust spreads from the feature's median "
                              "(clip0007, clip0123); the farthest, clip0123, has 6e+04 at index (3, 5) "
                              "(5.8e+06 spreads")


def test_slices_and_samples_give_the_same_distances(monkeypatch):
    """Medians from a sample of rows and passes over small slices: each row's distance as numpy
    computes it over the same sample, whole."""
    from fuse.inputs import outliers

    rng = np.random.default_rng(1)
    columns = rng.standard_t(3, size=(500, 40)).astype(np.float32)
    monkeypatch.setattr(outliers, "SAMPLE_ROWS", 200)
    monkeypatch.setattr(outliers, "SLICE_BYTES", 4 * 200 * 3 + 8)   # 3 columns, then 3 rows, at a time
    median, spread = outliers.robust_spread(columns, seed=5)
    sample = columns[np.sort(np.random.default_rng(5).choice(500, 200, replace=False))].astype(np.float64)
    m = np.median(sample, axis=0)
    s = 1.4826 * np.median(np.abs(sample - m), axis=0)
    s = np.maximum(s, np.median(s))
    np.testing.assert_allclose(median, m, rtol=1e-6)
    np.testing.assert_allclose(spread, s, rtol=1e-5)
    np.testing.assert_allclose(outliers.row_distances(columns, median, spread),
                               (np.abs(columns - m) / s).max(axis=1), rtol=1e-5)
