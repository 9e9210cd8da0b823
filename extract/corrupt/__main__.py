"""`python -m extract.corrupt`: a MER-NOISE copy of a corpus (MER 2023 baseline, section 2.3).

    python -m extract.corrupt --dataset demo --root data/demo --out data/demo-noisy [--noise-dir MUSAN/speech]
        [--snr 5:10] [--blur 1,2,4] [--seed 0] [--workers 2]

Per clip: speech noise mixed in at an SNR drawn uniformly from --snr (dB), the video downsampled
by a factor drawn from --blur and upsampled back. Noise comes from the audio files of --noise-dir
(MUSAN's speech subset in the challenge); without one, babble made of other clips of the same
corpus stands in. The draws are written to <out>/corruption.csv. Extract the copy like any corpus
and score a trained run on it with `python -m fuse.predict` (docs/corruption.md).
"""
from __future__ import annotations

import sys
from pathlib import Path

import click
import pandas as pd

from cache.cli import Refused, corpus_manifest, corpus_options, ends_cleanly, worker_pool
from ..core.progress import Progress
from .copy import NOISE_SUFFIXES, Draw, copy_other_files, draw, media_files, noise_files_in, remove_stale_temporaries
from .work import corrupt_clip


def parse_snr(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(x) for x in text.split(":"))
    except ValueError:
        raise Refused(f"--snr {text!r}: expected LOW:HIGH in dB, e.g. 5:10") from None
    if lo > hi:
        raise Refused(f"--snr {text!r}: LOW is above HIGH")
    return lo, hi


def parse_blur(text: str) -> list[int]:
    try:
        factors = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        factors = []
    if not factors or min(factors) < 1:
        raise Refused(f"--blur {text!r}: expected downsampling factors >= 1, e.g. 1,2,4")
    return factors


def corpus_root(root, clips) -> Path:
    return Path(root) if root else Path(clips).parent


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--dataset", required=True, help="Dataset name (also the layout when it names one).")
@corpus_options
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder of the corrupted copy.")
@click.option("--noise-dir", type=click.Path(file_okay=False, exists=True), help="Noise audio files (MUSAN speech).")
@click.option("--snr", "snr_text", default="5:10", show_default=True, help="SNR range in dB, drawn per clip.")
@click.option("--blur", "blur_text", default="1,2,4", show_default=True, help="Down/upsampling factors, one per clip.")
@click.option("--seed", default=0, show_default=True)
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True)
@ends_cleanly("the clips corrupted so far are kept; run the same command again to finish")
def main(dataset, layout, root, clips, out, noise_dir, snr_text, blur_text, seed, workers):
    """Write a MER-NOISE copy of a corpus: same layout, ids and labels; noisy audio, blurred video."""
    snr_range, factors = parse_snr(snr_text), parse_blur(blur_text)
    if not root and not clips:
        raise Refused("give the corpus: --root DIR (with its layout) or --clips FILE.csv")
    manifest = corpus_manifest(dataset, layout, root, clips)
    src_root, out = corpus_root(root, clips).resolve(), Path(out).resolve()
    if out == src_root or src_root in out.parents:
        raise Refused(f"--out {out}: must not be the corpus folder or inside it")
    noise_files = [str(p) for p in noise_files_in(noise_dir)] if noise_dir else []
    if noise_dir and not noise_files:
        raise Refused(f"--noise-dir {noise_dir}: no audio files ({', '.join(sorted(NOISE_SUFFIXES))})")
    usable = [c for c in manifest if c.error is None and media_files(c)]
    voices = {c.id: str(media_files(c)[0]) for c in usable}
    failed = {c.id: c.error or "no media file" for c in manifest if c not in usable}
    draws, jobs, done = {}, [], 0
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)
    for c in usable:
        d = draws[c.id] = draw(c.id, seed, snr_range, factors, len(noise_files), list(voices))
        pairs = []
        for f in media_files(c):
            if src_root not in f.resolve().parents:
                failed[c.id] = f"{f} is outside the corpus folder {src_root}"
                break
            pairs.append((str(f), str(out / f.resolve().relative_to(src_root))))
        if c.id in failed:
            continue
        if all(Path(dst).exists() for _, dst in pairs):
            done += 1
            continue
        jobs.append((c.id, pairs, d, noise_files, tuple(voices[v] for v in d.noise) if not noise_files else (), seed))
    progress = Progress(len(jobs), name="corrupt")
    with worker_pool(workers) if workers > 1 else _Serial() as pool:
        for clip_id, error in pool.imap_unordered(corrupt_clip, jobs):
            if error:
                failed[clip_id] = error
                progress.write(f"{clip_id}: {error}")
            progress.update(len(failed))
    progress.close()
    media = {f.resolve() for c in usable for f in media_files(c)}
    copy_other_files(src_root, out, media)
    write_draws(out / "corruption.csv", draws, failed, noise_files, noise_dir)
    click.echo(f"{len(jobs) - sum(j[0] in failed for j in jobs)} clips corrupted, {done} already done, "
               f"{len(failed)} failed -> {out}")
    for clip_id, why in sorted(failed.items()):
        click.echo(f"  failed {clip_id}: {why}")


def write_draws(path: Path, draws: dict[str, Draw], failed: dict, noise_files, noise_dir):
    rows = [{"id": cid, "snr_db": d.snr_db, "blur_factor": d.blur,
             "noise": (str(Path(noise_files[d.noise[0]]).relative_to(noise_dir)) if noise_files
                       else "babble:" + "+".join(d.noise))}
            for cid, d in sorted(draws.items()) if cid not in failed]
    tmp = path.with_name(f".{path.name}.tmp")
    pd.DataFrame(rows, columns=["id", "snr_db", "blur_factor", "noise"]).to_csv(tmp, index=False)
    tmp.replace(path)


class _Serial:
    """The Pool interface, in this process (one worker)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    @staticmethod
    def imap_unordered(fn, jobs):
        return map(fn, jobs)


if __name__ == "__main__":
    sys.exit(main())
