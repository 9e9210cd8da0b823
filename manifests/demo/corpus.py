"""The built-in demo corpus: synthetic clips written in exactly the MER 2023 release layout.

    python -m manifests.demo --out data/demo --clips 96 [--seed 0] [--force]

Each clip is a real mp4 (H.264 + AAC, 2-5 s, 256 x 256 at 15 fps): espeak-ng speech whose wording
and prosody follow the emotion, over frames of a real face (`skimage.data.astronaut()`) animated
with head motion and an emotion-dependent expression. test2 holds the test1 clips corrupted as in
MER-NOISE (speech noise at 5-10 dB SNR, blur by down/up-sampling with r in {1, 2, 4}); test3 is
unlabelled. The same seed gives the same corpus.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import shutil
import time
from pathlib import Path

import click
import cv2
import numpy as np
from scipy.signal import resample_poly

from .design import CLASSES, VOICES, ClipDesign, design_clip, prosody, split_sizes
from .faces import FaceAnimator
from ..mediafile import write_clip
from .speech import SAMPLE_RATE, synthesize

VERSION = "demo/4"  # change when the output changes
FPS, FRAME_SIZE = 15, 256
MIN_SECONDS, MAX_SECONDS, LEAD_SECONDS = 2.0, 5.0, 0.3
__all__ = ["CLASSES", "generate", "VERSION"]


def generate(out, n_clips: int = 96, seed: int = 0, force: bool = False) -> Path:
    """Write the demo corpus to `out` (idempotent: a complete corpus of the same seed, size and
    generator version is left as it is). Returns `out`."""
    out = Path(out)
    info_path = out / "demo-info.json"
    wanted = {"version": VERSION, "seed": seed, "clips": n_clips}
    if info_path.exists() and not force:
        info = json.loads(info_path.read_text())
        if {k: info.get(k) for k in wanted} == wanted:
            click.echo(f"demo corpus already in {out} ({n_clips} clips, seed {seed})", err=True)
            return out
        if (info.get("seed"), info.get("clips")) == (seed, n_clips):  # an older generator: renew it
            click.echo(f"renewing the demo corpus in {out} ({info.get('version')} -> {VERSION})", err=True)
        else:
            raise click.ClickException(f"{out} holds another demo corpus ({info.get('clips')} clips, seed "
                                       f"{info.get('seed')}): use --force to replace it, or another --out")
    _clear(out)
    designs = plan(n_clips, seed)
    start, animator = time.monotonic(), FaceAnimator()
    with click.progressbar(designs, label=f"writing {n_clips} demo clips", file=None) as bar:
        for design in bar:
            render_clip(design, out, animator, seed)
    _write_tables(out, designs)
    info = wanted | {"synthetic": "espeak-ng speech and an animated skimage astronaut face; labels "
                                  "follow the generator's design, not human annotation",
                     "seconds": round(time.monotonic() - start, 1),
                     "clip_designs": [d.as_dict() for d in designs]}
    info_path.write_text(json.dumps(info, indent=1))  # last: marks the corpus complete
    return out


def _clear(out: Path):
    for name in ("train", "test1", "test2", "test3"):
        shutil.rmtree(out / name, ignore_errors=True)
    for csv_file in out.glob("*.csv"):
        csv_file.unlink()
    (out / "demo-info.json").unlink(missing_ok=True)


def plan(n_clips: int, seed: int) -> list[ClipDesign]:
    """The design of every clip: balanced labels per split, cues drawn per clip from the seed."""
    rng = np.random.default_rng(seed)
    sizes, designs, index = split_sizes(n_clips), [], 0
    for split in ("train", "test1", "test3"):
        labels = [CLASSES[i % len(CLASSES)] for i in range(sizes[split])]
        for label in rng.permutation(labels):
            index += 1
            clip_rng = np.random.default_rng([seed, index])
            designs.append(design_clip(clip_rng, f"sample_{index:08d}", split, str(label), index))
    for source in [d for d in designs if d.split == "test1"]:
        index += 1
        clip_rng = np.random.default_rng([seed, index])
        designs.append(dataclasses.replace(
            source, id=f"sample_{index:08d}", split="test2", source=source.id,
            snr_db=round(float(clip_rng.uniform(5, 10)), 2), blur_factor=int(clip_rng.choice([1, 2, 4]))))
    return sorted(designs, key=lambda d: d.id)


def clip_audio(design: ClipDesign, seed: int) -> np.ndarray:
    """float32 [n] at 22,050 Hz: the spoken sentence with a short lead, padded to 2-5 s."""
    speech = synthesize(design.text, voice=design.voice, **prosody(design))
    total = int(np.clip(len(speech) / SAMPLE_RATE + 2 * LEAD_SECONDS, MIN_SECONDS, MAX_SECONDS) * SAMPLE_RATE)
    audio = np.zeros(total, np.float32)
    lead = int(LEAD_SECONDS * SAMPLE_RATE)
    speech = speech[: total - lead]
    audio[lead:lead + len(speech)] = speech
    if design.snr_db is not None:
        audio = add_speech_noise(audio, design, seed)
    return audio


def add_speech_noise(audio: np.ndarray, design: ClipDesign, seed: int) -> np.ndarray:
    """Mix another speaker's speech in at the design's SNR (dB), as MER-NOISE does."""
    rng = np.random.default_rng([seed, int(design.id.split("_")[1]), 7])
    voice = VOICES[int(rng.integers(len(VOICES)))][0]
    babble = synthesize("and then we walked along the river talking about the weather and the news",
                        voice=voice, rate=int(rng.integers(150, 200)))
    babble = np.resize(babble, len(audio))  # repeat to the clip's length
    gain = np.sqrt(np.mean(audio ** 2) / (np.mean(babble ** 2) * 10 ** (design.snr_db / 10)))
    return np.clip(audio + gain * babble, -1, 1).astype(np.float32)


def clip_frames(design: ClipDesign, n_frames: int, animator: FaceAnimator) -> np.ndarray:
    """uint8 [T, 256, 256, 3]: the felt expression (at the face cue), with a weaker distractor
    expression in the brows and eyes, rises over 0.6 s and holds."""
    t = np.arange(n_frames) / FPS
    intensity = np.clip(t / 0.6, 0, 1) * (0.9 + 0.1 * np.sin(2 * np.pi * 0.7 * t))
    frames = animator.render({design.label: design.face_cue}, intensity, design.motion_seed, n_frames, FRAME_SIZE,
                             upper={design.face_distractor: design.distractor_cue})
    if design.blur_factor and design.blur_factor > 1:
        small = FRAME_SIZE // design.blur_factor
        frames = np.stack([cv2.resize(cv2.resize(f, (small, small), interpolation=cv2.INTER_AREA),
                                      (FRAME_SIZE, FRAME_SIZE), interpolation=cv2.INTER_LINEAR)
                           for f in frames])
    return frames


def render_clip(design: ClipDesign, out: Path, animator: FaceAnimator, seed: int) -> Path:
    audio = clip_audio(design, seed)
    frames = clip_frames(design, int(round(len(audio) / SAMPLE_RATE * FPS)), animator)
    rate = design.audio_rate
    if rate != SAMPLE_RATE:
        audio = resample_poly(audio, rate, SAMPLE_RATE).astype(np.float32)
    folder = out / design.split
    folder.mkdir(parents=True, exist_ok=True)
    return write_clip(folder / f"{design.id}.mp4", audio, rate, design.audio_channels, frames, FPS)


def _write_tables(out: Path, designs: list[ClipDesign]):
    for split in ("train", "test1", "test2"):
        with open(out / f"{split}-label.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["name", "discrete", "valence"])
            for d in designs:
                if d.split == split:
                    writer.writerow([d.id, d.label, f"{d.valence:.2f}"])
    with open(out / "transcription.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["name", "sentence"])
        for d in designs:
            writer.writerow([d.id, d.text])
