"""whisper:<model> on a tiny random-initialised Whisper: layers over the clip's real frames only,
against plain transformers; batches, windows and the refusals between ssl: and whisper:."""
import math

import numpy as np
import pytest
import torch

from extract import stand_ins
from tests.extract.conftest import build_stand_in
from extract.speech.encoders import SpeechModelFeatures
from extract.speech.whisper import WhisperEncoderConfig, WhisperEncoderFeatures

LENGTHS = (0.31, 1.37, 2.0)  # seconds


@pytest.fixture(scope="module")
def tiny_whisper(tmp_path_factory):
    return build_stand_in(tmp_path_factory, "tiny-whisper")


@pytest.fixture(scope="module")
def whisper(tiny_whisper):
    ex = WhisperEncoderFeatures(WhisperEncoderConfig(store_dtype="float32", std=True), source=str(tiny_whisper))
    ex.setup()
    return ex


@pytest.fixture(scope="module")
def clips(speech_16k):
    return [speech_16k[int(0.05 * i * 16000):][: int(s * 16000)] for i, s in enumerate(LENGTHS)]


def encoder_states(folder, audio) -> np.ndarray:
    """float32 [L, 1500, D]: every encoder hidden state of one clip padded to 30 s, by plain transformers."""
    from transformers import WhisperFeatureExtractor, WhisperModel

    encoder = WhisperModel.from_pretrained(folder).get_encoder().eval()
    features = WhisperFeatureExtractor.from_pretrained(folder)(audio, sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        return torch.stack(encoder(features["input_features"], output_hidden_states=True).hidden_states)[:, 0].numpy()


def test_layers_are_pooled_over_the_real_frames_only(whisper, tiny_whisper, clips):
    for audio, out in zip(clips, whisper.extract_batch([None] * len(clips), clips)):
        hidden = encoder_states(tiny_whisper, audio)
        real = math.ceil(len(audio) / 320)  # 100 log-mel frames per second, halved by the encoder
        assert hidden.shape == (3, 1500, 32) and out.arrays["mean"].shape == (3, 32)
        assert out.arrays["n_frames"] == real
        np.testing.assert_allclose(out.arrays["mean"], hidden[:, :real].mean(1), atol=1e-4)
        np.testing.assert_allclose(out.arrays["std"], hidden[:, :real].std(1), atol=1e-4)
        assert np.abs(out.arrays["mean"] - hidden.mean(1)).max() > 1e-2  # the 30 s padding would change it


def test_batch_composition_does_not_change_a_clips_features(whisper, clips):
    alone = [whisper.extract_batch([None], [audio])[0].arrays["mean"] for audio in clips]
    reordered = whisper.extract_batch([None] * 3, [clips[2], clips[0], clips[1]])
    for got, want in zip(reordered, [alone[2], alone[0], alone[1]]):
        np.testing.assert_allclose(got.arrays["mean"], want, atol=1e-5)
    assert whisper.cost(clips[0]) == 30.0 and whisper.cost(np.zeros(31 * 16000, np.float32)) == 60.0


def test_a_clip_longer_than_the_window_runs_in_windows_pooled_frame_weighted(tiny_whisper, clips):
    ex = WhisperEncoderFeatures(WhisperEncoderConfig(store_dtype="float32", window_seconds=1.0), source=str(tiny_whisper))
    ex.setup()
    audio = clips[2]  # 2 s: two windows of 1 s, 50 frames each
    out = ex.extract_batch([None], [audio])[0].arrays
    halves = [encoder_states(tiny_whisper, audio[a:b])[:, :50] for a, b in ((0, 16000), (16000, 32000))]
    assert out["n_frames"] == 100
    np.testing.assert_allclose(out["mean"], np.concatenate(halves, 1).mean(1), atol=1e-4)


def test_ssl_and_whisper_refuse_each_others_models(tiny_whisper, tmp_path):
    with pytest.raises(ValueError, match=r"is a Whisper model: it reads log-mel input_features.*use whisper:"):
        SpeechModelFeatures(source=str(tiny_whisper)).setup()
    with pytest.raises(ValueError, match="Whisper reads at most 30 s"):
        WhisperEncoderFeatures(WhisperEncoderConfig(window_seconds=40.0), source=str(tiny_whisper)).setup()
    hubert = tmp_path / "tiny-hubert"
    hubert.mkdir()
    stand_ins.STAND_INS["tiny-hubert"](hubert)
    with pytest.raises(ValueError, match="is a hubert model, not Whisper; use ssl:"):
        WhisperEncoderFeatures(source=str(hubert)).setup()
