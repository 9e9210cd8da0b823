"""Many small networks trained as one: stacked parameters and `torch.func.vmap` (PyTorch's
model-ensembling recipe). Member e has its own weights, data, dropout masks and Adam state; every
step is one set of batched matrix products for all members (folds x seeds).
"""
from __future__ import annotations

import copy
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap


class Ensemble:
    """E copies of a network; `make(e)` builds member e (seeded by the caller)."""

    def __init__(self, make, n_members: int, device: torch.device, precision: str = "fp32"):
        members = [make(e) for e in range(n_members)]
        self.params, self.buffers = stack_module_state(members)
        self.params = {k: v.to(device).detach().requires_grad_() for k, v in self.params.items()}
        self.buffers = {k: v.to(device) for k, v in self.buffers.items()}
        self.net = copy.deepcopy(members[0]).to("meta")
        self.n, self.device = n_members, device
        self.autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16"
                         else nullcontext())
        weights = self.net.task_weights
        self._tw_prefix = next(k for k, m in self.net.named_modules() if m is weights) + "."
        self._train = vmap(self._member_loss, randomness="different")
        self._predict = vmap(self._member_forward, in_dims=(0, 0, 0), randomness="different")
        self._predict_shared = vmap(self._member_forward, in_dims=(0, 0, None), randomness="different")

    def optimizer(self, lr: float, weight_decay: float) -> torch.optim.Optimizer:
        # Adam's L2 term (weight_decay), as the MER 2023 baseline; fused: one kernel for all members
        fused = self.device.type in ("cpu", "cuda")
        return torch.optim.Adam(list(self.params.values()), lr=lr, weight_decay=weight_decay, fused=fused)

    def _member_forward(self, params, buffers, inputs):
        return functional_call(self.net, (params, buffers), (inputs,))

    def _member_loss(self, params, buffers, inputs, labels, valence, weight, valence_weight):
        logits, predicted = functional_call(self.net, (params, buffers), (inputs,))
        logits, predicted = logits.float(), predicted.float()
        if labels.dim() == 2:  # multi-label: 0/1 targets, sigmoid outputs
            per_clip = F.binary_cross_entropy_with_logits(logits, labels, reduction="none").mean(-1)
        else:
            per_clip = F.cross_entropy(logits, labels, reduction="none")
        loss_e = (per_clip * weight).sum() / weight.sum().clamp(min=1)
        loss_v = ((predicted - valence) ** 2 * valence_weight).sum() / valence_weight.sum().clamp(min=1)
        task = {k[len(self._tw_prefix):]: v for k, v in params.items() if k.startswith(self._tw_prefix)}
        return functional_call(self.net.task_weights, task, (loss_e, loss_v))

    def loss(self, inputs, labels, valence, weight, valence_weight) -> torch.Tensor:
        """Summed loss of all members (their gradients stay separate): inputs [E, B, ...] each."""
        self.net.train()
        with self.autocast:
            return self._train(self.params, self.buffers, inputs, labels, valence, weight, valence_weight).sum()

    @torch.no_grad()
    def predict(self, inputs, params=None, shared: bool = False):
        """Eval-mode outputs: logits [E, n, C], valence [E, n]. inputs [E, n, ...] each, or [n, ...]
        shared by all members (`shared`); `params` defaults to the current weights."""
        self.net.eval()
        with self.autocast:
            fn = self._predict_shared if shared else self._predict
            logits, valence = fn(params or self.params, self.buffers, inputs)
        return logits.float(), valence.float()

    def member_state(self, e: int, params=None) -> dict[str, torch.Tensor]:
        """Member e's weights as a plain state dict of the network (CPU)."""
        params = params or self.params
        state = {k: v[e].detach().cpu().clone() for k, v in params.items()}
        state.update({k: v[e].detach().cpu().clone() for k, v in self.buffers.items()})
        return state
