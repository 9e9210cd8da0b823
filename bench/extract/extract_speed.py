"""Extraction speed on the demo corpus, per extractor, with 1 and 2 workers.

Reference approach, measured in the same run: one pass per feature (each pass decodes every clip
again, as per-feature scripts do) against our single pass that decodes each clip once for all
features.

    python bench/extract/extract_speed.py --clips 96 [--out table.md]
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import click
from click.testing import CliRunner

from extract.__main__ import main as extract_main
from manifests import load_manifest
from manifests.demo import generate

FEATURES = ("is09", "is10", "egemaps", "mfcc", "logmel", "e2el-spectrogram")


def timed_extract(corpus: Path, features: str, workers: int) -> float:
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        result = CliRunner().invoke(extract_main, [
            "--dataset", "demo", "--root", str(corpus), "--features", features, "--cache", cache,
            "--workers", str(workers), "--quiet"])
        seconds = time.perf_counter() - start
    if result.exit_code != 0:
        raise RuntimeError(result.output)
    return seconds


def audio_seconds(corpus: Path) -> float:
    from extract.core.media import decode

    return sum(decode(c.media).duration for c in load_manifest("demo", root=corpus))


@click.command()
@click.option("--clips", default=96, show_default=True)
@click.option("--corpus", default="data/demo", show_default=True, type=click.Path(file_okay=False))
@click.option("--out", default=None, type=click.Path(dir_okay=False), help="Also write the table here.")
def main(clips, corpus, out):
    corpus = generate(Path(corpus), n_clips=clips)
    n, total_audio = clips, audio_seconds(corpus)
    lines = [f"demo corpus: {n} clips, {total_audio:.0f} s of audio", "",
             "| extractor | workers | seconds | clips/s | audio s/s |", "| --- | --- | --- | --- | --- |"]
    per_feature = {1: 0.0, 2: 0.0}
    for feature in FEATURES:
        for workers in (1, 2):
            seconds = timed_extract(corpus, feature, workers)
            per_feature[workers] += seconds
            lines.append(f"| {feature} | {workers} | {seconds:.1f} | {n / seconds:.1f} | {total_audio / seconds:.0f} |")
    lines += ["", "| all six features | workers | one pass per feature (s) | one pass for all (s) | ratio |",
              "| --- | --- | --- | --- | --- |"]
    for workers in (1, 2):
        together = timed_extract(corpus, ",".join(FEATURES), workers)
        lines.append(f"| decode once vs once per feature | {workers} | {per_feature[workers]:.1f} | "
                     f"{together:.1f} | {per_feature[workers] / together:.2f}x |")
    text = "\n".join(lines)
    click.echo(text)
    if out:
        Path(out).write_text(text + "\n")


if __name__ == "__main__":
    main()
