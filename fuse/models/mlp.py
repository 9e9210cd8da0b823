"""`mlp`: early fusion by concatenation, the MER 2023 baseline's MLP (Linear-ReLU-Dropout layers,
emotion and valence heads)."""
from __future__ import annotations

import torch

from . import FusionNet, register
from .blocks import encoder, join


@register("mlp")
class MLP(FusionNet):
    def __init__(self, config, shapes, modalities, n_classes, multi_label=False):
        super().__init__(config, shapes, modalities, n_classes, multi_label)
        self.pools = self.layer_pools(config, shapes)
        self.encoder = encoder(sum(int(s[-1]) for s in shapes), config.hidden, config.dropout)

    def forward(self, blocks: list[torch.Tensor]):
        x = join([pool(b) for pool, b in zip(self.pools, blocks)])
        return self.decoder(self.encoder(x))
