"""A model as pure functions of its weights: the training loss, the validation loss, BatchNorm.

BatchNorm's running statistics are state, not something to differentiate: the differentiated
training loss uses batch statistics only (as ``train()`` mode does), and the running statistics
are advanced by a separate forward pass without gradients at the same weights, which updates them
exactly as an ordinary ``model(x)`` call in training mode would.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.func import functional_call

_NORM = (nn.modules.batchnorm._BatchNorm,)


class FunctionalModel:
    """Pure losses of ``model`` given weights and buffers.

    model: any ``nn.Module``; its parameters are only read (copies are differentiated).
    loss_fn: ``loss_fn(output, target)`` -> scalar: the validation loss, and the training loss
        unless ``train_loss`` is given.
    train_loss: ``train_loss(output, target, weights, hp)`` -> scalar, a training loss that reads
        this step's hyperparameters (``losses.py``).
    """

    def __init__(self, model: nn.Module, loss_fn, train_loss=None):
        self.model, self.loss_fn, self.custom_train_loss = model, loss_fn, train_loss
        self.modules = list(model.modules())
        self.norms = [m for m in self.modules if isinstance(m, _NORM) and m.track_running_stats]

    def weights(self) -> dict[str, torch.Tensor]:
        return {k: p.detach().clone() for k, p in self.model.named_parameters()}

    def buffers(self) -> dict[str, torch.Tensor]:
        return {k: b.detach().clone() for k, b in self.model.named_buffers()}

    def train_loss(self, weights, buffers, batch, hp=None):
        """Loss in training mode with batch statistics; touches no buffer (safe under torch.func).

        Without ``hp`` it is the plain ``loss_fn`` (HD's objective); with it, the training loss.
        """
        with self.training():
            return self.train_loss_as_set(weights, buffers, batch, hp)

    def train_loss_as_set(self, weights, buffers, batch, hp=None):
        """``train_loss`` inside ``training()``: no mode switch, so ``torch.compile`` sees one graph."""
        x, y = batch
        out = functional_call(self.model, (weights, buffers), (x,))
        if hp is not None and self.custom_train_loss is not None:
            return self.custom_train_loss(out, y, weights, hp)
        return self.loss_fn(out, y)

    @contextlib.contextmanager
    def training(self):
        """Training mode with batch statistics only, restored on exit."""
        with self._mode(True), self._batch_statistics_only():
            yield

    def val_loss(self, weights, buffers, batch):
        """Loss in evaluation mode: BatchNorm uses the running statistics in ``buffers``."""
        x, y = batch
        with self._mode(False):
            return self.loss_fn(functional_call(self.model, (weights, buffers), (x,)), y)

    @torch.no_grad()
    def advance_buffers(self, weights, buffers, batch) -> None:
        """Update running statistics in ``buffers`` in place, as a training-mode forward would."""
        if self.norms:
            with self._mode(True):
                functional_call(self.model, ({k: w.detach() for k, w in weights.items()}, buffers),
                                (batch[0],))

    @contextlib.contextmanager
    def _mode(self, training: bool):
        # a step of a differentiated run enters this hundreds of times: where every module is in
        # the mode already (a run's steps, one after the other) nothing is switched or restored
        if all(m.training == training for m in self.modules):
            yield
            return
        was = self.model.training
        self.model.train(training)
        try:
            yield
        finally:
            self.model.train(was)

    @contextlib.contextmanager
    def _batch_statistics_only(self):
        # in training mode, track_running_stats=False makes BatchNorm normalise with the batch's
        # statistics (the same numbers) without writing the running buffers in place
        for m in self.norms:
            m.track_running_stats = False
        try:
            yield
        finally:
            for m in self.norms:
                m.track_running_stats = True
