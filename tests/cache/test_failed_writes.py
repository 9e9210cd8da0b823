"""A write that fails: it fails alone, leaves nothing behind, and what was committed is durable."""
import os
from dataclasses import dataclass

import numpy as np
import pytest
from click.testing import CliRunner

from cache import FeatureWriter, open_feature
from cache.store import OK, Records, write_records
from extract.__main__ import main
from extract.core import base
from tests.conftest import write_table
from tests.media import write_clip


@dataclass(frozen=True)
class NoOptions:
    pass


class OddShape(base.Extractor):
    """RMS and length of each clip; the clip named 'odd' gets a third value (an extractor's bug)."""

    name, dims, description, Config = "test-odd-shape", "2", "test only", NoOptions

    def extract(self, clip, media):
        rms = float(np.sqrt(np.mean(media.audio ** 2)))
        values = [rms, len(media.audio)] + ([0.0] if clip.id == "odd" else [])
        return base.Output(arrays={"rms": np.array(values, np.float32)})


@pytest.fixture
def corpus(tmp_path, speech_16k):
    rows = []
    for i, cid in enumerate(["clip1", "clip2", "odd", "zed"]):
        write_clip(tmp_path / f"{cid}.wav", speech_16k[:8000] * (0.2 + 0.1 * i))
        rows.append(dict(id=cid, path=f"{cid}.wav", split="train"))
    return write_table(tmp_path / "clips.csv", rows)


def extract(corpus, cache, features, *more):
    return CliRunner().invoke(main, ["--dataset", "b", "--clips", str(corpus), "--features", features,
                                     "--cache", str(cache), "--quiet", *more])


def test_a_clip_of_another_shape_fails_alone_and_the_run_goes_on(corpus, tmp_path, monkeypatch):
    monkeypatch.setitem(base.REGISTRY, OddShape.name, OddShape)
    result = extract(corpus, tmp_path / "cache", f"{OddShape.name},mfcc")
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    reason = "test-odd-shape: array 'rms' has shape (3,), the other clips (2,)"
    assert f"FAILED odd [{OddShape.name}]: {reason}" in result.output
    odd = open_feature("b", OddShape.name, tmp_path / "cache")
    assert odd.failures() == {"odd": reason} and odd.shape == (4, 2)
    assert np.isnan(odd.array(ids=["odd"])).all() and odd.array(ids=["zed"])[0, 1] == 8000
    assert open_feature("b", "mfcc", tmp_path / "cache").status == ["ok"] * 4  # the other feature: whole


def test_a_writer_that_cannot_commit_keeps_no_other_from_committing(corpus, tmp_path):
    cache = tmp_path / "cache"
    (cache / "b").mkdir(parents=True)
    (cache / "b" / "mfcc.parts").write_text("not a folder")  # mfcc's parts cannot be written
    result = extract(corpus, cache, "mfcc,logmel", "--flush-every", "100")  # all commit at the end
    assert isinstance(result.exception, FileExistsError), result.output
    logmel = FeatureWriter(cache, "b", "logmel", "", {})
    assert logmel.done_ids() == {"clip1", "clip2", "odd", "zed"}  # committed despite mfcc's failure
    assert sorted(p.name for p in (cache / "b").iterdir()) == ["_clips.h5", "extract.log", "logmel.parts", "mfcc.parts"]


def test_a_failed_flush_keeps_its_clips_for_the_next(tmp_path):
    w = FeatureWriter(tmp_path, "b", "x", "f1", {}, flush_every=100)
    w.put("a", {"x": np.ones(2)})
    w.parts.parent.mkdir(parents=True, exist_ok=True)
    w.parts.write_text("in the way")
    with pytest.raises(FileExistsError):
        w.flush()
    w.parts.unlink()
    w.flush()  # the cause is gone: the same clips commit
    assert w.done_ids() == {"a"}


def test_a_failed_write_leaves_no_temporary_and_replaces_nothing(tmp_path):
    records = Records()
    records.add("a", {"t": np.array("\udc80", dtype=object)}, None, OK, "")  # not storable as UTF-8
    path = tmp_path / "x.h5"
    path.write_bytes(b"committed before")
    with pytest.raises(UnicodeEncodeError):
        write_records(path, records, {})
    assert os.listdir(tmp_path) == ["x.h5"] and path.read_bytes() == b"committed before"


def test_a_commit_is_fsynced_before_and_after_its_rename(tmp_path, monkeypatch):
    events, real_fsync, real_replace = [], os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("rename", str(src), str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    w = FeatureWriter(tmp_path, "b", "x", "f1", {})
    w.put("a", {"x": np.ones(2)})
    w.flush()
    (part,) = w.committed_files()
    w.merge()
    renames = {}
    for final, folder in ((part, w.parts), (w.path, w.path.parent)):  # a part, then the feature file
        renames[final] = at = next(i for i, e in enumerate(events) if e[0] == "rename" and e[2] == str(final))
        assert events[at - 1] == ("fsync", events[at][1])  # the data is on disk before its name is
        assert events[at + 1] == ("fsync", str(folder))  # and the name is on disk after the rename
    assert ("fsync", str(w.path.parent)) in events[:renames[part]]  # so is the new parts folder
