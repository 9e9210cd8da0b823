"""Member-batched pieces of the sequence models: a VGG-style CNN over images (face crops,
spectrogram pieces) and a transformer encoder over the items of a clip, both with masks.

Every parameter carries the member dimension E first, as in fuse.models.blocks. Inside the CNN
the items of all members travel as one batch [N, E*C, H, W], each member's channels convolved
with its own filters (MemberConv). Padded items (a clip with 5 crops in a batch padded
to 16) are masked: they enter no batch-norm statistics and no attention, so they change nothing.
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import Dropout, Linear, recomputed, recomputing


class MemberConv(nn.Module):
    """A 'same'-padded convolution per member, 1D, 2D or 3D (`dims`): x [N, E*C_in, *size] ->
    [N, E*C_out, *size / stride] (rounded up); weight [E, C_out, C_in, *kernel]. Initialised as
    nn.Conv1d / 2d / 3d.

    One convolution call per member, on a contiguous copy of its channels: a member's numbers are
    then those it gets alone, whichever members run beside it (fuse.training.loop's member groups). A
    grouped convolution (groups=E) is not: oneDNN picks its kernel and splits its weight-gradient
    sums over threads by the number of groups (measured: other bits at 1 vs 2-5 groups, and at
    2 vs 5 on two threads), and it is 2-10x slower for a member's 1-3 input channels."""

    def __init__(self, in_channels: int, out_channels: int, kernel, stride=1, dims: int = 2):
        super().__init__()
        kernel = (kernel,) * dims if isinstance(kernel, int) else tuple(kernel)
        conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[dims - 1](in_channels, out_channels, kernel)
        self.weight = nn.Parameter(conv.weight.detach().unsqueeze(0))
        self.bias = nn.Parameter(conv.bias.detach().unsqueeze(0))
        self.padding, self.stride = tuple(k // 2 for k in kernel), stride
        self.convolve = (F.conv1d, F.conv2d, F.conv3d)[dims - 1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        E = self.weight.shape[0]
        parts = x.split(x.shape[1] // E, dim=1)
        out = [self.convolve(part.contiguous(), weight, bias, self.stride, self.padding)
               for part, weight, bias in zip(parts, self.weight.unbind(0), self.bias.unbind(0))]
        return out[0] if E == 1 else torch.cat(out, dim=1)


def normalise(x, mean, var, weight, bias, eps):
    """x [N, E, C, H, W] -> (x - mean) * weight / sqrt(var + eps) + bias, per member and channel
    ([E, C] each), in one product and one sum."""
    E, C = weight.shape
    scale = weight * torch.rsqrt(var + eps)
    return x * scale.view(1, E, C, 1, 1) + (bias - mean * scale).view(1, E, C, 1, 1)


class _MaskedNorm(torch.autograd.Function):
    """Batch normalisation over the valid items, training: x [N, E, C, H, W], m [N, E, 1, 1, W or 1]
    (1 = valid), count [E, 1] valid values per channel, weight and bias [E, C] ->
    y = (x - mean) * weight / sqrt(var + eps) + bias, and the batch mean and (biased) var [E, C].

    The backward pass is written out: it keeps x alone (autograd's, through the composite, also
    keeps x - mean) and holds three x-sized temporaries at once instead of about six, which is
    most of what a recomputed e2el stem needs (fuse.models.blocks.recomputed)."""

    @staticmethod
    def forward(ctx, x, m, count, weight, bias, eps):
        E, C = weight.shape
        mean = (x * m).sum((0, 3, 4)) / count
        var = ((x - mean.view(1, E, C, 1, 1)) ** 2 * m).sum((0, 3, 4)) / count
        y = normalise(x, mean, var, weight, bias, eps)
        ctx.save_for_backward(x, m, count, weight, mean, var)
        ctx.eps = eps
        ctx.mark_non_differentiable(mean, var)
        return y, mean, var

    @staticmethod
    def backward(ctx, g, _mean, _var):
        x, m, count, weight, mean, var = ctx.saved_tensors
        shape = (1,) + weight.shape + (1, 1)
        invstd = torch.rsqrt(var + ctx.eps)
        scale = weight * invstd
        d = x - mean.view(shape)
        g_bias = g.sum((0, 3, 4))
        g_d = (g * d).sum((0, 3, 4))                       # dL/dscale
        g_var = g_d * scale * invstd ** 2 * -0.5           # through scale = weight (var + eps)^-1/2
        # mean: in y's shift, and in var's deviations (whose valid sum is ~0, but not exactly)
        g_mean = -g_bias * scale - 2 * g_var * (d * m).sum((0, 3, 4)) / count
        g_x = g * scale.view(shape)
        g_x += m * (g_mean / count).view(shape)
        g_x += d.mul_(m).mul_((2 * g_var / count).view(shape))
        return g_x, None, None, g_d * invstd, g_bias, None


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
        """valid [N, E] per item, or [N, E, W] per column (the frames of a spectrogram)."""
        N, EC, H, W = x.shape
        E, C = self.weight.shape
        x = x.view(N, E, C, H, W)
        if not self.training:
            mean, var = self.running_mean, self.running_var
        else:
            m = valid.view(N, E, 1, 1, W if valid.dim() == 3 else 1)
            per_item = valid.sum(-1) * H if valid.dim() == 3 else valid * H * W
            count = per_item.sum(0).clamp(min=1).unsqueeze(1)  # [E, 1]
            y, mean, var = _MaskedNorm.apply(x, m, count, self.weight, self.bias, self.eps)
            if not recomputing():  # a recomputed forward (blocks.recomputed) has updated them already
                self._update_running(mean, var, count, per_item, E)
            return y.view(N, EC, H, W)
        return normalise(x, mean, var, self.weight, self.bias, self.eps).view(N, EC, H, W)

    @torch.no_grad()
    def _update_running(self, mean, var, count, per_item, E):
        """Running variance unbiased, as nn.BatchNorm2d keeps it; a member with no valid item keeps its own."""
        seen = (per_item.sum(0) > 0).view(E, 1)
        unbiased = var * count / (count - 1).clamp(min=1)
        self.running_mean.copy_(torch.where(seen, torch.lerp(self.running_mean, mean, self.momentum),
                                            self.running_mean))
        self.running_var.copy_(torch.where(seen, torch.lerp(self.running_var, unbiased, self.momentum),
                                           self.running_var))


class _MaxPool2(torch.autograd.Function):
    """F.max_pool2d(x, 2) whose backward finds the maxima again from x instead of keeping their
    int64 indices (half the bytes of x): x is kept anyway where it is a ReLU's output. The same
    gradient, bit for bit (the same kernel finds the same maxima)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return F.max_pool2d(x, 2)

    @staticmethod
    def backward(ctx, grad):
        x, = ctx.saved_tensors
        _, index = F.max_pool2d(x, 2, return_indices=True)
        return torch.ops.aten.max_pool2d_with_indices_backward(grad, x, [2, 2], [2, 2], [0, 0], [1, 1], False, index)


def max_pool2(x: torch.Tensor) -> torch.Tensor:
    """2x2 max-pooling, stride 2 (_MaxPool2 when a gradient is needed)."""
    return _MaxPool2.apply(x) if x.requires_grad else F.max_pool2d(x, 2)


class VggBlock(nn.Module):
    """Two 3x3 conv + batch norm + ReLU (SAMSEMO's VggBasicBlock), then dropout and an optional 2x2
    max-pool, as E2E-L's CNN orders them."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float, pool: bool):
        super().__init__()
        self.conv1, self.bn1 = MemberConv(in_channels, out_channels, 3), MaskedBatchNorm2d(out_channels)
        self.conv2, self.bn2 = MemberConv(out_channels, out_channels, 3), MaskedBatchNorm2d(out_channels)
        self.dropout, self.pool = Dropout(dropout, member_dim=1), pool

    def forward(self, x, valid):
        x = F.relu(self.bn1(self.conv1(x), valid))
        x = self.dropout(F.relu(self.bn2(self.conv2(x), valid)))
        return max_pool2(x) if self.pool else x


class ItemCNN(nn.Module):
    """E2E-L's per-item CNN: conv 5x5 + BN + ReLU + max-pool, then VGG blocks of `channels[1:]`
    (the last three pooled), flattened and projected to `width` (Linear-ReLU-Linear).

    forward(items [E, B, T, C, H, W], valid [E, B, T]) -> [E, B, T, width].

    `recompute` (set by fuse.training.loop when one member's activations do not fit its memory
    budget otherwise): the stem and each VGG block recompute their activations in the backward
    pass, keeping only their inputs (blocks.recomputed): the same numbers in less memory, for a
    second forward pass of the CNN. (Regions of half a block keep twice the inputs: measured more.)"""

    recompute = False

    def __init__(self, in_channels: int, size: tuple[int, int], channels: tuple[int, ...], width: int,
                 dropout: float, stem_dropout: bool = False, hidden: int = 1024):
        super().__init__()
        self.stem, self.stem_bn = MemberConv(in_channels, channels[0], 5), MaskedBatchNorm2d(channels[0])
        self.stem_dropout = Dropout(dropout if stem_dropout else 0.0, member_dim=1)  # E2E-L's audio CNN has one here
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
        x = recomputed(self._stem, x, v, enabled=self.recompute)
        for block in self.blocks:
            x = recomputed(block, x, v, enabled=self.recompute)
        x = x.reshape(B * T, E, -1).transpose(0, 1)  # [E, B*T, C*h*w] (one member: channels-last strides)
        x = self.project[1](F.relu(self.project[0](x)))
        return x.view(E, B, T, -1)

    def _stem(self, x, valid):
        return max_pool2(F.relu(self.stem_bn(self.stem_dropout(self.stem(x)), valid)))


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


def attend(q, k, v, keep, dropout: Dropout):
    """Scaled dot-product attention, q [E*B, h, L, d] over k, v [E*B, h, M, d], keep [E*B, 1, 1, M]
    (True = attend). Training with dropout: written out, so that the attention weights go through
    `dropout` (each member's own generator; torch's fused kernel draws from the global one)."""
    if not (dropout.training and dropout.p > 0):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
    scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
    return dropout(scores.masked_fill(~keep, float("-inf")).softmax(-1)) @ v


class EncoderLayer(nn.Module):
    """nn.TransformerEncoderLayer's defaults (post-norm, ReLU, feed-forward 2048, dropout 0.1),
    per member: x [E, B, L, D], keep [E, B, L] (True = attend to this position)."""

    def __init__(self, dim: int, heads: int, feedforward: int = 2048, dropout: float = 0.1):
        super().__init__()
        self.qkv, self.out = Linear(dim, 3 * dim), Linear(dim, dim)
        self.ff1, self.ff2 = Linear(dim, feedforward), Linear(feedforward, dim)
        self.norm1, self.norm2 = MemberLayerNorm(dim), MemberLayerNorm(dim)
        self.heads = heads
        self.drop1, self.drop2, self.drop3 = Dropout(dropout), Dropout(dropout), Dropout(dropout)
        self.drop_weights = Dropout(dropout)

    def forward(self, x, keep):
        E, B, L, D = x.shape
        q, k, v = (t.reshape(E * B, L, self.heads, D // self.heads).transpose(1, 2)
                   for t in self.qkv(x).chunk(3, dim=-1))
        att = attend(q, k, v, keep.reshape(E * B, 1, 1, L), self.drop_weights)
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



# devices on which MemberLSTM runs torch's fused LSTM, one call per member (cuDNN on CUDA) rather than
# stepping through time in Python (~8 kernel launches a step). Not on a CPU: there torch's LSTM rounds
# otherwise than the loop (its cell kernel), and the loop is what runs trained on a CPU have been
FUSED_LSTM_DEVICES = frozenset({"cuda"})


class MemberLSTM(nn.Module):
    """A one-layer LSTM per member (nn.LSTM's gates and initialisation): x [E, B, T, D_in] ->
    hidden states [E, B, T, D]. Left to right, so padding after a clip's last frame never reaches
    its real steps. On a device of FUSED_LSTM_DEVICES, torch's fused LSTM per member (`fused`),
    else a loop over the steps (`stepped`): the same LSTM, within float32 rounding."""

    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        bound = dim ** -0.5
        self.w_ih = nn.Parameter(torch.empty(1, in_dim, 4 * dim).uniform_(-bound, bound))
        self.w_hh = nn.Parameter(torch.empty(1, dim, 4 * dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(1, 4 * dim).uniform_(-bound, bound))  # b_ih + b_hh in one

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fused(x) if x.device.type in FUSED_LSTM_DEVICES else self.stepped(x)

    def stepped(self, x: torch.Tensor) -> torch.Tensor:
        """Every member at once, one step at a time: gates (i, f, g, o) = x w_ih + h w_hh + bias."""
        E, B, T, _ = x.shape
        D = self.w_hh.shape[1]
        gates_x = torch.baddbmm(self.bias.unsqueeze(1), x.reshape(E, B * T, -1), self.w_ih).view(E, B, T, 4 * D)
        h, c = x.new_zeros(E, B, D), x.new_zeros(E, B, D)
        out = []
        # unbind, not a slice per step: the backward of each slice makes a zero tensor of all T steps
        for step in gates_x.unbind(2):
            i, f, g, o = (step + torch.bmm(h, self.w_hh)).chunk(4, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            out.append(h)
        return torch.stack(out, dim=2)

    def fused(self, x: torch.Tensor) -> torch.Tensor:
        """One call of torch's LSTM (aten lstm: cuDNN on CUDA) per member, so that a member gets the
        numbers it gets alone (fuse.training.loop's member groups). In float32, autocast off: under
        autocast torch runs a cuDNN LSTM in float16 whatever the dtype asked. nn.LSTM's weights
        are these transposed, its gates in the same order; the one bias is its b_ih, b_hh zero.
        A member's weights lie in one buffer as nn.LSTM's flattened ones do (w_ih, w_hh, b_ih,
        b_hh), which cuDNN reads in place."""
        E, B, T, in_dim = x.shape
        D = self.w_hh.shape[1]
        sizes = (4 * D * in_dim, 4 * D * D, 4 * D, 4 * D)
        with torch.autocast(x.device.type, enabled=False):
            x, zeros = x.float(), x.new_zeros(4 * D, dtype=torch.float32)
            h0 = x.new_zeros(1, B, D)
            out = []
            for e in range(E):
                flat = torch.cat([self.w_ih[e].float().t().reshape(-1), self.w_hh[e].float().t().reshape(-1),
                                  self.bias[e].float(), zeros])
                w_ih, w_hh, b_ih, b_hh = flat.split(sizes)
                params = [w_ih.view(4 * D, in_dim), w_hh.view(4 * D, D), b_ih, b_hh]
                # has_biases, 1 layer, no dropout, keep what the backward needs, one direction, batch first
                states, _, _ = torch.lstm(x[e], (h0, h0), params, True, 1, 0.0, torch.is_grad_enabled(), False, True)
                out.append(states)
        return torch.stack(out)


def last_valid(states: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """states [E, B, T, D] at each clip's last valid step (valid [E, B, T]; none valid: step 0)."""
    T = valid.shape[-1]
    index = (valid.bool() * torch.arange(1, T + 1, device=valid.device)).argmax(-1)  # [E, B]
    return states.gather(2, index[..., None, None].expand(*index.shape, 1, states.shape[-1])).squeeze(2)


def masked_mean(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """[E, B, T, D] averaged over the valid steps (valid [E, B, T]) -> [E, B, D]."""
    w = valid.to(x.dtype).unsqueeze(-1)
    return (x * w).sum(2) / w.sum(2).clamp(min=1)


class Attention(nn.Module):
    """Multi-head attention per member, queries x [E, B, L, D] over memory m [E, B, M, D] with
    keep [E, B, M] (True = attend): softmax(q k^T / sqrt(d)) v, padding masked to -inf."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.1):
        super().__init__()
        self.q, self.kv, self.out = Linear(dim, dim), Linear(dim, 2 * dim), Linear(dim, dim)
        self.heads, self.drop_weights = heads, Dropout(dropout)

    def forward(self, x, m, keep):
        E, B, L, D = x.shape
        M, h = m.shape[2], self.heads
        keep = keep.bool()
        keep = keep | ~keep.any(-1, keepdim=True)  # nothing to attend to (a filler row): attend to all
        q = self.q(x).reshape(E * B, L, h, D // h).transpose(1, 2)
        k, v = (t.reshape(E * B, M, h, D // h).transpose(1, 2) for t in self.kv(m).chunk(2, dim=-1))
        att = attend(q, k, v, keep.reshape(E * B, 1, 1, M), self.drop_weights)
        return self.out(att.transpose(1, 2).reshape(E, B, L, D))


class CoAttentionLayer(nn.Module):
    """A layer of MCAN's encoder-decoder co-attention (Yu et al. 2019), which VCEMO stacks:
    self-attention, then (with a `guide`) guided attention whose keys and values come from the
    guide, then a feed-forward; each with a residual and post-norm."""

    def __init__(self, dim: int, heads: int, feedforward: int, dropout: float, guided: bool):
        super().__init__()
        self.self_att, self.norm1 = Attention(dim, heads, dropout), MemberLayerNorm(dim)
        self.guided = Attention(dim, heads, dropout) if guided else None
        self.norm2 = MemberLayerNorm(dim) if guided else None
        self.ff1, self.ff2, self.norm3 = Linear(dim, feedforward), Linear(feedforward, dim), MemberLayerNorm(dim)
        self.drop = Dropout(dropout)

    def forward(self, x, keep, guide=None, guide_keep=None):
        x = self.norm1(x + self.drop(self.self_att(x, x, keep)))
        if self.guided is not None:
            x = self.norm2(x + self.drop(self.guided(x, guide, guide_keep)))
        return self.norm3(x + self.drop(self.ff2(self.drop(F.relu(self.ff1(x))))))


def roles(shapes) -> list[tuple[str, int, int | None]]:
    """What each block of one modality is, by shape and order: [(kind, item block, validity
    block or None)]. kind: 'images' [T, H, W(, C)], 'frames' [T, D] (a sequence only when its
    mask [T] or count [] follows it), 'vector' [D] or [k, D] (k layers, averaged). A mask or
    count follows the sequence it belongs to."""
    shapes = [tuple(s) for s in shapes]
    out, i = [], 0
    while i < len(shapes):
        shape, nxt = shapes[i], shapes[i + 1] if i + 1 < len(shapes) else None
        companion = nxt is not None and len(shape) >= 2 and (nxt == () or nxt == (shape[0],))
        if len(shape) >= 3:
            out.append(("images", i, i + 1 if companion else None))
        elif len(shape) == 2 and companion:
            out.append(("frames", i, i + 1))
        elif len(shape) in (1, 2):
            out.append(("vector", i, None))
        else:
            raise ValueError(f"a {shape} feature is no sequence, mask or vector")
        i += 2 if companion else 1
    return out


def vector_blocks(shapes, modalities) -> list[bool]:
    """Which blocks are vectors (by `roles`, per modality): the ones a sequence model has
    standardized per column; crops, frames, tokens and masks are not."""
    flags = [False] * len(shapes)
    for modality in dict.fromkeys(modalities):
        group = [i for i, m in enumerate(modalities) if m == modality]
        for kind, item, _ in roles([shapes[i] for i in group]):
            flags[group[item]] = kind == "vector"
    return flags


def validity(items: torch.Tensor, block: torch.Tensor | None) -> torch.Tensor:
    """[E, B, T] 1.0 for the real steps of items [E, B, T, ...]: a mask block (> 0), a count
    block [E, B], or all."""
    E, B, T = items.shape[:3]
    if block is None:
        return items.new_ones(E, B, T)
    if block.dim() == 2:
        return (torch.arange(T, device=items.device) < block.unsqueeze(-1)).to(items.dtype)
    return (block > 0).to(items.dtype)


# the steps to keep of a sequence block, by id() of its input tensor: set by fuse.training.loop from the
# clips' lengths it holds on the host (read from the device, a length would wait for the GPU every
# step), over every member's rows of a step, so a member group keeps what all members would
STEP_LENGTHS: ContextVar[dict | None] = ContextVar("step_lengths", default=None)


@contextmanager
def step_lengths(lengths: dict[int, int]):
    """Within: trim() keeps lengths[id(x)] steps of an input block x found there (rounded up to its
    multiple)."""
    token = STEP_LENGTHS.set(lengths)
    try:
        yield
    finally:
        STEP_LENGTHS.reset(token)


def trim(x: torch.Tensor, valid: torch.Tensor, multiple: int = 1):
    """Drop the steps after the batch's last valid one (rounded up to a multiple), as step_lengths
    gives it: (x, valid). Without a length for x every step is kept: padded steps change nothing
    but time, and measuring them here would wait for the device."""
    last = (STEP_LENGTHS.get() or {}).get(id(x))
    if last is None:
        return x, valid
    last = min(x.shape[2], -(-last // multiple) * multiple)
    return x[:, :, :last], valid[:, :, :last]
