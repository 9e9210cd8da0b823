"""`python -m cache`: ls, info, verify, import-npy, rm."""
import numpy as np
import pytest
from click.testing import CliRunner

from cache import FeatureWriter, feature_path, open_feature
from cache.__main__ import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def cache(tmp_path):
    w = FeatureWriter(tmp_path, "demo", "is09", "f1", {"extractor": "is09", "config": {}})
    w.put("a", {"functionals": np.ones(384, np.float32)})
    w.put("b", status="failed", reason="no audio stream in b.mp4")
    w.merge()
    return tmp_path


def test_ls_and_info(cache):
    out = run("ls", "--cache", cache).output
    row = next(line for line in out.splitlines() if line.startswith("demo"))
    cols = row.split()
    assert cols[:5] == ["demo", "is09", "2", "384", "float32"]  # dataset, feature, clips, dims, dtype
    assert cols[-2:] == ["1", "is09"]  # one failure, made by is09
    info = run("info", "demo", "is09", "--cache", cache).output
    assert "(2, 384)" in info and "1 ok, 0 flagged, 1 failed" in info
    assert "FAILED   b: no audio stream in b.mp4" in info and '"extractor": "is09"' in info


def test_verify_finds_a_damaged_file(cache):
    good = run("verify", "--cache", cache)
    assert good.exit_code == 0 and "0 problems" in good.output
    path = feature_path(cache, "demo", "is09")
    path.write_bytes(path.read_bytes()[:1000])  # damaged outside our control, e.g. a disk error
    bad = run("verify", "--cache", cache)
    assert bad.exit_code == 1 and "BAD" in bad.output and "truncated: 1000 of its" in bad.output


def test_import_npy_utterance_and_frame_level(tmp_path):
    rng = np.random.default_rng(0)
    utt, frames = tmp_path / "utt", tmp_path / "frames"
    utt.mkdir(), frames.mkdir()
    vectors = {f"sample_{i}": rng.normal(size=768).astype(np.float32) for i in range(3)}
    seqs = {f"sample_{i}": rng.normal(size=(10 + i, 16)).astype(np.float32) for i in range(3)}
    for cid in vectors:
        np.save(utt / f"{cid}.npy", vectors[cid])
        np.save(frames / f"{cid}.npy", seqs[cid])
    root = tmp_path / "cache"
    assert run("import-npy", utt, "--dataset", "mer", "--feature", "hubert", "--cache", root).exit_code == 0
    assert run("import-npy", frames, "--dataset", "mer", "--feature", "hubert-frames", "--cache", root).exit_code == 0
    feat = open_feature("mer", "hubert", root)
    np.testing.assert_array_equal(feat.array(ids=["sample_1"])[0], vectors["sample_1"])
    seq = open_feature("mer", "hubert-frames", root)
    np.testing.assert_array_equal(seq.sequence("sample_2"), seqs["sample_2"])
    np.testing.assert_allclose(seq.array(ids=["sample_2"])[0], seqs["sample_2"].mean(0), rtol=1e-6)
    # the same folder again is a no-op; other content under the same name is refused
    assert run("import-npy", utt, "--dataset", "mer", "--feature", "hubert", "--cache", root).exit_code == 0
    np.save(utt / "sample_0.npy", np.zeros(768, np.float32))
    refused = run("import-npy", utt, "--dataset", "mer", "--feature", "hubert", "--cache", root)
    assert refused.exit_code == 2 and "another config" in refused.output


def test_rm(cache):
    assert run("rm", "demo", "is09", "--cache", cache).exit_code == 0
    assert not feature_path(cache, "demo", "is09").exists()
    assert run("rm", "demo", "is09", "--cache", cache).exit_code == 2  # refused: nothing cached


def test_verify_accepts_masked_frames_but_not_an_empty_good_row(tmp_path):
    w = FeatureWriter(tmp_path, "demo", "faces", "f1", {"config": {}})
    boxes = np.array([[1, 2, 3, 4], [np.nan] * 4], np.float32)  # frame 2 had no face
    w.put("a", {"descriptor": np.ones(4, np.float32), "boxes": boxes})
    w.put("b", {"descriptor": np.full(4, np.nan, np.float32), "boxes": boxes})  # a bug: nothing inside
    w.merge()
    out = run("verify", "--cache", tmp_path)
    assert out.exit_code == 1
    assert "array descriptor: no value for clips not marked failed: ['b']" in out.output
    assert "array boxes" not in out.output


def test_import_npy_reads_merbench_folders_by_their_names(tmp_path):
    """MERTools' scripts name a folder <model>-UTT / -FRA (<set>_UTT for handcrafted sets) and squeeze
    each array: a -FRA folder whose clips all have 2 frames (Whisper's encoder output there) is
    frame level, not [L, D] layers; a one-frame clip saved as [D] is one frame; an unreadable file
    fails that clip only, named."""
    rng = np.random.default_rng(0)
    root, fra, utt = tmp_path / "cache", tmp_path / "whisper-base-FRA", tmp_path / "eGeMAPS_UTT"
    fra.mkdir(), utt.mkdir()
    frames = {f"s{i}": rng.normal(size=(2, 8)).astype(np.float32) for i in range(3)}
    frames["s3"] = rng.normal(size=8).astype(np.float32)  # one frame, squeezed
    for cid, value in frames.items():
        np.save(fra / f"{cid}.npy", value)
        np.save(utt / f"{cid}.npy", rng.normal(size=88).astype(np.float32))
    (utt / "s2.npy").write_bytes((utt / "s2.npy").read_bytes()[:60])  # cut short
    two = run("import-npy", fra, utt, "--dataset", "mer", "--feature", "x", "--cache", root)
    assert two.exit_code == 2 and "--feature x" in two.output and "2 folders" in two.output
    done = run("import-npy", fra, utt, "--dataset", "mer", "--cache", root)
    assert done.exit_code == 0, done.output
    seq = open_feature("mer", "whisper-base-fra", root)
    assert seq.sequence_keys and seq.sequence("s1").shape == (2, 8)
    np.testing.assert_array_equal(seq.sequence("s3"), frames["s3"][None])
    egemaps = open_feature("mer", "egemaps_utt", root)
    assert egemaps.array().shape == (4, 88) and egemaps.ok_ids() == ["s0", "s1", "s3"]
    assert "s2.npy: cannot be read" in egemaps.failures()["s2"] and "1 failed" in done.output
