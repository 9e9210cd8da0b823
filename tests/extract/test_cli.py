"""`python -m extract` end to end on small real corpora."""
import math

import numpy as np
import opensmile
import pytest
import soundfile
from click.testing import CliRunner

from cache import open_feature
from extract.__main__ import main
from tests.conftest import write_table
from tests.media import face_frames, write_clip


def extract(*args, cache):
    result = CliRunner().invoke(main, [*args, "--cache", str(cache), "--quiet"])
    assert "Traceback" not in result.output, result.output
    return result


def test_list_prints_one_line_per_feature_name_first():
    result = CliRunner().invoke(main, ["--list"])
    names = [line.split()[0] for line in result.output.splitlines()]
    assert {"is09", "is10", "egemaps", "mfcc", "logmel", "e2el-spectrogram"} <= set(names)
    assert "384" in next(l for l in result.output.splitlines() if l.startswith("is09"))


def test_unknown_feature_is_refused_before_any_work(folder_corpus, tmp_path):
    result = extract("--dataset", "mine", "--clips", str(folder_corpus), "--features", "is09,is11",
                     cache=tmp_path / "cache")
    assert result.exit_code == 2
    assert "unknown feature 'is11'" in result.output and "egemaps" in result.output
    assert not (tmp_path / "cache").exists()


def test_features_have_the_documented_shapes_and_values(folder_corpus, tmp_path):
    cache = tmp_path / "cache"
    result = extract("--dataset", "mine", "--clips", str(folder_corpus),
                     "--features", "is09,egemaps,mfcc,e2el-spectrogram", cache=cache)
    assert result.exit_code == 0, result.output
    assert open_feature("mine", "is09", cache).shape == (3, 384)
    assert open_feature("mine", "egemaps", cache).shape == (3, 88)
    # independent computation on the WAV clip (16 kHz PCM decodes exactly)
    audio, rate = soundfile.read(folder_corpus.parent / "c.wav", dtype="float32")
    smile = opensmile.Smile(opensmile.FeatureSet.eGeMAPSv02, opensmile.FeatureLevel.Functionals)
    expected = smile.process_signal(audio, rate).to_numpy()[0]
    got = open_feature("mine", "egemaps", cache).array(ids=["c"])[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    mfcc = open_feature("mine", "mfcc", cache)
    assert mfcc.shape == (3, 80)
    frames = mfcc.sequence("c")
    assert frames.shape == (1 + len(audio) // 160, 40)
    np.testing.assert_allclose(mfcc.array(ids=["c"])[0][:40], frames.mean(0), rtol=1e-5)
    pieces = open_feature("mine", "e2el-spectrogram", cache)
    assert pieces.shape == (3, 32, 128, 32) and pieces.array().dtype == np.float16
    n = pieces.array("n_pieces", ids=["c"])[0]
    assert n == math.ceil((1 + len(audio) // 200) / 32)
    assert (pieces.array(ids=["c"])[0][n:] == 0).all() and (pieces.array(ids=["c"])[0][:n] != 0).any()


def test_stereo_48k_equals_mono_16k_after_resampling(folder_corpus, tmp_path):
    extract("--dataset", "mine", "--clips", str(folder_corpus), "--features", "egemaps", cache=tmp_path)
    feat = open_feature("mine", "egemaps", tmp_path)
    a, b = feat.array(ids=["a", "b"])  # same speech: 16 kHz mono AAC vs 48 kHz stereo AAC
    assert feat.status == ["ok", "ok", "ok"]
    assert np.corrcoef(a, b)[0, 1] > 0.99


@pytest.fixture
def bad_corpus(tmp_path, speech_16k):
    good = write_clip(tmp_path / "good.mp4", speech_16k, frames=face_frames(10))
    whole = good.read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "empty.mp4").write_bytes(b"")
    write_clip(tmp_path / "mute.mp4", None, frames=face_frames(10))
    write_clip(tmp_path / "silent.wav", np.zeros(16000, np.float32))
    rows = [dict(id=i, path=f"{i}.{'wav' if i == 'silent' else 'mp4'}", split="train")
            for i in ("good", "truncated", "empty", "mute", "silent")]
    rows += [dict(id="missing", path="missing.mp4", split="train"),
             dict(id="twice", path="good.mp4", split="train", label="happy"),
             dict(id="twice", path="good.mp4", split="train", label="sad")]
    return write_table(tmp_path / "clips.csv", rows)


def test_bad_clips_are_recorded_and_the_run_goes_on(bad_corpus, tmp_path):
    cache = tmp_path / "cache"
    result = extract("--dataset", "bad", "--clips", str(bad_corpus), "--features", "is09,mfcc", cache=cache)
    assert result.exit_code == 1  # some clips failed: a script can tell
    feat = open_feature("bad", "is09", cache)
    reasons = feat.failures()
    assert set(reasons) == {"truncated", "empty", "mute", "missing", "twice"}
    assert "unreadable or truncated" in reasons["truncated"]
    assert "zero-length file" in reasons["empty"]
    assert "no audio stream in mute.mp4" in reasons["mute"]
    assert "not found" in reasons["missing"]
    assert "duplicate id" in reasons["twice"] and "conflicting" in reasons["twice"]
    assert feat.status_of("silent") == ("flagged", "silent audio")
    assert feat.status_of("good") == ("ok", "")
    assert "FAILED truncated [is09, mfcc]" in result.output
    # resuming does no work twice, keeps what was cached, and still reports the failures
    again = extract("--dataset", "bad", "--clips", str(bad_corpus), "--features", "is09,mfcc", cache=cache)
    assert again.exit_code == 1 and "extracted 0 clips" in again.output
    assert open_feature("bad", "is09", cache).ids == feat.ids


def test_another_config_is_refused_then_allowed_under_a_new_name(folder_corpus, tmp_path):
    args = ["--dataset", "mine", "--clips", str(folder_corpus)]
    assert extract(*args, "--features", "mfcc", cache=tmp_path).exit_code == 0
    refused = extract(*args, "--features", "mfcc", "--set", "mfcc.n_mfcc=20", cache=tmp_path)
    assert refused.exit_code == 2 and "another config" in refused.output and "--overwrite" in refused.output
    renamed = extract(*args, "--features", "mfcc20=mfcc", "--set", "mfcc20.n_mfcc=20", cache=tmp_path)
    assert renamed.exit_code == 0
    assert open_feature("mine", "mfcc20", tmp_path).shape == (3, 40)
    assert open_feature("mine", "mfcc", tmp_path).shape == (3, 80)  # the old one is untouched
    replaced = extract(*args, "--features", "mfcc", "--set", "mfcc.n_mfcc=20", "--overwrite", cache=tmp_path)
    assert replaced.exit_code == 0 and open_feature("mine", "mfcc", tmp_path).shape == (3, 40)


def test_shards_and_limit_build_one_feature(folder_corpus, tmp_path):
    args = ["--dataset", "mine", "--clips", str(folder_corpus), "--features", "egemaps"]
    assert extract(*args, "--limit", "2", cache=tmp_path).exit_code == 0
    assert open_feature("mine", "egemaps", tmp_path).ids == ["a", "b"]
    first = extract(*args, "--shard", "1/2", cache=tmp_path)
    second = extract(*args, "--shard", "2/2", cache=tmp_path)
    assert first.exit_code == second.exit_code == 0
    feat = open_feature("mine", "egemaps", tmp_path)
    assert feat.ids == ["a", "b", "c"] and not np.isnan(feat.array()).any()
    assert "extracted 0 clips" in first.output + second.output  # a and b were already cached


def test_a_missing_corpus_folder_is_a_clear_refusal(tmp_path):
    result = extract("--dataset", "mer2023", "--root", str(tmp_path / "nope"), "--features", "is09",
                     cache=tmp_path)
    assert result.exit_code == 2 and "does not exist" in result.output


def test_a_clip_whose_file_changed_is_extracted_again(folder_corpus, tmp_path, speech_16k):
    args = ["--dataset", "mine", "--clips", str(folder_corpus), "--features", "egemaps"]
    assert extract(*args, cache=tmp_path).exit_code == 0
    before = open_feature("mine", "egemaps", tmp_path).array(ids=["a", "c"])
    write_clip(folder_corpus.parent / "c.wav", speech_16k[: len(speech_16k) // 2])  # a new take of c
    again = extract(*args, cache=tmp_path)
    assert again.exit_code == 0 and "extracted 1 clips" in again.output
    after = open_feature("mine", "egemaps", tmp_path)
    assert after.ids == ["a", "b", "c"]
    np.testing.assert_array_equal(after.array(ids=["a"])[0], before[0])
    assert not np.allclose(after.array(ids=["c"])[0], before[1])


@pytest.mark.parametrize("setting, message", [
    ("vis.store_dtype=float64", "store_dtype 'float64': choose one of"),
    ("vis.max_frames=many", "vision:some/model: option max_frames='many' is not an integer"),
    ("vis.colour=red", "has no option 'colour'"),
])
def test_bad_option_values_are_refused_before_any_work(folder_corpus, tmp_path, setting, message):
    result = extract("--dataset", "mine", "--clips", str(folder_corpus), "--features", "vis=vision:some/model",
                     "--set", setting, cache=tmp_path / "cache")
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "cache").exists()
