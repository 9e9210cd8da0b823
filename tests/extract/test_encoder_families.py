"""The whisper:, video: and llm: families through the command line: listed, extracted into the
cache from real mp4 clips with tiny stand-ins, and ssl: refusing a Whisper model before any work."""
import math

import pytest
from click.testing import CliRunner

from cache import open_feature
from extract.__main__ import main
from extract.core.media import decode
from extract.stand_ins import build_stand_ins
from tests.conftest import write_table
from tests.media import face_frames, write_clip


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    build_stand_ins(root, only=("tiny-whisper", "tiny-videomae", "tiny-llama"))
    return root


@pytest.fixture
def corpus(tmp_path, speech_16k):
    write_clip(tmp_path / "a.mp4", speech_16k, 16000, 1, face_frames(20))
    write_clip(tmp_path / "b.mp4", speech_16k[:16000], 16000, 1, face_frames(8))
    rows = [dict(id="a", path="a.mp4", split="train", label="happy", valence="2", text="so glad, what a day"),
            dict(id="b", path="b.mp4", split="test", text="no.")]
    return write_table(tmp_path / "clips.csv", rows)


def extract(*args, cache):
    result = CliRunner().invoke(main, [*args, "--cache", str(cache), "--quiet"])
    assert "Traceback" not in result.output, result.output
    return result


def test_list_shows_the_new_families_and_their_presets():
    lines = {line.split()[0]: line for line in CliRunner().invoke(main, ["--list"]).output.splitlines()}
    assert {"whisper:<id", "video:<id", "llm:<id"} <= {name.split()[0] for name in lines}
    assert "33 x 1280" in lines["whisper-large-v3"] and "13 x 768" in lines["videomae-base"]
    assert "4 x 5120" in lines["llama-2-13b"]


def test_the_new_families_extract_every_clip_into_the_cache(models, corpus, tmp_path):
    cache = tmp_path / "cache"
    features = f"whisper:{models}/tiny-whisper,video:{models}/tiny-videomae,llm:{models}/tiny-llama"
    result = extract("--dataset", "mine", "--clips", str(corpus), "--features", features,
                     "--set", f"llm:{models}/tiny-llama.layers=1,3", cache=cache)
    assert result.exit_code == 0, result.output
    assert "0 failed" in result.output and result.output.count("NOT pretrained") == 3
    whisper = open_feature("mine", "whisper:tiny-whisper", cache)
    assert whisper.shape == (2, 3, 32)
    decoded = len(decode(corpus.parent / "b.mp4").audio)  # 1 s, and AAC's few hundred samples of padding
    assert whisper.array("n_frames", ids=["b"])[0] == math.ceil(decoded / 320) < 60  # not the 30 s padding
    assert open_feature("mine", "video:tiny-videomae", cache).shape == (2, 3, 32)
    llm = open_feature("mine", "llm:tiny-llama", cache)
    assert llm.shape == (2, 2, 32) and llm.array("last").shape == (2, 2, 32)


def test_ssl_refuses_a_whisper_model_before_any_work(models, corpus, tmp_path):
    result = extract("--dataset", "mine", "--clips", str(corpus), "--features", f"ssl:{models}/tiny-whisper",
                     cache=tmp_path / "cache")
    assert result.exit_code == 2
    assert "is a Whisper model" in result.output and f"use whisper:{models}/tiny-whisper" in result.output
    assert not list((tmp_path / "cache").rglob("*.h5"))
