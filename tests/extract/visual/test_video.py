"""video:<model> on a tiny random-initialised VideoMAE and real decoded mp4 clips: MERBench's frame
sampling, every layer pooled per clip against plain transformers, exact batches."""
import numpy as np
import pytest
import torch

from tests.extract.conftest import build_stand_in
from extract.core.media import decode
from extract.visual.video import VideoConfig, VideoLayers, uniform_frames
from tests.media import face_frames, speech, write_clip


@pytest.fixture(scope="module")
def tiny_videomae(tmp_path_factory):
    return build_stand_in(tmp_path_factory, "tiny-videomae")


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """Three real 10 fps mp4 clips of 40, 24 and 10 face frames, decoded at 25 fps (every frame)."""
    folder, audio = tmp_path_factory.mktemp("clips"), speech()
    clips = []
    for i, n in enumerate((40, 24, 10)):
        path = folder / f"c{i}.mp4"
        write_clip(path, audio, 16000, 1, np.roll(face_frames(n, size=96), 7 * i, axis=2))
        clips.append(decode(path, audio=False, fps=25))
    return clips


def test_frames_are_sampled_as_merbench_samples_them():
    assert uniform_frames(40, 16).tolist() == [int(i * 40 / 16) for i in range(16)]  # floor(i * T / N)
    assert uniform_frames(16, 16).tolist() == list(range(16))
    assert uniform_frames(5, 16).tolist() == [0, 1, 2, 3, 4] + [4] * 11  # fewer: the last repeats


def test_every_layer_is_the_token_mean_of_plain_transformers_on_the_sampled_frames(tiny_videomae, media):
    from transformers import VideoMAEImageProcessor, VideoMAEModel

    ex = VideoLayers(VideoConfig(store_dtype="float32"), source=str(tiny_videomae))
    ex.setup()
    payloads = [ex.prepare(None, m) for m in media]
    outputs = ex.extract_batch([None] * 3, payloads)
    model, processor = VideoMAEModel.from_pretrained(tiny_videomae).eval(), VideoMAEImageProcessor.from_pretrained(tiny_videomae)
    for m, out in zip(media, outputs):
        n = len(m.frames)
        picked = [m.frames[min(i * n // 16, n - 1) if n >= 16 else min(i, n - 1)] for i in range(16)]
        with torch.no_grad():
            hidden = model(**processor(picked, return_tensors="pt"), output_hidden_states=True).hidden_states
        assert out.arrays["mean"].shape == (3, 32) and out.arrays["n_frames"] == min(n, 16)
        np.testing.assert_allclose(out.arrays["mean"], torch.stack(hidden)[:, 0].mean(1).numpy(), atol=1e-5)
    assert [len(m.frames) for m in media] == [40, 24, 10]


def test_batch_composition_does_not_change_a_clip_and_float16_is_stored(tiny_videomae, media):
    ex = VideoLayers(source=str(tiny_videomae))
    ex.setup()
    payloads = [ex.prepare(None, m) for m in media]
    alone = [ex.extract_batch([None], [p])[0].arrays["mean"] for p in payloads]
    together = [o.arrays["mean"] for o in ex.extract_batch([None] * 3, payloads[::-1])][::-1]
    assert alone[0].dtype == np.float16 and alone[0].shape == (3, 32)
    for got, want in zip(together, alone):
        np.testing.assert_array_equal(got, want)
    assert np.abs(alone[0].astype(np.float32) - alone[1]).max() > 1e-3  # the clips differ


def test_frames_decoded_faster_for_another_feature_are_sampled_on_this_features_grid(tiny_videomae, media):
    payload = VideoLayers(VideoConfig(fps=2.0), source=str(tiny_videomae)).prepare(None, media[0])
    assert payload["pixels"].shape == (16, 3, 32, 32)
    assert payload["n_frames"] == 8  # 40 frames of 10 fps video: 8 on the 2 fps grid, each used twice
    short = VideoLayers(VideoConfig(n_frames=4), source=str(tiny_videomae))
    assert short.prepare(None, media[0])["pixels"].shape == (4, 3, 32, 32) and short.clip_length == 4
