"""`afg`: attention-guided feature gathering (USTC, MER 2023 third place; Eq. 1-3), three structures.

Every feature is a unit, and so is every chosen layer of a per-layer feature (HL(18), HL(19),
HL(20) are three units; `--layer-weights` folds a feature's layers into one unit instead). Each
unit is aligned to width H by its own dimension-align matrix (the paper's DA-Mat: one linear map,
H = the last of `--hidden`, 128; earlier widths put Linear-ReLU-Dropout layers before it), its
output through dropout, then gathered:

    gather(h_1..h_n) = sum_j alpha_j h_j,  alpha = softmax_j(h_j . W[:, j] + b_j)

with W [H, n], b [n] (the diagonal of h^T W_alpha + b_alpha in Eq. 2, the reading that makes its
shapes agree).

structure 1: one gathering over all units, in parallel.
structure 2: each unit of the reference modality (acoustic when present) gathered with every unit
             of the other modalities, then the pairs' states gathered.
structure 3: the reference modality's units gathered first (intra-modal), then that state with
             the other modalities' units (inter-modal).
`--structure all` trains the three and fuses their posteriors (Eq. 10-11) in the training loop.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from . import FusionNet, NetConfig, register
from .blocks import Dropout, LayerPool, Linear, encoder

STRUCTURES = ("1", "2", "3")


@dataclass(frozen=True)
class AFGConfig(NetConfig):
    hidden: tuple[int, ...] = (128,)   # the aligned width H (the last), after Linear-ReLU-Dropout layers (the others)
    decoder: str = "jdev"       # USTC Eq. 5-8, in every system of its Table 1 that it submitted
    loss: str = "uncertainty"   # USTC Eq. 9
    structure: str = "1"


class Gather(nn.Module):
    """n states [E, B, n, H] -> [E, B, H], attention-weighted (Eq. 1-3)."""

    def __init__(self, n: int, width: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, width, n) / width ** 0.5)
        self.bias = nn.Parameter(torch.zeros(1, n))

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        scores = torch.einsum("ebnh,ehn->ebn", states, self.weight) + self.bias.unsqueeze(1)
        return torch.einsum("ebnh,ebn->ebh", states, scores.softmax(dim=-1))


def aligner(in_dim: int, hidden: tuple[int, ...], dropout: float) -> nn.Sequential:
    """A unit [E, B, in_dim] -> [E, B, hidden[-1]]: Linear-ReLU-Dropout layers of hidden[:-1] (none
    by default), then the dimension-align matrix (no bias) and dropout."""
    *layers, width = hidden
    return nn.Sequential(*encoder(in_dim, tuple(layers), dropout),
                         Linear(layers[-1] if layers else in_dim, width, bias=False), Dropout(dropout))


@register("afg")
class AFG(FusionNet):
    Config = AFGConfig

    def __init__(self, config, shapes, modalities, n_classes, multi_label=False):
        super().__init__(config, shapes, modalities, n_classes, multi_label)
        if config.structure not in STRUCTURES:
            raise ValueError(f"AFG structure {config.structure!r}: choose from {STRUCTURES} (or 'all' in fuse.train)")
        # units: (block index, layer index or None)
        self.units, unit_modality = [], []
        self.pools = nn.ModuleList()
        for i, (shape, modality) in enumerate(zip(shapes, modalities)):
            per_layer = len(shape) == 2 and not config.layer_weights
            self.pools.append(LayerPool(shape[0] if len(shape) == 2 else 1, config.layer_weights))
            for layer in (range(shape[0]) if per_layer else [None]):
                self.units.append((i, layer))
                unit_modality.append(modality)
        self.encoders = nn.ModuleList(aligner(int(shapes[i][-1]), config.hidden, config.dropout)
                                      for i, _ in self.units)
        width = config.hidden[-1]
        ref = "A" if "A" in unit_modality else unit_modality[0]
        self.ref = [j for j, m in enumerate(unit_modality) if m == ref]
        self.rest = [j for j, m in enumerate(unit_modality) if m != ref]
        n_units, n_ref, n_rest = len(self.units), len(self.ref), len(self.rest)
        if config.structure == "1":
            self.gathers = nn.ModuleList([Gather(n_units, width)])
        elif config.structure == "2":
            self.gathers = nn.ModuleList([Gather(1 + n_rest, width) for _ in self.ref] + [Gather(n_ref, width)])
        else:
            self.gathers = nn.ModuleList([Gather(n_ref, width), Gather(1 + n_rest, width)])

    def forward(self, blocks: list[torch.Tensor]):
        states = []
        for enc, (i, layer) in zip(self.encoders, self.units):
            x = blocks[i] if layer is None or blocks[i].dim() == 3 else blocks[i][:, :, layer]
            states.append(enc(self.pools[i](x) if layer is None else x))
        h = torch.stack(states, dim=2)  # [E, B, n_units, H]
        rest = h[:, :, self.rest]
        if self.config.structure == "1":
            fused = self.gathers[0](h)
        elif self.config.structure == "2":
            pairs = [g(torch.cat([h[:, :, [j]], rest], dim=2)) for g, j in zip(self.gathers[:-1], self.ref)]
            fused = self.gathers[-1](torch.stack(pairs, dim=2))
        else:
            ref_state = self.gathers[0](h[:, :, self.ref]).unsqueeze(2)
            fused = self.gathers[1](torch.cat([ref_state, rest], dim=2))
        return self.decoder(fused)
