"""Progress of long training work: a bar on a terminal, a plain line every few seconds otherwise
(CI and cluster logs get no carriage-return noise)."""
from __future__ import annotations

import sys
import time

from tqdm import tqdm


class Progress:
    def __init__(self, total: int, title: str, unit: str = "epoch", enabled: bool = True, every: float = 10.0):
        self.total, self.title, self.unit, self.every = total, title, unit, every
        self.enabled = enabled
        self.tty = enabled and sys.stderr.isatty()
        self.bar = tqdm(total=total, desc=title, unit=unit, file=sys.stderr, leave=False) if self.tty else None
        self.started = self.last = time.monotonic()
        self.done = 0

    def update(self, done: int, note: str = ""):
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(done - self.done)
            self.bar.set_postfix_str(note)
        elif time.monotonic() - self.last > self.every or done == self.total:
            elapsed = time.monotonic() - self.started
            eta = elapsed / max(done, 1) * (self.total - done)
            print(f"{self.title}: {self.unit} {done}/{self.total} {note} ({elapsed:.0f} s, ETA {eta:.0f} s)",
                  file=sys.stderr, flush=True)
            self.last = time.monotonic()
        self.done = done

    def close(self):
        if self.bar is not None:
            self.bar.close()
