"""A convolution double backward that computes only the terms autograd asks for.

Back-propagating through a recorded training step (reverse and checkpointed hypergradients)
runs the backward of every convolution's backward: ATen's ``_convolution_double_backward``
(``aten/src/ATen/native/Convolution.cpp``). In torch 2.13 it computes all three of its results,
whatever its ``output_mask`` says:

- at a network's first convolution, whose input (the data) needs no gradient, it still computes
  that input's gradient, a transposed convolution as costly as the layer's forward pass, and
  autograd drops it;
- it computes the weight term as a convolution of the batch-transposed operands, which copies
  both to contiguous memory first.

``masked_double_backward()`` replaces that kernel while it is entered, for the whole process (the
dispatcher has one table), by ``double_backward``: the same three terms, computed only where
the mask asks, from the ops every training step already uses (``convolution`` for the output
term, ``convolution_backward`` for the input and weight terms). The numbers are the same up to
the order of floating-point sums (tests/test_convolution.py compares both kernels in float64,
for 1D, 2D and 3D, strided, padded, dilated, grouped and transposed convolutions). On the
mnist1d CNN it takes 0.03-0.22 plain runs (1-7%) off a reverse outer step (docs/gradient-hpo.md).
Leaving the outermost ``with`` restores ATen's own kernel; nested and concurrent entries share
one registration. ``tune_ext.hypergrad.convolution.ENABLED = False`` keeps ATen's kernel
throughout (``scripts/bench_hypergrad.py --modes --mode-list reverse reverse-aten`` times both).
"""
from __future__ import annotations

import contextlib
import threading
import warnings

import torch

OP = "_convolution_double_backward"
ENABLED = True  # False: masked_double_backward() leaves ATen's kernel in place
_aten = torch.ops.aten
_lock = threading.Lock()
_entered = 0
_library = None


def double_backward(ggI, ggW, ggb, gO, weight, input, stride, padding, dilation, transposed,
                    output_padding, groups, output_mask):
    """ATen's schema: the gradients of (grad_output, input, weight) of ``convolution_backward``
    given those of its results (grad_input ggI, grad_weight ggW, grad_bias ggb), each None where
    ``output_mask`` says it is not needed or nothing flows into it."""
    conv = (stride, padding, dilation, transposed, output_padding, groups)
    ggO = gI = gW = None
    if output_mask[0]:
        if input.numel() != 0:
            # grad_input = conv^T(gO, W) and grad_weight(gO, input) are linear in gO: their
            # adjoints are convolutions of ggI by W and of the input by ggW
            if ggI is not None:
                ggO = _aten.convolution(ggI, weight, None, *conv)
            if ggW is not None:
                term = _aten.convolution(input, ggW, None, *conv)
                ggO = term if ggO is None else ggO + term
        if ggb is not None:
            shape = [1] * gO.dim()
            shape[1] = -1
            bias = ggb.reshape(shape)
            ggO = bias.expand(gO.shape) if ggO is None else ggO + bias
    if output_mask[1] and ggW is not None and input.numel() != 0:
        # grad_weight(gO, input) is linear in input: its adjoint is the input gradient of a
        # convolution with weight ggW
        gI = _aten.convolution_backward(gO, input, ggW, None, *conv, [True, False, False])[0]
    if output_mask[2] and ggI is not None and input.numel() != 0:
        # grad_input(gO, W) is linear in W: its adjoint is the weight gradient of a convolution
        # of ggI
        gW = _aten.convolution_backward(gO, ggI, weight, None, *conv, [False, True, False])[1]
    return ggO, gI, gW


@contextlib.contextmanager
def masked_double_backward():
    """``double_backward`` in place of ATen's kernel inside the ``with`` (where ``ENABLED``)."""
    global _entered, _library
    if not ENABLED:
        yield
        return
    with _lock:
        if _entered == 0:
            with warnings.catch_warnings():
                # torch warns once that an ATen kernel is overridden: that is the point here
                warnings.filterwarnings("ignore", message="(?s).*previously registered kernel",
                                        category=UserWarning)
                library = torch.library.Library("aten", "IMPL")
                library.impl(OP, double_backward, "CompositeImplicitAutograd")
            _library = library
        _entered += 1
    try:
        yield
    finally:
        with _lock:
            _entered -= 1
            if _entered == 0:
                _library._destroy()
                _library = None
