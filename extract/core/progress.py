"""Progress of an extraction run: a live bar on a terminal, plain lines in a log file.

Redirected to a file (CI, a SLURM job's output), a bar would write thousands of carriage-return
updates onto one line; there a line with the same figures is printed every `PLAIN_EVERY` seconds
and once at the end.
"""
from __future__ import annotations

import sys
import time

from tqdm import tqdm

PLAIN_EVERY = 10.0  # seconds between two plain progress lines


class Progress:
    """Clips done of `total`, the rate, the ETA and the clips failed so far, on `stream` (stderr)."""

    def __init__(self, total: int, enabled: bool = True, stream=None, every: float | None = None,
                 name: str = "extract"):
        self.stream, self.name = stream or sys.stderr, name
        self.total, self.done, self.failed, self.shown = total, 0, 0, -1
        self.every = PLAIN_EVERY if every is None else every
        self.enabled = enabled
        self.start = self.last = time.monotonic()
        self.first = None  # when the first clip was done: the rate is timed from there
        terminal = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.bar = tqdm(total=total, unit="clip", dynamic_ncols=True, file=self.stream) if terminal else None

    def update(self, failed: int):
        """One more clip done; `failed`: clips failed in the run so far."""
        self.done, self.failed = self.done + 1, failed
        if self.first is None:
            self.first = time.monotonic()
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(failed=failed, refresh=False)
        elif self.enabled and time.monotonic() - self.last >= self.every:
            self._line()

    def write(self, message: str):
        """A message on the same stream, without breaking the bar."""
        if self.bar is not None:
            self.bar.write(message, file=self.stream)
        else:
            print(message, file=self.stream, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()
        elif self.enabled and self.total and self.shown != self.done:
            self._line()

    def _line(self):
        self.last, self.shown = time.monotonic(), self.done
        elapsed = self.last - self.start
        # from the first clip on: the start-up before it (loading models, spawning workers) is paid
        # once, and would make the rate of the first minutes too low and their ETA far too long
        steady = self.last - self.first if self.first is not None else 0.0
        rate = (self.done - 1) / max(steady, 1e-9) if self.done > 1 else float("nan")  # '?' until a 2nd clip
        eta = (self.total - self.done) / rate if rate > 0 else (0.0 if self.done >= self.total else float("nan"))
        percent = 100.0 * self.done / self.total if self.total else 100.0
        shown_rate = f"{rate:.1f} clips/s" if rate == rate else "? clips/s"
        print(f"{self.name}: {self.done}/{self.total} clips ({percent:.0f}%), {shown_rate}, "
              f"elapsed {_clock(elapsed)}, ETA {_clock(eta)}, {self.failed} failed",
              file=self.stream, flush=True)


def _clock(seconds: float) -> str:
    """h:mm:ss, or '?' while unknown."""
    if seconds != seconds:  # NaN: no clip done yet
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"
