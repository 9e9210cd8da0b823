"""What an Optuna trial of a sweep records, so that Optuna's own tools (optuna-dashboard,
`optuna.visualization`) read a sweep: the trial's real choices as its parameters, with Optuna
distributions, its CV combined score as its value, its other scores and run folder as user attributes.

    A, L, V      the feature of each modality ("none": the modality is not used)
    model        the fuse.train model
    <option>     each grid option the trial sets (lr, hidden as "256x128", ...): categorical for a
                 grid search, a float or integer range (log for lr, weight_decay) for a random one

The distributions of a sweep are stored once in its study (user attribute "distributions"), so a
worker on another machine suggests the same ones. A queued unit that trains several runs at once
(a learning-rate group) records its first run; each other run is added as a finished trial of its own.
"""
from __future__ import annotations

import json

import optuna
from optuna.distributions import (CategoricalDistribution, FloatDistribution, IntDistribution,
                                  distribution_to_json, json_to_distribution)

from .specs import MODALITIES
from .trials import LOG_SCALE, Trial

NONE = "none"
SCORES = ("weighted_f1", "accuracy", "mse", "combined")


def plain(value):
    """An option value as Optuna stores it: tuples (hidden, channels) as '256x128'."""
    return "x".join(map(str, value)) if isinstance(value, (tuple, list)) else value


def params(trial: Trial) -> dict:
    """The Optuna parameters of a sweep trial."""
    chosen = dict(trial.features)
    return {**{m: chosen.get(m, NONE) for m in MODALITIES}, "model": trial.model,
            **{name: plain(value) for name, value in trial.options}}


def distributions(trials, search: str) -> dict[str, optuna.distributions.BaseDistribution]:
    """The distribution of every parameter the sweep's trials take."""
    values: dict[str, list] = {}
    for trial in trials:
        for name, value in params(trial).items():
            values.setdefault(name, []).append(value)
    out = {}
    for name, seen in values.items():
        if set(seen) == {NONE}:  # a modality the sweep never uses
            continue
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in seen)
        if search == "random" and numbers and len(set(seen)) > 1:
            low, high, log = min(seen), max(seen), name in LOG_SCALE
            whole = all(isinstance(v, int) for v in seen)
            out[name] = IntDistribution(low, high, log=log) if whole else FloatDistribution(low, high, log=log)
        else:
            out[name] = CategoricalDistribution(sorted(set(seen), key=lambda v: (str(type(v)), v)))
    return out


def store(study: optuna.Study, found: dict):
    """Record the sweep's distributions in its study (once: they follow from its definition)."""
    if "distributions" not in study.user_attrs:
        study.set_user_attr("distributions", {k: distribution_to_json(d) for k, d in found.items()})


def stored(study: optuna.Study) -> dict | None:
    blob = study.user_attrs.get("distributions")
    return {k: json_to_distribution(v) for k, v in blob.items()} if blob else None


def suggest(trial: optuna.Trial, chosen: dict, found: dict):
    """Ask `trial` for the parameters `chosen` (enqueued with it, so Optuna hands them back)."""
    for name in [n for n in chosen if n in found]:
        d = found[name]
        if isinstance(d, CategoricalDistribution):
            trial.suggest_categorical(name, d.choices)
        elif isinstance(d, IntDistribution):
            trial.suggest_int(name, d.low, d.high, log=d.log)
        else:
            trial.suggest_float(name, d.low, d.high, log=d.log)


def attributes(run: str, metrics: dict) -> dict:
    """A run's user attributes: its folder name, seeds, every split's scores (mean over seeds)."""
    out = {"run": run, "seeds": len(metrics["cv"]["combined"].get("per_seed", [])) or 1}
    for split, entry in metrics.items():  # cv and each labelled split: {score: {mean, std, per_seed}}
        if isinstance(entry, dict) and isinstance(entry.get("weighted_f1"), dict):
            for score in SCORES:
                if isinstance(entry.get(score), dict):
                    out[f"{split}_{score}"] = entry[score]["mean"]
    return out


def add_finished(study: optuna.Study, trial: Trial, run: str, metrics: dict, found: dict, unit: int):
    """A run trained with queued trial `unit` (a learning-rate group) as a finished trial of its own."""
    chosen = {k: v for k, v in params(trial).items() if k in found}
    study.add_trial(optuna.trial.create_trial(
        params=chosen, distributions={k: found[k] for k in chosen}, value=metrics["cv"]["combined"]["mean"],
        user_attrs={**attributes(run, metrics), "trained_in": unit}))


def first_trial(key: str) -> Trial:
    """The sweep trial a queued key records (a group's first)."""
    blob = json.loads(key)
    items = blob.get("runs") or [{"trial": blob["trial"]}]
    return Trial.from_key(items[0]["trial"])
