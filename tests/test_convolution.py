"""The masked convolution double backward gives ATen's numbers, skips what autograd drops, and
leaves ATen's kernel in place outside its ``with``."""
import threading

import pytest
import torch
from torch.nn import functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from tune_ext.hypergrad import convolution
from tune_ext.hypergrad.convolution import masked_double_backward

D = torch.float64

# (conv, input shape, weight shape, keyword arguments)
CASES = {
    "1d strided": (F.conv1d, (4, 2, 17), (3, 2, 5), dict(stride=2)),
    "2d padded dilated grouped": (F.conv2d, (3, 4, 9, 8), (6, 2, 3, 2),
                                  dict(padding=(1, 2), dilation=(2, 1), groups=2)),
    "3d": (F.conv3d, (2, 2, 5, 6, 5), (3, 2, 2, 3, 2), dict(stride=(1, 2, 1))),
    "transposed 1d": (F.conv_transpose1d, (3, 4, 7), (4, 3, 4),
                      dict(stride=3, padding=1, output_padding=2)),
    "transposed 2d grouped": (F.conv_transpose2d, (2, 4, 5, 4), (4, 3, 3, 3),
                              dict(stride=2, groups=2, output_padding=1)),
}


def second_order(conv, x_shape, w_shape, kw, bias, input_grad, seed=0):
    """The gradients of a function of conv's first-order gradients, through a tanh (so both
    gradients of the backward's backward are nonzero), with respect to every input."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(x_shape, generator=g, dtype=D).requires_grad_(input_grad)
    w = torch.randn(w_shape, generator=g, dtype=D, requires_grad=True)
    out_channels = w_shape[1] * kw.get("groups", 1) if "transpose" in conv.__name__ else w_shape[0]
    b = torch.randn(out_channels, generator=g, dtype=D, requires_grad=True) if bias else None
    out = torch.tanh(conv(x, w, b, **kw))
    r = torch.randn(out.shape, generator=g, dtype=D)
    wrt = [t for t in (x, w, b) if t is not None and t.requires_grad]
    first = torch.autograd.grad((out * r).sum(), wrt, create_graph=True)
    probe = sum((f * torch.randn(f.shape, generator=g, dtype=D)).sum() for f in first)
    return torch.autograd.grad(probe, wrt)


@pytest.mark.parametrize("input_grad", [True, False])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("case", list(CASES))
def test_the_masked_kernel_gives_atens_second_derivatives(case, bias, input_grad):
    ref = second_order(*CASES[case], bias, input_grad)
    with masked_double_backward():
        got = second_order(*CASES[case], bias, input_grad)
    assert len(got) == len(ref)
    for a, b in zip(got, ref):
        assert a.shape == b.shape and b.abs().max() > 0
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


class Shapes(TorchDispatchMode):
    """The shapes of every tensor an ATen op returns, and whether a transposed convolution ran
    (ATen's kernel computes the input term of a plain convolution as one, the masked kernel
    through ``convolution_backward``)."""

    def __init__(self):
        super().__init__()
        self.shapes, self.transposed = [], False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func is torch.ops.aten.convolution.default and args[6]:
            self.transposed = True
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.shapes.append(tuple(t.shape))
        return out


def double_backward_ops(input_grad):
    """What the backward of a first convolution's backward computes."""
    x = torch.randn(4, 1, 40, dtype=D, requires_grad=input_grad)
    w = torch.randn(8, 1, 5, dtype=D, requires_grad=True)
    gw, = torch.autograd.grad(torch.tanh(F.conv1d(x, w, stride=2)).sum(), [w], create_graph=True)
    seen = Shapes()
    with seen:
        torch.autograd.grad((gw * gw).sum(), [w, x] if input_grad else [w])
    return seen


def test_a_first_convolution_s_input_gradient_is_not_computed():
    # the data needs no gradient: the masked kernel computes nothing of its shape, ATen's does
    with masked_double_backward():
        assert (4, 1, 40) not in double_backward_ops(input_grad=False).shapes
        assert (4, 1, 40) in double_backward_ops(input_grad=True).shapes
    assert (4, 1, 40) in double_backward_ops(input_grad=False).shapes


def atens_kernel():
    return double_backward_ops(input_grad=True).transposed


def test_atens_kernel_is_back_after_the_outermost_with_even_after_an_error():
    assert atens_kernel()
    with masked_double_backward():
        with masked_double_backward():
            assert not atens_kernel()
        assert not atens_kernel()  # the outer one still holds
    assert atens_kernel()
    with pytest.raises(ValueError, match="inside"):
        with masked_double_backward():
            raise ValueError("inside")
    assert atens_kernel() and convolution._library is None


def test_threads_share_one_registration():
    inside, release, errors = threading.Event(), threading.Event(), []

    def hold():
        try:
            with masked_double_backward():
                inside.set()
                release.wait()
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    worker = threading.Thread(target=hold)
    worker.start()
    assert inside.wait(60)
    with masked_double_backward():  # entered and left while the thread holds its own
        pass
    assert not atens_kernel()
    release.set()
    worker.join(60)
    assert not worker.is_alive() and not errors
    assert atens_kernel()
