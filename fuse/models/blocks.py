"""Pieces every fusion network shares: encoders, layer pooling, decoders, the multi-task loss.

Inputs are blocks: [B, D] utterance-level features or [B, k, D] for k chosen layers of a per-layer
feature (`hubert-large@18,19,20`).
"""
from __future__ import annotations

import math

import torch
from torch import nn

DECODERS = ("baseline", "jdev")
LOSSES = ("sum", "uncertainty")


class Linear(nn.Module):
    """y = x W + b with W stored [in, out]: under vmap over stacked members this is one batched
    matrix product with no transposed copy of W (nn.Linear's [out, in] costs a copy per call, half
    of a training step at MER sizes). Initialised as nn.Linear (uniform +-1/sqrt(in))."""

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True):
        super().__init__()
        bound = 1 / math.sqrt(in_dim)
        self.weight = nn.Parameter(torch.empty(in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(out_dim).uniform_(-bound, bound)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x @ self.weight
        return y + self.bias if self.bias is not None else y


class Dropout(nn.Module):
    """Inverted dropout as nn.Dropout, its mask drawn with torch.rand: on CPU `bernoulli_` (what
    nn.Dropout calls) takes 2.5x as long, a tenth of a MER-sized training step."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = torch.rand_like(x) >= self.p
        return x * keep.to(x.dtype) * (1 / (1 - self.p))


def encoder(in_dim: int, hidden: tuple[int, ...], dropout: float) -> nn.Sequential:
    """Linear-ReLU-Dropout layers, as the MER 2023 baseline's MLP (Eq. 1 with several layers)."""
    layers = []
    for width in hidden:
        layers += [Linear(in_dim, width), nn.ReLU(), Dropout(dropout)]
        in_dim = width
    return nn.Sequential(*layers)


class LayerPool(nn.Module):
    """[B, k, D] -> [B, D]: the mean of the chosen layers, or a learned softmax-weighted sum
    (s3prl's Featurizer) when `learned`; [B, D] passes through."""

    def __init__(self, n_layers: int, learned: bool):
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(n_layers)) if learned and n_layers > 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            return x
        if self.weights is None:
            return x.mean(dim=1)
        return torch.einsum("bkd,k->bd", x, self.weights.softmax(0))


class Decoder(nn.Module):
    """Fused hidden state [B, H] -> emotion logits [B, C] and valence [B].

    baseline: two linear heads (MER 2023 Eq. 2-3).
    jdev: joint decoding of emotion and valence (USTC, Eq. 5-8): the valence also reads the emotion
    posterior, v = [h W_v + b_v, tanh(e W_ev + b_ev)] W_vv + b_vv.
    """

    def __init__(self, hidden: int, n_classes: int, kind: str = "baseline", multi_label: bool = False):
        super().__init__()
        if kind not in DECODERS:
            raise ValueError(f"decoder {kind!r}: choose from {DECODERS}")
        self.kind, self.multi_label = kind, multi_label
        self.emotion = Linear(hidden, n_classes)
        self.valence = Linear(hidden, 1)
        if kind == "jdev":
            self.emotion_valence = Linear(n_classes, 1)  # Eq. 8
            self.joint = Linear(2, 1)  # Eq. 6

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.emotion(h)
        valence = self.valence(h)
        if self.kind == "jdev":
            posterior = logits.sigmoid() if self.multi_label else logits.softmax(-1)
            from_emotion = torch.tanh(self.emotion_valence(posterior))
            valence = self.joint(torch.cat([valence, from_emotion], dim=-1))
        return logits, valence.squeeze(-1)


class TaskWeights(nn.Module):
    """How the emotion loss L_e and the valence loss L_v combine.

    sum: L_e + L_v (MER 2023 Eq. 8).
    uncertainty: L_e / d1^2 + L_v / (2 d2^2) + log(1 + d1) + log(1 + d2) (USTC Eq. 9); d = exp(s)
    keeps both weights positive, which the paper's log(1 + d) assumes.
    """

    def __init__(self, kind: str = "sum"):
        super().__init__()
        if kind not in LOSSES:
            raise ValueError(f"loss {kind!r}: choose from {LOSSES}")
        self.log_delta = nn.Parameter(torch.zeros(2)) if kind == "uncertainty" else None

    def forward(self, loss_e: torch.Tensor, loss_v: torch.Tensor) -> torch.Tensor:
        if self.log_delta is None:
            return loss_e + loss_v
        d = self.log_delta.exp()
        return (loss_e / d[0] ** 2 + loss_v / (2 * d[1] ** 2)
                + torch.log1p(d[0]) + torch.log1p(d[1]))


def block_width(shape: tuple[int, ...]) -> int:
    """The feature width D of a block shape ([D] or [k, D])."""
    return int(shape[-1])


def block_layers(shape: tuple[int, ...]) -> int:
    return int(shape[0]) if len(shape) == 2 else 1

