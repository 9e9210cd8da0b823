"""Decoding with PyAV: audio as 16 kHz mono float32, frames at a requested rate, one open per clip."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

SAMPLE_RATE = 16000
SILENCE_PEAK = 1e-4  # peak amplitude below which a clip counts as silent (float32 in [-1, 1])


class MediaError(Exception):
    """A clip's file cannot give what an extractor needs; the message names the cause."""


@dataclass
class Media:
    """Decoded content of one clip.

    audio: float32 [n] mono at `sample_rate` (None when not requested);
    frames: uint8 [T, H, W, 3] RGB (None when not requested); frame_times: float [T] seconds.
    """

    audio: np.ndarray | None = None
    sample_rate: int = SAMPLE_RATE
    frames: np.ndarray | None = None
    frame_times: np.ndarray | None = None
    source_rate: int | None = None
    source_channels: int | None = None
    extras: dict = field(default_factory=dict)  # per-clip results shared between extractors (e.g. a face track)
    errors: dict = field(default_factory=dict)  # stream ("audio", "frames") -> why it could not be decoded

    @property
    def duration(self) -> float:
        return 0.0 if self.audio is None else len(self.audio) / self.sample_rate

    @property
    def silent(self) -> bool:
        return self.audio is not None and float(np.max(np.abs(self.audio), initial=0.0)) < SILENCE_PEAK


def decode(path: Path, audio: bool = True, fps: float | None = None,
           max_frames: int | None = None) -> Media:
    """Decode `path` once: its audio (resampled to 16 kHz mono) and/or frames every 1/fps s.

    Raises MediaError when the file cannot be read or a requested stream cannot be decoded."""
    media = decode_streams(path, audio, fps, max_frames)
    for reason in media.errors.values():
        raise MediaError(reason)
    return media


def decode_streams(path: Path, audio: bool = True, fps: float | None = None,
                   max_frames: int | None = None) -> Media:
    """Decode what `path` holds of the requested streams, opening it once.

    A file that cannot be opened raises MediaError (nothing can be decoded from it). A requested
    stream that is missing or broken leaves its reason in `media.errors["audio" | "frames"]`
    instead, so the features that need only the other stream still get theirs."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"file not found: {path.name}")
    if path.stat().st_size == 0:
        raise MediaError(f"zero-length file: {path.name}")
    try:
        container = av.open(str(path))
    except DECODE_ERRORS as err:
        raise MediaError(_unreadable(path, err)) from None
    media = Media()
    with container:
        if audio:
            _decode_stream("audio", _decode_audio, container, path, media)
        if fps:
            _decode_stream("frames", _decode_frames, container, path, media, fps, max_frames)
    return media


DECODE_ERRORS = (av.error.FFmpegError, ValueError, OSError)


def _unreadable(path: Path, err: Exception) -> str:
    cause = getattr(err, "strerror", None) or str(err)
    return f"cannot decode {path.name} (unreadable or truncated): {cause}"


def _decode_stream(stream: str, decoder, container, path: Path, media: Media, *args):
    try:
        decoder(container, path, media, *args)
    except MediaError as err:
        media.errors[stream] = str(err)
    except DECODE_ERRORS as err:
        media.errors[stream] = _unreadable(path, err)


def _decode_audio(container, path: Path, media: Media):
    if not container.streams.audio:
        raise MediaError(f"no audio stream in {path.name}")
    stream = container.streams.audio[0]
    media.source_rate = stream.codec_context.sample_rate
    media.source_channels = stream.codec_context.channels
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    chunks = []
    for frame in container.decode(stream):
        for out in resampler.resample(frame):
            chunks.append(out.to_ndarray().reshape(-1))
    for out in resampler.resample(None):  # flush the resampler's delay line
        chunks.append(out.to_ndarray().reshape(-1))
    samples = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    if samples.size == 0:
        raise MediaError(f"zero-length audio: no samples decoded from {path.name}")
    media.audio = samples


def _decode_frames(container, path: Path, media: Media, fps: float, max_frames: int | None):
    if not container.streams.video:
        raise MediaError(f"no video stream in {path.name}")
    container.seek(0)  # the audio pass, if any, read the file to its end
    stream = container.streams.video[0]
    frames, times, next_time = [], [], 0.0
    for frame in container.decode(stream):
        t = float(frame.time or 0.0)
        if t + 1e-6 >= next_time:
            frames.append(frame.to_ndarray(format="rgb24"))
            times.append(t)
            next_time += 1.0 / fps
    if not frames:
        raise MediaError(f"zero-length video: no frames decoded from {path.name}")
    if max_frames and len(frames) > max_frames:  # keep frames evenly spread over the clip
        keep = np.linspace(0, len(frames) - 1, max_frames).round().astype(int)
        frames, times = [frames[i] for i in keep], [times[i] for i in keep]
    media.frames = np.stack(frames)
    media.frame_times = np.asarray(times)
