"""Optimiser updates as pure functions of (weights, velocity, gradients, hyperparameters).

Forward-mode hypergradients differentiate these functions with ``torch.func.jvp``, so a new
hyperparameter (a per-layer learning rate, say) needs a new update function and nothing else.

Every update takes dicts ``{parameter name: tensor}`` for weights, velocity and gradients and a
dict ``hp`` of this step's hyperparameter values (each ``hparams[name][window]``), and returns
``(new_weights, new_velocity)``.

Example::

    import torch
    from tune_ext.hypergrad.updates import sgd_momentum
    w, v, g = {"a": torch.ones(2)}, {"a": torch.zeros(2)}, {"a": torch.ones(2)}
    hp = {"lr": torch.tensor(0.1), "momentum": torch.tensor(0.9), "weight_decay": torch.tensor(0.0)}
    sgd_momentum(w, v, g, hp)  # ({'a': tensor([0.9, 0.9])}, {'a': tensor([1., 1.])})
"""
from __future__ import annotations

from typing import Callable, Mapping

import torch

Update = Callable[[dict, dict, dict, dict], "tuple[dict, dict]"]


def sgd_momentum(weights, velocity, grads, hp):
    """``torch.optim.SGD`` (dampening 0, no Nesterov): ``v = mom*v + (g + wd*w); w = w - lr*v``.

    ``hp`` holds scalars ``lr``, ``momentum`` and ``weight_decay``; a missing one means 0 (no
    momentum, no decay), so ``{"lr": ...}`` alone is plain SGD.
    """
    lr = hp["lr"]
    mom, wd = hp.get("momentum", 0.0), hp.get("weight_decay", 0.0)
    new_v = {k: mom * velocity[k] + (grads[k] + wd * weights[k]) for k in weights}
    return {k: weights[k] - lr * new_v[k] for k in weights}, new_v


def per_layer_sgd(layer_of: Mapping[str, int]) -> Update:
    """SGD-momentum with one learning rate per layer: ``hp["lr"][layer_of[name]]``.

    layer_of: parameter name -> index into this step's learning-rate vector (so ``hparams["lr"]``
        has shape ``(n_windows, n_layers)``); momentum and weight decay stay shared scalars.
    """
    layer_of = dict(layer_of)

    def update(weights, velocity, grads, hp):
        missing = set(weights) - set(layer_of)
        if missing:
            raise ValueError(f"layer_of has no layer for parameters {sorted(missing)}")
        mom, wd = hp.get("momentum", 0.0), hp.get("weight_decay", 0.0)
        new_v = {k: mom * velocity[k] + (grads[k] + wd * weights[k]) for k in weights}
        return {k: weights[k] - hp["lr"][layer_of[k]] * new_v[k] for k in weights}, new_v

    return update


def layers_of(model: torch.nn.Module) -> dict[str, int]:
    """Map each parameter name to the index of the module that owns it, in registration order."""
    modules = list(dict.fromkeys(name.rpartition(".")[0] for name, _ in model.named_parameters()))
    return {name: modules.index(name.rpartition(".")[0]) for name, _ in model.named_parameters()}
