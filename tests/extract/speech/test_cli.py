"""`python -m extract --features ssl:<folder>` end to end: values, bad clips, workers, provenance."""
import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from cache import open_feature
from extract.__main__ import main
from extract.core.media import decode
from tests.conftest import write_table
from tests.media import write_clip

from .conftest import frames_of, reference_hidden_states

SECONDS = {"short": 0.5, "mid": 1.2, "long": 2.6, "tiny": 0.01, "brief": 0.06, "silent": 1.0}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, speech_16k):
    """Speech clips of several lengths, a silent one and one too short for any frame (0.01 s)."""
    folder = tmp_path_factory.mktemp("speech-corpus")
    rows = []
    for i, (cid, seconds) in enumerate(SECONDS.items()):
        audio = np.zeros(int(seconds * 16000), np.float32) if cid == "silent" else \
            np.resize(speech_16k, int(seconds * 16000)) * (0.5 + 0.1 * i)
        write_clip(folder / f"{cid}.wav", audio)
        rows.append(dict(id=cid, path=f"{cid}.wav", split="train"))
    return write_table(folder / "clips.csv", rows)


def extract(corpus, cache, model, *args):
    result = CliRunner().invoke(main, ["--dataset", "sp", "--clips", str(corpus), "--cache", str(cache),
                                       "--features", f"hubert=ssl:{model}", "--set", "hubert.store_dtype=float32",
                                       "--set", "hubert.window_seconds=2", "--batch-seconds", "3", "--quiet", *args])
    assert "Traceback" not in result.output, result.output
    return result


def test_every_layer_of_every_clip_matches_transformers(corpus, tmp_path, model_dir):
    result = extract(corpus, tmp_path, model_dir["tiny-hubert"], "--set", "hubert.std=true")
    assert result.exit_code == 1, result.output  # the 0.01 s clip failed; the run went on
    feat = open_feature("sp", "hubert", tmp_path)
    assert feat.shape == (6, 3, 32) and feat.keys == ["mean", "n_frames", "std"]
    assert feat.failures() == {"tiny": "ssl failed: ClipError: clip too short for tiny-hubert: 0.010 s "
                                       "gives no frame (needs at least 0.025 s)"}
    assert feat.status_of("silent") == ("flagged", "silent audio")
    assert np.isfinite(feat.array(ids=["silent"])).all()
    for cid in ("short", "mid", "brief"):  # one window each, batched with padding
        audio = decode(corpus.parent / f"{cid}.wav").audio
        hidden = reference_hidden_states(model_dir["tiny-hubert"], audio)
        assert feat.array("n_frames", ids=[cid])[0] == frames_of(len(audio)) == hidden.shape[1]
        np.testing.assert_allclose(feat.array(ids=[cid])[0], hidden.mean(1), atol=1e-4)
        np.testing.assert_allclose(feat.array("std", ids=[cid])[0], hidden.std(1), atol=1e-4)
    assert feat.array("n_frames", ids=["long"])[0] == 2 * frames_of(1.3 * 16000)  # two 1.3 s windows


def test_provenance_names_the_stand_in_and_no_path(corpus, tmp_path, model_dir):
    moved = tmp_path / "elsewhere" / "tiny-hubert"
    shutil.copytree(model_dir["tiny-hubert"], moved)
    extract(corpus, tmp_path / "a", model_dir["tiny-hubert"], "--limit", "1")
    extract(corpus, tmp_path / "b", moved, "--limit", "1")
    a, b = open_feature("sp", "hubert", tmp_path / "a"), open_feature("sp", "hubert", tmp_path / "b")
    assert a.attrs["fingerprint"] == b.attrs["fingerprint"]  # moving the model folder keeps the cache valid
    provenance = a.provenance
    assert "random-initialised stand-in, NOT pretrained" in provenance["model"]["stand_in"]
    assert provenance["model"]["model"] == "tiny-hubert" and len(provenance["model"]["weights_sha256"]) == 16
    assert provenance["layers"] == 3 and provenance["feat_extract_norm"] == "layer"
    assert provenance["pooling"] == "mean over valid frames" and provenance["store_dtype"] == "float32"
    assert str(tmp_path) not in json.dumps(provenance, default=str)


def test_group_norm_model_with_two_workers_equals_one_worker(corpus, tmp_path, model_dir):
    one = extract(corpus, tmp_path / "one", model_dir["tiny-wav2vec2"])
    two = extract(corpus, tmp_path / "two", model_dir["tiny-wav2vec2"], "--workers", "2")
    assert one.exit_code == two.exit_code == 1, two.output
    a, b = open_feature("sp", "hubert", tmp_path / "one"), open_feature("sp", "hubert", tmp_path / "two")
    assert a.ids == b.ids and a.status == b.status
    np.testing.assert_allclose(a.array(), b.array(), atol=1e-5)  # decoded ahead in workers, same values


def test_float16_compute_on_cpu_is_refused_clearly(corpus, tmp_path, model_dir):
    result = CliRunner().invoke(main, ["--dataset", "sp", "--clips", str(corpus), "--cache", str(tmp_path),
                                       "--features", f"ssl:{model_dir['tiny-hubert']}", "--dtype", "float16"])
    assert result.exit_code == 2, result.output  # a refusal, not a crash
    assert "float16 autocast is not supported on CPU: use bfloat16 or float32" in result.output
    assert not list(tmp_path.glob("sp/*.parts"))  # refused before any clip
