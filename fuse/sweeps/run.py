"""Running a sweep's trials: queued in the Optuna study, popped by worker processes.

Each trial's key is the run id of its fuse.train run; its Trial and seed count travel in the
study's user attributes, so a worker on another machine needs only the storage URL and the cache.
"""
from __future__ import annotations

import json
import logging
import multiprocessing as mp
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from optuna.trial import TrialState

from fuse.models import MODELS
from fuse.results.run_folder import read_metrics
from fuse.results.runs import run_training_group
from fuse.training.saved_run import DamagedRun
from fuse.training.request import runs_root
from . import study as studies
from . import params as sweep_params
from .budget import baselines, ranked_combinations
from .plan import Plan, request_for, trial_run_id
from .trials import Trial

log = logging.getLogger(__name__)


def finished_run(runs: Path, run: str) -> bool:
    """Whether trial `run` is finished: its run folder holds a readable metrics.json (a folder
    appears whole). A damaged one is named, and its trial counts as not finished: trained again."""
    try:
        return read_metrics(Path(runs) / run) is not None
    except DamagedRun as err:
        log.warning(f"{err}: its trial is trained again")
        return False


def sweeps_root(cache_dir=None) -> Path:
    """Where a sweep's reports go by default: `sweeps/` beside the runs (data/sweeps)."""
    return runs_root(cache_dir).parent / "sweeps"


@dataclass
class Sweep:
    name: str
    plan: Plan
    definition: dict
    cache_dir: str | None
    runs: Path
    out: Path
    storage: str
    workers: int
    deadline: float | None
    quiet: bool
    lr_batching: bool = True
    _study: object = None

    @classmethod
    def create(cls, plan: Plan, definition, cache_dir, runs: Path, out, storage, workers, budget, quiet,
               lr_batching: bool = True) -> "Sweep":
        runs.mkdir(parents=True, exist_ok=True)
        name = studies.study_name(definition)
        storage = storage or f"sqlite:///{runs / 'study.db'}"
        sweep = cls(name, plan, definition, cache_dir, runs, Path(out) if out else sweeps_root(cache_dir) / name, storage,
                    workers, time.time() + budget if budget else None, quiet, lr_batching)
        sweep_params.store(sweep.study(), sweep_params.distributions(plan.trials.values(), definition["search"]))
        if not budget:  # a budgeted sweep queues in its own order (work_within_budget)
            sweep.enqueue(plan.trials)
        return sweep

    def study(self):
        """The sweep's Optuna study (opened once per process)."""
        if self._study is None:
            self._study = studies.open_study(self.storage, self.name)
        return self._study

    def enqueue(self, trials: dict, ordered: bool = False):
        """Queue the trials whose run folder is not finished (a finished one is never run again),
        in their order when `ordered`, else the costliest first (most features, then most seeds):
        workers pop them in that order, so the sweep ends on short trials and no worker idles long
        while another finishes a trimodal one (on MER-shaped features a trimodal trial takes 2.6x a
        unimodal one)."""
        todo = [(run, t) for run, t in trials.items() if not self.done(run)]
        if not ordered:
            todo.sort(key=lambda item: (-item[1].n_features, -self.plan.seeds[item[0]]))  # stable: plan order within
        groups = lr_groups(todo, self.plan.seeds) if self.lr_batching else [[item] for item in todo]
        studies.enqueue(self.study(), [(json.dumps({"runs": [{"run": run, "trial": t.key} for run, t in group],
                                                    "seeds": self.plan.seeds[group[0][0]], "dataset": self.plan.dataset}),
                                        sweep_params.params(group[0][1]))
                                       for group in groups])

    def done(self, run: str) -> bool:
        return finished_run(self.runs, run)

    def finished(self) -> int:
        return sum(self.done(run) for run in self.plan.trials)

    def over_budget(self) -> bool:
        return self.deadline is not None and time.time() > self.deadline

    def left_out(self) -> list[Trial]:
        """The trials of the plan whose run is not finished."""
        return [t for run, t in self.plan.trials.items() if not self.done(run)]

    def rerun_best(self, seeds: int):
        """Random search, second phase: the best draw of each feature set and model, with `seeds` seeds."""
        from .leaderboard import rows

        frame = rows(self.plan.trials, self.runs)
        best = frame.drop_duplicates(subset=["model", "modalities", *[c for c in "ALV" if c in frame]], keep="first")
        for run in best["run"]:
            trial = self.plan.trials[run]
            rerun = trial_run_id(trial, self.plan.dataset, self.cache_dir, seeds, self.runs)
            self.plan.add(rerun, trial, seeds)
            self.plan.reruns[rerun] = run
        self.enqueue({r: self.plan.trials[r] for r in self.plan.reruns})


def lr_groups(todo: list[tuple[str, Trial]], seeds: dict) -> list[list[tuple[str, Trial]]]:
    """The trials of a neural model that differ only in their learning rate (same features,
    options and seeds) as one group, trained as one batched model; the others alone. Groups keep
    the order of their first trial."""
    groups: dict[str, list] = {}
    for run, trial in todo:
        options = dict(trial.options)
        batched = "lr" in options and not getattr(MODELS[trial.model], "estimator", False)
        shape = json.dumps([trial.features, trial.model, sorted((k, v) for k, v in options.items() if k != "lr"),
                            seeds[run]], default=str) if batched else run
        groups.setdefault(shape, []).append((run, trial))
    return list(groups.values())


def run_trial(payload: str, cache_dir, runs: Path, threads=None) -> tuple[list[tuple[str, dict]], bool]:
    """Train one queued unit, a trial or a learning-rate group (or read their finished runs):
    ([(run, its metrics.json)] in the unit's order, whether any was trained here). Trials whose
    run folder is finished are not trained again; the others of a group train together."""
    blob = json.loads(payload)
    items = blob.get("runs") or [{"run": blob["run"], "trial": blob["trial"]}]  # (a one-trial key of before)
    pending = [item for item in items if not finished_run(runs, item["run"])]
    if pending:
        run_training_group([request_for(Trial.from_key(item["trial"]), blob["dataset"], cache_dir, blob["seeds"],
                                        out=str(runs / item["run"]), threads=threads) for item in pending])
    results = [(item["run"], read_metrics(runs / item["run"])) for item in items]
    return results, bool(pending)


def _worker(storage: str, name: str, cache_dir, runs: str, deadline, threads,
            signals=(signal.SIGINT, signal.SIGTERM)) -> int:
    study = studies.open_study(storage, name)
    return studies.work(study, lambda payload: run_trial(payload, cache_dir, Path(runs), threads), deadline, signals)


def _child_worker(*args):
    """A worker process: Ctrl-C is its parent's to handle (it ignores SIGINT from birth); the
    parent's SIGTERM stops it as Ctrl-C would (fuse.sweeps.stopping), without a traceback."""
    try:
        _worker(*args, signals=(signal.SIGTERM,))
    except KeyboardInterrupt:
        sys.exit(130)


def work_within_budget(sweep: Sweep):
    """A budgeted sweep (fuse.sweeps.budget): the unimodal baselines whatever the budget, then the
    combinations ranked by their parts' unimodal scores until the budget runs out."""
    sweep.enqueue(baselines(sweep.plan.trials), ordered=True)
    work_until_done(sweep, budgeted=False)
    sweep.enqueue(ranked_combinations(sweep.plan.trials, sweep.runs), ordered=True)
    work_until_done(sweep)


def work_until_done(sweep: Sweep, budgeted: bool = True):
    """Run the queue with `sweep.workers` processes (this one included), showing progress; start
    no trial after the sweep's budget unless not `budgeted`."""
    args = (sweep.storage, sweep.name, sweep.cache_dir, str(sweep.runs),
            sweep.deadline if budgeted else None, 1 if sweep.workers > 1 else None)
    context = mp.get_context("spawn")
    others = [context.Process(target=_child_worker, args=args) for _ in range(sweep.workers - 1)]
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited by the children: SIGINT ignored for life
    try:
        for p in others:
            p.start()
    finally:
        signal.signal(signal.SIGINT, before)
    watcher = _Progress(sweep) if not sweep.quiet else None
    try:
        if watcher:
            watcher.start()
        _worker(*args)
        for p in others:
            p.join()
    finally:
        for p in others:
            if p.is_alive():
                p.terminate()
        for p in others:
            p.join(timeout=30)  # each removes its temporary run folder on the way out
        if watcher:
            watcher.stop()


class _Progress:
    """A line every few seconds: trials finished, running, waiting, failed, ETA."""

    def __init__(self, sweep: Sweep, every: float = 15.0):
        import threading

        self.sweep, self.every = sweep, every
        self.started, self.start_done = time.time(), sweep.finished()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def start(self):
        self.thread.start()

    def stop(self):
        self._stop.set()
        self.thread.join(timeout=2)
        self._line()

    def _loop(self):
        while not self._stop.wait(self.every):
            self._line()

    def _line(self):
        trials = self.sweep.study().get_trials(deepcopy=False)
        count = {s: sum(t.state == s for t in trials if t.user_attrs.get("key")) for s in TrialState}
        total, done = len(self.sweep.plan.trials), self.sweep.finished()
        elapsed = time.time() - self.started
        rate = (done - self.start_done) / elapsed if elapsed > 0 else 0
        eta = f"{(total - done) / rate:.0f} s" if rate > 0 else "?"
        print(f"sweep: {done}/{total} trials finished, {count[TrialState.RUNNING]} running, {total - done} to go "
              f"({count[TrialState.FAIL]} failed attempts); {elapsed:.0f} s elapsed, ETA {eta}",
              file=sys.stderr, flush=True)
