"""Stage 1 command line: decode each clip once and cache the requested features.

    python -m extract --dataset demo --features is09,egemaps,mfcc
    python -m extract --dataset mer2023 --root /data/MER2023/dataset-release --features is10 --workers 2
    python -m extract --dataset mycorpus --clips mycorpus/clips.csv --features mfcc --shard 1/4
    python -m extract --list
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import zlib

import click

from cache import ClipTable, ConfigMismatch, DamagedFile, FeatureWriter, cache_root
from cache.cli import Refused, check_clip_table, damage_named, ends_cleanly
from cache.clips import write_table
from manifests import load_manifest

from .core import base
from .core.models import STAND_IN_NOTE
from .core.runner import load_models, run


def _print_list(ctx, _param, value):
    if not value or ctx.resilient_parsing:
        return
    rows = [(name, cls.dims, cls.description) for name, cls in sorted(base.REGISTRY.items())]
    rows += [(f"{kind}:<id or folder>", "per model", factory.__doc__ or "")
             for kind, factory in sorted(base.KINDS.items())]
    width = max(len(r[0]) for r in rows)
    dims = max(len(r[1]) for r in rows)
    for name, dim, description in rows:
        click.echo(f"{name:<{width}}  {dim:<{dims}}  {description.strip()}")
    ctx.exit()


def parse_features(text: str, settings: tuple[str, ...], runtime: dict | None = None) -> dict[str, base.Extractor]:
    """'a,b,alias=c' plus ('c.option=value', ...) -> {cache name: extractor}; refuses unknown names.

    A feature without an alias is cached under `base.cache_name` (a model folder's last name).
    `runtime` ({"device": ..., "dtype": ..., "batch_seconds": ...}) sets, in each extractor that
    uses it, the Config field its `runtime_options` names (--dtype: compute_dtype), unless a --set
    names that field; the other extractors never see it."""
    options: dict[str, dict[str, str]] = {}
    for item in settings:
        key, eq, value = item.partition("=")
        feature, dot, option = key.rpartition(".")
        if not (eq and dot):
            raise click.BadParameter(f"{item!r}: expected FEATURE.OPTION=VALUE", param_hint="--set")
        options.setdefault(feature, {})[option] = value
    extractors = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        alias, eq, spec = item.partition("=")
        name, spec = (alias, spec) if eq else (base.cache_name(item), item)
        own = options.get(name, options.get(spec)) or {}
        try:
            extractor = base.build(spec, own)
        except ValueError as err:  # unknown name or option, or an option value its config refuses
            alias = f"{name}: " if name not in str(err) else ""
            raise click.BadParameter(f"{alias}{err}", param_hint="--features / --set") from None
        shared = {field: (runtime or {}).get(option) for option, field in extractor.runtime_options.items()}
        shared = {field: value for field, value in shared.items() if value is not None and field not in own}
        if shared:
            extractor.config = dataclasses.replace(extractor.config, **shared)
        extractors[name] = extractor
    if not extractors:
        raise click.BadParameter("no feature named", param_hint="--features")
    return extractors


def parse_shard(text: str | None, environ=os.environ) -> tuple[int, int]:
    """--shard K/N, or `auto`: this task's place in a SLURM array (SLURM_ARRAY_TASK_ID counted from
    SLURM_ARRAY_TASK_MIN, of SLURM_ARRAY_TASK_COUNT tasks), so every task runs the same command."""
    if not text:
        return 1, 1
    if text == "auto":
        return _array_task(environ)
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected K/N, e.g. 1/4", param_hint="--shard") from None
    if not 1 <= k <= n:
        raise click.BadParameter(f"{text!r}: shards are numbered 1..N", param_hint="--shard")
    return k, n


def _array_task(environ) -> tuple[int, int]:
    names = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_COUNT")
    try:
        task, first, count = (int(environ[name]) for name in names)
    except KeyError as err:
        raise click.BadParameter(f"'auto' outside a SLURM array job: {err.args[0]} is not set (give K/N instead)",
                                 param_hint="--shard") from None
    except ValueError:
        raise click.BadParameter(f"'auto': {', '.join(f'{n}={environ[n]!r}' for n in names)} are not whole numbers",
                                 param_hint="--shard") from None
    if not 0 <= task - first < count:
        raise click.BadParameter(f"'auto': task {task} of an array from {first} of {count} tasks: a stepped or "
                                 f"sparse --array is not one shard per task; give K/N", param_hint="--shard")
    return task - first + 1, count


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--list", "list_", is_flag=True, expose_value=False, is_eager=True, callback=_print_list,
              help="List the available features and exit.")
@click.option("--dataset", required=True, help="Dataset name: keys the cache (and picks the layout if it is one).")
@click.option("--layout", help="Layout loader when the dataset name is not one (mer2023, samsemo, demo).")
@click.option("--root", type=click.Path(file_okay=False), help="Corpus folder for a layout loader.")
@click.option("--clips", type=click.Path(dir_okay=False), help="CSV describing your own corpus (id,path,split,label,valence,text).")
@click.option("--features", required=True, help="Comma-separated feature names; NEWNAME=feature caches under another name.")
@click.option("--set", "settings", multiple=True, metavar="FEATURE.OPTION=VALUE", help="Override an extractor option.")
@click.option("--cache", type=click.Path(file_okay=False), help="Cache root (default $MER_CACHE_DIR or ./data/cache).")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1), help="Processes for CPU-bound extractors.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None,
              help="Where models run (default auto: cuda when available).")
@click.option("--dtype", type=click.Choice(["float32", "float16", "bfloat16"]), default=None,
              help="Compute precision of models (autocast on GPU); storage precision is each feature's store_dtype.")
@click.option("--batch-seconds", type=click.FloatRange(min=0.1), default=None,
              help="Batch budget of model extractors, in seconds of audio (or their own unit).")
@click.option("--shard", help="K/N: process the K-th of N disjoint parts of the corpus (1-based); `auto`: the "
              "task's place in a SLURM array (slurm/extract.sbatch).")
@click.option("--limit", type=click.IntRange(1), help="Only the first N clips (by id).")
@click.option("--overwrite", is_flag=True, help="Delete the cached features named and extract them again.")
@click.option("--replace-clips", is_flag=True,
              help="Replace the dataset's clip table even if this corpus lacks clips it holds (they leave it).")
@click.option("--retry-failed", is_flag=True, help="Extract clips recorded as failed again.")
@click.option("--flush-every", default=32, show_default=True, type=click.IntRange(1), help="Clips per committed part.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@ends_cleanly("committed parts are kept; run the same command again to resume")
@damage_named
def main(dataset, layout, root, clips, features, settings, cache, workers, device, dtype, batch_seconds,
         shard, limit, overwrite, replace_clips, retry_failed, flush_every, quiet):
    """Extract features of every clip of a dataset into the HDF5 cache (resumable)."""
    runtime = {"device": device, "dtype": dtype, "batch_seconds": batch_seconds}
    extractors = parse_features(features, settings, runtime)
    shard = parse_shard(shard)
    try:
        manifest = load_manifest(dataset, layout=layout, root=root, clips=clips)
        for extractor in extractors.values():
            extractor.attach_cache(dataset, cache_root(cache))
    except (ValueError, FileNotFoundError) as err:
        raise Refused(str(err)) from None
    table = ClipTable.from_manifest(manifest, dataset, source="extract")
    check_clip_table(table, cache, replace_clips)
    run_ids = manifest.ids[:limit] if limit else manifest.ids
    shard_ids = [cid for cid in run_ids if _shard_of(cid, shard[1]) == shard[0]]
    writers = _writers(extractors, manifest, dataset, cache, shard, overwrite, flush_every)
    _log_to(cache_root(cache) / dataset / "extract.log")
    todo = _todo(writers, shard_ids, retry_failed)
    click.echo(f"{manifest.summary()}; shard {shard[0]}/{shard[1]}: {len(shard_ids)} clips", err=True)
    _warn(manifest.warnings)
    _load_models(extractors, todo)
    write_table(table, cache, replace=True)  # the clip table stage 2 reads (every split); checked above
    summary = run(manifest, extractors, writers, todo, workers=workers, expected_ids=run_ids,
                  progress=not quiet)
    _report(summary, writers, run_ids, shard)
    sys.exit(1 if summary.stopped or _failed_in_cache(writers, run_ids) else 0)


def _todo(writers, shard_ids, retry_failed) -> dict[str, list[str]]:
    """{clip id: features it lacks}; a damaged committed file is refused before any work."""
    try:
        done = {name: w.done_ids(include_failed=not retry_failed) for name, w in writers.items()}
    except DamagedFile as err:
        raise Refused(str(err)) from None
    return {cid: [name for name in writers if cid not in done[name]] for cid in shard_ids}


def _load_models(extractors, todo):
    """Load the models that have work before any clip, so a bad model id, device or dtype is a
    clear refusal, not a traceback mid-run."""
    busy = {name for feats in todo.values() for name in feats}
    for name in sorted(busy):
        try:
            load_models({name: extractors[name]})
        except (OSError, ValueError, RuntimeError) as err:
            raise Refused(f"{name}: {err}") from None


def _shard_of(clip_id: str, n: int) -> int:
    return zlib.crc32(clip_id.encode()) % n + 1  # stable across runs and corpus growth


def _writers(extractors, manifest, dataset, cache, shard, overwrite, flush_every):
    if overwrite and shard[1] > 1:
        raise Refused("--overwrite with --shard would delete other shards' work: "
                      "run `python -m cache rm` once, then the shards")
    writers = {}
    for name, extractor in extractors.items():
        sources = {clip.id: clip.signature(extractor.needs) for clip in manifest}
        try:  # a model's identity is read from its config: an unknown model stops here, cleanly
            provenance = extractor.provenance() | {"feature": name, "dataset": dataset,
                                                   "manifest_fingerprint": manifest.fingerprint()}
            fingerprint = extractor.fingerprint
        except (OSError, ValueError) as err:
            raise Refused(f"{name}: {err}") from None
        writer = FeatureWriter(cache, dataset, name, fingerprint, provenance, shard=shard,
                               flush_every=flush_every, sources=sources,
                               primary=getattr(extractor, "primary", None))
        if overwrite:
            writer.remove()
        try:
            writer.check_config()
        except (ConfigMismatch, DamagedFile) as err:
            raise Refused(str(err)) from None
        writers[name] = writer
    return writers


def _log_to(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("extract")
    for old in list(logger.handlers):
        logger.removeHandler(old)
        old.close()
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)


SHOWN_WARNINGS = 10  # manifest warnings printed; all go to extract.log


def _warn(warnings: list[str]):
    """The manifest's warnings (a clip without a usable label, a dropped class) on stderr and in
    extract.log: the clips concerned are still extracted."""
    logger = logging.getLogger("extract")
    for text in warnings:
        logger.warning("manifest: %s", text)
    for text in warnings[:SHOWN_WARNINGS]:
        click.echo(f"warning: {text}", err=True)
    if len(warnings) > SHOWN_WARNINGS:
        click.echo(f"warning: ... and {len(warnings) - SHOWN_WARNINGS} more (extract.log)", err=True)


def _report(summary, writers, run_ids, shard):
    rate = summary.done / summary.seconds if summary.seconds else 0.0
    speed = summary.audio_seconds / summary.seconds if summary.seconds else 0.0
    click.echo(f"extracted {summary.done} clips in {summary.seconds:.1f} s ({rate:.1f} clips/s, "
               f"{speed:.0f} s of audio/s); {summary.skipped} already cached; "
               f"{summary.flagged} flagged; {summary.n_failed} failed")
    for name, writer in writers.items():
        state = _state(name in summary.merged, writer, run_ids, shard)
        if name in summary.stopped:
            state = f"STOPPED on {summary.stopped[name]}; nothing cached for it, traceback in the log"
        if "stand_in" in json.dumps(writer.provenance, default=str):
            state += f"; {STAND_IN_NOTE}"
        click.echo(f"  {name:<18} -> {writer.path} ({state})")
    failed = {}
    for name, clips in summary.failed.items():
        for cid, reason in clips.items():
            failed.setdefault((cid, reason), []).append(name)
    for (cid, reason), names in sorted(failed.items()):
        click.echo(f"  FAILED {cid} [{', '.join(names)}]: {reason}")


def _state(merged: bool, writer, run_ids, shard) -> str:
    """What the run left of one feature, in words."""
    if merged or writer.path.exists() and not writer.parts.exists():
        return "complete"
    if not writer.committed_files():
        return "nothing cached"
    missing = len(set(run_ids) - writer.done_ids())
    if shard[1] > 1:
        return (f"parts kept: {missing} clips of the other shards are not cached yet; the last shard to "
                f"finish merges them")
    return f"parts kept, not merged: {missing} clips are not cached yet; run the same command again"


def _failed_in_cache(writers, run_ids) -> bool:
    ids = set(run_ids)
    return any(ids & (w.done_ids() - w.done_ids(include_failed=False)) for w in writers.values())


if __name__ == "__main__":
    main()
