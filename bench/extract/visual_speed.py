"""Speed of the visual pipeline on this CPU: detection + alignment, each face embedding, whole clips.

Frames are the astronaut photo (a real face) with head motion; whole-clip timings use the demo
corpus (manifests.demo) when it is there, else 4 s clips of that moving face at 25 fps.

    python bench/extract/visual_speed.py [--frames 40] [--clips 8] [--out table.md]
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import click
import cv2
import numpy as np
from click.testing import CliRunner

from extract.visual.face_track import TrackConfig, align_face, detect_all, face_track, model_path
from extract.visual.fer2013 import fer2013_predict, load_fer2013

OPENFACE_SECONDS_PER_FRAME = 1 / 30  # OpenFace issue 119: "about real time", 30 s for a 30 s video


def moving_face(n: int, width: int = 640, height: int = 360, seed: int = 0) -> np.ndarray:
    """uint8 [n, height, width, 3]: the astronaut's head rolling, scaling and drifting."""
    from skimage.data import astronaut

    rng = np.random.default_rng(seed)
    image = astronaut()
    frames = np.empty((n, height, width, 3), np.uint8)
    for t in range(n):
        angle, scale = 10 * np.sin(t / 7 + rng.uniform()), 0.75 + 0.1 * np.cos(t / 11)
        pose = cv2.getRotationMatrix2D((220, 120), angle, scale)
        pose[:, 2] += (width / 2 - 220 + 20 * np.sin(t / 5), height / 2 - 120)
        frames[t] = cv2.warpAffine(image, pose, (width, height), borderMode=cv2.BORDER_REFLECT)
    return frames


def per_item(fn, items, repeat: int = 1) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        fn(items)
    return (time.perf_counter() - start) / (repeat * len(items))


def stage_timings(frames: np.ndarray) -> dict[str, float]:
    """Seconds per frame (per face for the embeddings)."""
    import dlib

    track = face_track(frames[:2])  # warm the models
    out = {f"detect HOG upsample {u}": per_item(lambda f: detect_all(f, TrackConfig(upsample=str(u))), frames)
           for u in (0, 1)}
    track = face_track(frames)
    out["track: detect (auto) + link + 5/68 landmarks"] = per_item(face_track, frames)
    chips = [align_face(f, b, m, 150) for f, b, m in zip(frames, track.boxes, track.landmarks5)]
    out["align (get_face_chip 150 px)"] = per_item(
        lambda fs: [align_face(f, b, m, 150) for f, b, m in zip(fs, track.boxes, track.landmarks5)], frames)
    model = dlib.face_recognition_model_v1(str(model_path("dlib_face_recognition_resnet_model_v1.dat")))
    out["face-dlib descriptor (batch)"] = per_item(model.compute_face_descriptor, chips)
    gray = np.stack([cv2.cvtColor(cv2.resize(c, (64, 64)), cv2.COLOR_RGB2GRAY) for c in chips])
    fer = load_fer2013()
    out["face-fer2013 (batch)"] = per_item(lambda g: fer2013_predict(g, fer), gray, repeat=3)
    out["face-fer2013 (one face at a time)"] = per_item(lambda g: [fer2013_predict(x[None], fer) for x in g], gray)
    out["vision: ViT-B/16 224 px (random init)"] = vit_base_per_face(np.stack(chips[:8]))
    return out


def vit_base_per_face(chips: np.ndarray) -> float:
    """ViT-B/16 architecture with random weights: the cost of a real FER-tuned ViT checkpoint."""
    import torch
    from transformers import ViTConfig, ViTModel

    model = ViTModel(ViTConfig()).eval()
    pixels = torch.from_numpy(cv2.resize(chips[0], (224, 224))).permute(2, 0, 1).float()[None] / 255
    batch = pixels.repeat(len(chips), 1, 1, 1)
    with torch.inference_mode():
        model(pixel_values=batch[:1], output_hidden_states=True)
        start = time.perf_counter()
        model(pixel_values=batch, output_hidden_states=True)
    return (time.perf_counter() - start) / len(chips)


def clip_corpus(folder: Path, n_clips: int) -> list[str]:
    """CLI arguments naming a corpus of n_clips: the demo corpus, or moving-face clips."""
    try:
        from manifests.demo import generate
    except ImportError:
        generate = None
    if generate is not None:
        generate(folder, n_clips=n_clips, seed=0)
        return ["--dataset", "demo", "--root", str(folder)]
    from manifests.mediafile import write_clip
    from manifests.folder import write_table

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n_clips):
        write_clip(folder / f"c{i}.mp4", None, frames=moving_face(100, seed=i), fps=25)
    rows = [dict(id=f"c{i}", path=f"c{i}.mp4", split="train") for i in range(n_clips)]
    return ["--dataset", "faces", "--clips", str(write_table(folder / "clips.csv", rows))]


def clip_timings(n_clips: int) -> dict[str, float]:
    """Seconds per clip of `python -m extract` for each visual feature set, 1 worker."""
    from extract.__main__ import main

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        corpus = clip_corpus(Path(tmp) / "corpus", n_clips)
        for features in ("face-crops", "face-crops,face-dlib,face-fer2013", "face-crops-crossbert"):
            start = time.perf_counter()
            result = CliRunner().invoke(main, [*corpus, "--features", features,
                                               "--cache", str(Path(tmp) / features), "--quiet"])
            if result.exit_code not in (0, 1):
                raise RuntimeError(result.output)
            out[features] = (time.perf_counter() - start) / n_clips
    return out, corpus[1]


@click.command()
@click.option("--frames", default=40, show_default=True)
@click.option("--clips", default=8, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False))
def main(frames, clips, out):
    stages = stage_timings(moving_face(frames))
    per_clip, corpus = clip_timings(clips)
    lines = [f"CPU: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start", "",
             "| stage | ms per frame / face | frames per second |", "| --- | --- | --- |"]
    lines += [f"| {k} | {v * 1000:.1f} | {1 / v:.1f} |" for k, v in stages.items()]
    lines += ["", f"| features ({corpus} corpus, {clips} clips, 1 worker) | seconds per clip |", "| --- | --- |"]
    lines += [f"| {k} | {v:.2f} |" for k, v in per_clip.items()]
    track = stages["track: detect (auto) + link + 5/68 landmarks"] + stages["align (get_face_chip 150 px)"]
    lines += ["", f"detection + alignment: {track * 1000:.1f} ms per frame vs OpenFace's ~33 ms "
              f"(real time, issue 119): {OPENFACE_SECONDS_PER_FRAME / track:.1f}x"]
    text = "\n".join(lines)
    click.echo(text)
    if out:
        Path(out).write_text(text + "\n")


if __name__ == "__main__":
    main()
