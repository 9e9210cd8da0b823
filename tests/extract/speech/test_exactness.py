"""Pooled hidden states against independent unbatched transformers runs; batch composition,
group-norm front ends and windows of long clips."""
import numpy as np
import pytest

from extract.speech.encoders import SpeechModelConfig, SpeechModelFeatures

from .conftest import frames_of, reference_hidden_states

LENGTHS = (0.31, 0.9, 1.37, 2.0, 2.0)  # seconds; two equal lengths so group-norm models can batch them


def extractor(folder, **options):
    ex = SpeechModelFeatures(SpeechModelConfig(store_dtype="float32", **options), source=str(folder))
    ex.setup()
    return ex


def segments(clips):
    return list(enumerate(enumerate(clips)))


@pytest.fixture(scope="module")
def clips(speech_16k):
    return [speech_16k[int(0.05 * i * 16000):][: int(s * 16000)] for i, s in enumerate(LENGTHS)]


@pytest.mark.parametrize("name", ["tiny-hubert", "tiny-wavlm", "tiny-wav2vec2", "tiny-data2vec-audio"])
def test_every_layer_matches_an_independent_unbatched_run(model_dir, clips, name):
    ex = extractor(model_dir[name], std=True)
    outputs = ex.extract_batch([None] * len(clips), clips)
    config = ex.model_config
    for audio, out in zip(clips, outputs):
        hidden = reference_hidden_states(model_dir[name], audio)  # [L, T, D]
        assert hidden.shape == (config.num_hidden_layers + 1, frames_of(len(audio)), config.hidden_size)
        assert out.arrays["mean"].shape == hidden.shape[::2] and out.arrays["n_frames"] == hidden.shape[1]
        np.testing.assert_allclose(out.arrays["mean"], hidden.mean(1), atol=1e-4)
        np.testing.assert_allclose(out.arrays["std"], hidden.std(1), atol=1e-4)


@pytest.mark.parametrize("name", ["tiny-hubert", "tiny-wav2vec2", "tiny-data2vec-audio"])
def test_batch_composition_does_not_change_a_clips_features(model_dir, clips, name):
    ex = extractor(model_dir[name])
    alone = [ex.extract_batch([None], [audio])[0].arrays["mean"] for audio in clips]
    together = [o.arrays["mean"] for o in ex.extract_batch([None] * 5, clips)]
    reordered = [o.arrays["mean"] for o in ex.extract_batch([None] * 3, [clips[4], clips[0], clips[2]])]
    for got, want in zip(together + reordered, alone + [alone[4], alone[0], alone[2]]):
        np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("name, norm", [("tiny-wav2vec2", "group"), ("tiny-data2vec-audio", "layer")])
def test_models_inexact_when_padded_batch_only_equal_lengths(model_dir, clips, name, norm):
    ex = extractor(model_dir[name])
    assert ex.feat_extract_norm == norm and not ex.exact_when_padded
    groups = list(ex._forward_groups(segments(clips)))
    assert groups == [[0], [1], [2], [3, 4]]
    # what the grouping avoids: padding changes the short clip's features
    padded, _ = ex.forward([clips[0], clips[3]])
    alone, _ = ex.forward([clips[0]])
    assert np.abs(padded[0].mean - alone[0].mean).max() > 1e-2
    assert len(list(extractor(model_dir["tiny-hubert"])._forward_groups(segments(clips)))) == 1


def test_forward_passes_stay_within_the_batch_budget(model_dir, clips):
    ex = extractor(model_dir["tiny-hubert"], batch_seconds=2.5)
    groups = list(ex._forward_groups(segments(clips)))
    assert all(len(g) == 1 or sum(len(clips[k]) for k in g) <= 2.5 * 16000 for g in groups)
    assert sorted(k for g in groups for k in g) == [0, 1, 2, 3, 4] and max(map(len, groups)) > 1


def test_long_clips_run_in_windows_pooled_back_frame_weighted(model_dir, speech_16k):
    audio = np.concatenate([speech_16k, speech_16k[::-1]])[: int(2.5 * 16000)]
    ex = extractor(model_dir["tiny-hubert"], window_seconds=1.0, std=True, frame_layers=(-1, 1))
    out = ex.extract_batch([None], [audio])[0]
    windows = [audio[a:b] for a, b in zip((0, 13333, 26667), (13333, 26667, 40000))]  # 3 near-equal windows
    hidden = np.concatenate([reference_hidden_states(model_dir["tiny-hubert"], w) for w in windows], axis=1)
    assert out.arrays["n_frames"] == hidden.shape[1] == sum(frames_of(len(w)) for w in windows)
    np.testing.assert_allclose(out.arrays["mean"], hidden.mean(1), atol=1e-4)
    np.testing.assert_allclose(out.arrays["std"], hidden.std(1), atol=1e-4)
    np.testing.assert_allclose(out.ragged["layer2"], hidden[-1], atol=1e-4)
    np.testing.assert_allclose(out.ragged["layer1"], hidden[1], atol=1e-4)


def test_frame_level_layers_can_be_average_pooled_in_time(model_dir, clips):
    ex = extractor(model_dir["tiny-hubert"], frame_layers=(2,), frame_pool=4)
    out = ex.extract_batch([None], [clips[1]])[0]
    hidden = reference_hidden_states(model_dir["tiny-hubert"], clips[1])[2]  # [T, D], T = 44
    assert out.ragged["layer2"].shape == (-(-hidden.shape[0] // 4), hidden.shape[1])
    np.testing.assert_allclose(out.ragged["layer2"][0], hidden[:4].mean(0), atol=1e-4)
    np.testing.assert_allclose(out.ragged["layer2"][-1], hidden[(hidden.shape[0] - 1) // 4 * 4:].mean(0), atol=1e-4)


def test_float16_storage_is_the_default(model_dir, clips):
    ex = SpeechModelFeatures(source=str(model_dir["tiny-hubert"]))
    ex.setup()
    out = ex.extract_batch([None], [clips[1]])[0]
    assert out.arrays["mean"].dtype == np.float16 and out.arrays["n_frames"].dtype == np.int32
    with pytest.raises(ValueError, match="frame_layers: layer 3 out of range for 3 hidden states"):
        extractor(model_dir["tiny-hubert"], frame_layers=(3,)).extract_batch([None], [clips[1]])
