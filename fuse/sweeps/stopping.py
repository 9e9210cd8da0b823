"""Stopping a sweep worker cleanly on Ctrl-C (SIGINT, in the command's own process) or on SIGTERM
(from its parent, in a worker process; or `kill`).

During a trial's training the signal interrupts at once (KeyboardInterrupt: the temporary run
folder is removed, Optuna fails the trial and the next run of the sweep queues it again). Anywhere
else, in Optuna's own bookkeeping or between trials, it only asks the worker to stop once that
step is done: a study is never left half-updated, and no Optuna code sees an exception it was not
written for. The first signal turns further ones off, so the clean-up runs to its end.

    stop = Stop()
    with stop.installed((signal.SIGINT, signal.SIGTERM)):
        stop.check()                 # raises KeyboardInterrupt once a stop was asked for
        with stop.training():        # interruptible at once in here
            ...
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

import optuna


class Stop:
    def __init__(self):
        self.requested = False
        self._interruptible = False

    def _handle(self, signum, frame):
        for each in (signal.SIGINT, signal.SIGTERM):
            signal.signal(each, signal.SIG_IGN)
        self.requested = True
        if self._interruptible:
            _interrupt()

    @contextmanager
    def installed(self, signals):
        """Handle `signals` this way inside the block (main thread only), as before after it."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        before = {s: signal.signal(s, self._handle) for s in signals}
        try:
            yield self
        finally:
            for s, handler in before.items():
                signal.signal(s, handler)

    @contextmanager
    def training(self):
        """A block the signal may interrupt at once."""
        self._interruptible = True
        try:
            if self.requested:
                _interrupt()
            yield
        finally:
            self._interruptible = False

    def check(self):
        if self.requested:
            raise KeyboardInterrupt


def _interrupt():
    # Optuna fails the trial in training: the user stopped it, so no "Trial N failed" traceback
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    raise KeyboardInterrupt
