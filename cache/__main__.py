"""Inspect and manage the feature cache.

    python -m cache ls [--dataset demo]
    python -m cache info demo is09
    python -m cache verify [--dataset demo]
    python -m cache import-npy features/hubert-large-UTT --dataset mer2023 --feature hubert-large \
        --root /data/MER2023/dataset-release          # also writes the clip table
    python -m cache clips demo                          # the clip table: splits, classes, labels
    python -m cache clips mycorpus --clips mycorpus/clips.csv   # write it (--replace-clips: drop clips)
    python -m cache rm demo is09

A refused command (nothing cached under that name, a bad corpus, a table it would shrink) exits 2;
a damaged file exits 1, named.
"""
from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import click
import numpy as np

from .cli import Refused, check_clip_table, corpus_manifest, corpus_options, damage_named, ends_cleanly, source_of
from .clips import ClipTable, clips_path, open_clips, write_table
from .hdf5 import DamagedFile
from .npy_import import import_npy
from .reader import EveryClipFailed, FeatureReader, list_features
from .store import ConfigMismatch
from .verify import verify_clips, verify_file
from .writer import FeatureWriter, cache_root, feature_path

CACHE = click.option("--cache", type=click.Path(file_okay=False), help="Cache root (default $MER_CACHE_DIR or ./data/cache).")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main():
    """The HDF5 feature cache: one file per (dataset, feature)."""


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


REPLACE_CLIPS = click.option("--replace-clips", is_flag=True,
                             help="Replace the clip table even if the corpus lacks clips it holds (they leave it).")
NOTHING_CHANGED = "nothing was changed"


@main.command("ls")
@click.option("--dataset", help="Only this dataset.")
@CACHE
@ends_cleanly(NOTHING_CHANGED)
def ls(dataset, cache):
    """List cached features: clips, dims, dtype, size on disk, failures; damaged files marked."""
    paths = list_features(cache, dataset)
    if not paths:
        click.echo(f"no features cached under {cache_root(cache)}")
        return
    click.echo(f"{'dataset':<14} {'feature':<20} {'clips':>6} {'dims':<18} {'dtype':<8} {'size':>9} {'failed':>6}  extractor")
    damaged = 0
    for path in paths:
        try:
            click.echo(_ls_row(path))
        except FileNotFoundError:
            continue  # removed while listing (a merge, `cache rm`)
        except DamagedFile as err:
            damaged += 1
            click.echo(f"{path.parent.name:<14} {path.stem:<20} DAMAGED: {err.cause}")
    if damaged:
        click.echo(f"{damaged} damaged: `python -m cache verify` lists every damaged file", err=True)
        sys.exit(1)


def _ls_row(path: Path) -> str:
    if path.suffix == ".parts":
        size = sum(p.stat().st_size for p in path.glob("*.h5"))
        return f"{path.parent.name:<14} {path.stem:<20} {'':>6} {'(unfinished: re-run to resume)':<27} {_size(size):>9}"
    with FeatureReader(path) as feat:
        try:
            dims, dtype = "x".join(map(str, feat.shape[1:])) or "scalar", str(feat.dataset().dtype)
        except EveryClipFailed:
            dims, dtype = "(every clip failed)", ""
        extractor = feat.provenance.get("extractor", "?")
        if "stand_in" in json.dumps(feat.provenance):
            extractor += " (random-initialised stand-in)"
        return (f"{path.parent.name:<14} {feat.name:<20} {len(feat.ids):>6} {dims:<18} {dtype:<8} "
                f"{_size(feat.size_on_disk()):>9} {len(feat.failures()):>6}  {extractor}")


@main.command()
@click.argument("dataset")
@click.argument("feature")
@CACHE
@ends_cleanly(NOTHING_CHANGED)
@damage_named
def info(dataset, feature, cache):
    """Arrays, status counts, failures and provenance of one feature."""
    with _open(dataset, feature, cache) as feat:
        counts = Counter(feat.status)  # read before printing: a damaged file prints only its line
        click.echo(f"{feat.path}  ({_size(feat.size_on_disk())})")
        for key in feat.keys:
            dset = feat.dataset(key)
            mark = "  (primary)" if key == feat.primary else ""
            click.echo(f"  array    {key:<14} {str(dset.shape):<22} {dset.dtype}{mark}")
        for key in feat.sequence_keys:
            values = feat.sequence_dataset(key)
            click.echo(f"  sequence {key:<14} [T, {', '.join(map(str, values.shape[1:]))}] {values.dtype}, "
                       f"{values.shape[0]} frames in all")
        click.echo("  clips    " + ", ".join(f"{counts[s]} {s}" for s in ("ok", "flagged", "failed")))
        for cid, reason in feat.failures().items():
            click.echo(f"  FAILED   {cid}: {reason}")
        click.echo("provenance: " + json.dumps(feat.provenance, indent=2, sort_keys=True))


@main.command()
@click.option("--dataset", help="Only this dataset.")
@CACHE
@ends_cleanly(NOTHING_CHANGED)
def verify(dataset, cache):
    """Read back every feature file, part and clip table against its checksums; check shapes,
    unique sorted ids, NaN only where failed. Exit 1 on a problem."""
    root, problems, unchecked, files = cache_root(cache), 0, 0, 0
    for file in _files_to_verify(cache, dataset):
        try:
            checked = (verify_clips if file.name.startswith("_") else verify_file)(file)
        except FileNotFoundError:
            continue  # removed while listed (a merge folded a part in)
        files += 1
        problems += len(checked.problems)
        unchecked += not checked.checksummed and not checked.problems
        note = "" if checked.checksummed or checked.problems else \
            "  (no checksums: written before they were stored; a changed byte would go unseen)"
        click.echo(f"{'ok  ' if not checked.problems else 'BAD '} {file.relative_to(root)}{note}")
        for issue in checked.problems:
            click.echo(f"     {issue}")
    without = f"; {unchecked} without checksums (extract them again with --overwrite to add them)" if unchecked else ""
    click.echo(f"{files} files checked, {problems} problems{without}")
    sys.exit(1 if problems else 0)


def _files_to_verify(cache, dataset) -> list[Path]:
    """Every clip table, feature file and part under the cache root (or of one dataset)."""
    base = cache_root(cache)
    folders = [base / dataset] if dataset else sorted(p for p in base.glob("*") if p.is_dir())
    files = [clips_path(folder.name, cache) for folder in folders if clips_path(folder.name, cache).exists()]
    for path in list_features(cache, dataset):
        parts = path.suffix == ".parts"
        files += sorted(p for p in path.glob("*.h5") if not p.name.startswith(".")) if parts else [path]
    return files


@main.command("import-npy")
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option("--dataset", required=True)
@click.option("--feature", required=True, help="Name to cache it under, e.g. hubert-large-utt.")
@click.option("--frame-level/--utterance-level", default=None, help="Default: inferred from the shapes.")
@click.option("--overwrite", is_flag=True, help="Replace a feature of that name.")
@corpus_options
@REPLACE_CLIPS
@CACHE
@ends_cleanly("what was committed is kept; run the same command again to finish")
@damage_named
def import_npy_command(folder, dataset, feature, frame_level, overwrite, layout, root, clips, replace_clips, cache):
    """Import a folder of per-clip <clip id>.npy files (MER2023 baseline style); with
    --layout/--root or --clips, write the dataset's clip table too."""
    manifest, source = corpus_manifest(dataset, layout, root, clips), source_of("import-npy", dataset, layout, clips)
    if manifest is not None:  # checked before any work: a table it would shrink is refused now
        check_clip_table(ClipTable.from_manifest(manifest, dataset, source), cache, replace_clips)
    try:
        path, n = import_npy(Path(folder), dataset, feature, cache, frame_level, overwrite, manifest,
                             source=source, replace_clips=True)
    except (ConfigMismatch, ValueError, FileNotFoundError) as err:
        raise Refused(str(err)) from None
    click.echo(f"imported {n} clips -> {path}")
    if manifest is None:
        table = clips_path(dataset, cache)
        click.echo(f"clip table {table} kept as it is" if table.exists() else
                   f"no clip table written: stage 2 needs one; add it with --layout L --root DIR or "
                   f"--clips FILE.csv (here, or `python -m cache clips {dataset} ...`)")
        return
    click.echo(f"clip table -> {clips_path(dataset, cache)}")
    with FeatureReader(path) as feat:
        _report_coverage(feat.ids, manifest.ids)


def _report_coverage(feature_ids, table_ids):
    extra, absent = sorted(set(feature_ids) - set(table_ids)), sorted(set(table_ids) - set(feature_ids))
    if extra:
        click.echo(f"  {len(extra)} imported clips are not in the clip table (never used): {extra[:5]}")
    if absent:
        click.echo(f"  {len(absent)} clips of the clip table have no imported value: {absent[:5]}")


@main.command("clips")
@click.argument("dataset")
@corpus_options
@REPLACE_CLIPS
@CACHE
@ends_cleanly("the clip table is as it was, or written whole")
@damage_named
def clips_command(dataset, layout, root, clips, replace_clips, cache):
    """Show the dataset's clip table; with --layout/--root or --clips, write it first (a table
    that would lose clips only with --replace-clips)."""
    manifest = corpus_manifest(dataset, layout, root, clips)
    if manifest is not None:
        table = ClipTable.from_manifest(manifest, dataset, source_of("cache clips", dataset, layout, clips))
        check_clip_table(table, cache, replace_clips)
        click.echo(f"clip table -> {write_table(table, cache, replace=True)}")
    try:
        table = open_clips(dataset, cache)
    except FileNotFoundError as err:
        raise Refused(str(err)) from None
    _print_clips(table)


def _print_clips(table):
    kind = "multi-label" if table.multi_label else "single-label"
    click.echo(f"{table.dataset}: {len(table)} clips, {kind}, {len(table.classes)} classes "
               f"({', '.join(table.classes)})")
    click.echo(f"  manifest {table.manifest_fingerprint}, written by {table.source} at {table.created}")
    click.echo(f"  {'split':<10} {'clips':>6} {'labelled':>9} {'valence':>8}")
    for split in table.splits:
        ids = table.split(split)
        click.echo(f"  {split:<10} {len(ids):>6} {int(table.labelled(ids).sum()):>9} "
                   f"{int((~np.isnan(table.valence(ids))).sum()):>8}")
    counts = Counter(name for names in table.label_names() for name in names)
    none = int((table.labelled() & np.array([not names for names in table.label_names()], bool)).sum())
    click.echo("  labels   " + ", ".join(f"{name} {counts[name]}" for name in table.classes)
               + (f", none of them {none}" if none else ""))
    for cid, problem in list(table.problems.items())[:20]:
        click.echo(f"  PROBLEM  {cid}: {problem}")


@main.command()
@click.argument("dataset")
@click.argument("feature")
@CACHE
@ends_cleanly("the feature is removed or kept whole")
def rm(dataset, feature, cache):
    """Delete a cached feature (its file and any unfinished parts)."""
    path = feature_path(cache, dataset, feature)
    if not (path.exists() or path.with_suffix(".parts").is_dir()):
        raise Refused(f"nothing cached for {dataset}/{feature} under {cache_root(cache)}")
    FeatureWriter(cache, dataset, feature, "", {}).remove()
    click.echo(f"removed {path}")


def _open(dataset, feature, cache) -> FeatureReader:
    try:
        return FeatureReader(feature_path(cache, dataset, feature))
    except FileNotFoundError as err:
        raise Refused(str(err)) from None


if __name__ == "__main__":
    main()
