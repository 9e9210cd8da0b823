"""The trials of a sweep: feature combinations x models x hyper-parameters, each a fuse.train run.

    --features "A=hubert-large@18,19,20|is10;L=text-minilm@-4:;V=face-fer2013|face-dlib"
        `|` separates the alternatives of a modality; every non-empty combination of at most one
        alternative per modality is a feature set (2 x 1 x 2 above: 17 sets).
    --grid "lr=1e-3,1e-4;hidden=128,256x128"
        `;` between options, `,` between values (the layers of a hidden or channels value joined by
        `x`); any fuse.train hyper-parameter, named as on its command line (supcon_alpha). With
        --search random a value `low:high` is a range: log-uniform for lr and weight_decay, uniform
        otherwise, integers for integer options. `max_memory=6G` gives every trial fuse.train's
        --max-memory (how its members are grouped, not what they compute: no part of its run id).
"""
from __future__ import annotations

import itertools
import json
from dataclasses import dataclass

import numpy as np

from fuse.inputs.specs import ALIASES, MODALITIES, SpecError
from fuse.training.memory import parse_size

LOG_SCALE = {"lr", "weight_decay"}
INTEGER = {"epochs", "batch_size", "folds", "width", "patience"}
FLOAT = {"lr", "weight_decay", "dropout", "supcon_alpha", "supcon_temperature"}
FLAGS = {"layer_weights", "standardize"}
WIDTHS = {"hidden": "layer widths like 256x128", "channels": "channel counts like 16x32"}  # `x`-joined
CHOICES = {"decoder": ("baseline", "jdev"), "loss": ("sum", "uncertainty"), "attention_scores": ("softmax", "raw"),
           "structure": ("1", "2", "3", "all"), "precision": ("fp32", "bf16")}
TEXT = set(CHOICES)
SIZES = {"max_memory"}  # not a hyper-parameter: each trial's memory budget (one value), no part of run ids
# what a grid may vary: fuse.train's hyper-parameters (not its data, seeds, device or outputs)
OPTIONS = INTEGER | FLOAT | FLAGS | TEXT | set(WIDTHS) | SIZES
# the ranges fuse.train's command line accepts
LIMITS = {"folds": (lambda x: x >= 2, "at least 2"), "epochs": (lambda x: x >= 1, "at least 1"),
          "patience": (lambda x: x >= 0, "at least 0"),
          "batch_size": (lambda x: x >= 1, "at least 1"), "lr": (lambda x: x > 0, "above 0"),
          "weight_decay": (lambda x: x >= 0, "at least 0"), "dropout": (lambda x: 0 <= x < 1, "in [0, 1)"),
          "hidden": (lambda x: min(x) >= 1, "layer widths of at least 1"),
          "channels": (lambda x: min(x) >= 1, "channel counts of at least 1"),
          "width": (lambda x: x >= 1, "at least 1"), "supcon_alpha": (lambda x: x >= 0, "at least 0"),
          "supcon_temperature": (lambda x: x > 0, "above 0")}
# a grid option named as on the command line (--supcon-alpha) -> fuse.training.request.TrainRequest's keyword
REQUEST_NAMES = {"supcon_alpha": "alpha", "supcon_temperature": "temperature"}


def request_name(name: str) -> str:
    """A grid option's keyword in TrainRequest.from_options."""
    return REQUEST_NAMES.get(name, name)


@dataclass(frozen=True)
class Trial:
    """One configuration: features per modality ('+'-joined specs), a model, options (sorted)."""

    features: tuple
    model: str
    options: tuple = ()

    @property
    def modalities(self) -> str:
        return "".join(m for m, _ in self.features)

    @property
    def n_features(self) -> int:
        """Feature specs the trial reads: its training cost grows with them."""
        return sum(len(spec.split("+")) for _, spec in self.features)

    @property
    def key(self) -> str:
        return json.dumps({"features": self.features, "model": self.model, "options": self.options})

    @classmethod
    def from_key(cls, key: str) -> "Trial":
        blob = json.loads(key)
        return cls(tuple(tuple(f) for f in blob["features"]), blob["model"],
                   tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in blob["options"]))

    def train_options(self) -> dict:
        """Keyword arguments of fuse.training.request.TrainRequest.from_options."""
        return {"model": self.model, "features": {m: spec.split("+") for m, spec in self.features},
                **{request_name(k): v for k, v in self.options}}

    def label(self) -> str:
        parts = [f"{m}={s}" for m, s in self.features] + [f"{k}={_show(v)}" for k, v in self.options]
        return f"{self.model} " + " ".join(parts)


def parse_alternatives(text: str) -> dict[str, list[str]]:
    """'A=x|y;V=z' -> {'A': ['x', 'y'], 'V': ['z']} (modalities in A, L, V order)."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        modality, eq, specs = part.partition("=")
        key = ALIASES.get(modality.strip().upper(), modality.strip().upper())
        if not eq or key not in MODALITIES:
            raise SpecError(f"--features {part!r}: expected MODALITY=feature|feature, MODALITY one of A, L (T), V")
        choices = [s.strip() for s in specs.split("|") if s.strip()]
        if not choices or key in out:
            raise SpecError(f"--features {part!r}: no feature named, or modality {key} given twice")
        out[key] = choices
    return {m: out[m] for m in MODALITIES if m in out}


def feature_sets(alternatives: dict[str, list[str]]) -> list[tuple]:
    """Every non-empty combination of at most one alternative per modality: unimodal sets first."""
    modalities = list(alternatives)
    out = []
    for size in range(1, len(modalities) + 1):
        for chosen in itertools.combinations(modalities, size):
            for specs in itertools.product(*(alternatives[m] for m in chosen)):
                out.append(tuple(zip(chosen, specs)))
    return out


def parse_grid(text: str | None, search: str = "grid") -> dict[str, list]:
    """'lr=1e-3,1e-4;hidden=128,256x128' -> {'lr': ['1e-3', '1e-4'], 'hidden': ['128', '256x128']}.
    An option may be qualified by a model (`lgbm.lr`); ranges `low:high` only with random search."""
    out = {}
    for part in filter(None, (p.strip() for p in (text or "").split(";"))):
        name, eq, values = part.partition("=")
        name = name.strip().lstrip("-").replace("-", "_")
        option = name.rpartition(".")[2]
        if not eq or not values.strip():
            raise SpecError(f"--grid {part!r}: expected OPTION=value,value")
        if option not in OPTIONS:
            raise SpecError(f"--grid {name}: not a hyper-parameter a sweep varies; choose from "
                            f"{', '.join(sorted(OPTIONS))}")
        if name in out:
            raise SpecError(f"--grid names {name} twice")
        out[name] = [v.strip() for v in values.split(",") if v.strip()]
        for v in out[name]:
            _check(name, v, search)
    return out


def _check(name: str, text: str, search: str):
    """Refuse a value fuse.train would not take (SpecError naming the option)."""
    option = name.rpartition(".")[2]
    if ":" in text:
        if search != "random":
            raise SpecError(f"--grid {name}={text}: a range needs --search random (grid search takes values)")
        if option not in INTEGER | FLOAT:
            raise SpecError(f"--grid {name}={text}: only numeric options take a range low:high")
        low, _, high = text.partition(":")
        _check(name, low, search), _check(name, high, search)
        if float(low) >= float(high) or (option in LOG_SCALE and float(low) <= 0):
            raise SpecError(f"--grid {name}={text}: expected low < high" + (" and low > 0" if option in LOG_SCALE else ""))
        return
    if option in CHOICES and text not in CHOICES[option]:
        raise SpecError(f"--grid {name}={text}: choose from {', '.join(CHOICES[option])}")
    if option in SIZES:
        try:
            parse_size(text)
        except ValueError as err:
            raise SpecError(f"--grid {name}={err}") from None
        return
    try:
        parsed = value(option, text)
    except ValueError:
        kind = WIDTHS.get(option, "an integer" if option in INTEGER else
                          "true or false" if option in FLAGS else "a number")
        raise SpecError(f"--grid {name}={text}: expected {kind}") from None
    accepts, limit = LIMITS.get(option, (lambda x: True, ""))
    if not accepts(parsed):
        raise SpecError(f"--grid {name}={text}: expected {limit}")


def value(name: str, text: str):
    """A grid value as fuse.train takes it (ValueError when it is not one)."""
    name = name.rpartition(".")[2]
    if name in WIDTHS:
        return tuple(int(x) for x in text.split("x"))
    if name in FLAGS:
        if text.lower() not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            raise ValueError(f"{text!r} is not true or false")
        return text.lower() in ("1", "true", "yes", "on")
    if name in INTEGER:
        return int(text)
    if name in FLOAT:
        return float(text)
    return text


def grid_points(grid: dict[str, list]) -> list[tuple]:
    names = sorted(grid)
    return [tuple(zip(names, (value(n, v) for n, v in zip(names, combo))))
            for combo in itertools.product(*(grid[n] for n in names))]


def random_points(grid: dict[str, list], n: int, seed: int) -> list[tuple]:
    """`n` draws from the grid's ranges (`low:high`) and value lists, the same for the same seed."""
    rng = np.random.default_rng(seed)
    names = sorted(grid)
    points = []
    for _ in range(n):
        point = []
        for name in names:
            choice = grid[name][rng.integers(len(grid[name]))]
            point.append((name, _draw(name, choice, rng) if ":" in choice else value(name, choice)))
        points.append(tuple(point))
    return points


def _draw(name: str, text: str, rng):
    name = name.rpartition(".")[2]
    low, high = (float(x) for x in text.split(":"))
    if name in LOG_SCALE:
        return float(np.exp(rng.uniform(np.log(low), np.log(high))))
    if name in INTEGER:
        return int(rng.integers(int(low), int(high) + 1))
    return float(rng.uniform(low, high))


def _show(v) -> str:
    if isinstance(v, tuple):
        return "x".join(map(str, v))
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)
