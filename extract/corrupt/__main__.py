"""`python -m extract.corrupt`: a MER-NOISE copy of a corpus (MER 2023 baseline, section 2.3).

    python -m extract.corrupt --dataset demo --root data/demo --out data/demo-noisy [--noise-dir MUSAN/speech]
        [--snr 5:10] [--blur 1,2,4] [--seed 0] [--workers 2]

Per clip, as the official main-corrupt.py: speech noise mixed in at an SNR drawn from the integers
of --snr (dB), the video down a Gaussian pyramid by a factor drawn from --blur and back up. Noise
comes from the audio files of --noise-dir (MUSAN's speech subset in the challenge), drawn and
joined until longer than the clip; without one, babble made of other clips of the same corpus
stands in. The settings go to <out>/corruption.json, the draws to <out>/corruption.csv. Extract
the copy like any corpus and score a trained run on it with `python -m fuse.predict`
(docs/corruption.md).
"""
from __future__ import annotations

import sys
from pathlib import Path

import json

import click
import pandas as pd

from cache.cli import Refused, corpus_manifest, corpus_options, ends_cleanly, worker_pool
from ..core.progress import Progress
from ..core.media import MediaError
from .copy import NOISE_SUFFIXES, Draw, SnrRange, copy_other_files, draw, media_files, noise_files_in, read_audio, remove_stale_temporaries
from .work import corrupt_clip, noise_for


def parse_snr(text: str) -> SnrRange:
    """'5:10' (the integers 5..10, main-corrupt.py's), '5:10:0.5' (steps of 0.5 dB), '5:10:0' (any value)."""
    try:
        values = [float(x) for x in text.split(":")]
        low, high, step = values if len(values) == 3 else (*values, 1.0)
    except ValueError:
        raise Refused(f"--snr {text!r}: expected LOW:HIGH[:STEP] in dB, e.g. 5:10") from None
    if low > high:
        raise Refused(f"--snr {text!r}: LOW is above HIGH")
    if step < 0:
        raise Refused(f"--snr {text!r}: STEP must be 0 (any value) or positive")
    return SnrRange(low, high, step)


def parse_blur(text: str) -> list[int]:
    try:
        factors = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        factors = []
    if not factors or min(factors) < 1:
        raise Refused(f"--blur {text!r}: expected downsampling factors >= 1, e.g. 1,2,4")
    odd = [f for f in factors if f & (f - 1)]
    if odd:
        raise Refused(f"--blur {text!r}: {odd[0]} is not a power of two (the Gaussian pyramid halves the "
                      "size per level: 1, 2, 4, 8, ...)")
    return factors


def corpus_root(root, clips) -> Path:
    return Path(root) if root else Path(clips).parent


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--dataset", required=True, help="Dataset name (also the layout when it names one).")
@corpus_options
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder of the corrupted copy.")
@click.option("--noise-dir", type=click.Path(file_okay=False, exists=True), help="Noise audio files (MUSAN speech).")
@click.option("--snr", "snr_text", default="5:10", show_default=True,
              help="LOW:HIGH[:STEP] dB: one SNR of LOW, LOW+STEP, ..., HIGH per clip (STEP 1, the official "
                   "integers; 0: any value).")
@click.option("--blur", "blur_text", default="1,2,4", show_default=True,
              help="Gaussian-pyramid factors (powers of two), one drawn per clip.")
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
    pairs = copy_pairs(usable, src_root, out, failed)
    draws = {cid: draw(cid, seed, snr_range, factors, bool(noise_files), list(voices)) for cid in pairs}
    done = [cid for cid, ps in pairs.items() if all(Path(dst).exists() for _, dst in ps)]
    check_settings(out, settings(snr_range, factors, seed, noise_files), done and pairs[done[0]][0][1])
    remove_stale_temporaries(out)
    jobs = [(cid, pairs[cid], d, noise_files, tuple(voices[v] for v in d.voices), seed)
            for cid, d in draws.items() if cid not in done]
    noises = recorded_noises(out / "corruption.csv", noise_files, noise_dir)
    try:
        run_jobs(jobs, workers, failed, noises)
    finally:  # also on Ctrl-C: the draws of the clips written so far
        for cid in done:
            if cid not in noises:  # written by a run killed before it recorded them
                noises[cid] = noise_of(cid, pairs[cid][0][0], seed, noise_files)
        write_draws(out / "corruption.csv", draws, failed, noises, noise_files, noise_dir)
    media = {f.resolve() for c in usable for f in media_files(c)}
    copy_other_files(src_root, out, media)
    click.echo(f"{len(jobs) - sum(j[0] in failed for j in jobs)} clips corrupted, {len(done)} already done, "
               f"{len(failed)} failed -> {out}")
    for clip_id, why in sorted(failed.items()):
        click.echo(f"  failed {clip_id}: {why}")


def copy_pairs(clips, src_root: Path, out: Path, failed: dict) -> dict:
    """{clip id: [(media file, its place in the copy)]}; a clip with a file outside the corpus
    folder goes to `failed` instead."""
    pairs = {}
    for c in clips:
        outside = [f for f in media_files(c) if src_root not in f.resolve().parents]
        if outside:
            failed[c.id] = f"{outside[0]} is outside the corpus folder {src_root}"
        else:
            pairs[c.id] = [(str(f), str(out / f.resolve().relative_to(src_root))) for f in media_files(c)]
    return pairs


def run_jobs(jobs, workers: int, failed: dict, noises: dict):
    """Corrupt the clips of `jobs` (in worker processes when workers > 1): failures into `failed`,
    each written clip's noise into `noises`."""
    progress = Progress(len(jobs), name="corrupt")
    with worker_pool(workers) if workers > 1 else _Serial() as pool:
        for clip_id, error, noise in pool.imap_unordered(corrupt_clip, jobs):
            if error:
                failed[clip_id] = error
                progress.write(f"{clip_id}: {error}")
            else:
                noises[clip_id] = noise
            progress.update(len(failed))
    progress.close()


def settings(snr_range: SnrRange, factors, seed: int, noise_files) -> dict:
    """What decides a clip's corruption besides its id (corruption.json)."""
    return {"snr": [snr_range.low, snr_range.high, snr_range.step], "blur": sorted(set(factors)), "seed": seed,
            "noise": f"{len(noise_files)} noise files" if noise_files else "babble", "method": "main-corrupt.py"}


def check_settings(out: Path, wanted: dict, written: str | None):
    """Refuses (exit 2) to add clips to a copy made with other settings, or to a folder holding a
    clip's file without corruption.json; records the settings of a new copy."""
    path = out / "corruption.json"
    if path.exists():
        before = json.loads(path.read_text())
        if before != wanted:
            changed = ", ".join(f"{k} {before.get(k)} there, {v} now" for k, v in wanted.items() if before.get(k) != v)
            raise Refused(f"--out {out} was written with other settings ({changed}; corruption.json): run it "
                          "again with those, or give another --out")
        return
    if written:
        raise Refused(f"--out {out} already holds {written} but no corruption.json: it was not written by this "
                      "command (or by an earlier version of it); give an empty or new --out")
    out.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(wanted, indent=1))
    tmp.replace(path)


def noise_of(clip_id: str, source: str, seed: int, noise_files) -> tuple:
    """The noise a clip written earlier got (noise_for's description), from its source's length."""
    if not noise_files:
        return ()
    try:
        n = len(read_audio(Path(source)))
    except MediaError:
        return ()   # no audio track: no noise
    return noise_for(clip_id, seed, n, noise_files, ())[1]


def recorded_noises(path: Path, noise_files, noise_dir) -> dict:
    """{clip id: noise description} from an earlier corruption.csv of this copy (none: {})."""
    table = pd.read_csv(path, dtype=str, keep_default_na=False) if path.exists() and noise_files else None
    if table is None or "noise_start" not in table:
        return {}
    index = {str(Path(f).relative_to(noise_dir)): i for i, f in enumerate(noise_files)}
    out = {}
    for row in table.itertuples():
        names = row.noise.split("+") if row.noise else []
        if all(n in index for n in names) and (row.noise_start.isdigit() or not names):
            out[row.id] = (tuple(index[n] for n in names), int(row.noise_start)) if names else ()
    return out


def write_draws(path: Path, draws: dict[str, Draw], failed: dict, noises: dict, noise_files, noise_dir):
    """corruption.csv: id, snr_db, blur_factor, noise (files joined with '+', or babble:<ids>),
    noise_start (samples at 16 kHz into the joined files) for every clip written."""
    rows = []
    for cid, d in sorted(draws.items()):
        if cid in failed or cid not in noises:
            continue
        picks, start = noises[cid] or ((), "")
        names = "+".join(str(Path(noise_files[i]).relative_to(noise_dir)) for i in picks)
        rows.append({"id": cid, "snr_db": d.snr_db, "blur_factor": d.blur,
                     "noise": names if noise_files else "babble:" + "+".join(d.voices), "noise_start": start})
    tmp = path.with_name(f".{path.name}.tmp")
    pd.DataFrame(rows, columns=["id", "snr_db", "blur_factor", "noise", "noise_start"]).to_csv(tmp, index=False)
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
