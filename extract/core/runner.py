"""The extraction run: decode each clip once, run every requested extractor, write to the cache.

Clips are decoded on `workers` processes, where per-clip (CPU-bound) extractors also run. Batched
extractors (models) run in the main process on batches of similar-length clips, while the workers
keep decoding ahead. The main process alone writes HDF5. A bad clip is recorded as failed with its
reason and the run goes on; a feature that fails on every clip is stopped (extract.core.recorder).
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import time
import traceback
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from cache import FeatureWriter
from cache.cli import worker_pool

from .base import ClipError
from .media import MediaError, decode_streams
from .progress import Progress
from .recorder import Fault, Recorder, Summary

log = logging.getLogger("extract")
_EXTRACTORS: dict = {}  # per-process extractors, set up once by _init_worker
PREFETCH_CLIPS = 8       # decoded clips in flight per worker, ahead of the main process
PREFETCH_BATCHES = 4     # batched features gather this many batches' worth, then sort by length


def process_clip(clip, extractors: dict, features: list[str]) -> tuple[str, dict, float]:
    """Decode one clip and run `features` on it.

    Returns (clip id, {feature: (status, reason, Output or batch payload or None, Fault or None)},
    audio seconds). The clip is opened once for every feature; a stream it lacks fails only the
    features that need that stream.
    """
    if clip.error:
        return clip.id, {f: ("failed", clip.error, None, None) for f in features}, 0.0
    needs = set().union(*(extractors[f].needs for f in features))
    media, decode_error = None, None
    if needs & {"audio", "frames"}:
        try:
            media = decode_streams(clip.media, audio="audio" in needs, fps=_fps(extractors, features))
        except MediaError as err:  # the file itself cannot be read: no stream of it can
            decode_error = str(err)
    results = {name: _run_one(clip, extractors[name], media, decode_error) for name in features}
    return clip.id, results, media.duration if media else 0.0


def _fps(extractors, features):
    rates = [getattr(extractors[f].config, "fps", None) for f in features if "frames" in extractors[f].needs]
    return max(rates) if rates else None


def _run_one(clip, extractor, media, decode_error):
    if "text" in extractor.needs and clip.text_error:
        return "failed", clip.text_error, None, None
    if decode_error and extractor.needs & {"audio", "frames"}:
        return "failed", decode_error, None, None
    missing = [media.errors[stream] for stream in ("audio", "frames")
               if stream in extractor.needs and media and stream in media.errors]
    if missing:
        return "failed", "; ".join(missing), None, None
    try:
        out = extractor.prepare(clip, media) if extractor.batched else extractor.extract(clip, media)
    except Exception as err:  # a bad clip must not stop the run; the main process logs the traceback
        return "failed", *_failure(extractor, err)
    if "audio" in extractor.needs and media.silent:
        return "flagged", "silent audio", out, None
    return "ok", "", out, None


def _failure(extractor, err) -> tuple[str, None, Fault]:
    """(reason, no output, Fault) for the exception being handled."""
    error = f"{type(err).__name__}: {err}"
    fault = Fault(error, traceback.format_exc(), clip_problem=isinstance(err, ClipError))
    return f"{extractor.name} failed: {error}", None, fault


def _init_worker(specs, in_worker=False):
    if in_worker:  # one clip per core: intra-op threads would oversubscribe
        os.environ["OMP_NUM_THREADS"] = "1"
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(1)
    for name, extractor in specs.items():
        if extractor.batched:
            extractor.setup_worker()
        else:
            extractor.setup()
        _EXTRACTORS[name] = extractor


def load_models(extractors: dict):
    """Set up batched extractors (load their models) once, in this process."""
    for extractor in extractors.values():
        if extractor.batched and not getattr(extractor, "_loaded", False):
            extractor.setup()
            extractor._loaded = True


def _work(job):
    clip, features = job
    return process_clip(clip, _EXTRACTORS, features)


def run(manifest, extractors: dict, writers: dict[str, FeatureWriter], todo: dict[str, list[str]],
        workers: int = 1, expected_ids=None, progress: bool = True) -> Summary:
    """Extract `todo` ({clip id: [feature names]}) and merge each feature when complete."""
    summary, start = Summary(), time.monotonic()
    jobs = [(manifest[cid], feats) for cid, feats in todo.items() if feats]
    summary.skipped = sum(1 for feats in todo.values() if not feats)
    bar = Progress(len(jobs), enabled=progress)
    recorders = {name: Recorder(name, writers[name], summary, announce=bar.write) for name in extractors}
    batches = {name: Batcher(ex, recorders[name], manifest) for name, ex in extractors.items() if ex.batched}
    load_models({name: extractors[name] for name in batches})
    try:
        for clip_id, results, seconds in _results(_live(jobs, recorders), extractors, workers):
            _record(clip_id, results, recorders, batches)
            summary.done += 1
            summary.audio_seconds += seconds
            bar.update(summary.n_failed)
        for batcher in batches.values():
            batcher.drain(final=True)
        for recorder in recorders.values():
            recorder.finish()
    finally:
        bar.close()
        flush_error = _flush_each(writers)
    if flush_error:
        raise flush_error
    for name, writer in writers.items():
        if writer.merge(expected_ids):
            summary.merged.append(name)
    summary.seconds = time.monotonic() - start
    return summary


def _flush_each(writers) -> Exception | None:
    """Commit every writer's buffered clips, each on its own: one that fails (and is logged) must
    not keep the others from committing theirs. Returns the first failure."""
    first = None
    for name, writer in writers.items():
        try:
            writer.flush()
        except Exception as err:
            log.error("%s: buffered clips could not be committed: %s", name, err, exc_info=True)
            first = first or err
    return first


def _live(jobs, recorders):
    """The jobs, read lazily as they are dispatched, less the features stopped meanwhile."""
    for clip, features in jobs:
        features = [name for name in features if not recorders[name].stopped]
        if features:
            yield clip, features


def _results(jobs, extractors, workers, window: int | None = None):
    """(clip id, results, seconds) per job, decoded ahead of the consumer by at most `window` clips.

    Bounded read-ahead: a model slower than decoding must not pile up a whole corpus of decoded
    audio in memory (MER-SEMI alone has 73,982 clips)."""
    window = window or PREFETCH_CLIPS * max(1, workers)
    if workers <= 1:
        _init_worker(extractors)
        if any(e.batched for e in extractors.values()):
            yield from _read_ahead(jobs, window)  # decode in a thread while the model runs here
        else:
            yield from map(_work, jobs)
        return
    slots, stop = threading.Semaphore(window), threading.Event()

    def gated(items):  # the pool's feeder thread waits here while `window` clips are in flight
        for item in items:
            slots.acquire()
            if stop.is_set():
                return
            yield item

    # spawned (safe with torch and native libraries); Ctrl-C is the main process's alone to handle
    with worker_pool(workers, _init_worker, (extractors, True)) as pool:
        try:
            for result in pool.imap_unordered(_work, gated(jobs), chunksize=1):
                slots.release()
                yield result
        finally:  # let a waiting feeder thread finish, or the pool cannot shut down
            stop.set()
            slots.release()


def _read_ahead(jobs, window):
    """Results of `jobs` in order, computed on one thread at most `window` clips ahead."""
    with ThreadPoolExecutor(1) as pool:
        pending = deque()
        for job in jobs:
            if len(pending) >= window:
                yield pending.popleft().result()
            pending.append(pool.submit(_work, job))
        while pending:
            yield pending.popleft().result()


def _record(clip_id, results, recorders, batches):
    for name, (status, reason, out, fault) in results.items():
        if out is not None and name in batches:
            batches[name].add(clip_id, out, status, reason)
        else:
            recorders[name].put(clip_id, status, reason, out, fault)


class Batcher:
    """Gathers prepared clips of one batched feature and runs them in length-sorted batches."""

    def __init__(self, extractor, recorder: Recorder, manifest):
        self.extractor, self.recorder, self.manifest = extractor, recorder, manifest
        self.pending: list[tuple[float, str, object, str, str]] = []

    def add(self, clip_id, payload, status, reason):
        if self.recorder.stopped:
            return
        self.pending.append((self.extractor.cost(payload), clip_id, payload, status, reason))
        if sum(p[0] for p in self.pending) >= PREFETCH_BATCHES * self.extractor.batch_budget:
            self.drain()

    def drain(self, final=False):
        self.pending.sort(key=lambda p: p[0])
        batch, total = [], 0.0
        for item in self.pending:
            if batch and total + item[0] > self.extractor.batch_budget:
                self._run(batch)
                batch, total = [], 0.0
            batch.append(item)
            total += item[0]
        self.pending = [] if final else batch  # the last, partial batch waits for more clips
        if final and batch:
            self._run(batch)

    def _run(self, batch):
        if self.recorder.stopped:
            return
        clips = [self.manifest[item[1]] for item in batch]
        try:
            outputs = self.extractor.extract_batch(clips, [item[2] for item in batch])
        except Exception as err:
            if len(batch) == 1:
                return self.recorder.put(batch[0][1], "failed", *_failure(self.extractor, err))
            log.debug("batch of %d failed, retrying one clip at a time:\n%s", len(batch), traceback.format_exc())
            outputs = None
        if outputs is None:  # outside the except: each clip's traceback is its own
            for item in batch:  # one bad clip must not take its batch down with it
                self._run([item])
            return
        for item, out in zip(batch, outputs):
            self.recorder.put(item[1], item[3], item[4], out)
