"""The HDF5 feature store: round trip, failures, resume, merge, shards, config refusal."""
import h5py
import numpy as np
import pytest

from cache import ConfigMismatch, FeatureReader, FeatureWriter, feature_path, open_feature


def writer(root, fingerprint="f1", shard=(1, 1), flush_every=2, feature="is09"):
    return FeatureWriter(root, "demo", feature, fingerprint, {"config": {"x": fingerprint}},
                         shard=shard, flush_every=flush_every)


def test_round_trip_with_failures_flags_and_sequences(tmp_path):
    w = writer(tmp_path)
    w.put("c", {"x": np.full(3, 2, np.float32)}, {"frames": np.ones((5, 2), np.float32)})
    w.put("a", status="failed", reason="no audio stream in a.mp4")
    w.put("b", {"x": np.zeros(3, np.float32)}, {"frames": np.ones((2, 2), np.float32)},
          status="flagged", reason="silent audio")
    assert w.merge(["a", "b", "c"])
    with open_feature("demo", "is09", tmp_path) as feat:
        assert feat.ids == ["a", "b", "c"]
        assert feat.status == ["failed", "flagged", "ok"]
        assert feat.failures() == {"a": "no audio stream in a.mp4"}
        x = feat.array()
        assert np.isnan(x[0]).all() and (x[2] == 2).all()  # a failed clip is NaN, never zeros
        assert (feat.array(ids=["c", "b"]) == [[2, 2, 2], [0, 0, 0]]).all()
        assert feat.sequence("b").shape == (2, 2) and feat.sequence("c").shape == (5, 2)
        assert feat.sequence("a").shape == (0, 2)
        prov = feat.provenance
        assert prov["config"] == {"x": "f1"} and prov["clips"] == 3
        assert prov["created"] == prov["updated"] and prov["created"].endswith("+00:00")
    assert not feature_path(tmp_path, "demo", "is09").with_suffix(".parts").exists()


def test_parts_are_committed_and_done_ids_resume(tmp_path):
    w = writer(tmp_path, flush_every=2)
    for cid in "abc":
        w.put(cid, {"x": np.ones(2)})
    # two clips flushed as a part, one still buffered: a crash now loses only 'c'
    assert writer(tmp_path).done_ids() == {"a", "b"}
    assert not feature_path(tmp_path, "demo", "is09").exists()


def test_merge_waits_for_every_expected_clip(tmp_path):
    w = writer(tmp_path)
    w.put("a", {"x": np.ones(2)})
    assert not w.merge(["a", "b"])
    assert not feature_path(tmp_path, "demo", "is09").exists()
    w.put("b", {"x": np.ones(2)})
    assert w.merge(["a", "b"])


def test_later_work_replaces_a_clip_exactly_once(tmp_path):
    w = writer(tmp_path)
    w.put("a", status="failed", reason="boom")
    w.put("b", {"x": np.ones(2)})
    w.merge()
    first = open_feature("demo", "is09", tmp_path).provenance
    w2 = writer(tmp_path)
    w2.put("a", {"x": np.full(2, 7.0)})  # a retry of a failed clip
    w2.merge()
    feat = FeatureReader(feature_path(tmp_path, "demo", "is09"))
    assert feat.provenance["created"] == first["created"] <= feat.provenance["updated"]
    assert feat.ids == ["a", "b"] and feat.status == ["ok", "ok"]
    assert (feat.array(ids=["a"]) == 7).all()


def test_two_shards_write_apart_and_read_back_as_one(tmp_path):
    s1, s2 = writer(tmp_path, shard=(1, 2)), writer(tmp_path, shard=(2, 2))
    s1.put("a", {"x": np.ones(2)}); s2.put("b", {"x": np.zeros(2)})
    s1.put("c", {"x": np.ones(2)})
    s2.flush()  # s2 still running when s1 finishes: s1 must not merge an incomplete feature
    assert not s1.merge(list("abcd"))
    assert not feature_path(tmp_path, "demo", "is09").exists()
    s2.put("d", {"x": np.zeros(2)})
    assert s2.merge(list("abcd"))
    feat = open_feature("demo", "is09", tmp_path)
    assert feat.ids == list("abcd")
    assert feat.array().sum(axis=1).tolist() == [2, 0, 2, 0]


def test_other_config_is_refused_with_a_clear_message(tmp_path):
    w = writer(tmp_path, "f1")
    w.put("a", {"x": np.ones(2)}); w.merge()
    with pytest.raises(ConfigMismatch, match="--overwrite"):
        writer(tmp_path, "f2").check_config()
    writer(tmp_path, "f1").check_config()  # same config: fine


def test_inconsistent_shapes_are_an_error_not_a_corrupt_file(tmp_path):
    w = writer(tmp_path, flush_every=10)
    w.put("a", {"x": np.ones(2)}); w.put("b", {"x": np.ones(3)})
    with pytest.raises(ValueError, match="different shapes"):
        w.flush()
    parts = feature_path(tmp_path, "demo", "is09").with_suffix(".parts")
    files = sorted(p.name for p in parts.iterdir()) if parts.is_dir() else []
    # nothing half-written under a final name: at most a temporary, which no reader takes for a part
    assert [name for name in files if not (name.startswith(".") and ".tmp-" in name)] == [], files
    assert writer(tmp_path).done_ids() == set()  # a resumed run finds nothing committed
    assert not feature_path(tmp_path, "demo", "is09").exists()
