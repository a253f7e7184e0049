"""Training losses with hyperparameters: this step's values reach the loss, so ``jvp`` sees them.

A *training loss* is ``train_loss(output, target, weights, hp) -> scalar``: the data term and a
regulariser R(weights) (Im, Savin & Cho's OHO slides), both free to read ``hp``. The validation
loss stays the plain ``loss_fn(output, target)``: hyperparameters shape training, not the objective
they are tuned for.

Example::

    import torch
    from tune_ext.hypergrad import hypergradient
    from tune_ext.hypergrad.losses import regularised_cross_entropy
    from tune_ext.hypergrad.updates import layers_of
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    batches = [(torch.randn(8, 4), torch.randint(0, 3, (8,))) for _ in range(5)]
    hg = hypergradient(model, torch.nn.functional.cross_entropy, batches, batches[0],
                       {"lr": torch.tensor([0.1]), "l2": torch.tensor([[1e-3, 1e-2]]),
                        "label_smoothing": torch.tensor([0.1])},
                       train_loss=regularised_cross_entropy(layers_of(model)))
    hg["l2"].shape  # torch.Size([1, 2]): one coefficient per layer
"""
from __future__ import annotations

from typing import Callable, Mapping

import torch


def smoothed_cross_entropy(output, target, smoothing):
    """``F.cross_entropy(output, target, label_smoothing=smoothing)`` for a tensor ``smoothing``.

    torch's loss takes the smoothing as a Python float, which no transform can differentiate;
    this is its formula: ``(1 - s) * nll + s * mean over classes of -log p``.
    """
    logp = torch.log_softmax(output, dim=-1)
    nll = -logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    return ((1 - smoothing) * nll - smoothing * logp.mean(-1)).mean()


def l2_penalty(weights: dict, hp: dict, layer_of: Mapping[str, int] | None = None):
    """``sum_k l2[layer of k] / 2 * ||w_k||^2`` with ``hp["l2"]`` a scalar or one per layer (0 if absent)."""
    l2 = hp.get("l2")
    if l2 is None:
        return 0.0
    per_layer = isinstance(l2, torch.Tensor) and l2.dim() > 0
    if per_layer and layer_of is None:
        raise ValueError("hp['l2'] has one value per layer: build the loss with layer_of=layers_of(model)")
    return sum((l2[layer_of[k]] if per_layer else l2) / 2 * (w * w).sum() for k, w in weights.items())


def regularised_cross_entropy(layer_of: Mapping[str, int] | None = None) -> Callable:
    """Cross-entropy with ``hp["label_smoothing"]`` (0 if absent) plus ``l2_penalty``.

    layer_of: parameter name -> layer index, for a per-layer ``l2`` (see ``updates.layers_of``).
    """
    layer_of = None if layer_of is None else dict(layer_of)

    def train_loss(output, target, weights, hp):
        s = hp.get("label_smoothing")
        data = (torch.nn.functional.cross_entropy(output, target) if s is None
                else smoothed_cross_entropy(output, target, s))
        return data + l2_penalty(weights, hp, layer_of)

    return train_loss


def regularised(loss_fn: Callable, layer_of: Mapping[str, int] | None = None) -> Callable:
    """Any ``loss_fn(output, target)`` plus ``l2_penalty``: a training loss for ``train_loss=``."""
    layer_of = None if layer_of is None else dict(layer_of)

    def train_loss(output, target, weights, hp):
        return loss_fn(output, target) + l2_penalty(weights, hp, layer_of)

    return train_loss
