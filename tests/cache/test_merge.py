"""The streamed merge: the same file as a merge in memory would give, in memory of one block."""
import tracemalloc

import numpy as np
import pytest

from cache import FeatureWriter, checksums, feature_path, merge, open_feature
from cache.verify import verify_file


def writer(root, shard=(1, 1), flush_every=3):
    return FeatureWriter(root, "demo", "mixed", "f1", {"config": {}}, shard=shard, flush_every=flush_every)


def put(w, expected, cid, value=None, status="ok"):
    """Put one clip and note what the merged file must hold for it (the last put wins)."""
    if value is None:
        w.put(cid, status="failed", reason=f"{cid} is broken")
        expected[cid] = None
        return
    x = np.array([value, value + 1, value + 2], np.float32)
    frames = np.full((int(value) % 4 + 1, 2), value, np.float32)
    arrays = {"x": x, "n": np.int32(value), "text": np.array(f"clip {cid} said {value}")}
    w.put(cid, arrays, {"frames": frames}, status=status)
    expected[cid] = (status, x, int(value), f"clip {cid} said {value}", frames)


def test_streamed_merge_equals_the_clips_put_last(tmp_path, monkeypatch):
    monkeypatch.setattr(checksums, "BLOCK_BYTES", 16)  # a block of one row, sequences 2 frames a write
    monkeypatch.setattr(merge, "MAX_OPEN", 2)  # files closed and opened again
    expected = {}
    first = writer(tmp_path)
    for i, cid in enumerate("abcdefgh"):
        put(first, expected, cid, None if cid in "cf" else float(i))
    assert first.merge()
    one, two = writer(tmp_path, (1, 2)), writer(tmp_path, (2, 2))
    put(one, expected, "c", 30.0)                   # a failed clip retried
    put(one, expected, "a", 40.0, status="flagged")  # a clip replaced
    put(two, expected, "i", 50.0)                   # a new clip
    for w, cid in ((two, "b"), (two, "j"), (two, "k")):
        put(w, expected, cid)                       # a part of failures only: no array at all
    put(one, expected, "d", 60.0)
    one.flush(), two.flush()
    assert len(one.committed_files()) == 4
    assert writer(tmp_path).merge(expected)
    with open_feature("demo", "mixed", tmp_path) as feat:
        assert feat.ids == sorted(expected)
        for row, cid in enumerate(feat.ids):
            want = expected[cid]
            if want is None:
                assert feat.status_of(cid) == ("failed", f"{cid} is broken")
                assert np.isnan(feat.array(ids=[cid])).all()
                with pytest.raises(ValueError, match="no value for the failed clips"):
                    feat.array("n", [cid])
                assert feat.array("text")[row] is None and len(feat.sequence(cid)) == 0
                continue
            assert feat.status[row] == want[0]
            np.testing.assert_array_equal(feat.array(ids=[cid])[0], want[1])
            assert feat.array("n", [cid])[0] == want[2] and feat.array("text")[row] == want[3]
            np.testing.assert_array_equal(feat.sequence(cid), want[4])
    assert verify_file(feature_path(tmp_path, "demo", "mixed")).problems == []


def test_merge_and_verify_hold_a_block_not_the_feature(tmp_path, monkeypatch):
    monkeypatch.setattr(checksums, "BLOCK_BYTES", 1 << 20)  # chunks, merge and verify blocks alike
    base = np.random.default_rng(0).standard_normal((32, 128, 32)).astype(np.float16)  # e2el pieces
    w = FeatureWriter(tmp_path, "demo", "e2el-spectrogram", "f1", {"config": {}}, flush_every=8)
    for i in range(64):  # 64 x 262 KB = 16.8 MB in 8 parts
        w.put(f"c{i:03d}", {"pieces": base + np.float16(i), "n_pieces": np.int32(i)})
    w.flush()
    tracemalloc.start()
    assert w.merge()
    merge_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.reset_peak()
    assert verify_file(w.path).problems == []
    verify_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert merge_peak < 6 << 20 and verify_peak < 4 << 20, (merge_peak, verify_peak)  # 16.8 MB in all
    with open_feature("demo", "e2el-spectrogram", tmp_path) as feat:
        np.testing.assert_array_equal(feat.array(ids=["c063"])[0], base + np.float16(63))
        assert feat.array("n_pieces").tolist() == list(range(64))
