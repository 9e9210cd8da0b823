"""`python -m extract.augment`: augmented copies of a corpus's labelled training clips.

    python -m extract.augment --dataset demo --root data/demo --out data/demo-aug \\
        [--methods noise,gauss,pitch,stretch,blur,rotate,brightness,cutout] [--noise-dir DIR] [--seed 0]

One copy per clip and method, with the id `<clip id>~<method>` and its origin recorded in the
`origin` column of `<out>/clips.csv` (a clips CSV: extract it with `--clips`, then train with
`fuse.train --augment NAME`, which adds each copy only to the folds that train on its origin).
A babble copy's `origin` also names the clips whose speech it holds (`clip;voice;voice;voice`):
folds are formed when fuse.train runs, so it is fuse.train that keeps such a copy out of every
member validated on one of them. The methods, as the MER 2023 systems used them:

    noise       speech noise at 5-11 dB in 1 dB steps (USTC): a random crop of a file of
                --noise-dir (its audio files only), else babble of three other training clips
    gauss       white Gaussian noise at 30 dB SNR (VCEMO)
    pitch       pitch shifted by +-1 or +-2 semitones (VCEMO, librosa)
    stretch     time stretched by a rate in [0.9, 1.1] (VCEMO, librosa); the video is kept
    blur        Gaussian blur, radius 1-2 px (USTC)
    rotate      rotated by 5-15 degrees either way (USTC)
    brightness  brightness scaled by 0.6-1.4 (USTC)
    cutout      a square of a quarter of the frame side blanked, the same in every frame (USTC)

Audio methods change only the audio, video methods only the frames (clips without video get no
video copies). Each draw depends on --seed, the clip id and the method alone.
"""
from __future__ import annotations

import sys
import zlib
from pathlib import Path

import click
import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from cache.cli import Refused, corpus_manifest, corpus_options, ends_cleanly
from manifests.folder import write_table
from .core.progress import Progress
from manifests.table import LABEL_SEP
from .corrupt.copy import BABBLE_VOICES, NOISE_SUFFIXES, media_files, noise_files_in, read_audio, rewrite_file
from .corrupt.degrade import babble, fit_length, mix_at_snr

AUDIO_METHODS = ("noise", "gauss", "pitch", "stretch")
VIDEO_METHODS = ("blur", "rotate", "brightness", "cutout")
RATE = 16000


def gaussian_noise(audio: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    return mix_at_snr(audio, rng.standard_normal(len(audio)), snr_db)


def per_frame(frames: np.ndarray, fn) -> np.ndarray:
    return np.stack([np.asarray(fn(Image.fromarray(f))) for f in frames])


def cutout(frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = frames.shape[1:3]
    side = max(1, min(h, w) // 4)
    y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    out = frames.copy()
    out[:, y:y + side, x:x + side] = 0
    return out


def transform(method: str, rng: np.random.Generator, noise=None):
    """(audio_fn, frames_fn) of one augmentation; `noise(n)` gives speech noise for `noise`."""
    import librosa

    if method == "noise":
        snr_db = float(rng.integers(5, 12))
        return (lambda a: np.clip(mix_at_snr(a, noise(len(a)), snr_db), -1, 1)), None
    if method == "gauss":
        return (lambda a: np.clip(gaussian_noise(a, 30.0, rng), -1, 1)), None
    if method == "pitch":
        steps = float(rng.choice([-2, -1, 1, 2]))
        return (lambda a: librosa.effects.pitch_shift(a, sr=RATE, n_steps=steps)), None
    if method == "stretch":
        rate = float(rng.uniform(0.9, 1.1))
        return (lambda a: librosa.effects.time_stretch(a, rate=rate)), None
    if method == "blur":
        radius = float(rng.uniform(1, 2))
        return None, lambda f: per_frame(f, lambda im: im.filter(ImageFilter.GaussianBlur(radius)))
    if method == "rotate":
        angle = float(rng.uniform(5, 15) * rng.choice([-1, 1]))
        return None, lambda f: per_frame(f, lambda im: im.rotate(angle, resample=Image.BILINEAR))
    if method == "brightness":
        factor = float(rng.uniform(0.6, 1.4))
        return None, lambda f: per_frame(f, lambda im: ImageEnhance.Brightness(im).enhance(factor))
    if method == "cutout":
        return None, lambda f: cutout(f, rng)
    raise ValueError(method)


def parse_methods(text: str) -> list[str]:
    methods = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in methods if m not in AUDIO_METHODS + VIDEO_METHODS]
    if not methods or unknown:
        raise Refused(f"--methods {text!r}: choose from {', '.join(AUDIO_METHODS + VIDEO_METHODS)}")
    return methods


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--dataset", required=True, help="Dataset name (also the layout when it names one).")
@corpus_options
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder of the copies and clips.csv.")
@click.option("--methods", "methods_text", default=",".join(AUDIO_METHODS + VIDEO_METHODS), show_default=True)
@click.option("--noise-dir", type=click.Path(file_okay=False, exists=True), help="Noise audio for `noise`.")
@click.option("--seed", default=0, show_default=True)
@ends_cleanly("the copies written so far are kept (no clips.csv yet); run the same command again to finish")
def main(dataset, layout, root, clips, out, methods_text, noise_dir, seed):
    """Write augmented copies of the labelled training clips, each linked to its origin clip."""
    methods = parse_methods(methods_text)
    if not root and not clips:
        raise Refused("give the corpus: --root DIR (with its layout) or --clips FILE.csv")
    manifest = corpus_manifest(dataset, layout, root, clips)
    out = Path(out)
    train = [c for c in manifest if c.split == "train" and c.label and c.error is None and media_files(c)]
    if not train:
        raise Refused(f"dataset {dataset!r} has no labelled training clip with media")
    noise_files = noise_files_in(noise_dir) if noise_dir else []
    if noise_dir and "noise" in methods and not noise_files:
        raise Refused(f"--noise-dir {noise_dir}: no audio files ({', '.join(sorted(NOISE_SUFFIXES))})")
    voices = {c.id: media_files(c)[0] for c in train}
    rows, failed = [], {}
    progress = Progress(len(train) * len(methods), name="augment")
    for clip in train:
        for method in methods:
            if method in VIDEO_METHODS and clip.video is None:
                progress.update(len(failed))
                continue
            new_id = f"{clip.id}~{method}"
            try:
                rows.append(write_copy(clip, method, new_id, out, seed, noise_files, voices))
            except Exception as err:  # noqa: BLE001  (a clip that cannot be augmented costs only itself)
                failed[new_id] = f"{type(err).__name__}: {err}"
                progress.write(f"{new_id}: {failed[new_id]}")
            progress.update(len(failed))
    progress.close()
    out.mkdir(parents=True, exist_ok=True)  # every copy may have failed
    write_table(out / "clips.csv", rows)
    click.echo(f"{len(rows)} augmented copies of {len(train)} training clips, {len(failed)} failed -> {out / 'clips.csv'}")


def write_copy(clip, method: str, new_id: str, out: Path, seed: int, noise_files, voices) -> dict:
    """Write the `method` copy of `clip` as `new_id` under `out`/media (unless a run before wrote
    it); returns its clips.csv row, whose origin lists every clip whose media it holds."""
    src = media_files(clip)[0]
    rng = np.random.default_rng([seed, zlib.crc32(new_id.encode())])
    dst = out / "media" / f"{new_id}{src.suffix}"
    noise, mixed_in = speech_noise(new_id, clip.id, seed, noise_files, voices) if method == "noise" else (None, [])
    if not dst.exists():
        audio_fn, frames_fn = transform(method, rng, noise)
        rewrite_file(src, dst, audio_fn, frames_fn)
    return dict(id=new_id, path=str(dst.relative_to(out)), split="train", label=clip.label,
                valence="" if clip.valence is None else clip.valence, text=clip.text or "",
                origin=LABEL_SEP.join([clip.id, *mixed_in]))


def speech_noise(copy_id: str, origin: str, seed: int, noise_files: list[Path], voices: dict[str, Path]):
    """The speech noise of a `noise` copy, drawn from --seed and the copy's id alone (a resumed run
    records what the first one drew): (noise(n) -> float [n], ids of the clips whose speech it holds).
    With noise files: one of them, cropped at a random start (USTC's MUSAN augmentation); else
    babble of BABBLE_VOICES training clips other than `origin` (`voices`: id -> media file)."""
    rng = np.random.default_rng([seed, zlib.crc32(copy_id.encode()), 1])
    if noise_files:
        path, start = noise_files[rng.integers(len(noise_files))], float(rng.random())
        return (lambda n: random_crop(read_audio(path), n, start)), []
    others = [cid for cid in voices if cid != origin]
    picks = [others[i] for i in rng.choice(len(others), min(BABBLE_VOICES, len(others)), replace=False)]
    return (lambda n: babble([read_audio(voices[cid]) for cid in picks], n, rng)), picks


def random_crop(noise: np.ndarray, n: int, start: float) -> np.ndarray:
    """n samples of `noise` from `start` (0..1 of the room it leaves): a crop when it is long enough,
    else looped from that point."""
    if len(noise) >= n:
        begin = int(start * (len(noise) - n + 1))
        return noise[begin:begin + n]
    return fit_length(noise, n, int(start * len(noise)))


if __name__ == "__main__":
    sys.exit(main())
