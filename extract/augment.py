"""`python -m extract.augment`: augmented copies of a corpus's labelled training clips.

    python -m extract.augment --dataset demo --root data/demo --out data/demo-aug \\
        [--methods noise,gauss,pitch,stretch,blur,rotate,brightness,cutout] [--noise-dir DIR] [--seed 0]

One copy per clip and method, with the id `<clip id>~<method>` and its origin recorded in the
`origin` column of `<out>/clips.csv` (a clips CSV: extract it with `--clips`, then train with
`fuse.train --augment NAME`, which adds each copy only to the folds that train on its origin).
The methods, as the MER 2023 systems used them:

    noise       speech noise (--noise-dir, else babble of other clips) at 5-11 dB in 1 dB steps (USTC)
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
from .corrupt.copy import media_files, read_audio, rewrite_file
from .corrupt.degrade import babble, mix_at_snr

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
    noise_files = sorted(p for p in Path(noise_dir).rglob("*") if p.is_file()) if noise_dir else []
    rows, failed = [], {}
    progress = Progress(len(train) * len(methods), name="augment")
    for clip in train:
        src = media_files(clip)[0]
        for method in methods:
            if method in VIDEO_METHODS and clip.video is None:
                progress.update(len(failed))
                continue
            new_id = f"{clip.id}~{method}"
            rng = np.random.default_rng([seed, zlib.crc32(new_id.encode())])
            dst = out / "media" / f"{new_id}{src.suffix}"
            try:
                if not dst.exists():
                    audio_fn, frames_fn = transform(method, rng, _noise(noise_files, train, clip, rng))
                    rewrite_file(src, dst, audio_fn, frames_fn)
                rows.append(dict(id=new_id, path=str(dst.relative_to(out)), split="train", label=clip.label,
                                 valence="" if clip.valence is None else clip.valence, text=clip.text or "",
                                 origin=clip.id))
            except Exception as err:  # noqa: BLE001  (a clip that cannot be augmented costs only itself)
                failed[new_id] = f"{type(err).__name__}: {err}"
                progress.write(f"{new_id}: {failed[new_id]}")
            progress.update(len(failed))
    progress.close()
    write_table(out / "clips.csv", rows)
    click.echo(f"{len(rows)} augmented copies of {len(train)} training clips, {len(failed)} failed -> {out / 'clips.csv'}")


def _noise(noise_files, train, clip, rng):
    """Speech noise for `noise`: a file of --noise-dir, else babble of three other training clips."""
    def noise(n: int) -> np.ndarray:
        if noise_files:
            return read_audio(noise_files[rng.integers(len(noise_files))])
        others = [c for c in train if c.id != clip.id]
        picks = [others[i] for i in rng.choice(len(others), min(3, len(others)), replace=False)]
        return babble([read_audio(media_files(c)[0]) for c in picks], n, rng)
    return noise


if __name__ == "__main__":
    sys.exit(main())
