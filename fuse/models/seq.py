"""Member-batched pieces of the sequence models: a VGG-style CNN over images (face crops,
spectrogram pieces) and a transformer encoder over the items of a clip, both with masks.

Every parameter carries the member dimension E first, as in fuse.models.blocks. Inside the CNN
the items of all members travel as one grouped batch [N, E*C, H, W]: a grouped convolution
(groups=E) gives each member its own filters. Padded items (a clip with 5 crops in a batch padded
to 16) are masked: they enter no batch-norm statistics and no attention, so they change nothing.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import Dropout, Linear


class MemberConv2d(nn.Module):
    """A 'same'-padded Conv2d per member: x [N, E*C_in, H, W] -> [N, E*C_out, H, W]; weight
    [E, C_out, C_in, k, k]. Initialised as nn.Conv2d."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int):
        super().__init__()
        conv = nn.Conv2d(in_channels, out_channels, kernel)
        self.weight = nn.Parameter(conv.weight.detach().unsqueeze(0))
        self.bias = nn.Parameter(conv.bias.detach().unsqueeze(0))
        self.padding = kernel // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        E = self.weight.shape[0]
        return F.conv2d(x, self.weight.flatten(0, 1), self.bias.flatten(), padding=self.padding, groups=E)


class MaskedBatchNorm2d(nn.Module):
    """BatchNorm2d per member whose statistics come from the valid items only:
    x [N, E*C, H, W], valid [N, E] (1 = a real item of that member's batch, 0 = padding)."""

    def __init__(self, channels: int, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1, channels))
        self.bias = nn.Parameter(torch.zeros(1, channels))
        self.register_buffer("running_mean", torch.zeros(1, channels))
        self.register_buffer("running_var", torch.ones(1, channels))
        self.momentum, self.eps = momentum, eps

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        N, EC, H, W = x.shape
        E, C = self.weight.shape
        x = x.view(N, E, C, H, W)
        if self.training:
            m = valid.view(N, E, 1, 1, 1)
            count = (valid.sum(0) * H * W).clamp(min=1).unsqueeze(1)  # [E, 1]
            mean = (x * m).sum((0, 3, 4)) / count
            var = ((x - mean.view(1, E, C, 1, 1)) ** 2 * m).sum((0, 3, 4)) / count
            with torch.no_grad():  # running variance unbiased, as nn.BatchNorm2d keeps it
                seen = (valid.sum(0) > 0).view(E, 1)
                unbiased = var * count / (count - 1).clamp(min=1)
                self.running_mean.copy_(torch.where(seen, torch.lerp(self.running_mean, mean, self.momentum),
                                                    self.running_mean))
                self.running_var.copy_(torch.where(seen, torch.lerp(self.running_var, unbiased, self.momentum),
                                                   self.running_var))
        else:
            mean, var = self.running_mean, self.running_var
        scale = self.weight * torch.rsqrt(var + self.eps)
        y = x * scale.view(1, E, C, 1, 1) + (self.bias - mean * scale).view(1, E, C, 1, 1)
        return y.view(N, EC, H, W)


class VggBlock(nn.Module):
    """Two 3x3 conv + batch norm + ReLU (SAMSEMO's VggBasicBlock), then dropout and an optional 2x2
    max-pool, as E2E-L's CNN orders them."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float, pool: bool):
        super().__init__()
        self.conv1, self.bn1 = MemberConv2d(in_channels, out_channels, 3), MaskedBatchNorm2d(out_channels)
        self.conv2, self.bn2 = MemberConv2d(out_channels, out_channels, 3), MaskedBatchNorm2d(out_channels)
        self.dropout, self.pool = Dropout(dropout), pool

    def forward(self, x, valid):
        x = F.relu(self.bn1(self.conv1(x), valid))
        x = self.dropout(F.relu(self.bn2(self.conv2(x), valid)))
        return F.max_pool2d(x, 2) if self.pool else x


class ItemCNN(nn.Module):
    """E2E-L's per-item CNN: conv 5x5 + BN + ReLU + max-pool, then VGG blocks of `channels[1:]`
    (the last three pooled), flattened and projected to `width` (Linear-ReLU-Linear).

    forward(items [E, B, T, C, H, W], valid [E, B, T]) -> [E, B, T, width]."""

    def __init__(self, in_channels: int, size: tuple[int, int], channels: tuple[int, ...], width: int,
                 dropout: float, stem_dropout: bool = False, hidden: int = 1024):
        super().__init__()
        self.stem, self.stem_bn = MemberConv2d(in_channels, channels[0], 5), MaskedBatchNorm2d(channels[0])
        self.stem_dropout = Dropout(dropout if stem_dropout else 0.0)  # E2E-L's audio CNN has one here
        pools = [False] * (len(channels) - 1)
        pools[-3:] = [True] * min(3, len(pools))
        self.blocks = nn.ModuleList(VggBlock(a, b, dropout, p) for a, b, p in zip(channels, channels[1:], pools))
        h, w = size[0] // 2 ** (1 + sum(pools)), size[1] // 2 ** (1 + sum(pools))
        if h < 1 or w < 1:
            raise ValueError(f"items of {size[0]}x{size[1]} are too small for {1 + sum(pools)} 2x2 poolings")
        self.project = nn.ModuleList([Linear(channels[-1] * h * w, hidden), Linear(hidden, width)])

    def forward(self, items: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        E, B, T = items.shape[:3]
        x = items.permute(1, 2, 0, 3, 4, 5).reshape(B * T, E * items.shape[3], *items.shape[4:])
        v = valid.permute(1, 2, 0).reshape(B * T, E).to(x.dtype)
        x = F.max_pool2d(F.relu(self.stem_bn(self.stem_dropout(self.stem(x)), v)), 2)
        for block in self.blocks:
            x = block(x, v)
        x = x.view(B * T, E, -1).transpose(0, 1)  # [E, B*T, C*h*w]
        x = self.project[1](F.relu(self.project[0](x)))
        return x.view(E, B, T, -1)


class MemberLayerNorm(nn.Module):
    """LayerNorm over the last dimension with a per-member affine: x [E, ..., D]."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1, dim))
        self.bias = nn.Parameter(torch.zeros(1, dim))
        self.eps = eps

    def forward(self, x):
        shape = (x.shape[0],) + (1,) * (x.dim() - 2) + (x.shape[-1],)
        return F.layer_norm(x, x.shape[-1:], eps=self.eps) * self.weight.view(shape) + self.bias.view(shape)


class EncoderLayer(nn.Module):
    """nn.TransformerEncoderLayer's defaults (post-norm, ReLU, feed-forward 2048, dropout 0.1),
    per member: x [E, B, L, D], keep [E, B, L] (True = attend to this position)."""

    def __init__(self, dim: int, heads: int, feedforward: int = 2048, dropout: float = 0.1):
        super().__init__()
        self.qkv, self.out = Linear(dim, 3 * dim), Linear(dim, dim)
        self.ff1, self.ff2 = Linear(dim, feedforward), Linear(feedforward, dim)
        self.norm1, self.norm2 = MemberLayerNorm(dim), MemberLayerNorm(dim)
        self.heads, self.p = heads, dropout
        self.drop1, self.drop2, self.drop3 = Dropout(dropout), Dropout(dropout), Dropout(dropout)

    def forward(self, x, keep):
        E, B, L, D = x.shape
        q, k, v = (t.reshape(E * B, L, self.heads, D // self.heads).transpose(1, 2)
                   for t in self.qkv(x).chunk(3, dim=-1))
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=keep.reshape(E * B, 1, 1, L),
                                             dropout_p=self.p if self.training else 0.0)
        x = self.norm1(x + self.drop1(self.out(att.transpose(1, 2).reshape(E, B, L, D))))
        return self.norm2(x + self.drop3(self.ff2(self.drop2(F.relu(self.ff1(x))))))


class SequenceEncoder(nn.Module):
    """A learned CLS vector prepended to the items, `layers` encoder layers, the CLS output:
    items [E, B, T, D], valid [E, B, T] -> [E, B, D]."""

    def __init__(self, dim: int, layers: int, heads: int, feedforward: int = 2048, dropout: float = 0.1):
        super().__init__()
        self.cls = nn.Parameter(torch.randn(1, dim))  # as nn.Embedding(1, dim) initialises it
        self.layers = nn.ModuleList(EncoderLayer(dim, heads, feedforward, dropout) for _ in range(layers))

    def forward(self, items, valid):
        E, B = items.shape[:2]
        x = torch.cat([self.cls.view(E, 1, 1, -1).expand(E, B, 1, -1), items], dim=2)
        keep = torch.cat([torch.ones(E, B, 1, dtype=torch.bool, device=items.device), valid.bool()], dim=2)
        for layer in self.layers:
            x = layer(x, keep)
        return x[:, :, 0]

