"""What a sweep runs: its trials, each named by the run id fuse.train would give it.

The run id hashes the trial's resolved config and the identity of every feature it reads, so a
finished trial is found again by its run folder, and a re-extracted feature changes the ids of
exactly the trials that use it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from cache import open_clips, open_features
from cache.cli import Refused
from fuse.inputs.catalogue import CachedFeature, auto_specs, catalogue
from fuse.inputs.specs import DEFAULTS, MODALITIES, PREFERENCE, SpecError, default_specs
from fuse.training.request import TrainRequest, cached_features, inputs_identity, run_id
from .trials import Trial, feature_sets, grid_points, parse_alternatives, random_points


@dataclass
class Plan:
    dataset: str
    trials: dict = field(default_factory=dict)   # run id -> Trial
    seeds: dict = field(default_factory=dict)    # run id -> seeds
    reruns: dict = field(default_factory=dict)   # random search: rerun id -> the draw it reruns
    alternatives: dict = field(default_factory=dict)  # model -> {modality: [feature spec, ...]}
    cached: list = field(default_factory=list)   # [CachedFeature]: what the cache holds, by modality

    def add(self, run: str, trial: Trial, seeds: int):
        self.trials[run], self.seeds[run] = trial, seeds


AUTO = "auto"  # in --features, a modality's default: what is cached (`A=auto;V=face-fer2013`)


def alternatives(dataset: str, modalities, features_text, cached, inputs=None,
                 entries: list[CachedFeature] = ()) -> dict[str, list[str]]:
    """Per modality the features to try: those --features names, else (or for `auto`) every
    utterance-level feature cached for it (`entries`, fuse.inputs.catalogue), or a sequence
    model's default inputs (its `inputs`, '+'-joined as one unit)."""
    given = parse_alternatives(features_text) if features_text else {}
    chosen = modalities or list(given)
    out = {}
    for m in ("A", "L", "V"):
        if m in chosen:
            named = given.get(m, [AUTO])
            out[m] = list(dict.fromkeys(s for spec in named for s in
                                        (_auto(dataset, m, cached, inputs, entries) if spec == AUTO else [spec])))
    extra = sorted(set(given) - set(out))
    if extra:
        raise SpecError(f"--features gives {', '.join(extra)} but --modalities does not use it")
    return out


def _auto(dataset: str, modality: str, cached, inputs, entries) -> list[str]:
    if inputs:  # a sequence model reads its own inputs: one unit, its specs '+'-joined
        return ["+".join(default_specs(dataset, modality, cached, inputs))]
    found = auto_specs(dataset, modality, entries)
    if not found:
        others = [f"{e.name} ({e.left_out})" for e in entries if e.modality in (modality, None) and e.left_out]
        raise SpecError(f"no utterance-level {MODALITIES[modality]} feature cached for dataset {dataset!r}"
                        + (f" (left out: {', '.join(others)})" if others else "")
                        + f"; name one with --features \"{modality}=FEATURE\"")
    return found


def points(grid: dict, search: str, n_trials: int, seed: int) -> list[tuple]:
    if search == "random":
        return random_points(grid, n_trials, seed)
    return grid_points(grid)


def model_grid(model: str, grid: dict) -> dict:
    """The grid options `model` takes, by option name (a sweep over attention and lgbm varies
    `hidden` for attention only); `model.option` applies to that model alone."""
    kept = {}
    for name, values in sorted(grid.items(), key=lambda item: "." in item[0]):  # `attention.hidden` wins
        owner, dot, option = name.rpartition(".")
        if dot and owner != model:
            continue
        if _takes(model, option, values[0], qualified=bool(dot)):
            kept[option] = values
    return kept


def _takes(model: str, option: str, text: str, qualified: bool) -> bool:
    from fuse.models import MODELS
    from .trials import request_name, value

    if option == "lr" and getattr(MODELS.get(model), "estimator", False) and not qualified:
        return False  # a network's learning rate is not a boosting rate: say `lgbm.lr`
    try:
        TrainRequest.from_options(model=model, **{request_name(option): value(option, text.split(":")[0])})
    except (ValueError, SpecError):
        return False
    return True


def check_grid(models: list[str], grid: dict):
    """Refuse a grid option no model of the sweep takes (and a qualified one for a model not swept)."""
    unused = [name for name in grid
              if not any(name.rpartition(".")[2] in model_grid(m, {name: grid[name]}) for m in models)]
    if unused:
        hint = " (a boosting rate is `lgbm.lr`)" if "lr" in unused and "lgbm" in models else ""
        raise Refused(f"--grid {', '.join(unused)}: no model of {', '.join(models)} takes it{hint}")


def request_for(trial: Trial, dataset: str, cache_dir, seeds: int, out=None, quiet=True, threads=None) -> TrainRequest:
    try:
        return TrainRequest.from_options(dataset=dataset, cache_dir=cache_dir, seeds=seeds, out=out, quiet=quiet,
                                         threads=threads, **trial.train_options())
    except (SpecError, ValueError) as err:
        raise Refused(f"trial {trial.label()}: {err}") from None


def trial_run_id(trial: Trial, dataset: str, cache_dir, seeds: int, runs) -> str:
    """The run id `python -m fuse.train` gives the trial (its run folder's name) with its runs in
    `runs`, from the clip table and the features' metadata only (no array is read)."""
    request = request_for(trial, dataset, cache_dir, seeds)
    specs = [s for _, spec in trial.features for s in spec.split("+")]
    modalities = [m for m, spec in trial.features for _ in spec.split("+")]
    try:
        table = open_clips(dataset, root=cache_dir)
        aligned = open_features(dataset, specs, root=cache_dir, ids=table.ids)
    except (FileNotFoundError, KeyError, ValueError) as err:
        raise Refused(f"trial {trial.label()}: {err}") from None
    meta = SimpleNamespace(dataset=dataset, specs=specs, modalities=modalities,
                           provenance=dict(aligned.provenance), fingerprints=dict(aligned.fingerprints))
    # fuse.train's default test splits: those of the usable clips, in clip order
    splits = [s for s in dict.fromkeys(table.split_of(aligned.ids)) if s != "train"]
    return run_id(request, meta, splits, inputs_identity(table, dataset, cache_dir, Path(runs)))


def plan(dataset: str, cache_dir, runs, modalities, features_text, models, grid, search="grid", n_trials=50,
         seeds=1, seed=0) -> Plan:
    """Every trial of the sweep; refuses (exit 2) an unknown feature, model or option before any work."""
    from fuse.models import MODELS

    cached = cached_features(dataset, cache_dir)
    entries = catalogue(dataset, cache_dir, cached)
    out = Plan(dataset, cached=entries)
    for model in models:  # a sequence model reads its own inputs where --features is silent
        out.alternatives[model] = alternatives(dataset, modalities, features_text, cached,
                                               getattr(MODELS[model], "inputs", None), entries)
    sets = {model: feature_sets(out.alternatives[model]) for model in models}
    check_grid(models, grid)
    grids = {model: model_grid(model, grid) for model in models}
    for features in dict.fromkeys(f for model in models for f in sets[model]):
        for model in (m for m in models if features in sets[m]):
            for point in dict.fromkeys(points(grids[model], search, n_trials, seed)):
                trial = Trial(features, model, point)
                out.add(trial_run_id(trial, dataset, cache_dir, seeds, runs), trial, seeds)
    return out


__all__ = ["AUTO", "Plan", "plan", "request_for", "trial_run_id", "DEFAULTS", "PREFERENCE"]
