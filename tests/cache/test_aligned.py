"""Several cached features aligned by clip id: order, exclusions by id, per-layer reads, pickling."""
import pickle
import subprocess
import sys
import textwrap
import tracemalloc

import h5py
import numpy as np
import pytest

from cache import FeatureWriter, open_feature, open_features, parse_spec, write_clips
from cache import LayerSelectionError, select_layers
from manifests import Clip, Manifest

L, D = 25, 8
CLIPS = list("abcdefg")


def corpus(label="happy"):
    return Manifest("mer", [Clip(cid, "train" if cid < "f" else "test3", label=label) for cid in CLIPS])


def per_layer(i):
    """float16 [L, D]: value = 100 * clip + layer, so a selection shows its clip and layers."""
    return (100 * i + np.arange(L, dtype=np.float16))[:, None].repeat(D, axis=1)


@pytest.fixture
def cache(tmp_path):
    """hubert [L, D] (c failed), fer [7] (e failed, f never cached), mfcc stats + frames + n_frames (b failed);
    the clip table lists a..g (g cached in no feature)."""
    manifest = corpus()
    write_clips(manifest, root=tmp_path)
    prov = {"config": {}, "manifest_fingerprint": manifest.fingerprint()}
    hubert = FeatureWriter(tmp_path, "mer", "hubert", "h", dict(prov), primary="mean")
    fer = FeatureWriter(tmp_path, "mer", "fer", "f", dict(prov))
    mfcc = FeatureWriter(tmp_path, "mer", "mfcc", "m", dict(prov), primary="stats")
    for i, cid in enumerate("abcdef"):
        if cid == "c":
            hubert.put(cid, status="failed", reason="decode error")
        else:
            hubert.put(cid, {"mean": per_layer(i)})
        if cid == "e":
            fer.put(cid, status="failed", reason="no face found")
        elif cid != "f":
            fer.put(cid, {"probs": np.full(7, i, np.float32)})
        if cid == "b":
            mfcc.put(cid, status="failed", reason="no audio stream")
        else:
            frames = np.arange((i + 1) * 3, dtype=np.float32).reshape(i + 1, 3) + 1000 * i
            mfcc.put(cid, {"stats": np.full(4, i, np.float32), "n_frames": np.int32(i + 1)}, {"frames": frames})
    for w in (hubert, fer, mfcc):
        w.merge()
    return tmp_path


def test_ids_order_and_missing_clips_listed_by_id(cache):
    feats = open_features("mer", ["hubert@18,19,20", "fer"], root=cache)
    assert feats.ids == ["a", "b", "d"]  # sorted: the clip table's order
    assert feats.missing == {"c": "hubert: decode error", "e": "fer: no face found", "f": "fer: not cached",
                             "g": "hubert: not cached; fer: not cached"}
    x, probs = feats.arrays()
    assert x.shape == (3, 3, D) and x.dtype == np.float16 and feats.shapes["hubert@18,19,20"] == (3, D)
    assert x[:, :, 0].tolist() == [[18, 19, 20], [118, 119, 120], [318, 319, 320]]  # clips a, b, d
    assert probs[:, 0].tolist() == [0, 1, 3] and not np.isnan(probs).any()  # no zero-filled, no NaN row
    asked = open_features("mer", ["hubert", "fer"], root=cache, ids=["d", "c", "a"])
    assert asked.ids == ["d", "a"] and asked.missing == {"c": "hubert: decode error"}
    assert asked.array("hubert").shape == (2, L, D)  # no selector: every layer


@pytest.mark.parametrize("selector", ["18,19,20", "-1,0", "-4:", "0:25:6", "::-8", "all"])
def test_a_layer_selection_equals_select_layers_on_the_whole_array(cache, selector):
    spec = f"hubert@{selector}"
    feats = open_features("mer", [spec], root=cache, ids=["f", "a", "d"])
    with h5py.File(cache / "mer" / "hubert.h5") as f:  # independent: the whole file, numpy indexing
        whole = f["arrays/mean"][()][[5, 0, 3]]
    np.testing.assert_array_equal(feats.array(spec), select_layers(whole, selector))


def bytes_read() -> int:
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("rchar"))


def test_only_the_chosen_layers_leave_the_file(tmp_path):
    n, layers, dims = 300, 25, 256
    w = FeatureWriter(tmp_path, "big", "hubert", "h", {"config": {}}, flush_every=1000)
    rng = np.random.default_rng(0)
    for i in range(n):
        w.put(f"c{i:04d}", {"mean": rng.normal(size=(layers, dims)).astype(np.float32)})
    w.merge()
    whole = n * layers * dims * 4
    feats = open_features("big", ["hubert@18,19,20"], root=tmp_path)
    assert len(feats.ids) == n  # ids and status are read now: only the array read is measured
    before = bytes_read()
    tracemalloc.start()
    x = feats.array("hubert@18,19,20")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    read = bytes_read() - before
    assert x.shape == (n, 3, dims)
    assert read < 1.1 * whole * 3 / layers, f"read {read / whole:.2f} of the array"
    assert peak < 1.5 * whole * 3 / layers, f"peak memory {peak / whole:.2f} of the array"
    before = bytes_read()
    feats_all = open_feature("big", "hubert", tmp_path).array()
    assert bytes_read() - before >= whole  # the measure sees a whole read
    np.testing.assert_array_equal(x, feats_all[:, [18, 19, 20]])


def test_bad_selectors_and_unknown_names_are_clear_errors(cache):
    with pytest.raises(LayerSelectionError, match=r"hubert: layer selector @25: layer 25 out of range for 25 layers"):
        open_features("mer", ["hubert@25"], root=cache)
    with pytest.raises(LayerSelectionError, match=r"needs a per-layer feature \[N, L, D\]; this one has shape \(5, 7"):
        open_features("mer", ["fer@-1"], root=cache)
    with pytest.raises(FileNotFoundError, match=r"'wavlm' is not cached for dataset 'mer'.*cached: fer, hubert, mfcc"):
        open_features("mer", ["fer", "wavlm@-1"], root=cache)
    with pytest.raises(ValueError, match=r"mfcc#means: .*no array or sequence 'means' \(arrays: n_frames, stats; "
                                         r"sequences: frames; a sequence KEY also gives KEY.length\)"):
        open_features("mer", ["mfcc#means"], root=cache)
    with pytest.raises(LayerSelectionError, match=r"mfcc#frames.length@-1: a sequence length takes no layer selector"):
        open_features("mer", ["mfcc#frames.length@-1"], root=cache)


def test_key_syntax_leaves_model_names_alone():
    spec = parse_spec("ssl:models/tiny-hubert#std@-4:")
    assert (spec.feature, spec.key, spec.selector.indices(13)) == ("ssl:models/tiny-hubert", "std", [9, 10, 11, 12])
    assert parse_spec("text:bert-base-chinese").feature == "text:bert-base-chinese"
    with pytest.raises(ValueError, match="expected FEATURE#KEY"):
        parse_spec("mfcc#")


def test_other_arrays_and_sequences_by_key(cache):
    feats = open_features("mer", ["mfcc", "mfcc#n_frames", "mfcc#frames"], root=cache)
    assert feats.ids == ["a", "c", "d", "e", "f"] and feats.missing["b"] == "mfcc: no audio stream"
    stats, n_frames, frames = feats.arrays()
    assert stats[:, 0].tolist() == [0, 2, 3, 4, 5] and n_frames.tolist() == [1, 3, 4, 5, 6]
    assert [len(seq) for seq in frames] == n_frames.tolist()
    reader = open_feature("mer", "mfcc", cache)
    for cid, seq in zip(feats.ids, frames):
        np.testing.assert_array_equal(seq, reader.sequence(cid))
    assert feats.shapes["mfcc#frames"] == (None, 3)
    lengths = open_features("mer", ["mfcc#frames.length"], root=cache)  # read from the offsets alone
    assert lengths.shapes["mfcc#frames.length"] == ()
    assert lengths.array("mfcc#frames.length", ids=feats.ids).tolist() == n_frames.tolist()


def test_integer_rows_of_failed_clips_are_never_read_as_numbers(cache):
    reader = open_feature("mer", "mfcc", cache)
    with pytest.raises(ValueError, match=r"'n_frames' is int32 and has no value for the failed clips \['b'\].*ok_ids"):
        reader.array("n_frames")
    with pytest.raises(ValueError, match=r"failed clips \['b'\]"):
        reader.array("n_frames", ids=["a", "b"])
    assert reader.array("n_frames", ids=reader.ok_ids()).tolist() == [1, 3, 4, 5, 6]
    assert np.isnan(reader.array("stats", ids=["b"])).all()  # float rows: NaN, as documented


def test_pickled_features_read_the_same_in_another_process(cache, tmp_path):
    feats = open_features("mer", ["hubert@-1,0", "fer"], root=cache)
    expected = feats.arrays()
    clone = pickle.loads(pickle.dumps(feats))
    for a, b in zip(clone.arrays(), expected):
        np.testing.assert_array_equal(a, b)
    (tmp_path / "feats.pkl").write_bytes(pickle.dumps(feats))
    child = textwrap.dedent(f"""
        import pickle, numpy as np
        feats = pickle.loads(open({str(tmp_path / 'feats.pkl')!r}, 'rb').read())
        np.savez({str(tmp_path / 'out.npz')!r}, *feats.arrays())
    """)
    subprocess.run([sys.executable, "-c", child], check=True)
    got = np.load(tmp_path / "out.npz")
    for i, b in enumerate(expected):
        np.testing.assert_array_equal(got[f"arr_{i}"], b)


def _first_layer_sum(feats):
    return float(feats.array("hubert@-1,0")[:, 1].astype(np.float64).sum())


def _child(feats, queue):
    import os

    total = _first_layer_sum(feats)
    queue.put((total, feats._reader("hubert")._pid == os.getpid()))  # read through a handle of its own


def test_forked_workers_open_their_own_files(cache):
    import multiprocessing

    feats = open_features("mer", ["hubert@-1,0"], root=cache)
    expected = _first_layer_sum(feats)  # the parent has its file open now; forked children inherit it
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    children = [context.Process(target=_child, args=(feats, queue)) for _ in range(2)]
    for child in children:
        child.start()
    assert [queue.get(timeout=60) for _ in children] == [(expected, True)] * 2
    for child in children:
        child.join()
        assert child.exitcode == 0
    assert _first_layer_sum(feats) == expected  # and the parent's handle still reads


def test_a_feature_of_another_manifest_is_reported(cache):
    write_clips(corpus(label="sad"), root=cache)  # labels edited since extraction
    with pytest.warns(UserWarning, match="extracted from manifest") as caught:
        feats = open_features("mer", ["hubert", "fer"], root=cache)
    assert [m.split(":")[0] for m in feats.manifest_mismatch] == ["hubert", "fer"] == \
        [str(w.message).split(":")[0] for w in caught]
    assert feats.clips.labels(["a"]).tolist() == [3]  # the table as it is now: 'sad'
    write_clips(corpus(), root=cache)
    assert open_features("mer", ["hubert", "fer"], root=cache).manifest_mismatch == []
