"""Many small networks trained as one. The fusion models carry a member dimension E on every
parameter and tensor (fuse.models.blocks): E networks built one by one (each seeded by the
caller) are stacked into one, and every step is one set of batched matrix products for all
members (folds x seeds). Member e has its own weights, data, dropout masks and Adam state.

Written out rather than with `torch.func.vmap` over `functional_call`: vmap's per-operation
batching took a third of a MER-sized forward pass on CPU.
"""
from __future__ import annotations

import ctypes
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from . import bf16
from fuse.models.blocks import Dropout


MKL_CBWR_AUTO, MKL_CBWR_STRICT = 2, 0x10000  # mkl_cbwr.h


def alignment_free_products() -> bool:
    """Ask MKL (torch's BLAS on x86) for its strict reproducible mode: a matrix product's bits then
    do not depend on where its matrices lie in memory. Without it MKL picks kernels by alignment,
    and a member's products in a batch round otherwise at another position in it (measured: the
    odd members of a batch of 7x128 by 128x6 products), so members trained in groups would not get
    the bits of all members at once (fuse.training.loop). Only possible before MKL's first call in the
    process (hence at import); no time measured on MER-sized products. False where not set."""
    try:
        lib = ctypes.CDLL(str(Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"))
        cbwr_set = lib.mkl_serv_cbwr_set
    except (OSError, AttributeError):  # no MKL (another BLAS, another platform)
        return False
    cbwr_set.restype, cbwr_set.argtypes = ctypes.c_int, [ctypes.c_int]
    return cbwr_set(MKL_CBWR_AUTO | MKL_CBWR_STRICT) == 0


ALIGNMENT_FREE = alignment_free_products()


def stack_members(members: list[nn.Module]) -> nn.Module:
    """One network whose every parameter and buffer is its members' concatenated along dim 0."""
    net = members[0]
    states = [m.state_dict() for m in members]
    for name in states[0]:
        module_name, _, attr = name.rpartition(".")
        module = net.get_submodule(module_name)
        value = torch.cat([s[name] for s in states])
        if attr in dict(module.named_parameters(recurse=False)):
            setattr(module, attr, nn.Parameter(value))
        else:
            module.register_buffer(attr, value)
    return net


class Ensemble:
    """E copies of a network; `make(e)` builds member e (seeded by the caller). `dropout_seeds`
    (one per member): each member draws its dropout masks from its own generator so seeded, the
    same masks whichever members it is trained with; without, from torch's global generator.
    `recompute`: the modules that can (a `recompute` attribute: e2el's CNN) recompute their
    activations in the backward pass instead of keeping them (fuse.models.blocks.recomputed)."""

    eval_rows = None  # clips per member in an evaluation pass, where planned (fuse.training.memory.evaluation_rows)

    def __init__(self, make, n_members: int, device: torch.device, precision: str = "fp32", dropout_seeds=None,
                 recompute: bool = False):
        self.net = stack_members([make(e) for e in range(n_members)]).to(device)
        self.n, self.device = n_members, device
        for module in self.net.modules():
            if hasattr(module, "recompute"):
                module.recompute = recompute
        if dropout_seeds is not None:
            generators = [torch.Generator(device).manual_seed(int(seed)) for seed in dropout_seeds]
            for module in self.net.modules():
                if isinstance(module, Dropout):
                    module.generators = generators
        self.autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16"
                         else nullcontext())
        # bf16 on a CPU: the Linear weights live in bf16, their fp32 masters here (fuse.training.bf16)
        self.masters = bf16.hold_in_bf16(self.net) if precision == "bf16" and device.type == "cpu" else {}
        # the trained weights in full precision: what is saved and snapshotted
        self.params = {name: self.masters.get(name, p) for name, p in self.net.named_parameters()}

    def optimizer(self, lr, weight_decay: float):
        """Adam with its L2 term (weight_decay), as the MER 2023 baseline. `lr`: one rate, or one per
        member (a learning-rate grid trained as one model). MemberAdam either way: at one rate it is
        torch's fused Adam bit for bit, and unlike the class torch.optim.Adam, whose constructor
        imports torch._dynamo (1-5 s per process, measured), it needs no import."""
        rates = [lr] * self.n if isinstance(lr, (int, float)) else lr
        return MemberAdam(list(self.net.parameters()), rates, weight_decay,
                          masters=[self.masters.get(name) for name, _ in self.net.named_parameters()])

    def loss(self, inputs, labels, valence, weight, valence_weight) -> torch.Tensor:
        """Summed loss of all members (their gradients stay separate): inputs [E, B, ...] each,
        labels [E, B] (multi-label: [E, B, C] of 0/1), valence and weights [E, B]."""
        self.net.train()
        with self.autocast:
            # a net with batch statistics (e2el) must not count the rows that only fill a batch up
            rows = {"rows": weight > 0} if getattr(self.net, "uses_row_mask", False) else {}
            logits, predicted = self.net(inputs, **rows)
        logits, predicted = logits.float(), predicted.float()
        if labels.dim() == 3:  # multi-label: 0/1 targets, sigmoid outputs, one member at a time (member_sigmoid)
            per_clip = torch.stack([F.binary_cross_entropy_with_logits(x, y, reduction="none").mean(-1)
                                    for x, y in zip(logits, labels)])
        else:
            per_clip = F.cross_entropy(logits.transpose(1, 2), labels, reduction="none")
        loss_e = (per_clip * weight).sum(1) / weight.sum(1).clamp(min=1)
        loss_v = ((predicted - valence) ** 2 * valence_weight).sum(1) / valence_weight.sum(1).clamp(min=1)
        if hasattr(self.net, "emotion_loss"):  # e.g. coattention: (CE + alpha * SupCon) / (1 + alpha)
            loss_e = self.net.emotion_loss(loss_e, labels, weight)
        return self.net.task_weights(loss_e, loss_v).sum()

    @torch.no_grad()
    def predict(self, inputs, params=None, shared: bool = False):
        """Eval-mode outputs: logits [E, n, C], valence [E, n]. inputs [E, n, ...] each, or [n, ...]
        shared by all members (`shared`); `params` defaults to the current weights."""
        self.net.eval()
        if shared:
            inputs = [x.expand(self.n, *x.shape) for x in inputs]
        with self.autocast:
            if params is None:
                logits, valence = self.net(inputs)
            else:
                logits, valence = functional_call(self.net, params, (inputs,))
        return logits.float(), valence.float()

    def member_state(self, e: int, params=None) -> dict[str, torch.Tensor]:
        """Member e's weights as the state dict of a network built alone, less its member
        dimension (CPU): the format runs are saved in."""
        params = params or self.params
        state = {k: v[e].detach().cpu().clone() for k, v in params.items()}
        state.update({k: v[e].detach().cpu().clone() for k, v in self.net.named_buffers()})
        return state


class MemberAdam:
    """torch.optim.Adam (L2 weight decay, as the baseline) with one learning rate per member: lr [E].
    Each rate is one call of torch's functional Adam (fused where torch fuses it) on every
    member's slice of every parameter as a tensor of its own: exactly what torch.optim.Adam does to
    that member alone at that rate, bit for bit (its vectorized kernel rounds a tensor's last
    elements otherwise, so slices of one stacked tensor would depend on the members beside them).

    `masters`: per parameter None, or the fp32 master of a parameter held in bf16 (fuse.training.bf16): Adam
    then runs on the master, from the bf16 gradient, and writes the parameter (bf16.adam_step), on
    the slice of a rate's members."""

    def __init__(self, params: list[torch.Tensor], lr, weight_decay: float = 0.0,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, masters=None):
        self.params, self.weight_decay, self.betas, self.eps = params, weight_decay, betas, eps
        self.masters = masters or [None] * len(params)
        lr = [float(x) for x in lr]
        self.groups = []  # (first member, end, rate) of each run of equal rates
        for e, rate in enumerate(lr):
            if self.groups and self.groups[-1][2] == rate:
                self.groups[-1][1] = e + 1
            else:
                self.groups.append([e, e + 1, rate])
        self.exp_avg = [torch.zeros_like(p if m is None else m) for p, m in zip(params, self.masters)]
        self.exp_avg_sq = [torch.zeros_like(p if m is None else m) for p, m in zip(params, self.masters)]
        device = params[0].device
        self.fused = device.type in ("cpu", "cuda")
        step_device = device if self.fused else "cpu"
        # per parameter: each member's slice of it and of its moments, and its step count
        self.slices = [(p.detach().unbind(0), m.unbind(0), v.unbind(0)) for p, m, v in zip(params, self.exp_avg, self.exp_avg_sq)]
        self.steps = [[torch.zeros((), dtype=torch.float32, device=step_device) for _ in range(len(lr))] for _ in params]

    def zero_grad(self, set_to_none: bool = True):
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self):
        from torch.optim.adam import adam

        live = [i for i, p in enumerate(self.params) if p.grad is not None and self.masters[i] is None]
        held = [i for i, p in enumerate(self.params) if p.grad is not None and self.masters[i] is not None]
        grads = {i: self.params[i].grad.unbind(0) for i in live}
        for a, b, rate in self.groups:
            for i in held:
                self.steps[i][a] += 1
                bf16.adam_step(self.masters[i][a:b], self.params[i][a:b], self.params[i].grad[a:b],
                               self.exp_avg[i][a:b], self.exp_avg_sq[i][a:b], int(self.steps[i][a]), rate,
                               self.betas, self.eps, self.weight_decay)
            if live:
                pick = [(i, e) for i in live for e in range(a, b)]
                adam([self.slices[i][0][e] for i, e in pick], [grads[i][e] for i, e in pick],
                     [self.slices[i][1][e] for i, e in pick], [self.slices[i][2][e] for i, e in pick], [],
                     [self.steps[i][e] for i, e in pick], foreach=not self.fused, fused=self.fused or None,
                     amsgrad=False, beta1=self.betas[0], beta2=self.betas[1], lr=rate,
                     weight_decay=self.weight_decay, eps=self.eps, maximize=False)


def member_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """x [E, ...].sigmoid(), one member at a time: torch computes a tensor's last elements that do not
    fill a vector by a scalar path that rounds otherwise, so a member's values would depend on the
    members after it in the tensor (fuse.training.loop's member groups)."""
    return torch.stack([member.sigmoid() for member in x])


def load_member(net: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """Load a saved member state (no member dimension) into a network built alone (E = 1)."""
    net.load_state_dict({k: v.unsqueeze(0) for k, v in state.items()})
    return net
