"""Real media files for tests: mp4/wav written with PyAV from synthesized speech and a real face."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def speech(text: str = "I can't believe it, this is wonderful news", rate: int = 16000,
           pitch: int = 50) -> np.ndarray:
    """espeak-ng speech as float32 mono at `rate` Hz."""
    import librosa

    from manifests.speech import SAMPLE_RATE, synthesize

    audio = synthesize(text, pitch=pitch)
    return librosa.resample(audio, orig_sr=SAMPLE_RATE, target_sr=rate).astype(np.float32)


def face_frames(n: int, size: int = 128) -> np.ndarray:
    """uint8 [n, size, size, 3]: the astronaut's face, shifted a little frame to frame."""
    from skimage.data import astronaut
    from skimage.transform import resize

    face = (resize(astronaut()[30:250, 120:340], (size, size)) * 255).astype(np.uint8)
    return np.stack([np.roll(face, i % 5, axis=1) for i in range(n)])


def write_clip(path: Path, audio: np.ndarray | None, rate: int = 16000, channels: int = 1,
               frames: np.ndarray | None = None, fps: int = 10) -> Path:
    """Write an mp4 (H.264 + AAC) or, for a .wav path, PCM audio; either stream may be absent."""
    path = Path(path)
    with av.open(str(path), "w") as out:
        vstream = astream = None
        if frames is not None:
            vstream = out.add_stream("libx264", rate=fps)
            vstream.height, vstream.width = frames.shape[1:3]
            vstream.pix_fmt = "yuv420p"
        if audio is not None:
            codec = "pcm_s16le" if path.suffix == ".wav" else "aac"
            astream = out.add_stream(codec, rate=rate, layout="stereo" if channels == 2 else "mono")
        if vstream is not None:
            for image in frames:
                out.mux(vstream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
            out.mux(vstream.encode())
        if astream is not None:
            _write_audio(out, astream, audio, rate, channels)
    return path


def _write_audio(out, stream, audio, rate, channels):
    fmt = "s16" if stream.codec_context.name.startswith("pcm") else "fltp"
    samples = np.tile(audio.astype(np.float32), (channels, 1))
    if fmt == "s16":
        samples = (np.clip(samples, -1, 1) * 32767).astype(np.int16).T.reshape(1, -1)
    step = 1024
    for start in range(0, samples.shape[-1] if fmt == "fltp" else audio.size, step):
        chunk = samples[:, start:start + step] if fmt == "fltp" else samples[:, start * channels:(start + step) * channels]
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format=fmt,
                                           layout="stereo" if channels == 2 else "mono")
        frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode(None):
        out.mux(packet)
