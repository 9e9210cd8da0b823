"""A run's trained systems: each System (a model family, its config and its seeds x folds members),
their predictions combined with decision weights, and the fold weights saved into the run folder
(the folder's layout: fuse.results.run_folder)."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fuse.models import MODELS
from .estimators import predict_estimators
from .loop import PREDICT_CHUNK, Fit, eval_rows, load_ensemble, predict


@dataclass
class System:
    """One trained model family: its config and its (seed, fold) members."""

    model: str
    config: object
    fit: Fit
    label: str = ""

    @property
    def estimator(self) -> bool:
        return getattr(MODELS[self.model], "estimator", False)

    def predict(self, blocks, shapes, modalities, classes, multi_label, device="auto", precision="fp32"):
        """Every member's probabilities [E, n, C] and valence [E, n] on `blocks` ([n, ...] each)."""
        if self.estimator:
            return predict_estimators(self.fit, blocks, self.model)
        ens = getattr(self.fit, "_ensemble", None)
        params = getattr(self.fit, "_best_params", None)
        if ens is None:
            ens = load_ensemble(shapes, modalities, len(classes), multi_label, self.model, self.config,
                                self.fit.states, device, precision)
        norms = self.fit.norms if self.fit.norms and self.fit.norms[0] is not None else [None] * ens.n
        return predict(ens, params, norms, blocks, multi_label,
                       chunk=ens.eval_rows or min(PREDICT_CHUNK, eval_rows(self.model)), modalities=modalities)


def combine(systems: list[System], weights, blocks, meta: dict, device="auto", precision="fp32"):
    """sum_i k_i * system_i's outputs (decision-level fusion; one system: itself)."""
    probs = valence = 0
    for system, k in zip(systems, weights):
        p, v = system.predict(blocks, meta["shapes"], meta["modalities"], meta["classes"], meta["multi_label"],
                              device, precision)
        probs, valence = probs + k * p, valence + k * v
    return probs, valence


def save_weights(folder: Path, system: System, seeds, n_folds: int) -> dict[str, str]:
    """Every member's weights as a file under `folder`; returns {file name: SHA-256 of its bytes}
    (model.json keeps them, so a damaged file is never loaded: fuse.training.saved_run)."""
    folder.mkdir(parents=True, exist_ok=True)
    digests = {}
    for e, state in enumerate(system.fit.states):
        name = f"seed{seeds[e // n_folds]}-fold{e % n_folds}"
        norm = system.fit.norms[e]
        if system.estimator:
            mean, std = norm
            blob = {"state": state.state(), "mean": np.asarray(mean).tolist(), "std": np.asarray(std).tolist()}
            name, data = f"{name}.lgbm.json", json.dumps(blob).encode()
        else:
            buffer = io.BytesIO()
            torch.save({"state": state, "norms": norm}, buffer)
            name, data = f"{name}.pt", buffer.getvalue()
        (folder / name).write_bytes(data)
        digests[name] = hashlib.sha256(data).hexdigest()
    return digests


def config_dict(config) -> dict:
    return dataclasses.asdict(config)
