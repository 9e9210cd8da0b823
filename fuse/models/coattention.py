"""`coattention`: VCEMO's co-attention fusion with a supervised contrastive regulariser
(Tang et al., 3.2-3.4) on cached sequences.

Branches: log-mel frames (Conv-BN-ReLU blocks over time and frequency, then an LSTM), word-level
token vectors (an LSTM, then a 1D convolution), the sentence vector of a text encoder (a linear
layer), and, beyond the paper, face crops (a Conv-BN-ReLU per crop, then an LSTM) so that V has a
branch; a pooled acoustic or visual vector enters as a one-step sequence. Fusion, as MCAN-style co-attention layers (self-attention, then guided attention):
  1. the first temporal modality (audio, else words, else faces) is encoded by self-attention and
     guides the others; each guided one is added to the guide read at its positions (VCEMO adds
     audio and words element-wise); several guided modalities are concatenated along time;
  2. with a sentence vector: the fused sequence guides it (one position), and the two are
     concatenated along time (VCEMO: concatenation);
  3. a final self-attention, the mean over real positions, a two-layer MLP (hidden, then the
     emotion and valence heads).
Loss: (CE + alpha * SupCon) / (1 + alpha), SupCon (Khosla et al. 2020) on a one-layer projection
to 128-d, temperature tau, positives = clips of the same class (multi-label: sharing a class).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import register
from .blocks import Decoder, Dropout, LayerPool, Linear, TaskWeights
from .e2el import normalise_pixels
from .seq import (CoAttentionLayer, MaskedBatchNorm2d, MemberConv, MemberLSTM, masked_mean, roles, trim,
                  validity, vector_blocks)


@dataclass(frozen=True)
class CoAttentionConfig:
    width: int = 128
    heads: int = 4
    layers: int = 1                  # co-attention depth (encoder and decoder layers each)
    feedforward: int = 256
    channels: tuple[int, ...] = (16, 32)   # Conv-BN-ReLU blocks over the log-mel (each pools 2x2)
    hidden: tuple[int, ...] = (128,)
    dropout: float = 0.1
    alpha: float = 0.1               # SupCon weight (VCEMO on its corpus; 100 on IEMOCAP)
    temperature: float = 1.0
    projection: int = 128
    decoder: str = "baseline"
    loss: str = "sum"


@register("coattention")
class CoAttention(nn.Module):
    Config = CoAttentionConfig
    max_items = 1024          # log-mel frames kept (10.24 s at a 10 ms hop)
    inputs = {"A": ["logmel#frames", "logmel#frames.length"], "V": ["face-crops#crops", "face-crops#mask"],
              "L": ["{text}#tokens", "{text}#token_mask", "{text}#first@-1"]}
    # VCEMO: Adam, lr 1e-5, weight decay 1e-3, batch 256, 50 epochs on 7,477 clips; a tenth of that
    # corpus per fold gets few steps at batch 256, so batch 32 and lr 1e-3 here (docs/sequence-models.md)
    training_defaults = {"lr": 1e-3, "weight_decay": 1e-3, "batch_size": 32, "epochs": 50}
    eval_rows = 128            # clips per member per evaluation pass: its CNN and LSTM outputs are ~4 MB a clip
    uses_row_mask = True      # batch norm and SupCon see the real rows only

    standardized_blocks = staticmethod(vector_blocks)   # audio statistics, the sentence vector

    def __init__(self, config: CoAttentionConfig, shapes, modalities, n_classes: int, multi_label: bool = False):
        super().__init__()
        self.config = c = config
        self.multi_label = multi_label
        self.temporal, self.sentence = [], None    # (kind, item, validity) with block indices
        self.encoders = nn.ModuleDict()
        for modality in dict.fromkeys(modalities):
            group = [i for i, m in enumerate(modalities) if m == modality]
            for kind, item, valid in roles([shapes[i] for i in group]):
                item, valid = group[item], group[valid] if valid is not None else None
                shape = tuple(shapes[item])
                if kind == "vector" and modality == "L":
                    if self.sentence is not None:
                        raise ValueError("coattention: give one lexical vector feature (the sentence vector, e.g. "
                                         f"text-minilm#first@-1); got a second of shape {shape}")
                    self.sentence = item
                    self.encoders[str(item)] = VectorEncoder(shape, c.width)
                elif kind == "vector":  # a pooled acoustic or visual feature: a one-step sequence
                    self.encoders[str(item)] = VectorEncoder(shape, c.width)
                    self.temporal.append(("vector", item, None))
                elif kind == "frames" and modality == "A":
                    self.encoders[str(item)] = SpectrogramEncoder(shape[1], c.channels, c.width, c.dropout)
                    self.temporal.append(("spectrogram", item, valid))
                elif kind == "frames":
                    self.encoders[str(item)] = WordEncoder(shape[1], c.width)
                    self.temporal.append(("words", item, valid))
                else:
                    self.encoders[str(item)] = CropEncoder(shape, c.channels[0], c.width)
                    self.temporal.append(("crops", item, valid))
        n_guided = max(len(self.temporal) - 1, 0)
        layer = lambda guided: CoAttentionLayer(c.width, c.heads, c.feedforward, c.dropout, guided)  # noqa: E731
        self.guide_layers = nn.ModuleList(layer(False) for _ in range(c.layers))
        self.guided_layers = nn.ModuleList(nn.ModuleList(layer(True) for _ in range(c.layers)) for _ in range(n_guided))
        if self.sentence is not None and self.temporal:
            self.fused_layers = nn.ModuleList(layer(False) for _ in range(c.layers))
            self.sentence_layers = nn.ModuleList(layer(True) for _ in range(c.layers))
        self.final = layer(False)
        self.mlp = Linear(c.width, c.hidden[-1])
        self.drop = Dropout(c.dropout)
        self.decoder = Decoder(c.hidden[-1], n_classes, c.decoder, multi_label)
        self.projector = Linear(c.width, c.projection)
        self.task_weights = TaskWeights(c.loss)
        self._projected = None

    def forward(self, blocks, rows=None):
        seqs = []
        for kind, item, valid in self.temporal:
            x = blocks[item]
            if kind == "vector":
                seqs.append((self.encoders[str(item)](x).unsqueeze(2), x.new_ones(x.shape[0], x.shape[1], 1)))
                continue
            mask = validity(x, blocks[valid] if valid is not None else None)
            seqs.append(self.encoders[str(item)](x, mask, rows))
        z, keep = self._fuse(seqs, blocks)
        z = self.final(z, keep)
        pooled = masked_mean(z, keep)
        if self.training:
            self._projected = F.normalize(self.projector(pooled), dim=-1)
        return self.decoder(self.drop(F.relu(self.mlp(pooled))))

    def _fuse(self, seqs, blocks):
        """Stages 1 and 2: the fused sequence [E, B, L, d] and its validity [E, B, L]."""
        fused = None
        if seqs:
            guide, guide_keep = seqs[0]
            for layer in self.guide_layers:
                guide = layer(guide, guide_keep)
            parts = [(guide, guide_keep)] if len(seqs) == 1 else []
            for (y, keep), layers in zip(seqs[1:], self.guided_layers):
                for layer in layers:
                    y = layer(y, keep, guide, guide_keep)
                parts.append((y + _read(y, guide, guide_keep), keep))
            fused = (torch.cat([p[0] for p in parts], 2), torch.cat([p[1] for p in parts], 2))
        if self.sentence is None:
            return fused
        s = self.encoders[str(self.sentence)](blocks[self.sentence]).unsqueeze(2)   # [E, B, 1, d]
        one = s.new_ones(s.shape[:3])
        if fused is None:
            return s, one
        x, keep = fused
        for layer in self.fused_layers:
            x = layer(x, keep)
        for layer in self.sentence_layers:
            s = layer(s, one, x, keep)
        return torch.cat([x, s], 2), torch.cat([keep, one], 2)

    def emotion_loss(self, loss_e, labels, weight):
        """(CE + alpha * SupCon) / (1 + alpha) per member, SupCon over the batch's real rows."""
        c = self.config
        if not c.alpha or self._projected is None:
            return loss_e
        con = supcon(self._projected, labels, weight > 0, c.temperature)
        return (loss_e + c.alpha * con) / (1 + c.alpha)

    def combine_losses(self, loss_e, loss_v):
        return self.task_weights(loss_e, loss_v)


def _read(x, memory, keep):
    """The memory read at each position of x by scaled dot-product attention (no parameters)."""
    scores = torch.einsum("ebpd,ebqd->ebpq", x, memory) / x.shape[-1] ** 0.5
    scores = scores.masked_fill(~keep.bool().unsqueeze(2), float("-inf")).softmax(-1).nan_to_num()
    return torch.einsum("ebpq,ebqd->ebpd", scores, memory)


def supcon(z: torch.Tensor, labels: torch.Tensor, real: torch.Tensor, temperature: float) -> torch.Tensor:
    """Supervised contrastive loss per member (Khosla et al. 2020, L_out): z [E, B, P] unit
    vectors, labels [E, B] (or [E, B, C] 0/1), real [E, B]. Anchors without a positive are skipped."""
    E, B, _ = z.shape
    logits = torch.einsum("ebp,efp->ebf", z, z) / temperature
    others = real.unsqueeze(1) & ~torch.eye(B, dtype=torch.bool, device=z.device)   # a != i, real
    log_prob = logits - torch.logsumexp(logits.masked_fill(~others, -1e4), -1, keepdim=True)  # finite: no NaN grads
    if labels.dim() == 3:
        same = torch.einsum("ebc,efc->ebf", labels, labels) > 0
    else:
        same = labels.unsqueeze(2) == labels.unsqueeze(1)
    positive = same & others & real.unsqueeze(2)
    count = positive.sum(-1)
    per_anchor = -(log_prob.masked_fill(~positive, 0)).sum(-1) / count.clamp(min=1)
    anchors = (count > 0).to(z.dtype)
    return (per_anchor * anchors).sum(-1) / anchors.sum(-1).clamp(min=1)


class VectorEncoder(nn.Module):
    """A vector [E, B, D] (or k layers [E, B, k, D], averaged) through a linear layer: [E, B, d]."""

    def __init__(self, shape, width: int):
        super().__init__()
        self.pool = LayerPool(shape[0] if len(shape) == 2 else 1, False)
        self.project = Linear(shape[-1], width)

    def forward(self, x):
        return self.project(self.pool(x))


class SpectrogramEncoder(nn.Module):
    """Log-mel frames [E, B, T, F] with validity [E, B, T] -> [E, B, T', d]: per-clip mean and
    variance normalisation per mel bin, Conv-BN-ReLU blocks (each 3x3 with a stride of 2), the
    frequency axis flattened into a linear layer, an LSTM. Padded frames are zero at every stage,
    so they change nothing."""

    def __init__(self, n_mels: int, channels, width: int, dropout: float):
        super().__init__()
        self.convs = nn.ModuleList(MemberConv(a, b, 3, stride=2) for a, b in zip((1,) + tuple(channels), channels))
        self.norms = nn.ModuleList(MaskedBatchNorm2d(b) for b in channels)
        bins = n_mels
        for _ in channels:
            bins = -(-bins // 2)
        self.project = Linear(channels[-1] * bins, width)
        self.lstm = MemberLSTM(width, width)
        self.drop = Dropout(dropout)

    def forward(self, frames, valid, rows=None):
        """rows [E, B]: False for rows that only fill a member's batch up (kept out of batch norm)."""
        frames, valid = trim(frames, valid, 2 ** len(self.convs))
        E, B, T, n_mels = frames.shape
        w = valid.unsqueeze(-1)
        mean = (frames * w).sum(2, keepdim=True) / w.sum(2, keepdim=True).clamp(min=1)
        var = ((frames - mean) ** 2 * w).sum(2, keepdim=True) / w.sum(2, keepdim=True).clamp(min=1)
        x = (frames - mean) / (var + 1e-5).sqrt() * w
        x = x.permute(1, 0, 3, 2).reshape(B, E, n_mels, T)      # [B, E*1, F, T]
        v = valid.permute(1, 0, 2)                              # [B, E, T]
        real = (rows if rows is not None else valid.new_ones(E, B)).to(v.dtype).t().unsqueeze(-1)
        for conv, norm in zip(self.convs, self.norms):
            v = F.max_pool1d(v, 2, ceil_mode=True)  # a step is real when it reads a real frame
            real_steps = v * real
            x = F.relu(norm(conv(x), real_steps))
            x = x * v.repeat_interleave(x.shape[1] // E, 1).unsqueeze(2)
        x = x.view(B, E, -1, x.shape[-1]).permute(1, 0, 3, 2)   # [E, B, T', C*F']
        steps = self.lstm(self.drop(self.project(x)))
        keep = v.permute(1, 0, 2)
        return steps * keep.unsqueeze(-1), keep


class WordEncoder(nn.Module):
    """Token vectors [E, B, K, D] with validity -> an LSTM, then a 1D convolution (kernel 3) over
    the tokens: [E, B, K, d]."""

    def __init__(self, in_dim: int, width: int):
        super().__init__()
        self.lstm = MemberLSTM(in_dim, width)
        self.conv = MemberConv(width, width, 3, dims=1)

    def forward(self, tokens, valid, rows=None):
        """(`rows`: unused, no batch statistics here)"""
        tokens, valid = trim(tokens, valid)
        E, B, K, _ = tokens.shape
        h = self.lstm(tokens) * valid.unsqueeze(-1)
        y = self.conv(h.permute(1, 0, 3, 2).reshape(B, -1, K))
        return y.view(B, E, -1, K).permute(1, 0, 3, 2) * valid.unsqueeze(-1), valid


class CropEncoder(nn.Module):
    """Face crops [E, B, T, H, W(, C)] with validity -> a Conv-BN-ReLU per crop (3x3, stride 2), global average
    pooling, a linear layer and an LSTM over the crops: [E, B, T, d]."""

    def __init__(self, shape, channels: int, width: int):
        super().__init__()
        self.conv = MemberConv(shape[3] if len(shape) == 4 else 1, channels, 3, stride=2)
        self.norm = MaskedBatchNorm2d(channels)
        self.project = Linear(channels, width)
        self.lstm = MemberLSTM(width, width)

    def forward(self, crops, valid, rows=None):
        crops, valid = trim(crops, valid)
        x = crops if crops.dim() == 6 else crops.unsqueeze(-1)
        E, B, T = x.shape[:3]
        x = normalise_pixels(x.permute(1, 2, 0, 5, 3, 4)).reshape(B * T, -1, *x.shape[3:5])   # [B*T, E*C, H, W]
        real = valid if rows is None else valid * rows.unsqueeze(-1).to(valid.dtype)
        v = real.permute(1, 2, 0).reshape(B * T, E)
        y = F.relu(self.norm(self.conv(x), v)).mean((2, 3)).view(B, T, E, -1).permute(2, 0, 1, 3)
        return self.lstm(self.project(y)) * valid.unsqueeze(-1), valid
