"""Where the outcome of each clip goes: the feature's cache writer and the run's summary.

An exception that hits every clip (a wrong dtype, a library missing on a worker) is an extractor
problem, not 74,000 bad clips. A feature whose first clips fail with one same error
(`STOP_AFTER` times, type and message alike) while none has succeeded is stopped: the error and
its traceback go to the screen and the log, and nothing is cached for it, so the next run tries
every clip again. Until its first success a feature's failures are held back for that reason.
Failures the clip's content causes (`ClipError`: no face, too short, no transcript) and media
that cannot be decoded never stop a feature.
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

log = logging.getLogger("extract")
STOP_AFTER = 20  # identical extractor errors, before any success, that stop a feature


@dataclass
class Summary:
    done: int = 0
    skipped: int = 0
    flagged: int = 0
    failed: dict[str, dict[str, str]] = field(default_factory=dict)  # feature -> clip -> reason
    stopped: dict[str, str] = field(default_factory=dict)            # feature -> the error that stopped it
    seconds: float = 0.0
    audio_seconds: float = 0.0
    merged: list[str] = field(default_factory=list)

    @property
    def n_failed(self) -> int:
        return len({cid for clips in self.failed.values() for cid in clips})


@dataclass
class Fault:
    """An exception an extractor raised on a clip (picklable: it comes back from the workers)."""

    error: str        # "Type: message": two faults with the same error are the same problem
    trace: str        # the traceback, for the log
    clip_problem: bool = False  # a ClipError: the clip's content is at fault, not the extractor


class Recorder:
    """Records one feature's clips in its writer and the summary; stops a feature that only fails."""

    def __init__(self, name: str, writer, summary: Summary, announce=print, stop_after: int | None = None):
        self.name, self.writer, self.summary, self.announce = name, writer, summary, announce
        self.stop_after = STOP_AFTER if stop_after is None else stop_after
        self.succeeded = False
        self.held: list[tuple[str, str]] = []  # (clip id, reason): failures not written yet
        self.errors: Counter = Counter()        # extractor errors among the held failures
        self.stopped = ""                       # the error that stopped the feature

    def put(self, clip_id: str, status: str, reason: str, out=None, fault: Fault | None = None):
        """One clip's outcome: status "ok", "flagged" or "failed"; `out` an Output (None when failed)."""
        if self.stopped:
            return
        if fault is not None:
            log.debug("clip %s, %s:\n%s", clip_id, self.name, fault.trace)
        if out is None or status == "failed":
            return self._failed(clip_id, reason, fault)
        if out.flag:
            status, reason = "flagged", "; ".join(r for r in (reason, out.flag) if r)
        status, reason = self.writer.put(clip_id, out.arrays, out.ragged, status=status, reason=reason)
        if status == "failed":  # the writer refused its arrays (e.g. a shape unlike the other clips')
            self.summary.failed.setdefault(self.name, {})[clip_id] = reason
            return
        self.summary.flagged += status == "flagged"
        if not self.succeeded:  # the feature works: what failed before were failures of those clips
            self.succeeded = True
            self._release()

    def finish(self):
        """End of the run: failures still held are the clips' own (the feature was not stopped)."""
        if not self.stopped:
            self._release()

    def _failed(self, clip_id, reason, fault):
        log.info("clip %s, %s: %s", clip_id, self.name, reason)
        if self.succeeded:
            return self._write_failure(clip_id, reason)
        self.held.append((clip_id, reason))
        if fault is not None and not fault.clip_problem:
            self.errors[fault.error] += 1
            if self.errors[fault.error] >= self.stop_after:
                self._stop(fault)

    def _write_failure(self, clip_id, reason):
        self.writer.put(clip_id, status="failed", reason=reason)
        self.summary.failed.setdefault(self.name, {})[clip_id] = reason

    def _release(self):
        for clip_id, reason in self.held:
            self._write_failure(clip_id, reason)
        self.held, self.errors = [], Counter()

    def _stop(self, fault: Fault):
        n = len(self.held)
        self.stopped = fault.error
        self.summary.stopped[self.name] = fault.error
        self.held, self.errors = [], Counter()
        which = f"its first {n} clips" if n == self.stop_after else f"{self.stop_after} of its first {n} clips"
        message = (f"{self.name} STOPPED: {which} failed with the same error and none succeeded, an "
                   f"extractor problem rather than bad clips; nothing is cached for {self.name} "
                   f"(the other features go on).\n{fault.trace.rstrip()}")
        log.error(message)
        self.announce(message)
