"""The extraction run: decode each clip once, run every requested extractor, write to the cache.

Clips are processed on `workers` processes; the main process alone writes HDF5. A bad clip is
recorded as failed with its reason and the run goes on.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import sys
import time
import traceback
from dataclasses import dataclass, field

from tqdm import tqdm

from cache import FeatureWriter

from .media import MediaError, decode

log = logging.getLogger("extract")
_EXTRACTORS: dict = {}  # per-process extractors, set up once by _init_worker


@dataclass
class Summary:
    done: int = 0
    skipped: int = 0
    flagged: int = 0
    failed: dict[str, dict[str, str]] = field(default_factory=dict)  # feature -> clip -> reason
    seconds: float = 0.0
    audio_seconds: float = 0.0
    merged: list[str] = field(default_factory=list)

    @property
    def n_failed(self) -> int:
        return len({cid for clips in self.failed.values() for cid in clips})


def process_clip(clip, extractors: dict, features: list[str]) -> tuple[str, dict, float]:
    """Run `features` on one clip: {feature: (status, reason, Output | None)} and its audio seconds."""
    if clip.error:
        return clip.id, {f: ("failed", clip.error, None) for f in features}, 0.0
    needs = set().union(*(extractors[f].needs for f in features))
    results, media, decode_error = {}, None, None
    try:
        media = decode(clip.media, audio="audio" in needs, fps=_fps(extractors, features))
    except MediaError as err:
        decode_error = str(err)
    for name in features:
        results[name] = _run_one(clip, extractors[name], media, decode_error)
    return clip.id, results, media.duration if media else 0.0


def _fps(extractors, features):
    rates = [getattr(extractors[f].config, "fps", None) for f in features if "frames" in extractors[f].needs]
    return max(rates) if rates else None


def _run_one(clip, extractor, media, decode_error):
    if "text" in extractor.needs and clip.text_error:
        return "failed", clip.text_error, None
    if decode_error and extractor.needs & {"audio", "frames"}:
        return "failed", decode_error, None
    try:
        out = extractor.extract(clip, media)
    except Exception as err:  # a bad clip must not stop the run; the log keeps the traceback
        log.debug("clip %s, %s:\n%s", clip.id, extractor.name, traceback.format_exc())
        return "failed", f"{extractor.name} failed: {type(err).__name__}: {err}", None
    if "audio" in extractor.needs and media.silent:
        return "flagged", "silent audio", out
    return "ok", "", out


def _init_worker(specs, one_thread=False):
    if one_thread:  # one clip per core: intra-op threads would oversubscribe
        os.environ["OMP_NUM_THREADS"] = "1"
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(1)
    for name, extractor in specs.items():
        extractor.setup()
        _EXTRACTORS[name] = extractor


def _work(job):
    clip, features = job
    return process_clip(clip, _EXTRACTORS, features)


def run(manifest, extractors: dict, writers: dict[str, FeatureWriter], todo: dict[str, list[str]],
        workers: int = 1, expected_ids=None, progress: bool = True) -> Summary:
    """Extract `todo` ({clip id: [feature names]}) and merge each feature when complete."""
    summary, start = Summary(), time.monotonic()
    jobs = [(manifest[cid], feats) for cid, feats in todo.items() if feats]
    summary.skipped = sum(1 for feats in todo.values() if not feats)
    bar = tqdm(total=len(jobs), unit="clip", disable=not progress, dynamic_ncols=True)
    try:
        for clip_id, results, seconds in _results(jobs, extractors, workers):
            _record(clip_id, results, writers, summary)
            summary.audio_seconds += seconds
            bar.update(1)
            bar.set_postfix(failed=summary.n_failed, refresh=False)
    finally:
        bar.close()
        for writer in writers.values():
            writer.flush()
    for name, writer in writers.items():
        if writer.merge(expected_ids):
            summary.merged.append(name)
    summary.seconds = time.monotonic() - start
    return summary


def _results(jobs, extractors, workers):
    if workers <= 1:
        _init_worker(extractors)
        for job in jobs:
            yield _work(job)
        return
    context = mp.get_context("spawn")  # spawn: safe with torch and native libraries
    with context.Pool(workers, initializer=_init_worker, initargs=(extractors, True)) as pool:
        yield from pool.imap_unordered(_work, jobs, chunksize=1)


def _record(clip_id, results, writers, summary):
    summary.done += 1
    for name, (status, reason, out) in results.items():
        if out is None:
            writers[name].put(clip_id, status="failed", reason=reason)
        else:
            writers[name].put(clip_id, out.arrays, out.ragged, status=status, reason=reason)
        if status == "failed":
            summary.failed.setdefault(name, {})[clip_id] = reason
        elif status == "flagged":
            summary.flagged += 1
