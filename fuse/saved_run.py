"""A trained run folder read back (fuse.predict, fuse.semi), every file checked as it is read.

    run = SavedRun(folder)      # model.json read and checked
    run.metrics()               # metrics.json
    run.scores("cv")            # scores/cv.npz: every array read (zip CRCs checked)
    run.systems()               # the fold models of weights/, each file against its SHA-256

A missing or damaged file (truncated, not JSON or npz, lacking what it must hold, a fold weight whose
bytes differ from the SHA-256 that model.json recorded when it was written) is refused: exit 2,
naming the run, the file and the cause, before the command writes anything. Nothing in a damaged
run is trusted; the remedy is to train it again.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from cache.cli import Refused
from .loop import Fit
from .models import MODELS, make_config
from .run import System

MODEL_KEYS = ("dataset", "specs", "modalities", "shapes", "classes", "multi_label", "seeds", "folds",
              "thresholds", "systems")
SCORE_ARRAYS = ("ids", "probs", "valence")


class DamagedRun(Refused):
    """A run folder file missing or damaged: exit 2."""


class SavedRun:
    """A fuse.train run folder: `meta` (model.json, checked on opening) and its other files, each
    read on demand and checked (a damaged one raises DamagedRun)."""

    def __init__(self, folder):
        self.folder = Path(folder)
        if not (self.folder / "model.json").is_file():
            raise Refused(f"{self.folder} is not a fuse.train run folder (no model.json)")
        self.digests = {}
        self.meta = self.json("model.json", MODEL_KEYS)
        self.digests = self.meta.get("sha256", {})  # runs written before model.json kept them: none
        for entry in self.meta["systems"]:
            if not isinstance(entry, dict) or entry.get("model") not in MODELS or not {"label", "config"} <= set(entry):
                raise self.damaged("model.json", f"is damaged (a system entry {str(entry)[:80]!r} is not one "
                                                 f"fuse.train writes)")

    def damaged(self, name: str, cause: str) -> DamagedRun:
        return DamagedRun(f"run {self.folder}: {name} {cause}; train the run again (fuse.train, with the "
                          f"options in its config.json)")

    def json(self, name: str, keys=()) -> dict:
        """A JSON file of the run holding `keys` at its top level."""
        blob = self._read(name, lambda path: json.loads(path.read_text()))
        if not isinstance(blob, dict):
            raise self.damaged(name, "is damaged (not a JSON object)")
        lacking = [k for k in keys if k not in blob]
        if lacking:
            raise self.damaged(name, f"is damaged (no {', '.join(map(repr, lacking))})")
        return blob

    def metrics(self) -> dict:
        return self.json("metrics.json", ("features",))

    def has_scores(self, split: str) -> bool:
        return (self.folder / "scores" / f"{split}.npz").is_file()

    def scores(self, split: str, arrays=SCORE_ARRAYS) -> dict[str, np.ndarray]:
        """scores/<split>.npz, every array read now: {name: array}; `arrays` must be there."""
        name = f"scores/{split}.npz"
        data = self._read(name, _arrays)
        lacking = [k for k in arrays if k not in data]
        if lacking:
            raise self.damaged(name, f"is damaged (no array {', '.join(map(repr, lacking))})")
        return data

    def systems(self) -> list[System]:
        """The fold models of every system in model.json (seeds x folds each), ready to predict."""
        meta = self.meta
        if not (self.folder / "weights").is_dir():
            raise self.damaged("weights/", "is missing")
        names = [f"seed{s}-fold{k}" for s in meta["seeds"] for k in range(meta["folds"])]
        out = []
        for entry in meta["systems"]:
            estimator = getattr(MODELS[entry["model"]], "estimator", False)
            fit = Fit(train_index=None, folds=None, oof_probs=None, oof_valence=None, best_epoch=None, history=None)
            for name in names:
                member = f"weights/{entry['label']}/{name}" + (".lgbm.json" if estimator else ".pt")
                state, norm = self._read(member, self._estimator if estimator else self._network)
                fit.states.append(state)
                fit.norms.append(norm)
            out.append(System(entry["model"], system_config(entry), fit, entry["label"]))
        return out

    def _network(self, path: Path):
        blob = torch.load(path, weights_only=False)
        return blob["state"], blob["norms"]

    def _estimator(self, path: Path):
        from .models.lgbm import LoadedLGBM

        blob = json.loads(path.read_text())
        norm = (np.asarray(blob["mean"], np.float32), np.asarray(blob["std"], np.float32))
        return LoadedLGBM(blob["state"], len(self.meta["classes"]), self.meta["multi_label"]), norm

    def _read(self, name: str, load):
        """load(path) of the run's file `name`, checked against its recorded SHA-256 where model.json
        has one (fold weights); any failure is the file's damage, named."""
        path = self.folder / name
        if not path.is_file():
            raise self.damaged(name, "is missing")
        recorded = self.digests.get(name)
        if recorded and file_sha256(path) != recorded:
            raise self.damaged(name, "is damaged (its SHA-256 differs from the one model.json recorded "
                                     "when it was written)")
        try:
            return load(path)
        except Exception as err:  # torch, numpy, zipfile, JSON and LightGBM each raise their own kinds
            raise self.damaged(name, f"is damaged ({_cause(err)})") from None


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _cause(err: Exception) -> str:
    text = " ".join(str(err).split()) or "empty"
    return f"{type(err).__name__}: {text[:200]}"


def system_config(entry: dict):
    """The model config of a model.json system entry (JSON lists back to tuples)."""
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in entry["config"].items()}
    return make_config(entry["model"], **options)
