"""Writing a corrupted copy of a corpus: same layout, same ids, same labels, media corrupted.

The corpus folder (a layout's root, or the folder of a clips CSV) is mirrored under the output
folder: every media file of a clip is decoded, corrupted and written at the same relative path
(audio 16 kHz mono, as stage 1 reads it; video at its own frame rate, same size); a SAMSEMO scene
folder becomes a folder of the same name: its audio.wav and every image_<i>.jpg corrupted, its
other files copied. Every other file (label tables, transcripts, the clips CSV) is copied as it is.
Each media file or scene folder is written under a temporary name and renamed, so a killed run
leaves no half-written one and a rerun skips the clips already written. The drawn SNR and blur
factor of each clip depend only on --seed and its id, so a resumed run draws what the killed one
drew.
"""
from __future__ import annotations

import os
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from manifests.mediafile import write_clip
from ..core.media import MediaError, decode_streams
from .degrade import blur_frames, fit_range, mix_at_snr

BABBLE_VOICES = 3  # other clips summed into one babble noise
NOISE_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".m4a", ".mp4"}  # what a noise folder's audio files end with


@dataclass(frozen=True)
class Draw:
    """What a clip gets: an SNR (dB), a blur factor, and the babble voices (clip ids; empty when
    the noise comes from noise files, drawn with the clip's length: work.noise_for)."""

    snr_db: float
    blur: int
    voices: tuple


@dataclass(frozen=True)
class SnrRange:
    """SNRs drawn uniformly from low, low + step, ... up to high (main-corrupt.py: the integers
    5..10); step 0: any value in [low, high]."""

    low: float
    high: float
    step: float = 1.0

    def draw(self, rng: np.random.Generator) -> float:
        if not self.step:
            return round(float(rng.uniform(self.low, self.high)), 4)
        count = int(np.floor((self.high - self.low) / self.step + 1e-9)) + 1
        return round(self.low + self.step * int(rng.integers(count)), 4)


def draw(clip_id: str, seed: int, snr_range: SnrRange, factors: list[int], noise_files: bool,
         others: list[str]) -> Draw:
    """The clip's corruption, from the seed and its id alone (independent of order and workers)."""
    rng = np.random.default_rng([seed, zlib.crc32(clip_id.encode())])
    snr_db = snr_range.draw(rng)
    blur = int(factors[rng.integers(len(factors))])
    if noise_files:
        return Draw(snr_db, blur, ())
    pool = [c for c in others if c != clip_id]
    return Draw(snr_db, blur, tuple(pool[i] for i in rng.choice(len(pool), min(BABBLE_VOICES, len(pool)), replace=False)))


def noise_files_in(folder) -> list[Path]:
    """The audio files under a noise folder (NOISE_SUFFIXES), sorted; its other files (MUSAN's
    LICENSE, ANNOTATIONS, README) and hidden ones (a copy's `._x.wav` metadata) are not noise."""
    return sorted(p for p in Path(folder).rglob("*")
                  if p.is_file() and p.suffix.lower() in NOISE_SUFFIXES and not p.name.startswith("."))


def media_files(clip) -> list[Path]:
    return list(dict.fromkeys(p for p in (clip.video, clip.audio) if p is not None))


def read_audio(path: Path) -> np.ndarray:
    media = decode_streams(path, audio=True)
    if "audio" in media.errors:
        raise MediaError(media.errors["audio"])
    return media.audio


def corrupt_file(src: Path, dst: Path, d: Draw, noise_audio) -> None:
    """Decode `src`, corrupt what it holds (audio: noise at d.snr_db, scaled down as a whole if it
    would clip; video: blur d.blur), write `dst` atomically. `noise_audio(n)` gives the noise
    signal for n samples."""
    rewrite_file(src, dst, lambda a: fit_range(mix_at_snr(a, noise_audio(len(a)), d.snr_db)),
                 lambda f: blur_frames(f, d.blur))


def rewrite_file(src: Path, dst: Path, audio_fn=None, frames_fn=None) -> None:
    """Decode `src` (audio 16 kHz mono, every video frame), apply `audio_fn` (float32 [n] -> [m])
    and `frames_fn` (uint8 [T, H, W, 3] -> same) where given, write `dst` atomically. `src` may
    be a SAMSEMO scene folder (rewrite_scene)."""
    if Path(src).is_dir():
        return rewrite_scene(Path(src), Path(dst), audio_fn, frames_fn)
    rate = None
    with av.open(str(src)) as container:
        if container.streams.video:
            rate = container.streams.video[0].average_rate
    media = decode_streams(src, audio=True, fps=float(rate) if rate else None)
    if media.audio is None and media.frames is None:
        raise MediaError("; ".join(media.errors.values()) or f"nothing to decode in {src.name}")
    audio = media.audio if media.audio is None or audio_fn is None else audio_fn(media.audio)
    frames = media.frames if media.frames is None or frames_fn is None else frames_fn(media.frames)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.stem}.tmp-{os.getpid()}{dst.suffix}")
    try:
        write_clip(tmp, audio, 16000, 1, frames, fps=int(round(float(rate))) if rate else 10)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


def rewrite_scene(src: Path, dst: Path, audio_fn=None, frames_fn=None) -> None:
    """A SAMSEMO scene folder: its audio.wav (decoded at 16 kHz mono) through `audio_fn`, all its
    image_<i>.jpg frames as one [T, H, W, 3] array through `frames_fn`, written under the same names
    (JPEG quality 95), its other files copied; built in a temporary folder renamed to `dst`."""
    from PIL import Image

    from manifests.samsemo import AUDIO_NAME, FRAME_RATE, frame_files

    files = frame_files(src)
    media = decode_streams(src, audio=True, fps=FRAME_RATE if files else None)  # every frame, in file order
    if files and "frames" in media.errors:
        raise MediaError(media.errors["frames"])  # e.g. frames of different sizes
    frames = media.frames
    if media.audio is None and frames is None:
        raise MediaError(f"scene {src.name}: neither {AUDIO_NAME} nor image_<i>.jpg frames decode")
    audio = media.audio if media.audio is None or audio_fn is None else audio_fn(media.audio)
    frames = frames if frames is None or frames_fn is None else frames_fn(frames)
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        if audio is not None:
            write_clip(tmp / AUDIO_NAME, audio, 16000, 1)
        for (_, path), frame in zip(files, frames if frames is not None else []):
            Image.fromarray(frame).save(tmp / path.name, quality=95)
        written = {AUDIO_NAME} | {path.name for _, path in files}
        for other in src.iterdir():
            if other.is_file() and other.name not in written:
                shutil.copy2(other, tmp / other.name)
        os.replace(tmp, dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def copy_other_files(root: Path, out: Path, media: set[Path]):
    """Everything under `root` that is neither a clip's media file nor inside a clip's scene folder
    (tables, transcripts), as it is."""
    for path in sorted(root.rglob("*")):
        resolved = path.resolve()
        if path.is_file() and not media & {resolved, *resolved.parents} and not path.name.startswith("."):
            target = out / path.relative_to(root)
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)


def remove_stale_temporaries(out: Path):
    for tmp in list(out.rglob(".*.tmp-*")):
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)  # a scene folder being written
        else:
            tmp.unlink(missing_ok=True)
