"""Many small networks trained as one. The fusion models carry a member dimension E on every
parameter and tensor (fuse.models.blocks): E networks built one by one (each seeded by the
caller) are stacked into one, and every step is one set of batched matrix products for all
members (folds x seeds). Member e has its own weights, data, dropout masks and Adam state.

Written out rather than with `torch.func.vmap` over `functional_call`: vmap's per-operation
batching took a third of a MER-sized forward pass on CPU.
"""
from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from . import bf16


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
    """E copies of a network; `make(e)` builds member e (seeded by the caller)."""

    def __init__(self, make, n_members: int, device: torch.device, precision: str = "fp32"):
        self.net = stack_members([make(e) for e in range(n_members)]).to(device)
        self.n, self.device = n_members, device
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
        if labels.dim() == 3:  # multi-label: 0/1 targets, sigmoid outputs
            per_clip = F.binary_cross_entropy_with_logits(logits, labels, reduction="none").mean(-1)
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
    Members of one rate are a contiguous slice of every parameter (dim 0), so each rate is one call
    of torch's functional Adam on views of those slices (fused where torch fuses it): the same
    kernels and memory traffic as one Adam over all members, and exactly what torch.optim.Adam
    does to those members at that rate.

    `masters`: per parameter None, or the fp32 master of a parameter held in bf16 (fuse.training.bf16): Adam
    then runs on the master, from the bf16 gradient, and writes the parameter (bf16.adam_step)."""

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
        self.steps = [[torch.zeros((), dtype=torch.float32, device=device if self.fused else "cpu") for _ in params]
                      for _ in self.groups]

    def zero_grad(self, set_to_none: bool = True):
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self):
        from torch.optim.adam import adam

        live = [i for i, p in enumerate(self.params) if p.grad is not None and self.masters[i] is None]
        held = [i for i, p in enumerate(self.params) if p.grad is not None and self.masters[i] is not None]
        for (a, b, rate), steps in zip(self.groups, self.steps):
            for i in held:
                steps[i] += 1
                bf16.adam_step(self.masters[i][a:b], self.params[i][a:b], self.params[i].grad[a:b],
                               self.exp_avg[i][a:b], self.exp_avg_sq[i][a:b], int(steps[i]), rate, self.betas,
                               self.eps, self.weight_decay)
            if live:
                adam([self.params[i][a:b] for i in live], [self.params[i].grad[a:b] for i in live],
                     [self.exp_avg[i][a:b] for i in live], [self.exp_avg_sq[i][a:b] for i in live], [],
                     [steps[i] for i in live], foreach=not self.fused, fused=self.fused or None,
                     amsgrad=False, beta1=self.betas[0], beta2=self.betas[1], lr=rate,
                     weight_decay=self.weight_decay, eps=self.eps, maximize=False)


def load_member(net: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """Load a saved member state (no member dimension) into a network built alone (E = 1)."""
    net.load_state_dict({k: v.unsqueeze(0) for k, v in state.items()})
    return net
