"""Writing real media files with PyAV: mp4 (H.264 + AAC) or WAV; either stream may be left out."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def write_clip(path: Path, audio: np.ndarray | None, rate: int = 16000, channels: int = 1,
               frames: np.ndarray | None = None, fps: int = 10) -> Path:
    """Write `audio` (float32 [n] in [-1, 1], duplicated to `channels`) and `frames` (uint8
    [T, H, W, 3] RGB) to `path`: H.264 yuv420p + AAC for .mp4, 16-bit PCM for .wav.

    Encoding is single-threaded, so the same inputs give the same bytes.
    """
    path = Path(path)
    with av.open(str(path), "w") as out:
        video = stream = None  # every stream is added before the first packet is muxed
        if frames is not None:
            video = out.add_stream("libx264", rate=fps, options={"threads": "1"})
            video.height, video.width = frames.shape[1:3]
            video.pix_fmt = "yuv420p"
            video.codec_context.thread_count = 1
        if audio is not None:
            codec = "pcm_s16le" if path.suffix == ".wav" else "aac"
            layout = "stereo" if channels == 2 else "mono"
            stream = out.add_stream(codec, rate=rate, layout=layout)
        if video is not None:
            for image in frames:
                out.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
            out.mux(video.encode())
        if stream is not None:
            _encode_audio(out, stream, np.asarray(audio, np.float32), rate, channels, layout)
    return path


def _encode_audio(out, stream, audio, rate, channels, layout):
    pcm = stream.codec_context.name.startswith("pcm")
    step = 1024
    for start in range(0, len(audio), step):
        chunk = np.tile(audio[start:start + step], (channels, 1))  # planar [C, n]
        if pcm:  # packed s16: one row of interleaved samples
            chunk = (np.clip(chunk, -1, 1) * 32767).astype(np.int16).T.reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="s16" if pcm else "fltp",
                                           layout=layout)
        frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode(None):
        out.mux(packet)
