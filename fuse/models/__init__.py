"""Fusion models, registered by name (timm's `create_model` registry).

A neural model is an `nn.Module` with a frozen config dataclass; it maps a list of blocks
([E, B, D] or [E, B, k, D]) to emotion logits [E, B, C] and valence [E, B] for E members at once
(built with E = 1; fuse.training.ensemble stacks members). The training loop owns data,
folds, seeds, optimisation, metrics and outputs. `lgbm` is an estimator instead (fit / predict).

    from fuse.models import MODELS, build
    net = build("attention", config, shapes=[(1024,), (3, 1024)], modalities=["A", "V"], n_classes=6)
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from torch import nn

from .blocks import Decoder, LayerPool, TaskWeights

MODELS: dict[str, type] = {}


def register(name: str):
    def add(cls):
        cls.name = name
        MODELS[name] = cls
        return cls
    return add


@dataclass(frozen=True)
class NetConfig:
    """Options every neural fusion model takes (the MER 2023 baseline's defaults, section 3.6)."""

    hidden: tuple[int, ...] = (256, 128)
    dropout: float = 0.3
    decoder: str = "baseline"         # baseline | jdev
    loss: str = "sum"                 # sum | uncertainty
    layer_weights: bool = False       # learned softmax weights over the layers of a per-layer block


class FusionNet(nn.Module):
    """Base of the neural models: a decoder and the task weighting shared by all."""

    Config = NetConfig

    def __init__(self, config: NetConfig, shapes, modalities, n_classes: int, multi_label: bool = False):
        super().__init__()
        self.config = config
        self.decoder = Decoder(config.hidden[-1], n_classes, config.decoder, multi_label)
        self.task_weights = TaskWeights(config.loss)

    def combine_losses(self, loss_e, loss_v):
        return self.task_weights(loss_e, loss_v)

    @staticmethod
    def layer_pools(config: NetConfig, shapes) -> nn.ModuleList:
        return nn.ModuleList(LayerPool(shape[0] if len(shape) == 2 else 1, config.layer_weights)
                             for shape in shapes)


def config_class(name: str):
    return MODELS[name].Config


def make_config(name: str, **options):
    """The model's config from options; refuses an option the model does not have."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}: choose from {sorted(MODELS)}")
    cls = config_class(name)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(k for k, v in options.items() if k not in fields and v is not None)
    if unknown:
        raise ValueError(f"model {name!r} has no option {', '.join(unknown)} (it takes: {', '.join(sorted(fields))})")
    return cls(**{k: v for k, v in options.items() if v is not None})


def build(name: str, config, shapes, modalities, n_classes: int, multi_label: bool = False):
    return MODELS[name](config, shapes, modalities, n_classes, multi_label)


from . import afg, attention, coattention, crossbert, e2el, lgbm, mlp  # noqa: E402,F401  (register the models)
