"""`crossbert`, `crossbert-interaction`: 3-Modal Cross-BERT and its multimodal-interaction variant
(Voloshina and Makhnytkina, III.B) on cached sequences.

Inputs (fuse.inputs.specs defaults): text token vectors (the first 50, with their mask), an audio vector
(MFCC statistics + eGeMAPS) and 64x64 gray face crops every 5th frame, the first 25, grouped in
windows of 10 frames overlapping by 5 (a 3D convolution, normalisation and an LSTM over the
windows). The paper fine-tunes BERT; here the token vectors are the cache's, frozen.

crossbert: CM-BERT's masked multimodal attention, as the authors' code computes it
(T-Sh/3-Modal-Cross-Bert model/finetune.py, after thuiar/Cross-Modal-BERT). Over the anchor
positions (the text tokens; without text the video windows; vectors alone: one position per
modality) each modality gives X_m [P, d], and with H the anchor's states (the token vectors at their
own width):

    A = softmax(sum_m w_m ReLU(X_m X_m^T))     padded keys -inf, w_m starting at 1
    Y = LayerNorm(Dense(dropout(A) H + H))     read at [CLS] (position 0); other anchors: the mean
                                               over real positions
    X_t = H W_t / sqrt(||H W_t||)              no bias; the norm over the clip's real tokens

The paper's audio and video are not aligned to the tokens, so each gates the anchor: the audio
vector every position alike (X_a = X_t * sigmoid(a W)), the video windows as read at each position
by attention (X_v = X_t * sigmoid(attention(X_t, windows) W)). docs/sequence-models.md lists every
difference from the published code.
crossbert-interaction: per-modality summaries z_m, weighted (w_m z_m), plus one set per pair,
the triplet and the union of the pairs, each a linear layer of its members with its own bias.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import register
from .blocks import Decoder, Dropout, LayerPool, Linear, TaskWeights, encoder, join
from .e2el import normalise_pixels
from .seq import MemberConv, MemberLayerNorm, MemberLSTM, last_valid, masked_mean, roles, validity, vector_blocks

WINDOW, STRIDE = 10, 5   # frames per video window, and the step between windows (5 overlap)


@dataclass(frozen=True)
class CrossBertConfig:
    width: int = 30                  # d: CM-BERT's projection width (text, audio; its video LSTM's)
    channels: tuple[int, ...] = (16,)   # 3D convolutions over a window of crops (the paper: one)
    hidden: tuple[int, ...] = ()     # layers before the heads: none, the paper's one linear layer
    dropout: float = 0.1             # BERT's hidden dropout: after the dense layer, before the heads
    decoder: str = "baseline"
    loss: str = "sum"


@dataclass(frozen=True)
class MaskedAttentionConfig(CrossBertConfig):
    attention_dropout: float = 0.3   # CM-BERT's dropout on the fused attention matrix


class _CrossBertBase(nn.Module):
    Config = CrossBertConfig
    uses_row_mask = False
    max_items = 25            # the paper's first 25 sampled frames
    # default features (fuse.inputs.specs.resolve)
    inputs = {"A": ["mfcc#stats", "egemaps"], "V": ["face-crops-crossbert#crops", "face-crops-crossbert#mask"],
              "L": ["{text}#tokens", "{text}#token_mask"]}
    # the authors train at 2e-6 (Adam in their code, AdamW in the paper) because they fine-tune
    # BERT; the heads here start from random weights on frozen token vectors. Batch 24 and 80
    # epochs as the paper.
    training_defaults = {"lr": 1e-3, "batch_size": 24, "epochs": 80}
    eval_rows = 32             # clips per member per evaluation pass: the 3D convolutions' outputs are ~10 MB a clip

    standardized_blocks = staticmethod(vector_blocks)   # audio statistics, the sentence vector

    def __init__(self, config: CrossBertConfig, shapes, modalities, n_classes: int, multi_label: bool = False):
        super().__init__()
        self.config = c = config
        order = list(dict.fromkeys(modalities))
        self.groups = [[i for i, m in enumerate(modalities) if m == mod] for mod in order]
        self.kinds = []
        self.branches = nn.ModuleList()
        for mod, group in zip(order, self.groups):
            kind, branch = self._branch(mod, [tuple(shapes[i]) for i in group])
            self.kinds.append(kind)
            self.branches.append(branch)
        self.task_weights = TaskWeights(c.loss)

    def _branch(self, modality, shapes):
        c = self.config
        found = roles(shapes)
        vectors = [r for r in found if r[0] == "vector"]
        sequences = [r for r in found if r[0] != "vector"]
        if vectors and sequences or len(sequences) > 1:
            raise ValueError(f"{self.name}: modality {modality} mixes features of shapes {shapes}; give either "
                             "vectors (e.g. mfcc#stats+egemaps), or one token sequence with its mask, or one crop "
                             "sequence with its mask")
        if vectors:
            width = sum(shapes[i][-1] for _, i, _ in vectors)
            return ("vector", [i for _, i, _ in vectors]), nn.ModuleDict({
                "pools": nn.ModuleList(LayerPool(shapes[i][0] if len(shapes[i]) == 2 else 1, False) for _, i, _ in vectors),
                "project": Linear(width, c.width, bias=False)})
        kind, item, valid = sequences[0]
        if kind == "frames":  # token vectors
            # CM-BERT's proj_t, a 1x1 convolution without bias
            return ("tokens", item, valid), nn.ModuleDict({"project": Linear(shapes[item][-1], c.width, bias=False)})
        return ("crops", item, valid), WindowEncoder(shapes[item][1:], c.channels, c.width)

    def encode(self, blocks, rows=None):
        """Per modality (kind, features, valid, states): tokens projected to [E, B, K, d] with
        their mask and their cached vectors [E, B, K, D], windows [E, B, W, d] with their validity,
        an audio vector [E, B, d] (valid None)."""
        out = []
        for (kind, *where), group, branch in zip(self.kinds, self.groups, self.branches):
            x = [blocks[i] for i in group]
            if kind == "vector":
                pooled = [pool(x[i]) for pool, i in zip(branch["pools"], where[0])]
                projected = branch["project"](join(pooled))
                out.append(("vector", projected, None, projected))
            elif kind == "tokens":
                item, valid = where
                mask = validity(x[item], x[valid] if valid is not None else None)
                out.append(("tokens", branch["project"](x[item]) * mask.unsqueeze(-1), mask, x[item]))
            else:
                item, valid = where
                states, window_valid = branch(x[item], validity(x[item], x[valid] if valid is not None else None))
                out.append(("crops", states, window_valid, states))
        return out

    def combine_losses(self, loss_e, loss_v):
        return self.task_weights(loss_e, loss_v)


class WindowEncoder(nn.Module):
    """Gray crops [E, B, T, H, W] (or [..., H, W, C]) with validity [E, B, T] -> per window of 10
    frames (step 5): 3D convolutions + ReLU + pooling, layer norm, then an LSTM over the windows:
    (states [E, B, n_windows, d], window validity). A window is real when all its frames lie before
    the clip's last real frame (a clip shorter than a window has one, zero-padded)."""

    def __init__(self, shape, channels, width):
        super().__init__()
        in_channels = shape[2] if len(shape) == 3 else 1
        # the first convolution 3x5x5 with a spatial stride of 2, the others 3x3x3; each + ReLU + 2x2 pool
        self.convs = nn.ModuleList(MemberConv(a, b, (3, 5, 5) if i == 0 else (3, 3, 3), (1, 2, 2) if i == 0 else 1, dims=3)
                                   for i, (a, b) in enumerate(zip((in_channels,) + tuple(channels), channels)))
        self.norm = MemberLayerNorm(channels[-1])
        self.project = Linear(channels[-1], width)
        self.lstm = MemberLSTM(width, width)

    def forward(self, crops, valid):
        E, B, T = crops.shape[:3]
        x = crops if crops.dim() == 6 else crops.unsqueeze(-1)
        x = normalise_pixels(x.permute(0, 1, 2, 5, 3, 4)) * valid[..., None, None, None]  # [E, B, T, C, H, W]
        if T < WINDOW:
            x = F.pad(x, (0, 0, 0, 0, 0, 0, 0, WINDOW - T))
            valid = F.pad(valid, (0, WINDOW - T))
        starts = list(range(0, x.shape[2] - WINDOW + 1, STRIDE))
        windows = torch.stack([x[:, :, s:s + WINDOW] for s in starts], dim=2)  # [E, B, n, 10, C, H, W]
        n = len(starts)
        y = windows.permute(1, 2, 0, 4, 3, 5, 6).reshape(B * n, E * x.shape[3], WINDOW, *x.shape[4:])
        for conv in self.convs:
            y = F.max_pool3d(F.relu(conv(y)), (1, 2, 2))
        y = y.mean((2, 3, 4)).view(B, n, E, -1).permute(2, 0, 1, 3)  # [E, B, n, channels]
        states = self.lstm(self.project(self.norm(y)))
        length = valid.flip(-1).cumsum(-1).flip(-1).gt(0).sum(-1)  # last real frame + 1
        ends = torch.arange(WINDOW, x.shape[2] + 1, STRIDE, device=crops.device)  # starts + WINDOW, made on the device
        window_valid = (ends <= length.clamp(min=WINDOW).unsqueeze(-1)).to(crops.dtype)
        return states, window_valid


@register("crossbert")
class CrossBert(_CrossBertBase):
    Config = MaskedAttentionConfig

    def __init__(self, config, shapes, modalities, n_classes, multi_label=False):
        super().__init__(config, shapes, modalities, n_classes, multi_label)
        c = config
        tokens = next((i for i, k in enumerate(self.kinds) if k[0] == "tokens"), None)
        width = shapes[self.groups[tokens][self.kinds[tokens][1]]][-1] if tokens is not None else c.width
        self.weights = nn.Parameter(torch.ones(1, len(self.groups)))   # w_m
        self.gates = nn.ModuleList(Linear(c.width, c.width) for _ in self.groups)
        self.attention_drop = Dropout(c.attention_dropout)
        self.dense, self.drop, self.norm = Linear(width, width), Dropout(c.dropout), MemberLayerNorm(width)
        self.body = encoder(width, c.hidden, c.dropout)
        self.decoder = Decoder(c.hidden[-1] if c.hidden else width, n_classes, c.decoder, multi_label)

    def forward(self, blocks, rows=None):
        enc = self.encode(blocks)
        anchor = next((e for e in enc if e[0] == "tokens"), None) or next((e for e in enc if e[0] == "crops"), None)
        if anchor is not None:
            x, keep, states = anchor[1], anchor[2], anchor[3]
            if anchor[0] == "tokens":
                x = x / text_scale(x, keep)
        else:  # vectors alone: one position per modality
            x = states = torch.stack([e[1] for e in enc], dim=2)
            keep = x.new_ones(x.shape[:3])
        scores = sum(self.weights[:, m].view(-1, 1, 1, 1) * F.relu(gram(self._view(m, e, x, anchor)))
                     for m, e in enumerate(enc))
        attention = scores.masked_fill(~keep.bool().unsqueeze(2), float("-inf")).softmax(-1)
        fused = torch.einsum("ebpq,ebqd->ebpd", self.attention_drop(attention), states) + states
        y = self.norm(self.drop(self.dense(fused)))
        pooled = y[:, :, 0] if anchor is not None and anchor[0] == "tokens" else masked_mean(y, keep)
        return self.decoder(self.body(self.drop(pooled)))

    def _view(self, m, encoded, x, anchor):
        """X_m at the anchor positions [E, B, P, d]: the anchor itself, or the anchor gated by the
        modality (a vector every position alike; a sequence as read at each position by attention)."""
        kind, feats, valid, _ = encoded
        if anchor is not None and feats is anchor[1]:
            return x
        if kind == "vector":
            return x * torch.sigmoid(self.gates[m](feats)).unsqueeze(2)
        att = torch.einsum("ebpd,ebqd->ebpq", x, feats) / x.shape[-1] ** 0.5
        att = att.masked_fill(~valid.bool().unsqueeze(2), float("-inf")).softmax(-1).nan_to_num()
        return x * torch.sigmoid(self.gates[m](torch.einsum("ebpq,ebqd->ebpd", att, feats)))


def gram(x: torch.Tensor) -> torch.Tensor:
    """X X^T per clip: [E, B, P, d] -> [E, B, P, P] (CM-BERT's unscaled attention matrix)."""
    return torch.einsum("ebpd,ebqd->ebpq", x, x)


def text_scale(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """sqrt of the Frobenius norm of each clip's projected real tokens, [E, B, 1, 1], held constant
    in the backward pass: CM-BERT divides by that of the whole batch (a numpy value), which would
    make a clip's output depend on its batch."""
    norm = (x.detach() * keep.unsqueeze(-1)).flatten(2).norm(dim=-1)
    return norm.clamp(min=1e-12).sqrt()[..., None, None]


@register("crossbert-interaction")
class CrossBertInteraction(_CrossBertBase):
    def __init__(self, config, shapes, modalities, n_classes, multi_label=False):
        super().__init__(config, shapes, modalities, n_classes, multi_label)
        c, n = config, len(self.groups)
        self.weights = nn.Parameter(torch.ones(1, n))   # per-modality weights of the original features
        self.pairs = list(itertools.combinations(range(n), 2))
        self.pair_layers = nn.ModuleList(Linear(2 * c.width, c.width) for _ in self.pairs)
        self.triplet = Linear(3 * c.width, c.width) if n == 3 else None
        self.union = Linear(len(self.pairs) * c.width, c.width) if len(self.pairs) > 1 else None
        self.drop = Dropout(c.dropout)
        self.body = encoder(c.width, c.hidden, c.dropout)
        self.decoder = Decoder(c.hidden[-1] if c.hidden else c.width, n_classes, c.decoder, multi_label)

    def forward(self, blocks, rows=None):
        z = []
        for kind, feats, valid, _ in self.encode(blocks):
            if kind == "vector":
                z.append(feats)
            elif kind == "tokens":
                z.append(masked_mean(feats, valid))
            else:
                z.append(last_valid(feats, valid))
        h = sum(self.weights[:, m].view(-1, 1, 1) * z_m for m, z_m in enumerate(z))
        pairs = [F.relu(layer(torch.cat([z[i], z[j]], -1))) for layer, (i, j) in zip(self.pair_layers, self.pairs)]
        sets = pairs + ([F.relu(self.triplet(torch.cat(z, -1)))] if self.triplet is not None else [])
        if self.union is not None:
            sets.append(F.relu(self.union(torch.cat(pairs, -1))))
        h = h + sum(sets) if sets else h
        return self.decoder(self.body(self.drop(h)))
