"""Pieces every fusion network shares: encoders, layer pooling, decoders, the multi-task loss.

Every tensor carries the member dimension E first (fuse.training.ensemble trains E networks as one):
inputs are blocks [E, B, D] of utterance-level features or [E, B, k, D] for k chosen layers of a
per-layer feature (`hubert-large@18,19,20`); every parameter is [E, ...], E = 1 as built.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from contextvars import ContextVar

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

DECODERS = ("baseline", "jdev")
LOSSES = ("sum", "uncertainty")


class Linear(nn.Module):
    """y = x W + b per member, W [E, in, out], b [E, out]; x [E, ..., in] -> [E, ..., out] in one
    batched matrix product for all members. W is stored [in, out] so that no transposed copy is
    made per call. Initialised as nn.Linear (uniform +-1/sqrt(in))."""

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True):
        super().__init__()
        bound = 1 / math.sqrt(in_dim)
        self.weight = nn.Parameter(torch.empty(1, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(1, out_dim).uniform_(-bound, bound)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(x.shape[0], -1, x.shape[-1])
        if self.bias is None:
            y = torch.bmm(rows, self.weight)
        else:
            y = torch.baddbmm(self.bias.unsqueeze(1), rows, self.weight)
        return y.view(*x.shape[:-1], y.shape[-1])


BF16_ONE = 0x3F80  # the bits of bfloat16 1.0


class Dropout(nn.Module):
    """Inverted dropout as nn.Dropout, its mask from 16-bit slices of 64-bit random integers:
    4 draws per generator call, 4x cheaper on CPU than torch.rand (and `bernoulli_`, what
    nn.Dropout calls, is slower still), a tenth of a MER-sized training step otherwise. p is
    applied in steps of 1/65536.

    The mask is made of the activations' dtype by integer operations on the draws (a bool mask
    would make the product, and its backward, a mixed-dtype operation: 3-12x slower on CPU, most
    of all on bf16). Same values as x * keep * (1 / (1 - p)), bit for bit.

    `generators` (set by fuse.training.ensemble, one per member): each member's mask comes from its own
    generator, in the order of its own elements, so a member draws the same masks whichever
    members it is trained with (fuse.training.loop's member groups). The member dimension is
    `member_dim` of x, whose size is a multiple of the members (E, or E * C for [N, E*C, H, W]).
    Without generators, one draw from torch's global generator."""

    def __init__(self, p: float, member_dim: int = 0):
        super().__init__()
        self.p, self.member_dim = p, member_dim
        self.threshold = round(p * 65536) - 32768  # an int16 draw >= this is kept
        self.generators = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        draws = self._draws(x)
        keep = draws.clamp(self.threshold - 1, self.threshold).sub_(self.threshold - 1)  # 1 kept, 0 dropped
        ones = keep.mul_(BF16_ONE).view(torch.bfloat16).view(x.shape)  # 1.0 kept, 0.0 dropped
        if x.dtype == torch.float32:  # one product: x * float32(1 / (1 - p)) is what mul_ computes
            return _Masked.apply(x, ones, 1 / (1 - self.p)) if x.requires_grad else \
                x.mul(ones.float().mul_(1 / (1 - self.p)))
        return x.mul(ones.to(x.dtype)).mul_(1 / (1 - self.p))

    def _draws(self, x: torch.Tensor) -> torch.Tensor:
        """One int16 draw per element of x, flat, in x's element order."""
        if self.generators is None:
            n = x.numel()
            return torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_(-2 ** 63, None).view(
                torch.int16)[:n]
        E = len(self.generators)
        per_member = x.numel() // E
        bits = torch.empty(E, (per_member + 3) // 4, dtype=torch.int64, device=x.device)
        region = REGION.get()
        replayed = region.generator_states(self.generators) if region is not None else None
        for e, (row, generator) in enumerate(zip(bits, self.generators)):
            if replayed is None:
                row.random_(-2 ** 63, None, generator=generator)
                continue
            now = generator.get_state()  # the first pass's draws again, the generator left where it is
            generator.set_state(replayed[e])
            row.random_(-2 ** 63, None, generator=generator)
            generator.set_state(now)
        draws = bits.view(torch.int16)[:, :per_member]
        outer = math.prod(x.shape[:self.member_dim])
        if outer > 1:  # each member's elements lie in `outer` slices of x (x [N, E*C, ...]: N)
            draws = draws.reshape(E, outer, per_member // outer).transpose(0, 1)
        return draws.reshape(-1)


class _Masked(torch.autograd.Function):
    """x * (ones * scale), ones [x's shape] of 0.0 / 1.0 in bfloat16: what autograd's product gives,
    forward and backward, bit for bit, keeping the 2-byte mask for the backward pass instead of
    its 4-byte float32 product (a third of a recomputed e2el stem's memory, measured)."""

    @staticmethod
    def forward(ctx, x, ones, scale):
        ctx.save_for_backward(ones)
        ctx.scale = scale
        return x.mul(ones.float().mul_(scale))

    @staticmethod
    def backward(ctx, grad):
        ones, = ctx.saved_tensors
        return grad.mul(ones.float().mul_(ctx.scale)), None, None


class _Region:
    """One recomputed region's first pass, for its second: the dropout generators' states, in the
    order its Dropout layers drew (the global generator is torch's checkpoint's to restore)."""

    def __init__(self):
        self.states, self.replaying, self.next = [], False, 0

    def generator_states(self, generators) -> list | None:
        """Record the generators' states before a draw (first pass), or give those recorded then."""
        if not self.replaying:
            self.states.append([g.get_state() for g in generators])
            return None
        self.next += 1
        return self.states[self.next - 1]

    @contextmanager
    def entered(self, replaying: bool):
        self.replaying, self.next = replaying, 0
        token = REGION.set(self)
        try:
            yield
        finally:
            REGION.reset(token)


REGION: ContextVar[_Region | None] = ContextVar("recomputed_region", default=None)


def recomputing() -> bool:
    """Whether a recomputed region is running its forward a second time, for the backward pass:
    state kept across steps (batch-norm running statistics) must not be updated again."""
    region = REGION.get()
    return region is not None and region.replaying


# a probe of what recomputation saves (fuse.training.memory): where set, recomputed() runs its
# region under probe.region(args) instead of checkpointing it
PROBE: ContextVar = ContextVar("recompute_probe", default=None)


def recomputed(fn, *args, enabled: bool = True):
    """fn(*args), its activations recomputed in the backward pass instead of kept (activation
    checkpointing: torch.utils.checkpoint, non-reentrant) when `enabled` and gradients are on. The
    same numbers as without: the recompute draws the same dropout masks (the members' generators
    replayed; torch restores the global one) and leaves batch-norm running statistics alone."""
    if (probe := PROBE.get()) is not None:
        with probe.region(args):
            return fn(*args)
    if not (enabled and torch.is_grad_enabled()):
        return fn(*args)
    region = _Region()
    return checkpoint(fn, *args, use_reentrant=False,
                      context_fn=lambda: (region.entered(False), region.entered(True)))


class GroupLinear(nn.Module):
    """n independent Linear layers of equal shape applied to n inputs in one batched product:
    W [E, n, in, out], b [E, n, out]; x [E, n, B, in] -> [E, n, B, out]."""

    def __init__(self, n: int, in_dim: int, out_dim: int):
        super().__init__()
        bound = 1 / math.sqrt(in_dim)
        self.weight = nn.Parameter(torch.empty(1, n, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(1, n, out_dim).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        E, n, B, _ = x.shape
        y = torch.baddbmm(self.bias.reshape(E * n, 1, -1), x.reshape(E * n, B, -1),
                          self.weight.reshape(E * n, *self.weight.shape[2:]))
        return y.view(E, n, B, -1)


def encoder(in_dim: int, hidden: tuple[int, ...], dropout: float, groups: int = 0) -> nn.Sequential:
    """Linear-ReLU-Dropout layers, as the MER 2023 baseline's MLP (Eq. 1 with several layers);
    `groups` n > 0: n such encoders of one input width run as one (GroupLinear)."""
    layers = []
    for width in hidden:
        linear = GroupLinear(groups, in_dim, width) if groups else Linear(in_dim, width)
        layers += [linear, nn.ReLU(), Dropout(dropout)]
        in_dim = width
    return nn.Sequential(*layers)


class _ContiguousGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad.contiguous()


def contiguous_grad(x: torch.Tensor) -> torch.Tensor:
    """x, whose gradient is made contiguous on its way back: for an output that is used through a
    strided view (a transpose, a slice of a stack), so that the backward of the layers before it
    runs on contiguous memory (on strided bf16 gradients ReLU's backward is 10x slower)."""
    return _ContiguousGrad.apply(x)


def join(features: list[torch.Tensor]) -> torch.Tensor:
    """Features concatenated along the last dimension (no copy for a single one)."""
    return features[0] if len(features) == 1 else torch.cat(features, dim=-1)


class LayerPool(nn.Module):
    """[E, B, k, D] -> [E, B, D]: the mean of the chosen layers, or a learned softmax-weighted sum
    (s3prl's Featurizer) when `learned`; [E, B, D] passes through."""

    def __init__(self, n_layers: int, learned: bool):
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(1, n_layers)) if learned and n_layers > 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            return x
        if self.weights is None:
            return x.mean(dim=2)
        return torch.einsum("ebkd,ek->ebd", x, self.weights.softmax(-1))


class Decoder(nn.Module):
    """Fused hidden state [E, B, H] -> emotion logits [E, B, C] and valence [E, B].

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
    Per member: losses [E] -> [E].
    """

    def __init__(self, kind: str = "sum"):
        super().__init__()
        if kind not in LOSSES:
            raise ValueError(f"loss {kind!r}: choose from {LOSSES}")
        self.log_delta = nn.Parameter(torch.zeros(1, 2)) if kind == "uncertainty" else None

    def forward(self, loss_e: torch.Tensor, loss_v: torch.Tensor) -> torch.Tensor:
        if self.log_delta is None:
            return loss_e + loss_v
        d1, d2 = self.log_delta.exp().unbind(-1)
        return loss_e / d1 ** 2 + loss_v / (2 * d2 ** 2) + torch.log1p(d1) + torch.log1p(d2)


def block_width(shape: tuple[int, ...]) -> int:
    """The feature width D of a block shape ([D] or [k, D])."""
    return int(shape[-1])


def block_layers(shape: tuple[int, ...]) -> int:
    return int(shape[0]) if len(shape) == 2 else 1

