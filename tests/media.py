"""Real media for tests: synthesized speech, a real face, files written with PyAV."""
from __future__ import annotations

import numpy as np

from manifests.mediafile import write_clip  # noqa: F401  (re-exported for the tests)
from manifests.demo.speech import speech_at


def speech(text: str = "I can't believe it, this is wonderful news", rate: int = 16000,
           pitch: int = 50) -> np.ndarray:
    """espeak-ng speech as float32 mono at `rate` Hz."""
    return speech_at(rate, text, pitch=pitch)


def face_frames(n: int, size: int = 128) -> np.ndarray:
    """uint8 [n, size, size, 3]: the astronaut's face, shifted a little frame to frame."""
    from skimage.data import astronaut
    from skimage.transform import resize

    face = (resize(astronaut()[30:250, 120:340], (size, size)) * 255).astype(np.uint8)
    return np.stack([np.roll(face, i % 5, axis=1) for i in range(n)])


SCENE_SECONDS = 2.5  # 5 frames at SAMSEMO's 2 per second


def write_scene(folder, rate=16000, n_frames=5, audio=True):
    """A SAMSEMO scene folder: a 220 Hz tone as audio.wav at `rate` (unless not `audio`) and
    `n_frames` face frames as image_<i>.jpg."""
    import soundfile
    from PIL import Image

    folder.mkdir(parents=True)
    if audio:
        t = np.arange(int(SCENE_SECONDS * rate)) / rate
        soundfile.write(folder / "audio.wav", (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate)
    for i, frame in enumerate(face_frames(n_frames, size=96)):
        Image.fromarray(frame).save(folder / f"image_{i}.jpg", quality=95)
