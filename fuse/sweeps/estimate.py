"""How long a sweep's trials will take, before any of them trains.

A trial's shape is what its cost depends on besides its learning rate and epochs: the model and
its config, how many feature specs it reads, its seeds, folds, batch size, precision and patience.
Each trial to run is estimated from the finished runs of its shape in the runs folder (their
`seconds` per epoch in metrics.json, times its epochs; an estimator's seconds as they are), else
from one trial of that shape trained here for TIMED_EPOCHS epochs (nothing written): the time to
load its inputs plus the timed epochs scaled to its epochs. The wall time on W workers packs the
trials longest first, each on the worker free soonest (as the queue runs them).
"""
from __future__ import annotations

import dataclasses
import heapq
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from fuse.models import MODELS
from fuse.results.run_folder import read_metrics
from fuse.training.request import prepare
from fuse.training.saved_run import DamagedRun
from fuse.training.systems import train_systems
from .plan import Plan, request_for

TIMED_EPOCHS = 2
COST_KEYS = ("folds", "batch_size", "precision", "patience")  # of the training config, besides seeds


@dataclass
class Estimate:
    seconds: dict = field(default_factory=dict)   # run id -> estimated seconds (trials to run)
    measured: int = 0                             # estimated from finished runs of their shape
    timed: int = 0                                # estimated from a timed training

    def wall(self, workers: int, runs=None) -> float:
        """Seconds for `runs` (default: all) on `workers` workers, longest first to the freest worker."""
        load = [0.0] * workers
        for seconds in sorted((self.seconds[r] for r in (self.seconds if runs is None else runs)), reverse=True):
            heapq.heapreplace(load, load[0] + seconds)
        return max(load)


def _shape(model: str, n_features: int, seeds: int, configs: list, train: dict) -> str:
    return json.dumps({"model": model, "features": n_features, "seeds": seeds, "configs": configs,
                       "train": {k: train.get(k, 0 if k == "patience" else None) for k in COST_KEYS}},
                      sort_keys=True, default=str)


def _per_epoch(model: str, seconds: float, epochs: int) -> float:
    """Seconds per epoch of a network; an estimator's seconds whole (it has no epochs)."""
    return seconds if getattr(MODELS.get(model), "estimator", False) else seconds / max(epochs, 1)


def finished_shapes(runs: Path) -> dict[str, list[float]]:
    """Shape -> seconds per epoch of every finished run in `runs` (run folders' metrics.json)."""
    out: dict[str, list[float]] = {}
    for path in Path(runs).glob("*/metrics.json"):
        try:
            metrics = read_metrics(path.parent)
            config, train = metrics["config"], metrics["config"]["train"]
            shape = _shape(config["model"], len(config["features"]), len(train["seeds"]),
                           [s["config"] for s in config["systems"]], train)
            out.setdefault(shape, []).append(_per_epoch(config["model"], float(metrics["seconds"]), train["epochs"]))
        except (DamagedRun, KeyError, TypeError, ValueError):  # not a finished run of ours: no evidence
            continue
    return out


def estimate(plan: Plan, cache_dir, runs: Path, done) -> Estimate:
    """Per trial of `plan` not `done(run)`, its estimated seconds (see the module's docstring)."""
    known = finished_shapes(runs)
    timed: dict[str, float] = {}
    out = Estimate()
    for run, trial in plan.trials.items():
        if done(run):
            continue
        request = request_for(trial, plan.dataset, cache_dir, plan.seeds[run])
        train = dataclasses.asdict(request.train)
        shape = _shape(request.model, trial.n_features, len(request.train.seeds),
                       json.loads(json.dumps([dataclasses.asdict(c) for c in request.configs])), train)
        epochs = 1 if getattr(MODELS[request.model], "estimator", False) else request.train.epochs
        if shape in known:
            out.seconds[run] = sum(known[shape]) / len(known[shape]) * epochs
            out.measured += 1
            continue
        if shape not in timed:
            timed[shape] = _timed(request)
        load, per_epoch = timed[shape]
        out.seconds[run] = load + per_epoch * epochs
        out.timed += 1
    return out


def _timed(request) -> tuple[float, float]:
    """(seconds to load the inputs, seconds per epoch) of `request` trained for TIMED_EPOCHS epochs
    (an estimator: its whole fit), nothing written."""
    estimator = getattr(MODELS[request.model], "estimator", False)
    if not estimator:
        request = dataclasses.replace(request, train=dataclasses.replace(request.train, epochs=TIMED_EPOCHS))
    started = time.perf_counter()
    _, problem, _ = prepare(request)
    loaded = time.perf_counter()
    train_systems(problem, request)
    trained = time.perf_counter() - loaded
    return loaded - started, trained if estimator else trained / TIMED_EPOCHS
