"""fuse.inputs.problem: clips with non-finite values are named and left out, checked a chunk of
rows at a time; where none is, the blocks are the ones read (no copy)."""
import numpy as np
import pytest

from fuse.inputs.problem import load_problem, nonfinite_rows

from tests.fuse.conftest import synthetic_corpus, write_cache


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_nonfinite_rows_are_found_across_chunks(dtype):
    block = np.ones((50, 3, 4), dtype)
    block[7, 2, 1], block[31, 0, 0], block[49, 1, 3] = np.nan, np.inf, -np.inf
    for chunk in (1, 48, 100, 64 << 20):   # one row, several, and all rows per chunk
        assert np.flatnonzero(nonfinite_rows(block, chunk)).tolist() == [7, 31, 49]
    assert not nonfinite_rows(np.full((5, 2), 255, np.uint8)).any()
    assert nonfinite_rows(np.zeros((0, 2), np.float32)).shape == (0,)


def test_a_clip_with_non_finite_values_is_named_and_left_out(tmp_path):
    manifest, arrays = synthetic_corpus(n_train=12, n_test=4, n_unlabelled=0)
    arrays["acoustic"]["clip0003"] = np.full(16, np.nan, np.float32)
    write_cache(tmp_path, "synth", manifest, {k: arrays[k] for k in ("acoustic", "visual")})
    problem = load_problem("synth", [("A", "acoustic"), ("V", "visual")], root=tmp_path)
    assert problem.missing == {"clip0003": "acoustic: non-finite values"}
    assert "clip0003" not in problem.ids and len(problem.ids) == 15
    assert all(len(b) == 15 and np.isfinite(b).all() for b in problem.blocks)
    whole = load_problem("synth", [("V", "visual")], root=tmp_path)
    assert len(whole.ids) == 16 and not whole.missing
