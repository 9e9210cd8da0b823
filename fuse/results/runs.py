"""A run from request to folder: what `python -m fuse.train` does, callable from Python (sweeps, tests):

    request = TrainRequest.from_options(dataset="demo", modalities=["A", "V"], model="attention")
    result = run_training(request)      # -> Result: folder, metrics

The request is checked before any work (fuse.training.request.prepare), its systems trained
(fuse.training.systems), fused at decision level where there are several (scoring.decision_weights)
and written (run_folder.write_run).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from cache.cli import Refused
from fuse.models import MODELS
from fuse.training.memory import MemoryBudgetError
from fuse.training.request import TrainRequest, claim_out, default_folder, prepare
from fuse.training.systems import train_systems
from .run_folder import write_run
from .scoring import decision_weights


def run_training(request: TrainRequest):
    claim_out(request)
    dataset, problem, splits = prepare(request)
    folder = Path(request.out) if request.out else default_folder(request, dataset, problem, splits)
    systems = within_budget(train_systems, problem, request)
    return write_run(folder, request, problem, systems, decision_weights(problem, systems), splits)


def within_budget(train, *args, **kwargs):
    """train(*args, **kwargs), refused (exit 2, nothing trained) when not one member fits --max-memory."""
    try:
        return train(*args, **kwargs)
    except MemoryBudgetError as err:
        raise Refused(str(err)) from None


def run_training_group(requests: list[TrainRequest]) -> list:
    """Requests that differ only in their learning rate (and run folder), trained as one batched
    model (each rate its own seeds x folds members); each writes the run folder it would write
    alone. Neural models only."""
    first = requests[0]
    if len(requests) == 1:
        return [run_training(first)]
    if len({_without_lr(r) for r in requests}) > 1 or getattr(MODELS[first.model], "estimator", False):
        raise ValueError("run_training_group: the requests must be one neural model's, differing only in lr")
    for request in requests:
        claim_out(request)
    lrs = tuple(r.train.lr for r in requests)
    dataset, problem, splits = prepare(first)
    grouped = dataclasses.replace(first, train=dataclasses.replace(first.train, lr_grid=lrs))
    per_rate = within_budget(train_systems, problem, grouped, n_rates=len(lrs))
    results = []
    for request, systems in zip(requests, per_rate):
        folder = Path(request.out) if request.out else default_folder(request, dataset, problem, splits)
        results.append(write_run(folder, request, problem, systems, decision_weights(problem, systems), splits,
                                 lr_group=lrs))
    return results


def _without_lr(request: TrainRequest) -> str:
    """The request but for its learning rate and run folder, as JSON."""
    blob = dataclasses.asdict(request)
    blob["train"]["lr"], blob["out"] = None, None
    return json.dumps(blob, sort_keys=True, default=str)
