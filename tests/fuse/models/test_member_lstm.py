"""MemberLSTM's two paths: the loop over steps (a CPU's) and torch's fused LSTM, one call per member
(cuDNN on CUDA; forced here on a CPU): the same LSTM as nn.LSTM, within float32 rounding of each
other forward and backward, padding never reaching a real step, each member's numbers its own."""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from fuse.models import seq
from fuse.models.seq import MemberLSTM
from fuse.training.ensemble import stack_members


def _lstm(n_members=3, in_dim=7, dim=12, seed=0):
    torch.manual_seed(seed)
    return stack_members([MemberLSTM(in_dim, dim) for _ in range(n_members)])


def _padded(x, lengths, seed=1):
    """x [E, B, T, D] with other garbage after each clip's `lengths` [E][B] steps."""
    g = torch.Generator().manual_seed(seed)
    steps = torch.arange(x.shape[2])
    padding = steps >= torch.tensor(lengths).unsqueeze(-1)  # [E, B, T]
    return torch.where(padding.unsqueeze(-1), torch.randn(x.shape, generator=g) * 9, x), ~padding


def test_the_fused_path_is_nn_lstm_with_the_members_weights():
    """Per member, nn.LSTM with weight_ih = w_ih^T, weight_hh = w_hh^T, bias_ih = bias, bias_hh = 0
    (gates i, f, g, o in both): the same outputs, bit for bit (one CPU kernel on both sides)."""
    lstm = _lstm()
    x = torch.randn(3, 4, 9, 7)
    fused = lstm.fused(x)
    for e in range(3):
        reference = torch.nn.LSTM(7, 12, batch_first=True)
        with torch.no_grad():
            reference.weight_ih_l0.copy_(lstm.w_ih[e].t()), reference.weight_hh_l0.copy_(lstm.w_hh[e].t())
            reference.bias_ih_l0.copy_(lstm.bias[e]), reference.bias_hh_l0.zero_()
        assert torch.equal(fused[e], reference(x[e])[0])


def test_the_fused_path_matches_the_loop_forward_and_backward_on_padded_clips():
    """3 members, clips of 2-9 real steps and garbage after: both paths give the same real steps
    and gradients within float32 rounding, and the padding changes no real step of either."""
    lstm = _lstm()
    lengths = [[9, 4, 2, 7], [3, 9, 5, 6], [8, 2, 9, 1]]
    clean = torch.randn(3, 4, 9, 7)
    x, real = _padded(clean, lengths)
    grad = torch.randn(3, 4, 9, 12) * real.unsqueeze(-1)  # a loss on the real steps only
    outputs, grads = {}, {}
    for path in ("stepped", "fused"):
        inputs = x.clone().requires_grad_()
        out = getattr(lstm, path)(inputs)
        params = [inputs, lstm.w_ih, lstm.w_hh, lstm.bias]
        outputs[path], grads[path] = out, torch.autograd.grad(out, params, grad)
        assert torch.equal(out[real], getattr(lstm, path)(clean)[real].detach())  # padding reaches no real step
    torch.testing.assert_close(outputs["fused"][real], outputs["stepped"][real], atol=1e-6, rtol=1e-5)
    for name, a, b in zip(("x", "w_ih", "w_hh", "bias"), grads["fused"], grads["stepped"]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5, msg=lambda m: f"{name}: {m}")
    assert not torch.equal(outputs["fused"], outputs["stepped"])  # two computations, not one


def test_each_member_gets_from_the_fused_path_what_it_gets_alone():
    """Member groups (fuse.training.loop) rely on it: one call per member, bit for bit."""
    lstm, x = _lstm(n_members=4), torch.randn(4, 3, 6, 7)
    together = lstm.fused(x)
    for e in range(4):
        alone = MemberLSTM(7, 12)
        alone.load_state_dict({k: v[e:e + 1] for k, v in lstm.state_dict().items()})
        assert torch.equal(alone.fused(x[e:e + 1])[0], together[e])


def test_the_path_is_chosen_by_the_device(monkeypatch):
    """CUDA runs the fused path, a CPU the loop (its runs' numbers); forcing the rule onto the CPU
    shows forward() takes the fused path there."""
    assert seq.FUSED_LSTM_DEVICES == {"cuda"}
    lstm, x = _lstm(), torch.randn(3, 2, 5, 7)
    assert torch.equal(lstm(x), lstm.stepped(x)) and not torch.equal(lstm(x), lstm.fused(x))
    monkeypatch.setattr(seq, "FUSED_LSTM_DEVICES", frozenset({"cpu"}))
    assert torch.equal(lstm(x), lstm.fused(x))


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
    out = lstm.stepped(torch.randn(1, 2, steps, 3, requires_grad=True))
    made = Made()
    with made:
        out.sum().backward()
    gates = 2 * steps * 16
    assert made.elements < 30 * gates  # measured 15x at 64-256 steps; the slices: 141x at 64, 270x at 128
