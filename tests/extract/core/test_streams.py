"""A clip lacking a stream fails only the features that need that stream."""
import numpy as np
import pytest
from click.testing import CliRunner

from cache import open_feature
from extract.__main__ import main
from extract.core.media import MediaError, decode, decode_streams
from tests.conftest import write_table
from tests.media import face_frames, write_clip


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, speech_16k):
    """A video without an audio track, an audio-only WAV, and a video with both."""
    root = tmp_path_factory.mktemp("streams")
    write_clip(root / "mute.mp4", None, frames=face_frames(8))
    write_clip(root / "voice.wav", speech_16k[:24000])
    write_clip(root / "both.mp4", speech_16k[:24000], frames=face_frames(8))
    rows = [dict(id=i, path=f"{i}.{'wav' if i == 'voice' else 'mp4'}", split="train")
            for i in ("mute", "voice", "both")]
    return write_table(root / "clips.csv", rows)


def test_decode_keeps_the_stream_it_has_and_names_the_one_it_lacks(corpus):
    mute = decode_streams(corpus.parent / "mute.mp4", audio=True, fps=5)
    assert mute.audio is None and mute.frames.shape == (4, 128, 128, 3)  # 8 frames at 10 fps, sampled at 5
    assert mute.errors == {"audio": "no audio stream in mute.mp4"}
    voice = decode_streams(corpus.parent / "voice.wav", audio=True, fps=5)
    assert voice.frames is None and len(voice.audio) == 24000
    assert voice.errors == {"frames": "no video stream in voice.wav"}
    with pytest.raises(MediaError, match="no audio stream in mute.mp4"):
        decode(corpus.parent / "mute.mp4", audio=True, fps=5)  # all or nothing, for callers that need both


def run(corpus, cache, features):
    result = CliRunner().invoke(main, ["--dataset", "s", "--clips", str(corpus), "--features", features,
                                       "--cache", str(cache), "--quiet"])
    assert "Traceback" not in result.output, result.output
    return result


def test_visual_and_acoustic_features_together_equal_each_alone(corpus, tmp_path):
    together = run(corpus, tmp_path / "together", "face-crops,is09")
    assert together.exit_code == 1, together.output  # each feature lacks one clip's stream
    crops, is09 = (open_feature("s", name, tmp_path / "together") for name in ("face-crops", "is09"))
    assert crops.failures() == {"voice": "no video stream in voice.wav"}
    assert is09.failures() == {"mute": "no audio stream in mute.mp4"}
    assert crops.status_of("mute") == ("ok", "") and is09.status_of("voice") == ("ok", "")
    run(corpus, tmp_path / "crops", "face-crops")
    run(corpus, tmp_path / "is09", "is09")
    alone_crops = open_feature("s", "face-crops", tmp_path / "crops")
    alone_is09 = open_feature("s", "is09", tmp_path / "is09")
    np.testing.assert_array_equal(crops.array(ids=["mute", "both"]), alone_crops.array(ids=["mute", "both"]))
    np.testing.assert_array_equal(is09.array(ids=["voice", "both"]), alone_is09.array(ids=["voice", "both"]))
    assert crops.array("mask", ids=["mute"])[0][:4].tolist() == [1] * 4  # the face was found
