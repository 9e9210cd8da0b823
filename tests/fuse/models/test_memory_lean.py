"""The sequence models' memory-lean pieces give autograd's numbers: batch norm over valid items
with its backward written out (to float64 rounding), max-pooling that finds its maxima again and
dropout that keeps a bf16 mask (bit for bit), each keeping less for the backward pass."""
import pytest
import torch
import torch.nn.functional as F

from fuse.models.blocks import Dropout
from fuse.models.seq import MaskedBatchNorm2d, _MaskedNorm, max_pool2
from fuse.training.memory import saved_bytes


def composite_norm(x, m, count, weight, bias, eps=1e-5):
    """What MaskedBatchNorm2d computed through autograd before its backward was written out."""
    E, C = weight.shape
    mean = (x * m).sum((0, 3, 4)) / count
    var = ((x - mean.view(1, E, C, 1, 1)) ** 2 * m).sum((0, 3, 4)) / count
    scale = weight * torch.rsqrt(var + eps)
    return x * scale.view(1, E, C, 1, 1) + (bias - mean * scale).view(1, E, C, 1, 1)


@pytest.mark.parametrize("per_column", [False, True])
def test_masked_batch_norm_has_the_gradients_of_its_composite(per_column):
    torch.manual_seed(0)
    N, E, C, H, W = 6, 2, 3, 4, 5
    x = torch.randn(N, E, C, H, W, dtype=torch.float64, requires_grad=True)
    m = (torch.rand(N, E, 1, 1, W if per_column else 1) > 0.3).double()
    count = m.expand(N, E, 1, H, W).sum((0, 2, 3, 4)).clamp(min=1).unsqueeze(1)
    weight = torch.randn(E, C, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(E, C, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *a: _MaskedNorm.apply(a[0], m, count, a[1], a[2], 1e-5)[0], (x, weight, bias))
    g = torch.randn(N, E, C, H, W, dtype=torch.float64)
    ours = torch.autograd.grad((_MaskedNorm.apply(x, m, count, weight, bias, 1e-5)[0] * g).sum(), (x, weight, bias))
    theirs = torch.autograd.grad((composite_norm(x, m, count, weight, bias) * g).sum(), (x, weight, bias))
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_masked_batch_norm_keeps_its_input_alone_for_the_backward_pass():
    norm = MaskedBatchNorm2d(8).train()
    x = torch.randn(16, 8, 12, 12, requires_grad=True)
    valid = torch.ones(16, 1)
    kept = saved_bytes(lambda: norm(x, valid)).total
    assert x.nbytes <= kept < 1.1 * x.nbytes  # x - mean (autograd's composite kept it too) is not kept


def test_max_pooling_that_finds_its_maxima_again_has_autograds_gradient_bit_for_bit():
    x = torch.randint(0, 4, (3, 5, 8, 6)).float().requires_grad_()  # many ties: the same maxima chosen
    g = torch.randn(3, 5, 4, 3)
    ours = torch.autograd.grad((max_pool2(x) * g).sum(), x)[0]
    theirs = torch.autograd.grad((F.max_pool2d(x, 2) * g).sum(), x)[0]
    assert torch.equal(max_pool2(x), F.max_pool2d(x, 2)) and torch.equal(ours, theirs)
    y = F.relu(x * 1.0)
    assert saved_bytes(lambda: max_pool2(y)).total == y.nbytes  # no int64 indices beside the input


def test_dropout_keeping_a_bf16_mask_has_autograds_product_bit_for_bit():
    drop = Dropout(0.3).train()
    drop.generators = [torch.Generator().manual_seed(5)]
    x = torch.randn(1, 64, 33, requires_grad=True)
    g = torch.randn(1, 64, 33)
    out = drop(x)
    ours = torch.autograd.grad((out * g).sum(), x)[0]
    mask = out.detach() / x.detach()  # the kept elements' scale, 0 where dropped
    theirs = torch.autograd.grad((x * torch.where(out.detach() != 0, 1 / 0.7, 0.0).float() * g).sum(), x)[0]
    assert torch.equal(ours, theirs) and torch.allclose(mask[out.detach() != 0], torch.tensor(1 / 0.7))
    drop.generators = [torch.Generator().manual_seed(5)]
    assert saved_bytes(lambda: drop(x)).total == x.numel() * 2  # the bf16 mask: 2 bytes an element
