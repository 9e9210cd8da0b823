"""cache.reader.read_rows: rows in any order (repeats too) and chosen layers, read run by run
into their places, without a second copy of the result."""
import tracemalloc

import h5py
import numpy as np
import pytest

from cache import reader


@pytest.fixture
def stored(tmp_path):
    a = np.random.default_rng(0).normal(size=(500, 6, 64)).astype(np.float32)
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f.create_dataset("a", data=a)
    f = h5py.File(tmp_path / "x.h5", "r")
    yield f["a"], a
    f.close()


@pytest.mark.parametrize("chunk", [64 << 20, 3000])   # runs of many rows, and of one row each
@pytest.mark.parametrize("layers", [None, [4, 1], [0, 2, 5]])
def test_rows_in_any_order_come_back_in_that_order(stored, layers, chunk, monkeypatch):
    dset, a = stored
    monkeypatch.setattr(reader, "CHUNK_BYTES", chunk)
    rng = np.random.default_rng(1)
    for rows in (np.arange(500), rng.permutation(500), rng.integers(0, 500, 900), np.array([5, 3, 3, 400, 2]),
                 np.sort(rng.choice(500, 100, replace=False)), np.zeros(0, np.int64)):
        expected = a[rows] if layers is None else a[rows][:, layers]
        got = reader.read_rows(dset, rows, layers)
        assert got.shape == expected.shape and np.array_equal(got, expected)


def test_rows_out_of_file_order_are_read_without_a_second_copy(stored, monkeypatch):
    dset, _ = stored
    monkeypatch.setattr(reader, "CHUNK_BYTES", 64 << 10)
    rows = np.random.default_rng(2).permutation(500)
    tracemalloc.start()
    try:
        out = reader.read_rows(dset, rows)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < out.nbytes + 4 * (64 << 10)   # the result and one run's block, not the result twice
