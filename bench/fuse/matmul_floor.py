"""The matrix-product floor of attention-fusion training: only the matrix products of the forward
and backward passes of every (seed, fold) member, batched, timed on random data of the same shapes,
extrapolated to a whole run. No framework can train this model with fewer products; the gap to
it is overhead (elementwise work, dropout, Adam, indexing, Python).

The products per step (B clips per member, E members, M modalities of width D, hidden (h1, h2)):
per modality x[B, D] W1[D, h1], then [B, h1] W2[h1, h2]; the official-code attention branch over the
concatenated states [B, M h2] (h1, then h2 wide) and its score layer [h2, M]; the two heads [h2, C]
and [h2, 1]; backward: for each layer the weight gradient and, except for the inputs, the input
gradient. The validation pass is the forward products once per epoch over the validation clips.
With the optimizer: plus torch's fused Adam over the same weights every step, the memory traffic
(28 bytes per weight) that any training with fp32 Adam state pays, in either precision.
"""
from __future__ import annotations

import time

import torch


def _layers(dims, hidden, n_classes):
    """(in, out, needs input gradient) of every matrix product of one member's forward pass."""
    h1, h2 = hidden
    out = []
    for d in dims:
        out += [(d, h1, False), (h1, h2, True)]
    m = len(dims)
    out += [(m * h2, h1, True), (h1, h2, True), (h2, m, True), (h2, n_classes, True), (h2, 1, True)]
    return out


def step_seconds(members: int, batch: int, dims, hidden=(256, 128), n_classes: int = 6, steps: int = 60,
                 backward: bool = True, dtype=torch.float32) -> float:
    """Seconds of one step's matrix products (forward, and backward when asked), median-free mean."""
    layers = _layers(dims, hidden, n_classes)
    weights = [torch.randn(members, i, o, dtype=dtype) for i, o, _ in layers]
    inputs = [torch.randn(members, batch, i, dtype=dtype) for i, _, _ in layers]
    grads = [torch.randn(members, batch, o, dtype=dtype) for _, o, _ in layers]

    def once():
        for w, x, g, (_, _, needs_input) in zip(weights, inputs, grads, layers):
            torch.bmm(x, w)
            if backward:
                torch.bmm(x.transpose(1, 2), g)
                if needs_input:
                    torch.bmm(g, w.transpose(1, 2))

    for _ in range(5):
        once()
    start = time.perf_counter()
    for _ in range(steps):
        once()
    return (time.perf_counter() - start) / steps


def adam_seconds(members: int, dims, hidden=(256, 128), n_classes: int = 6, steps: int = 30) -> float:
    """Seconds of one step of torch's fused Adam (L2 weight decay, fp32 weights and moments: what
    every precision keeps, masters included) over the weights and biases of the same layers."""
    shapes = [s for i, o, _ in _layers(dims, hidden, n_classes) for s in ((members, i, o), (members, o))]
    params = [torch.zeros(s, requires_grad=True) for s in shapes]
    for p in params:
        p.grad = torch.randn(p.shape) * 1e-3
    optimizer = torch.optim.Adam(params, lr=1e-3, weight_decay=1e-5, fused=True)
    for _ in range(3):
        optimizer.step()
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.step()
    return (time.perf_counter() - start) / steps


def run_floor(n_train: int, folds: int, seeds: int, epochs: int, batch: int, dims, hidden=(256, 128),
              n_classes: int = 6, dtype=torch.float32, optimizer: bool = False) -> float:
    """Seconds of the matrix products of a whole CV run: training steps plus validation passes;
    `optimizer`: plus an Adam step per training step (adam_seconds)."""
    members = folds * seeds
    per_member = n_train - n_train // folds
    steps = -(-per_member // batch)
    val = -(-n_train // folds)
    train = step_seconds(members, batch, dims, hidden, n_classes, dtype=dtype)
    if optimizer:
        train += adam_seconds(members, dims, hidden, n_classes)
    validate = step_seconds(members, val, dims, hidden, n_classes, steps=5, backward=False, dtype=dtype)
    return epochs * (steps * train + validate)
