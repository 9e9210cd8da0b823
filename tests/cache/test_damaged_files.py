"""A damaged file is found and named, never read as other values: bytes overwritten anywhere in a
feature file or a clip table, a file cut short, a feature whose every clip failed."""
import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from cache import DamagedFile, FeatureReader, FeatureWriter, open_clips, open_features, write_clips
from cache.__main__ import main as cache_main
from cache.hdf5 import named
from cache.store import read_sources
from cache.verify import verify_clips, verify_file
from manifests import Clip, Manifest

IDS = [f"clip{i:02d}" for i in range(6)]


def write_feature(root):
    """A small feature file holding every kind of value: per-layer, utterance-level, integer and
    string arrays, a ragged sequence, a failed clip with its reason, sources, provenance."""
    w = FeatureWriter(root, "d", "mixed", "fp1", {"extractor": "test", "config": {"n": 3}},
                      sources={cid: f"size={100 + i};mtime=7" for i, cid in enumerate(IDS)})
    rng = np.random.default_rng(0)
    for i, cid in enumerate(IDS):
        if i == 4:
            w.put(cid, status="failed", reason="no audio stream in clip04.mp4")
            continue
        w.put(cid, {"layers": rng.normal(size=(3, 4)).astype(np.float32), "stats": rng.normal(size=5),
                    "n": np.int32(i), "text": np.array(f"clip {cid} said hello")},
              {"frames": rng.normal(size=(i + 1, 2)).astype(np.float32)})
    w.merge()
    return w.path


def read_everything(path) -> dict:
    """Every value a reader hands out: ids, status, reasons, sources, provenance, every array (the
    usable rows of integer ones), every clip's sequence, a layer selection."""
    with FeatureReader(path) as f:
        out = {"ids": f.ids, "status": f.status, "reasons": f.reasons, "provenance": f.provenance,
               "attrs": {k: v for k, v in f.attrs.items() if k != "provenance"}}
        for key in f.keys:
            out[key] = f.array(key, ids=f.ok_ids())
        out["layers 2,0"] = f.array("layers", layers=[2, 0])
        out["frames"] = [f.sequence(cid, "frames") for cid in f.ids]
    with named(path), h5py.File(path, "r") as h:
        out["sources"] = read_sources(h)
    return out


def same(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and a and isinstance(a[0], np.ndarray):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray):
        return a.shape == b.shape and a.dtype == b.dtype and (
            a.tolist() == b.tolist() if a.dtype == object else np.array_equal(a, b, equal_nan=True))
    return a == b


def damage_at(data: bytes, offset: int, width: int = 4) -> bytes:
    out = bytearray(data)
    for i in range(offset, min(offset + width, len(out))):
        out[i] ^= 0x5A
    return bytes(out)


def test_bytes_overwritten_anywhere_are_named_never_read_as_other_values(tmp_path):
    path = write_feature(tmp_path)
    original, data = read_everything(path), path.read_bytes()
    damaged = tmp_path / "d" / "damaged.h5"
    heap = [data.find(s) for s in (b"clip clip03 said", b"no audio stream", b"size=103", b'"extractor"', b"clip05")]
    assert min(heap) >= 0  # the strings (values and attributes) live in the file's global heap
    offsets = sorted(set(range(0, len(data), 71)) | set(heap))  # ~140 places: headers, arrays, heap
    outcomes = {"same": 0, "named": 0}
    for offset in offsets:
        damaged.write_bytes(damage_at(data, offset))
        try:
            values = read_everything(damaged)
        except DamagedFile as err:
            assert f"damaged file {damaged}: " in str(err) and "python -m cache verify" in str(err)
            assert "--overwrite" in str(err)
            outcomes["named"] += 1
            assert verify_file(damaged).problems, f"verify missed the damage at byte {offset}"
            continue
        assert same(values, original), f"bytes {offset}..{offset + 3} changed what was read, silently"
        outcomes["same"] += 1
    assert outcomes["named"] > len(offsets) // 3, outcomes  # most bytes of a small file carry values
    for offset in heap:  # a string changed in the heap, where HDF5 has no checksum, is found too
        damaged.write_bytes(damage_at(data, offset))
        with pytest.raises(DamagedFile, match="do not match their checksum"):
            read_everything(damaged)


def test_a_changed_value_is_found_by_verify_and_by_the_readers(tmp_path):
    path = write_feature(tmp_path)
    with h5py.File(path, "r") as f:
        stats = f["arrays/stats"][()]
    data = path.read_bytes()
    at = data.find(stats[2].tobytes())  # a value of the middle clip, as the issue saw in egemaps.h5
    path.write_bytes(data[:at] + np.float64(2.5e38).tobytes() + data[at + 8:])
    with pytest.raises(DamagedFile, match="a block of /arrays/stats fails its checksum"):
        FeatureReader(path).array("stats")
    with pytest.raises(DamagedFile, match="mixed.h5"):
        open_features("d", ["mixed#stats"], root=tmp_path).arrays()
    out = CliRunner().invoke(cache_main, ["verify", "--cache", str(tmp_path)])
    assert out.exit_code == 1 and "BAD  d/mixed.h5" in out.output, out.output
    assert "a block of /arrays/stats fails its checksum" in out.output


def test_a_truncated_file_is_named_by_every_reader(tmp_path):
    path = write_feature(tmp_path)
    write_clips(Manifest("d", [Clip(cid, "train", label="happy") for cid in IDS]), root=tmp_path)
    table = tmp_path / "d" / "_clips.h5"
    for victim in (path, table):
        victim.write_bytes(victim.read_bytes()[:victim.stat().st_size // 2])
        with pytest.raises(DamagedFile, match=r"truncated: \d+ of its \d+ bytes are there"):
            (FeatureReader(path) if victim == path else open_clips("d", tmp_path))
    with pytest.raises(DamagedFile, match=f"damaged file {path}: truncated"):
        open_features("d", ["mixed"], root=tmp_path)
    clips = CliRunner().invoke(cache_main, ["clips", "d", "--cache", str(tmp_path)])
    assert clips.exit_code == 1 and f"damaged file {table}: truncated" in clips.output, clips.output
    assert "cache clips d --replace-clips" in clips.output and "Traceback" not in clips.output
    out = CliRunner().invoke(cache_main, ["verify", "--cache", str(tmp_path)])
    assert out.exit_code == 1 and "BAD  d/_clips.h5" in out.output and "BAD  d/mixed.h5" in out.output


def test_a_damaged_clip_table_is_found_by_verify(tmp_path):
    write_clips(Manifest("d", [Clip(cid, "train", label="happy", valence=1.0) for cid in IDS]), root=tmp_path)
    table = tmp_path / "d" / "_clips.h5"
    good = CliRunner().invoke(cache_main, ["verify", "--cache", str(tmp_path)])
    assert good.exit_code == 0 and "ok   d/_clips.h5" in good.output, good.output
    data = table.read_bytes()
    at = data.find(np.float64(1.0).tobytes() * 2)  # the valence column
    table.write_bytes(damage_at(data, at + 8))
    with pytest.raises(DamagedFile, match="a block of /valence fails its checksum"):
        open_clips("d", tmp_path)
    bad = CliRunner().invoke(cache_main, ["verify", "--cache", str(tmp_path)])
    assert bad.exit_code == 1 and "BAD  d/_clips.h5" in bad.output


def test_ls_and_info_list_the_others_and_mark_the_damaged_one(tmp_path):
    path = write_feature(tmp_path)
    other = FeatureWriter(tmp_path, "d", "other", "fp2", {"extractor": "test", "config": {}})
    other.put("a", {"x": np.ones(2, np.float32)})
    other.merge()
    path.write_bytes(path.read_bytes()[:3000])
    ls = CliRunner().invoke(cache_main, ["ls", "--cache", str(tmp_path)])
    assert ls.exit_code == 1, ls.output
    rows = {line.split()[1]: line for line in ls.output.splitlines()[1:] if line.startswith("d ")}
    assert "DAMAGED: truncated: 3000 of its" in rows["mixed"] and rows["other"].split()[2:4] == ["1", "2"]
    info = CliRunner().invoke(cache_main, ["info", "d", "mixed", "--cache", str(tmp_path)])
    assert info.exit_code == 1 and f"damaged file {path}: truncated" in info.output
    assert "Traceback" not in ls.output + info.output


def test_a_feature_whose_every_clip_failed_says_so(tmp_path):
    w = FeatureWriter(tmp_path, "d", "faces", "fp", {"extractor": "test", "config": {}})
    w.put("a", status="failed", reason="no face detected in 16 sampled frames")
    w.put("b", status="failed", reason="no face detected in 12 sampled frames")
    w.merge()
    feat = FeatureReader(w.path)
    with pytest.raises(ValueError, match="all 2 of its clips failed, so it holds no array; the first "
                                         "failure: no face detected in 16 sampled frames"):
        feat.array()
    with pytest.raises(ValueError, match="all 2 of its clips failed"):
        open_features("d", ["faces"], root=tmp_path)
    ls = CliRunner().invoke(cache_main, ["ls", "--cache", str(tmp_path)])
    assert ls.exit_code == 0 and "(every clip failed)" in ls.output, ls.output


def test_an_old_file_without_checksums_still_reads_and_verify_says_so(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    with h5py.File(folder / "old.h5", "w") as f:  # as the cache wrote them before checksums
        f.create_dataset("ids", data=np.array(["a", "b"], dtype=object), dtype=h5py.string_dtype())
        f.create_dataset("status", data=np.zeros(2, np.uint8))
        for name in ("reason", "source"):
            f.create_dataset(name, data=np.array(["", ""], dtype=object), dtype=h5py.string_dtype())
        f.create_dataset("arrays/x", data=np.ones((2, 3), np.float32))
        f.attrs.update(feature="old", dataset="d", fingerprint="f", provenance="{}", primary="x",
                       format="mer-cache/1")
    assert FeatureReader(folder / "old.h5").array().tolist() == [[1, 1, 1]] * 2
    checked = verify_file(folder / "old.h5")
    assert checked.problems == [] and not checked.checksummed
    out = CliRunner().invoke(cache_main, ["verify", "--cache", str(tmp_path)])
    assert out.exit_code == 0 and "ok   d/old.h5  (no checksums: written before they were stored" in out.output
    assert "1 without checksums" in out.output
    assert verify_clips(folder / "old.h5").problems  # not a clip table


def test_ls_skips_a_file_removed_while_listing(tmp_path, monkeypatch):
    path = write_feature(tmp_path)
    gone = path.with_name("gone.h5")  # listed, then removed by a merge or `cache rm` before it is read
    monkeypatch.setattr("cache.__main__.list_features", lambda cache, dataset: [gone, path])
    ls = CliRunner().invoke(cache_main, ["ls", "--cache", str(tmp_path)])
    assert ls.exit_code == 0, ls.output
    assert [line.split()[1] for line in ls.output.splitlines()[1:]] == ["mixed"]


def test_refusals_of_the_cache_commands_exit_2(tmp_path):
    write_feature(tmp_path)
    for args, message in ((["info", "d", "nosuchfeature"], "no cached feature at"),
                          (["rm", "d", "nosuchfeature"], "nothing cached for d/nosuchfeature"),
                          (["clips", "d"], "no clip table for dataset 'd'")):
        out = CliRunner().invoke(cache_main, [*args, "--cache", str(tmp_path)])
        assert out.exit_code == 2 and message in out.output, (args, out.output)
