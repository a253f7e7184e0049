"""A trial's training rule: the optimiser update and training loss that read its hyperparameters.

``FDSTrainable`` differentiates the pure update (``tune_ext.hypergrad.updates``, which follows
``torch.optim``'s SGD and AdamW) and the training loss (``losses``); ``SupervisedTrainable`` runs
``torch.optim`` itself with the same layers (one param group each) and the same training loss. So
a schedule means the same training in both, whichever kinds it holds (``tune_ext.hypergrad.kinds``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from tune_ext.hypergrad.kinds import KINDS
from tune_ext.hypergrad.losses import regularised, regularised_cross_entropy
from tune_ext.hypergrad.updates import SGD, AdamW, layers_of

UPDATES = {"sgd": SGD, "adamw": AdamW}


@dataclass(frozen=True)
class TrainingRule:
    """The update, the training loss (None: the plain ``loss_fn``) and the layers of a trial.

    layer_of: parameter name -> layer index (per-layer kinds), None without ``per_layer``.
    n_layers: layers of the model (1 without ``per_layer``).
    """

    update: Callable
    train_loss: Callable | None
    layer_of: dict | None
    n_layers: int

    def layers(self, kind: str) -> int | None:
        """Values per window of ``kind``: the layers for a per-layer kind, else None (one)."""
        return self.n_layers if self.layer_of is not None and KINDS[kind].per_layer else None


def training_rule(model: nn.Module, optimizer: str, per_layer: bool, kinds, own_loss: bool,
                  classification: bool, loss_fn: Callable) -> TrainingRule:
    """The update rule and training loss for ``kinds`` (the loss kinds among them turn on their term).

    own_loss: the user gave a ``loss_fn`` (label smoothing needs the default cross-entropy).
    """
    layer_of = layers_of(model) if per_layer else None
    n_layers = len(set(layer_of.values())) if layer_of else 1
    train_loss = None
    if "label_smoothing" in kinds:
        if own_loss or not classification:
            raise ValueError("config['label_smoothing*'] needs the default cross-entropy loss "
                             "(class labels, no loss_fn)")
        train_loss = regularised_cross_entropy(layer_of)
    elif "l2" in kinds:
        train_loss = regularised(loss_fn, layer_of)
    return TrainingRule(UPDATES[optimizer](layer_of), train_loss, layer_of, n_layers)
