"""Stage 2 never trains on a damaged cache file: fuse.train and fuse.sweep end with the reader's
message naming the file, the cause and what to do, and write no run."""
import h5py
import pytest

from tests.fuse.conftest import synthetic_corpus, train_cli, write_cache
from tests.fuse.sweeps.test_trials import sweep_cli

ARGS = ["--features", "A=acoustic;V=visual", "--epochs", "2", "--folds", "2", "--quiet"]


@pytest.fixture
def cache(tmp_path):
    manifest, arrays = synthetic_corpus(n_train=40, n_test=8, n_unlabelled=4)
    return write_cache(tmp_path / "cache", "synth", manifest, arrays)


def overwrite_a_chunk(path, key="arrays/x"):
    """4 KB of the first stored block of `key` replaced by other bytes, behind HDF5's back."""
    with h5py.File(path, "r") as f:
        offset = f[key].id.get_chunk_info(0).byte_offset
    with open(path, "r+b") as f:
        f.seek(offset)
        block = bytearray(f.read(64))
        f.seek(offset)
        f.write(bytes(b ^ 0x5A for b in block))


def test_a_changed_block_stops_training_naming_the_file(cache, tmp_path):
    path = cache / "synth" / "acoustic.h5"
    overwrite_a_chunk(path)
    result = train_cli("--cache", cache, "--out", tmp_path / "run", *ARGS)
    assert result.exit_code == 1, result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith(f"damaged file {path}: a block of /arrays/x fails its checksum"), result.output
    assert "python -m cache verify" in line and "--overwrite" in line
    assert not (tmp_path / "run").exists() and not list(tmp_path.glob(".run*"))


def test_a_truncated_feature_stops_a_sweep_before_any_trial(cache, tmp_path):
    path = cache / "synth" / "visual.h5"
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)
    result = sweep_cli("--cache", cache, "--dataset", "synth", "--features", "A=acoustic;V=visual",
                       "--grid", "epochs=2;folds=2", "--runs", tmp_path / "runs", "--out", tmp_path / "out", "--quiet")
    assert result.exit_code == 1, result.output
    assert f"damaged file {path}: truncated:" in result.output
    assert not (tmp_path / "out").exists() and not list((tmp_path / "runs").glob("*/metrics.json"))
