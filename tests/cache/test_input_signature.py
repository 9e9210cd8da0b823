"""A clip's input signature: a file replaced by one of the same size is extracted again; an
untouched file never is; a cache written before modification times were recorded stays valid."""
import os

import numpy as np
from click.testing import CliRunner

from cache import FeatureWriter, open_feature
from extract.__main__ import main
from manifests import load_manifest
from tests.media import write_clip


def extract(corpus, cache):
    result = CliRunner().invoke(main, ["--dataset", "mine", "--clips", str(corpus), "--features", "egemaps",
                                       "--cache", str(cache), "--quiet"])
    assert result.exit_code == 0, result.output
    return result.output


def test_a_file_replaced_by_one_of_the_same_size_is_extracted_again(folder_corpus, tmp_path, speech_16k):
    cache, wav = tmp_path / "cache", folder_corpus.parent / "c.wav"
    first = load_manifest("mine", clips=folder_corpus)["c"].signature(("audio",))
    assert "extracted 3 clips" in extract(folder_corpus, cache)
    assert load_manifest("mine", clips=folder_corpus)["c"].signature(("audio",)) == first
    assert "extracted 0 clips" in extract(folder_corpus, cache)  # untouched: nothing again
    before = open_feature("mine", "egemaps", cache).array(ids=["c"])[0]
    size, stamp = wav.stat().st_size, wav.stat().st_mtime_ns
    write_clip(wav, speech_16k[::-1].copy())  # a re-processed take: other samples, same length
    os.utime(wav, ns=(stamp + 10**9, stamp + 10**9))  # one second later, as a copy would be
    assert wav.stat().st_size == size
    assert "extracted 1 clips" in extract(folder_corpus, cache)
    after = open_feature("mine", "egemaps", cache).array(ids=["c"])[0]
    assert not np.allclose(after, before)


def test_a_cache_of_the_older_signature_form_stays_valid_and_is_brought_up_to_date(tmp_path):
    old = FeatureWriter(tmp_path, "mine", "x", "f1", {}, sources={"a": "size=10", "b": "size=20;text=ab12"})
    old.put("a", {"x": np.ones(2)}), old.put("b", {"x": np.ones(2)})
    assert old.merge()
    now = {"a": "size=10;mtime=111", "b": "size=20;mtime=222;text=ab12", "c": "size=30;mtime=333"}
    new = FeatureWriter(tmp_path, "mine", "x", "f1", {}, sources=now)
    assert new.done_ids() == {"a", "b"}  # not extracted again whole
    changed = FeatureWriter(tmp_path, "mine", "x", "f1", {}, sources=now | {"a": "size=11;mtime=111"})
    assert changed.done_ids() == {"b"}  # a size that differs still tells
    new.put("c", {"x": np.ones(2)})
    assert new.merge()
    with open_feature("mine", "x", tmp_path) as feat:  # the merge records today's signatures
        assert list(feat._file["source"].asstr()[()]) == [now["a"], now["b"], now["c"]]
