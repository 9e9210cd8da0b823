"""The clip table in the cache: written at extraction and import, read by stage 2 without the corpus."""
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

import cache.clips
from cache import ClipTable, clips_path, open_clips, open_feature, write_clips
from cache.__main__ import main as cache_main
from extract.__main__ import main as extract_main
from manifests import MER_CLASSES, Clip, Manifest, load_manifest
from manifests.table import NO_CLASS
from tests.conftest import write_table
from tests.media import write_clip


@pytest.fixture
def samsemo_like(tmp_path, speech_16k):
    """A multi-label corpus CSV: two emotions in one cell, spaces and class order as users type them."""
    for name in "abcde":
        write_clip(tmp_path / f"{name}.wav", speech_16k[:4000])
    rows = [dict(id="a", path="a.wav", split="train", label="surprise ; happy", valence="1.5"),
            dict(id="b", path="b.wav", split="train", label="sad", valence="-2"),
            dict(id="c", path="c.wav", split="test", label="", valence=""),
            dict(id="d", path="d.wav", split="train", label="happy;happy", valence=""),
            dict(id="e", path="e.wav", split="test", label="angry;sad", valence="-4")]
    return write_table(tmp_path / "clips.csv", rows)


def test_round_trip_multi_label_and_unlabelled(samsemo_like, tmp_path):
    m = load_manifest("sams", clips=samsemo_like)
    path = write_clips(m, root=tmp_path / "cache", source="test")
    assert path == tmp_path / "cache" / "sams" / "_clips.h5"
    t = open_clips("sams", tmp_path / "cache")
    assert t.ids == list("abcde") and t.splits == {"train": 3, "test": 2}
    assert t.split("test") == ["c", "e"] and t.classes == MER_CLASSES and t.multi_label
    assert t.manifest_fingerprint == m.fingerprint() and t.source == "test"
    y = t.labels()
    expected = np.zeros((5, 6), np.float32)
    for row, names in enumerate([("happy", "surprise"), ("sad",), (), ("happy",), ("angry", "sad")]):
        expected[row, [MER_CLASSES.index(n) for n in names]] = 1
    expected[2] = np.nan
    np.testing.assert_array_equal(y, expected)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(t.valence(["e", "c", "a"]), [-4.0, np.nan, 1.5])
    assert t.labelled().tolist() == [True, True, False, True, True]
    frame = t.to_frame()
    assert frame.loc[frame.id == "a", "label"].item() == "happy;surprise"
    again = pickle.loads(pickle.dumps(t))
    np.testing.assert_array_equal(again.labels(["e", "a"]), y[[4, 0]])
    in_memory = ClipTable.from_manifest(m)  # what a --clips override gives without writing
    np.testing.assert_array_equal(in_memory.labels(), y)
    assert in_memory.split("test") == t.split("test") and in_memory.manifest_fingerprint == t.manifest_fingerprint


def test_single_label_targets_are_class_indices(tmp_path):
    clips = [Clip("s2", "train", label="sad", valence=-1.0), Clip("s1", "train", label="worried"),
             Clip("s3", "test3")]
    write_clips(Manifest("mer", clips), root=tmp_path)
    t = open_clips("mer", tmp_path)
    assert not t.multi_label and t.ids == ["s1", "s2", "s3"]
    y = t.labels(["s3", "s2", "s1"])
    assert y.dtype == np.int64 and y.tolist() == [-1, MER_CLASSES.index("sad"), MER_CLASSES.index("worried")]
    with pytest.raises(KeyError, match="no split 'test1'.*train, test3"):
        t.split("test1")
    with pytest.raises(KeyError, match=r"clips not in the clip table: \['s9'\]"):
        t.valence(["s9"])


def test_an_unknown_class_is_an_error_naming_the_clip(tmp_path):
    clips = [Clip("ok1", "train", label="happy"), Clip("typo", "train", label="hapy")]
    write_clips(Manifest("mer", clips, classes=MER_CLASSES), root=tmp_path)
    t = open_clips("mer", tmp_path)
    assert t.labels(["ok1"]).tolist() == [MER_CLASSES.index("happy")]  # the others still serve
    with pytest.raises(ValueError, match=r"clip typo: label 'hapy' is not one of the classes"):
        t.labels()


def test_none_of_the_classes_is_an_all_negative_multi_label_target(tmp_path):
    """'(none)' (SAMSEMO's fear-only scenes): labelled, a zero row, trained and scored; a CSV may
    write it; a single-label table cannot hold it and names the clip."""
    for name in ("a", "b", "c", "d"):
        write_clip(tmp_path / f"{name}.wav", np.zeros(4000, np.float32))
    rows = [dict(id="a", path="a.wav", split="train", label="happy;sad"),
            dict(id="b", path="b.wav", split="train", label=NO_CLASS),
            dict(id="c", path="c.wav", split="test", label=""),
            dict(id="d", path="d.wav", split="test", label="(none);sad")]
    m = load_manifest("sams", clips=write_table(tmp_path / "clips.csv", rows))
    assert m.classes == MER_CLASSES and m["b"].labels == ()  # (none) is no class
    write_clips(m, root=tmp_path / "cache")
    t = open_clips("sams", tmp_path / "cache")
    assert t.multi_label and t.labelled(["a", "b", "c"]).tolist() == [True, True, False]
    y = t.labels(["a", "b", "c"])
    assert y[1].tolist() == [0] * 6 and np.isnan(y[2]).all() and y[0].sum() == 2
    with pytest.raises(ValueError, match=r"clip d: label '\(none\);sad' is not one of the classes"):
        t.labels(["d"])
    out = CliRunner().invoke(cache_main, ["clips", "sams", "--cache", str(tmp_path / "cache")])
    assert "happy 1, sad 2, worried 0, surprise 0, none of them 1" in out.output, out.output
    single = ClipTable("mer", ["x", "y"], ["train", "train"], ["happy", NO_CLASS], [np.nan, np.nan],
                       MER_CLASSES, False, "fp")
    with pytest.raises(ValueError, match=r"clip y: label '\(none\)' \(none of the classes\) is an all-negative "
                                         "target: only a multi-label table has one"):
        single.labels()


def test_a_missing_table_says_how_to_make_one(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"python -m extract --dataset nope.*cache clips nope"):
        open_clips("nope", tmp_path)


def test_a_failed_write_keeps_the_old_table_and_leaves_no_temporary(tmp_path, monkeypatch):
    write_clips(Manifest("d", [Clip("a", "train", label="sad")]), root=tmp_path)
    before = open_clips("d", tmp_path).manifest_fingerprint

    def half_then_fail(f, table):
        f.create_dataset("ids", data=np.array(["a", "b"], dtype=object), dtype=h5py.string_dtype())
        raise OSError("disk full")

    monkeypatch.setattr(cache.clips, "_write_columns", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        write_clips(Manifest("d", [Clip("a", "train"), Clip("b", "test")]), root=tmp_path)
    assert open_clips("d", tmp_path).manifest_fingerprint == before
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["_clips.h5"]


WRITER = textwrap.dedent("""
    import sys
    from cache import write_clips
    from manifests import Clip, Manifest
    n = 0
    while True:  # rewrite a large table until killed
        n += 1
        clips = [Clip(f"c{i:06d}", "train", label="happy", valence=float(n)) for i in range(40000)]
        write_clips(Manifest("big", clips), root=sys.argv[1])
        print(n, flush=True)
""")


def test_kill_9_while_writing_leaves_a_complete_table(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                            cwd=os.getcwd())
    assert proc.stdout.readline().strip() == "1"  # one table complete
    time.sleep(0.3)  # now most likely in the middle of a later write
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    t = open_clips("big", tmp_path)
    assert len(t) == 40000 and len(set(t.valence())) == 1  # one whole write, never a mix
    write_clips(Manifest("big", [Clip("x", "train")]), root=tmp_path, replace=True)  # the next write tidies up
    assert [p.name for p in (tmp_path / "big").iterdir()] == ["_clips.h5"]


def test_extraction_writes_the_table_of_every_clip(folder_corpus, tmp_path):
    root = tmp_path / "cache"
    result = CliRunner().invoke(extract_main, ["--dataset", "mine", "--clips", str(folder_corpus), "--features",
                                               "egemaps", "--limit", "1", "--cache", str(root), "--quiet"])
    assert result.exit_code == 0, result.output
    t = open_clips("mine", root)
    assert t.ids == ["a", "b", "c"] and t.splits == {"train": 2, "test": 1}  # --limit: the table is whole
    assert t.labelled().tolist() == [True, True, False] and t.source == "extract"
    assert t.manifest_fingerprint == open_feature("mine", "egemaps", root).provenance["manifest_fingerprint"]
    listed = CliRunner().invoke(cache_main, ["ls", "--cache", str(root)]).output
    assert [line.split()[1] for line in listed.splitlines()[1:]] == ["egemaps"]  # the table is no feature
    shown = CliRunner().invoke(cache_main, ["clips", "mine", "--cache", str(root)]).output
    assert "mine: 3 clips, single-label" in shown
    assert [line.split() for line in shown.splitlines() if line.strip().startswith(("train", "test"))] == \
        [["train", "2", "2", "2"], ["test", "1", "0", "0"]]


def test_import_npy_writes_the_table_with_clips_or_says_how(samsemo_like, tmp_path):
    npy = tmp_path / "npy"
    npy.mkdir()
    for cid in "abcz":
        np.save(npy / f"{cid}.npy", np.full(4, ord(cid), np.float32))
    root = tmp_path / "cache"
    run = CliRunner().invoke
    bare = run(cache_main, ["import-npy", str(npy), "--dataset", "sams", "--feature", "f", "--cache", str(root)])
    assert bare.exit_code == 0 and "no clip table written" in bare.output and "--clips" in bare.output
    assert not clips_path("sams", root).exists()
    refused = run(cache_main, ["import-npy", str(npy), "--dataset", "sams", "--feature", "g", "--cache", str(root),
                               "--clips", str(tmp_path / "nope.csv")])
    assert refused.exit_code == 2 and "does not exist" in refused.output
    assert not (root / "sams" / "g.h5").exists()  # refused before any work
    done = run(cache_main, ["import-npy", str(npy), "--dataset", "sams", "--feature", "g", "--cache", str(root),
                            "--clips", str(samsemo_like)])
    assert done.exit_code == 0, done.output
    assert "1 imported clips are not in the clip table (never used): ['z']" in done.output
    assert "2 clips of the clip table have no imported value: ['d', 'e']" in done.output
    t = open_clips("sams", root)
    assert t.multi_label and t.source == "import-npy --clips clips.csv"
    assert open_feature("sams", "g", root).provenance["manifest_fingerprint"] == t.manifest_fingerprint


def test_cache_clips_writes_or_replaces_the_table(samsemo_like, tmp_path):
    root = tmp_path / "cache"
    write_clips(Manifest("sams", [Clip("old", "train")]), root=root)
    kept = CliRunner().invoke(cache_main, ["clips", "sams", "--clips", str(samsemo_like), "--cache", str(root)])
    assert kept.exit_code == 2 and "holds 1 clips this corpus lacks (old)" in kept.output, kept.output
    assert "--replace-clips" in kept.output and open_clips("sams", root).ids == ["old"]  # never a side effect
    out = CliRunner().invoke(cache_main, ["clips", "sams", "--clips", str(samsemo_like), "--replace-clips",
                                          "--cache", str(root)])
    assert out.exit_code == 0, out.output
    assert "sams: 5 clips, multi-label" in out.output and "happy 2, sad 2" in out.output
    assert open_clips("sams", root).ids == list("abcde")
    missing = CliRunner().invoke(cache_main, ["clips", "other", "--cache", str(root)])
    assert missing.exit_code == 2 and "no clip table for dataset 'other'" in missing.output
