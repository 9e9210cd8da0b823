"""bf16 training on a CPU with fp32 master weights, without autocast's casts of the large weights.

Under autocast every step casts the fp32 weights of each matrix product to bf16 (forward) and their
bf16 gradients back to fp32 (backward): ~5 ms of a MER-sized 15-member step, as much memory
traffic as the optimizer's. Here the network holds the weights of its large Linear layers
(MIN_HELD) in bf16 and the optimizer keeps their fp32 masters: one compiled kernel (torch.compile, one pass over memory)
reads the bf16 gradient, updates the master and its Adam moments, and writes the master's bf16
copy back into the network. The arithmetic is autocast's (products in bf16 on bf16-rounded
weights, Adam in fp32 on the masters); only the Adam kernel is ours.

Needs a C++ compiler at run time (inductor); without one, `adam_kernel()` is None and bf16 falls
back to plain autocast, with a warning.
"""
from __future__ import annotations

import functools
import warnings

import torch
from torch import nn

from fuse.models.blocks import GroupLinear, Linear


def _adam(master, low, grad, exp_avg, exp_avg_sq, h):
    """torch.optim.Adam with L2 weight decay on flat fp32 `master`, bf16 `grad`; writes `low`.
    h: [lr / (1 - beta1^t), 1 / sqrt(1 - beta2^t), beta1, beta2, eps, weight decay]."""
    g = grad.float() + h[5] * master
    m = exp_avg * h[2] + g * (1 - h[2])
    v = exp_avg_sq * h[3] + g * g * (1 - h[3])
    p = master - h[0] * m / (v.sqrt() * h[1] + h[4])
    exp_avg.copy_(m)
    exp_avg_sq.copy_(v)
    master.copy_(p)
    low.copy_(p)


# inductor parallelises a loop only when the size seen at compilation is large: compiled once for
# any length (dynamic) on a small probe, the kernel was serial (on a 15-member MER-sized step's
# weights, alone on two threads: 14.5 against 8.4 ms; inside a step on this 2-core machine, no
# measurable difference). dynamic_threads: always a parallel loop, its threads torch's at run time
# (one for small steps: fuse.training.loop.step_threads). Elementwise, so the same numbers either way.
COMPILE_OPTIONS = {"cpp.dynamic_threads": True}


def compile_adam():
    return torch.compile(_adam, dynamic=True, fullgraph=True, options=COMPILE_OPTIONS)


def probe_args() -> list[torch.Tensor]:
    """Arguments of a 64-element `_adam` call (fp32 master, bf16 weight and gradient, fp32 moments)."""
    master, exp_avg, exp_avg_sq = (torch.zeros(64) for _ in range(3))
    low, grad = (torch.zeros(64, dtype=torch.bfloat16) for _ in range(2))
    return [master, low, grad, exp_avg, exp_avg_sq, torch.tensor([1e-3, 1.0, 0.9, 0.999, 1e-8, 0.0])]


@functools.cache
def adam_kernel():
    """The compiled `_adam` (any length: one compilation), or None where it cannot be compiled."""
    kernel = compile_adam()
    try:  # compiles now, on a probe, so that a missing compiler shows here and not mid-training
        # under no_grad, as the optimizer calls it: a probe compiled with grad mode on was compiled
        # again at the first step, and then once more per rank of the weights' views (3 per process)
        with torch.no_grad():
            kernel(*probe_args())
    except Exception as err:  # inductor raises many kinds (no compiler, no headers, ...)
        warnings.warn(f"--precision bf16: cannot compile the bf16 Adam kernel ({type(err).__name__}: "
                      f"{str(err).splitlines()[0] if str(err) else ''}); training with plain autocast "
                      "instead, which casts the weights every step (slower, same arithmetic)", stacklevel=2)
        return None
    return kernel


MIN_HELD = 1 << 16  # elements: a smaller weight's cast costs less than a kernel call of its own


def hold_in_bf16(net: nn.Module) -> dict[str, torch.Tensor]:
    """Replace the weights of the net's Linear and GroupLinear layers (used only in matrix products,
    which autocast runs in bf16) of MIN_HELD elements or more by bf16 copies; returns their fp32
    masters by parameter name (none where the kernel cannot be compiled)."""
    layers = {name: module for name, module in net.named_modules()
              if isinstance(module, (Linear, GroupLinear)) and module.weight.numel() >= MIN_HELD}
    if not layers or adam_kernel() is None:  # compiled only when there is something to hold
        return {}
    masters = {}
    for name, module in layers.items():
        masters[f"{name}.weight" if name else "weight"] = module.weight.detach().clone()
        module.weight = nn.Parameter(module.weight.detach().to(torch.bfloat16))
    return masters


def adam_step(master: torch.Tensor, low: torch.Tensor, grad: torch.Tensor, exp_avg: torch.Tensor,
              exp_avg_sq: torch.Tensor, step: int, lr: float, betas: tuple[float, float], eps: float,
              weight_decay: float):
    """Adam step t >= 1 of a held weight `low` (bf16, its gradient `grad`) and its fp32 `master`,
    or of slices of them along the member dimension."""
    h = torch.tensor([lr / (1 - betas[0] ** step), (1 - betas[1] ** step) ** -0.5, betas[0], betas[1], eps,
                      weight_decay])
    adam_kernel()(master.view(-1), low.detach().view(-1), grad.reshape(-1), exp_avg.view(-1),
                  exp_avg_sq.view(-1), h)
