"""What a sweep runs: its trials, each named by the run id fuse.train would give it.

The run id hashes the trial's resolved config and the identity of every feature it reads, so a
finished trial is found again by its run folder, and a re-extracted feature changes the ids of
exactly the trials that use it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

from cache import open_features
from cache.__main__ import Refused
from .specs import DEFAULTS, PREFERENCE, SpecError, _default
from .training import TrainRequest, cached_features, run_id
from .trials import Trial, feature_sets, grid_points, parse_alternatives, random_points


@dataclass
class Plan:
    dataset: str
    trials: dict = field(default_factory=dict)   # run id -> Trial
    seeds: dict = field(default_factory=dict)    # run id -> seeds
    reruns: dict = field(default_factory=dict)   # random search: rerun id -> the draw it reruns

    def add(self, run: str, trial: Trial, seeds: int):
        self.trials[run], self.seeds[run] = trial, seeds


def alternatives(dataset: str, modalities, features_text, cached) -> dict[str, list[str]]:
    """Per modality the features to try: --features, else the dataset's default feature."""
    given = parse_alternatives(features_text) if features_text else {}
    chosen = modalities or list(given)
    out = {}
    for m in ("A", "L", "V"):
        if m in chosen:
            out[m] = given.get(m) or [_default(dataset, m, cached)]
    extra = sorted(set(given) - set(out))
    if extra:
        raise SpecError(f"--features gives {', '.join(extra)} but --modalities does not use it")
    return out


def points(grid: dict, search: str, n_trials: int, seed: int) -> list[tuple]:
    if search == "random":
        return random_points(grid, n_trials, seed)
    return grid_points(grid)


def model_grid(model: str, grid: dict) -> dict:
    """The grid options `model` takes (a sweep over attention and lgbm varies `hidden` for attention
    only); `model.option` applies to that model alone; an option no model takes is refused."""
    from .models import MODELS

    kept = {}
    estimator = getattr(MODELS.get(model), "estimator", False)
    for name, values in grid.items():
        owner, dot, option = name.rpartition(".")
        if dot:  # `lgbm.lr=...`: for that model only
            if owner != model:
                continue
            name = option
        elif name == "lr" and estimator:  # a network's learning rate is not a boosting rate
            continue
        probe = Trial((("A", "x"),), model, ((name, _probe_value(name, values[0])),))
        try:
            TrainRequest.from_options(**{k: v for k, v in probe.train_options().items() if k != "features"})
        except (ValueError, SpecError):
            continue
        kept[name] = values
    return kept


def _probe_value(name, text):
    from .trials import value

    return value(name, text.split(":")[0])


def request_for(trial: Trial, dataset: str, cache_dir, seeds: int, out=None, quiet=True, threads=None) -> TrainRequest:
    try:
        return TrainRequest.from_options(dataset=dataset, cache_dir=cache_dir, seeds=seeds, out=out, quiet=quiet,
                                         threads=threads, **trial.train_options())
    except (SpecError, ValueError) as err:
        raise Refused(f"trial {trial.label()}: {err}") from None


def trial_run_id(trial: Trial, dataset: str, cache_dir, seeds: int) -> str:
    """fuse.train's run id of the trial, from the features' metadata only (no array is read)."""
    request = request_for(trial, dataset, cache_dir, seeds)
    specs = [s for _, spec in trial.features for s in spec.split("+")]
    modalities = [m for m, spec in trial.features for _ in spec.split("+")]
    try:
        aligned = open_features(dataset, specs, root=cache_dir)
        meta = SimpleNamespace(dataset=dataset, specs=specs, modalities=modalities,
                               provenance=dict(aligned.provenance), fingerprints=dict(aligned.fingerprints))
    except (FileNotFoundError, KeyError, ValueError) as err:
        raise Refused(f"trial {trial.label()}: {err}") from None
    return run_id(request, meta)


def plan(dataset: str, cache_dir, modalities, features_text, models, grid, search="grid", n_trials=50,
         seeds=1, seed=0) -> Plan:
    """Every trial of the sweep; refuses (exit 2) an unknown feature, model or option before any work."""
    cached = cached_features(dataset, cache_dir)
    sets = feature_sets(alternatives(dataset, modalities, features_text, cached))
    grids = {model: model_grid(model, grid) for model in models}
    used = {name for g in grids.values() for name in g}
    unused = sorted(n for n in grid if n not in used and n.rpartition(".")[2] not in used)
    if unused:
        raise Refused(f"--grid {', '.join(unused)}: no model of {', '.join(models)} takes it")
    out = Plan(dataset)
    for features in sets:
        for model in models:
            for point in dict.fromkeys(points(grids[model], search, n_trials, seed)):
                trial = Trial(features, model, point)
                out.add(trial_run_id(trial, dataset, cache_dir, seeds), trial, seeds)
    return out


__all__ = ["Plan", "plan", "request_for", "trial_run_id", "DEFAULTS", "PREFERENCE"]
