"""MemberLSTM, the loop over steps: its backward pass grows with the steps."""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from fuse.models.seq import MemberLSTM
from fuse.training.ensemble import stack_members


def _lstm(n_members=3, in_dim=7, dim=12, seed=0):
    torch.manual_seed(seed)
    return stack_members([MemberLSTM(in_dim, dim) for _ in range(n_members)])


class Made(TorchDispatchMode):
    """Counts the elements of every tensor the operations within make."""

    def __init__(self):
        super().__init__()
        self.elements = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.elements += sum(t.numel() for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor))
        return out


@pytest.mark.parametrize("steps", [64, 128])
def test_the_loops_backward_grows_with_the_steps_not_their_square(steps):
    """The backward pass of the loop makes tensors of a few times its gates' size, not one of all
    steps per step (256 steps of coattention's LSTM: 32 s a backward on a CPU that way)."""
    lstm = _lstm(n_members=1, in_dim=3, dim=4)
    out = lstm(torch.randn(1, 2, steps, 3, requires_grad=True))
    made = Made()
    with made:
        out.sum().backward()
    gates = 2 * steps * 16
    assert made.elements < 30 * gates  # measured 15x at 64-256 steps; the slices: 141x at 64, 270x at 128
