"""Shared fixtures: small real corpora written to a temporary folder."""
from __future__ import annotations

import pytest

from manifests.folder import write_table  # noqa: F401  (tests import it from here)
from tests.media import face_frames, speech, write_clip


@pytest.fixture(scope="session")
def speech_16k():
    return speech()


@pytest.fixture
def folder_corpus(tmp_path, speech_16k):
    """A user's own corpus (clips.csv) of good clips: mp4 16 kHz mono, mp4 48 kHz stereo, wav."""
    import librosa

    audio48 = librosa.resample(speech_16k, orig_sr=16000, target_sr=48000)
    write_clip(tmp_path / "a.mp4", speech_16k, 16000, 1, face_frames(12))
    write_clip(tmp_path / "b.mp4", audio48, 48000, 2, face_frames(12))
    write_clip(tmp_path / "c.wav", speech_16k, 16000)
    rows = [dict(id="a", path="a.mp4", split="train", label="happy", valence="2.5", text="so glad"),
            dict(id="b", path="b.mp4", split="train", label="sad", valence="-3"),
            dict(id="c", path="c.wav", split="test")]
    return write_table(tmp_path / "clips.csv", rows)
