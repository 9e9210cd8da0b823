"""`attention`: the MER 2023 baseline's attention fusion (Lian et al. 2023, Eq. 1-8).

One encoder per modality (the features of a modality concatenated) gives h_m [E, B, H]; the fused
state is z = sum_m alpha_m h_m.

scores "softmax" (the paper, Eq. 5): alpha = softmax_m(h_m W_alpha + b_alpha[m]).
scores "raw" (the official code): an MLP over the concatenated h_m, then a linear layer to one
unnormalised score per modality, no softmax.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from . import FusionNet, NetConfig, register
from .blocks import Linear, contiguous_grad, encoder, join

SCORES = ("softmax", "raw")


@dataclass(frozen=True)
class AttentionConfig(NetConfig):
    attention_scores: str = "softmax"   # softmax (paper) | raw (official code)


@register("attention")
class Attention(FusionNet):
    Config = AttentionConfig

    def __init__(self, config, shapes, modalities, n_classes, multi_label=False):
        super().__init__(config, shapes, modalities, n_classes, multi_label)
        if config.attention_scores not in SCORES:
            raise ValueError(f"attention scores {config.attention_scores!r}: choose from {SCORES}")
        self.order = list(dict.fromkeys(modalities))  # modalities in first-seen order
        self.groups = [[i for i, m in enumerate(modalities) if m == mod] for mod in self.order]
        self.pools = self.layer_pools(config, shapes)
        widths = [sum(int(shapes[i][-1]) for i in group) for group in self.groups]
        if len(self.groups) > 1 and len(set(widths)) == 1:  # one batched product for all modalities
            self.encoders = encoder(widths[0], config.hidden, config.dropout, groups=len(self.groups))
        else:
            self.encoders = nn.ModuleList(encoder(w, config.hidden, config.dropout) for w in widths)
        width, n = config.hidden[-1], len(self.groups)
        if config.attention_scores == "softmax":
            self.score = Linear(width, 1, bias=False)            # W_alpha
            self.score_bias = nn.Parameter(torch.zeros(1, n))       # b_alpha
        else:
            self.score_mlp = encoder(width * n, config.hidden, config.dropout)
            self.score = Linear(width, n)

    def forward(self, blocks: list[torch.Tensor]):
        pooled = [pool(b) for pool, b in zip(self.pools, blocks)]
        inputs = [join([pooled[i] for i in group]) for group in self.groups]
        if isinstance(self.encoders, nn.ModuleList):
            hidden = torch.stack([contiguous_grad(enc(x)) for enc, x in zip(self.encoders, inputs)], dim=2)
        else:
            hidden = contiguous_grad(self.encoders(torch.stack(inputs, dim=1))).transpose(1, 2)  # [E, B, M, H]
        if self.config.attention_scores == "softmax":
            alpha = (self.score(hidden).squeeze(-1) + self.score_bias.unsqueeze(1)).softmax(dim=-1)
        else:
            alpha = self.score(self.score_mlp(hidden.flatten(2)))
        fused = torch.einsum("ebmh,ebm->ebh", hidden, alpha)
        return self.decoder(fused)
