"""E2E against E2E-L: training from the cache against recomputing the inputs from the media.

E2E-L (SAMSEMO, 3.2) computes face crops and spectrogram pieces once and trains on them; E2E
(Dai et al.'s end-to-end model) recomputes them from the media for every batch. This bench times,
on a corpus and its cache, in the same run:

* an `e2el` epoch as `python -m fuse.train --model e2el` trains it (V, A, T; 5 folds as one
  batched model; training and validation of every fold), from its own seconds over N epochs;
* the recomputation an E2E epoch adds: decoding each training clip, face detection and alignment,
  the 16 crops, the log-mel pieces (stage 1's own `face-crops` and `e2el-spectrogram` code), once
  per clip and epoch. (Training one fold at a time, as E2E's code does, would recompute each clip
  in 4 of the 5 folds: 4x this; the ratio below is the favourable case for E2E.)

    python bench/fuse/e2el_speed.py --root data/demo --cache data/cache [--dataset demo]
                               [--channels 16,16,16,32,64,128] [--epochs 2]
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import click

from runs import train

RECOMPUTED = ("face-crops", "e2el-spectrogram")


def train_epoch_seconds(cache: Path, dataset: str, channels: str, epochs: int, workdir: Path) -> dict:
    """fuse.train's own seconds per epoch of e2el on V, A, T (training and validation, all folds)."""
    metrics = train(["--cache", cache, "--dataset", dataset, "--model", "e2el", "--modalities", "V,A,T",
                     "--channels", channels, "--epochs", epochs, "--quiet"], workdir / "e2el-run")
    return {"seconds": metrics["seconds"], "epochs": epochs, "per_epoch": metrics["seconds"] / epochs,
            "cv_weighted_f1": metrics["cv"]["weighted_f1"]["mean"]}


def recompute_seconds(root: Path, dataset: str) -> dict:
    """Seconds to recompute the crops and pieces of every labelled training clip from its media."""
    from extract.core.base import build
    from extract.core.runner import process_clip
    from manifests import load_manifest

    clips = [c for c in load_manifest(dataset, root=root).clips if c.split == "train" and c.label]
    extractors = {name: build(name) for name in RECOMPUTED}
    process_clip(clips[0], extractors, list(RECOMPUTED))  # models loaded, caches warm
    start = time.perf_counter()
    failed = 0
    for clip in clips:
        _, results, _ = process_clip(clip, extractors, list(RECOMPUTED))
        failed += any(status == "failed" for status, *_ in results.values())
    seconds = time.perf_counter() - start
    return {"clips": len(clips), "seconds": seconds, "per_clip": seconds / len(clips), "failed": failed}


@click.command()
@click.option("--root", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="The corpus folder (e.g. data/demo).")
@click.option("--cache", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Its cache, holding face-crops, e2el-spectrogram and text-minilm.")
@click.option("--dataset", default="demo", show_default=True)
@click.option("--channels", default="16,16,16,32,64,128", show_default=True, help="e2el CNN channels.")
@click.option("--epochs", default=2, show_default=True, help="e2el epochs timed.")
def main(root, cache, dataset, channels, epochs):
    """Time an E2E-L epoch from the cache and what recomputing its inputs would add."""
    with tempfile.TemporaryDirectory(prefix="e2el-speed-") as tmp:
        train = train_epoch_seconds(cache, dataset, channels, epochs, Path(tmp))
    prep = recompute_seconds(root, dataset)
    e2e = train["per_epoch"] + prep["seconds"]
    click.echo(f"e2el (channels {channels}), V+A+T, 5 folds: {train['per_epoch']:.1f} s per epoch "
               f"({train['epochs']} epochs timed, CV weighted F1 {train['cv_weighted_f1']:.3f})")
    click.echo(f"recomputing crops and pieces of {prep['clips']} training clips: {prep['seconds']:.1f} s "
               f"({prep['per_clip'] * 1000:.0f} ms per clip; {prep['failed']} failed)")
    click.echo(f"E2E epoch = {e2e:.1f} s, E2E-L epoch = {train['per_epoch']:.1f} s: "
               f"E2E-L is {e2e / train['per_epoch']:.2f}x faster per epoch")


if __name__ == "__main__":
    main()
