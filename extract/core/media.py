"""Decoding with PyAV: audio as 16 kHz mono float32, frames at a requested rate, one open per clip.

A clip's media is a file (video or audio), or a SAMSEMO scene folder: audio.wav and image_<i>.jpg
frames (manifests.samsemo), decoded into the same Media."""
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
    """Decode what `path` (a media file, or a SAMSEMO scene folder) holds of the requested streams,
    opening it once.

    A file that cannot be opened raises MediaError (nothing can be decoded from it). A requested
    stream that is missing or broken leaves its reason in `media.errors["audio" | "frames"]`
    instead, so the features that need only the other stream still get theirs."""
    path = Path(path)
    if path.is_dir():
        return _decode_scene(path, audio, fps, max_frames)
    container = _open(path, path.name)
    media = Media()
    with container:
        if audio:
            _decode_stream("audio", _decode_audio, container, path.name, media)
        if fps:
            _decode_stream("frames", _decode_frames, container, path.name, media, fps, max_frames)
    return media


def _open(path: Path, name: str):
    """The opened container of `path`; MediaError naming it (`name`) when it cannot be read."""
    if not path.is_file():
        raise MediaError(f"file not found: {name}")
    if path.stat().st_size == 0:
        raise MediaError(f"zero-length file: {name}")
    try:
        return av.open(str(path))
    except DECODE_ERRORS as err:
        raise MediaError(_unreadable(name, err)) from None


DECODE_ERRORS = (av.error.FFmpegError, ValueError, OSError)


def _unreadable(name: str, err: Exception) -> str:
    cause = getattr(err, "strerror", None) or str(err)
    return f"cannot decode {name} (unreadable or truncated): {cause}"


def _decode_stream(stream: str, decoder, container, name: str, media: Media, *args):
    try:
        decoder(container, name, media, *args)
    except MediaError as err:
        media.errors[stream] = str(err)
    except DECODE_ERRORS as err:
        media.errors[stream] = _unreadable(name, err)


def _decode_audio(container, name: str, media: Media):
    if not container.streams.audio:
        raise MediaError(f"no audio stream in {name}")
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
        raise MediaError(f"zero-length audio: no samples decoded from {name}")
    media.audio = samples


def _decode_frames(container, name: str, media: Media, fps: float, max_frames: int | None):
    if not container.streams.video:
        raise MediaError(f"no video stream in {name}")
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
        raise MediaError(f"zero-length video: no frames decoded from {name}")
    frames, times = _spread(frames, max_frames), _spread(times, max_frames)
    media.frames = np.stack(frames)
    media.frame_times = np.asarray(times)


def _spread(items: list, max_frames: int | None) -> list:
    """At most `max_frames` of `items`, evenly spread over the clip."""
    if not max_frames or len(items) <= max_frames:
        return items
    keep = np.linspace(0, len(items) - 1, max_frames).round().astype(int)
    return [items[i] for i in keep]


def _decode_scene(folder: Path, audio: bool, fps: float | None, max_frames: int | None) -> Media:
    """A SAMSEMO scene folder: audio from its audio.wav, frames from its image_<i>.jpg taken as
    samsemo.FRAME_RATE per second. A stream that cannot be decoded leaves its reason, naming the
    scene, in `media.errors`."""
    from manifests.samsemo import AUDIO_NAME

    media = Media()
    if audio:
        wav = f"{folder.name}/{AUDIO_NAME}"
        try:
            with _open(folder / AUDIO_NAME, wav) as container:
                _decode_stream("audio", _decode_audio, container, wav, media)
        except MediaError as err:
            media.errors["audio"] = str(err)
    if fps:
        try:
            _decode_frame_files(folder, media, fps, max_frames)
        except MediaError as err:
            media.errors["frames"] = str(err)
    return media


def _decode_frame_files(folder: Path, media: Media, fps: float, max_frames: int | None):
    """image_<i>.jpg at times i / FRAME_RATE, one every 1/fps s, at most max_frames; only the
    frames kept are read."""
    from PIL import Image

    from manifests.samsemo import FRAME_RATE, frame_files

    picked, next_time = [], 0.0
    for index, path in frame_files(folder):
        t = index / FRAME_RATE
        if t + 1e-6 >= next_time:
            picked.append((t, path))
            next_time = (np.floor(t * fps + 1e-6) + 1) / fps  # the next 1/fps grid point after t
    if not picked:
        raise MediaError(f"scene {folder.name}: no image_<i>.jpg frames in its folder")
    frames, times = [], []
    for t, path in _spread(picked, max_frames):
        try:
            with Image.open(path) as image:
                frame = np.asarray(image.convert("RGB"))
        except (OSError, ValueError) as err:  # PIL's UnidentifiedImageError is an OSError
            raise MediaError(_unreadable(f"{folder.name}/{path.name}", err)) from None
        if frames and frame.shape != frames[0].shape:
            raise MediaError(f"scene {folder.name}: {path.name} is {frame.shape[1]}x{frame.shape[0]}, "
                             f"the frames before it {frames[0].shape[1]}x{frames[0].shape[0]}")
        frames.append(frame)
        times.append(t)
    media.frames = np.stack(frames)
    media.frame_times = np.asarray(times)
