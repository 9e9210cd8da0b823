"""fuse.semi's per-member pseudo-labels: Algorithm 1 run inside each member's training folds.

`fuse.train --pseudo` trains member (s, k) (seed s, validated on fold k) on pseudo-labelled clips.
Its CV figure and its best epoch stay clean only if nothing that made those clips' labels saw fold
k's labels: neither the models that label the clips nor the out-of-fold predictions the class
thresholds come from. Of the run's own fold models only (s, k) never trained on fold k; every
other fold's out-of-fold predictions were made by a model that did. So member (s, k)'s
pseudo-labels are what fuse.semi selects from a run trained on member (s, k)'s training clips
alone: the run's recipe (model, features, options, augmented copies) trained on the labelled
training clips outside fold k with an inner CV of K - 1 folds and seed s; its out-of-fold
predictions give the thresholds and its fold models, averaged, score the unlabelled clips. Fold k's
clips are in none of its training or validation folds.

    blob = member_selection(SavedRun(run), "test3", quantile=0.5)   # the per-member file (fuse.pseudo)
"""
from __future__ import annotations

import dataclasses

import numpy as np

from cache.cli import Refused
from .evaluate import fused, nested_fusion
from .loop import TrainConfig
from .predict import check_features
from .progress import Progress
from .pseudo import KIND
from .run import combine
from .saved_run import SavedRun, system_config
from .selection import class_thresholds, select
from .systems import train_systems
from .training import TrainRequest, prepare

HELD_OUT = "(held out)"  # the split of a member's validation clips while its pseudo-labels are made


class NoMembers(Exception):
    """Per-member pseudo-labels cannot be made for this run (the reason)."""


def member_selection(run: SavedRun, split: str, quantile: float, cache_dir=None, progress: bool = True) -> dict:
    """For every (seed, fold) member of `run`: the clips of `split` (of the run's dataset) that
    Algorithm 1 selects from the member's training folds alone, with their labels and scores, and
    the run's folds they are tied to. Raises NoMembers when the run cannot be trained again."""
    request = source_request(run, cache_dir)
    _, problem, _ = prepare(request)
    try:
        check_features(run.metrics()["features"], problem.provenance)
    except Refused as err:
        raise NoMembers(f"{err.message}: not the features {run.folder} was trained on") from None
    cv = run.scores("cv", ("ids", "folds"))
    tr, rows = problem.index("train", labelled_only=True), problem.index(split)
    if problem.ids[tr].tolist() != cv["ids"].tolist():
        raise NoMembers(f"the cache's labelled training clips are no longer those {run.folder} was trained on")
    seeds, K = request.train.seeds, request.train.folds
    members, bar = [], Progress(len(seeds) * K, "fuse.semi: per-member pseudo-labels", "member", progress)
    for s, seed in enumerate(seeds):
        for k in range(K):
            probs, thresholds = _inner_run(problem, request, seed, tr[cv["folds"][s] == k], rows, quantile)
            members.append({"seed": seed, "fold": k, **_selection(problem, rows, probs, thresholds)})
            bar.update(len(members))
    bar.close()
    return {"kind": KIND, "run": str(run.folder), "dataset": problem.dataset, "split": split, "quantile": quantile,
            "classes": list(problem.classes), "folds": K, "inner_folds": K - 1, "seeds": list(seeds),
            "training_clips": cv["ids"].tolist(), "fold_of": {str(seed): cv["folds"][s].tolist()
                                                               for s, seed in enumerate(seeds)},
            "members": members}


def _selection(problem, rows: np.ndarray, probs: np.ndarray, thresholds: np.ndarray) -> dict:
    """Algorithm 1's selection among problem `rows` (probabilities [n, C]) as the file holds it:
    thresholds (None: no clip of the class was classified correctly) and [id, label, score] rows."""
    chosen, predicted, confidence = select(probs, thresholds)
    return {"thresholds": [None if np.isinf(t) else round(float(t), 6) for t in thresholds],
            "selected": [[str(problem.ids[r]), problem.classes[j], round(float(c), 6)]
                         for r, j, c in zip(rows[chosen], predicted[chosen], confidence[chosen])]}


def source_request(run: SavedRun, cache_dir=None) -> TrainRequest:
    """The run's training as a request (quiet, no run folder), from its config.json and model.json."""
    config = run.json("config.json", ("model", "train", "augment", "pseudo"))
    if config["pseudo"]:
        raise NoMembers(f"{run.folder} was itself trained with --pseudo, whose per-member pseudo-labels were "
                        f"made for its own folds, not for the inner folds its members would need")
    if config.get("corpus_override"):
        raise NoMembers(f"{run.folder} was trained on a clip table given with --layout/--root/--clips, not the "
                        f"cached one")
    if run.meta["folds"] < 3:
        raise NoMembers(f"{run.folder} has {run.meta['folds']} folds; a member's inner CV needs 2 or more, so "
                        f"--folds 3 or more")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    train = TrainConfig(**{**{k: v for k, v in config["train"].items() if k in fields},
                           "seeds": tuple(config["train"]["seeds"]), "lr_grid": (),
                           "device": "auto"})  # this machine's, not the one the run was trained on
    features = {}
    for modality, spec in zip(run.meta["modalities"], run.meta["specs"]):
        features.setdefault(modality, []).append(spec)
    return TrainRequest(model=config["model"], configs=[system_config(e) for e in run.meta["systems"]], train=train,
                        dataset=run.meta["dataset"], cache_dir=cache_dir, features=features, quiet=True,
                        augment=config["augment"])


def _inner_run(problem, request, seed: int, held_out: np.ndarray, rows: np.ndarray,
               quantile: float) -> tuple[np.ndarray, np.ndarray]:
    """The recipe trained without the problem rows `held_out` (seed `seed`, K - 1 folds): (its fold
    models' probabilities of problem rows `rows`, averaged [n, C]; class thresholds [C] from its
    out-of-fold predictions, fused as the run's own scores/cv.npz holds them)."""
    split = problem.split.copy()
    split[held_out] = HELD_OUT
    inner = dataclasses.replace(problem, split=split)
    train = dataclasses.replace(request.train, seeds=(seed,), folds=request.train.folds - 1)
    systems, weights = train_systems(inner, dataclasses.replace(request, train=train))
    fit, oofs, vals = systems[0].fit, [s.fit.oof_probs for s in systems], [s.fit.oof_valence for s in systems]
    oof = nested_fusion(oofs, vals, inner, fit.train_index, fit.folds)[1] if len(systems) > 1 else fused(
        weights, oofs, vals)[0]
    thresholds = class_thresholds(oof[0], inner.labels[fit.train_index], quantile)
    meta = {"shapes": inner.shapes, "modalities": inner.modalities, "classes": list(inner.classes),
            "multi_label": inner.multi_label}
    probs, _ = combine(systems, weights, [b[rows] for b in inner.blocks], meta, train.device, train.precision)
    return probs.mean(0), thresholds
