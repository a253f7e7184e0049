"""Online hyperparameter learning on the forward-mode engine: OHO and hypergradient descent.

- OHO (Im, Savin & Cho, "Online Hyperparameter Optimization by Real-time Recurrent Learning",
  2021): the forward-mode influence d(weights, velocity)/d(hyperparameters) is carried across the
  whole run (never reset) and every ``every`` steps the hyperparameters take an outer step along
  <grad of a validation batch's loss, influence>.
- HD (Baydin et al., "Online Learning Rate Adaptation with Hypergradient Descent", ICLR 2018):
  the greedy one-step hypergradient. Before each step the influence of the previous step alone
  (reset to zero before it) is paired with the current training batch's gradient; for plain SGD
  this is Baydin's ``-grad_t . grad_{t-1}``, for momentum their SGDN-HD rule.

Both learn one value per hyperparameter (a single window), so ``hparams[name]`` has shape (1, ...).

Example::

    import torch
    from tune_ext.hypergrad.online import OnlineHypergrad
    from tune_ext.hypergrad.outer import ClippedSGD
    model = torch.nn.Linear(4, 3)
    hd = OnlineHypergrad(model, torch.nn.functional.cross_entropy, {"lr": torch.tensor([0.01])},
                         ClippedSGD({"lr": 1e-3}, clip=None), method="hd")
    for _ in range(5):
        hd.step((torch.randn(8, 4), torch.randint(0, 3, (8,))))
    hd.hparams["lr"]
"""
from __future__ import annotations

import torch

from tune_ext.hypergrad.engine import Trainer, as_hparams, entry_basis, split_entries
from tune_ext.hypergrad.outer import OuterOptimizer
from tune_ext.hypergrad.updates import Update, sgd_momentum

METHODS = ("oho", "hd")


class OnlineHypergrad:
    """Trains a model and its hyperparameters together, one SGD step per ``step()``.

    model: initial weights and buffers (copied; ``load_into`` writes the current ones back).
    loss_fn: ``loss_fn(output, target)``. hparams: ``{name: tensor of shape (1, ...)}``.
    outer: an ``OuterOptimizer`` (its step sizes say which hyperparameters are learned).
    method: ``"oho"`` (carried influence, validation batch every ``every`` steps) or ``"hd"``.
    batched, compile: how the differentiated step runs (see ``engine.Trainer``).
    """

    def __init__(self, model, loss_fn, hparams: dict, outer: OuterOptimizer, *, method: str = "oho",
                 every: int = 10, update: Update = sgd_momentum, batched: bool = True,
                 compile: bool = False):
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
        if int(every) != every or every < 1:
            raise ValueError(f"every must be a positive int, got {every!r}")
        self.trainer = Trainer(model, loss_fn, update, batched, compile)
        self.method, self.every, self.outer = method, int(every), outer
        self.weights, self.buffers = self.trainer.f.weights(), self.trainer.f.buffers()
        self.hparams = as_hparams(hparams, next(iter(self.weights.values())))
        for n, h in self.hparams.items():
            if h.shape[0] != 1:
                raise ValueError(f"online methods learn one value per hyperparameter: hparams[{n!r}] "
                                 f"must have 1 window, got {h.shape[0]}")
        self.basis = entry_basis(self.hparams)
        self.velocity = {k: torch.zeros_like(w) for k, w in self.weights.items()}
        self._reset_influence()
        self.t = 0

    def _reset_influence(self):
        n = next(iter(self.basis.values())).shape[0]
        self.tw = {k: w.new_zeros((n, *w.shape)) for k, w in self.weights.items()}
        self.tv = {k: w.new_zeros((n, *w.shape)) for k, w in self.weights.items()}

    @torch.no_grad()
    def step(self, batch, val_batch=None) -> dict | None:
        """One SGD step; returns the outer update's info (with ``hypergrads``) when one happened."""
        info = None
        if self.method == "hd":
            if self.t > 0:
                info = self._outer(batch, "train")
            self._reset_influence()
        self.trainer.f.advance_buffers(self.weights, self.buffers, batch)
        self.weights, self.velocity, self.tw, self.tv = self.trainer.tangent_step(
            self.weights, self.velocity, self.buffers, self.hparams, 0, 1, batch, self.tw, self.tv,
            self.basis)
        self.t += 1
        if self.method == "oho" and self.t % self.every == 0:
            if val_batch is None:
                raise ValueError(f"OHO needs a val_batch at every {self.every}-th step (step {self.t})")
            info = self._outer(val_batch, "val")
        return info

    def _outer(self, batch, objective):
        _, flat = self.trainer.hypergrad_from(self.weights, self.buffers, self.tw, batch, objective)
        hypergrads = split_entries(flat, self.hparams)
        self.hparams, info = self.outer.step(self.hparams, hypergrads)
        return {**info, "hypergrads": hypergrads}

    def load_into(self, model) -> None:
        """Copy the current weights and buffers into ``model`` (e.g. to evaluate it)."""
        model.load_state_dict({**self.weights, **self.buffers})

    def state_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("weights", "velocity", "buffers", "tw", "tv", "hparams", "t")} | {
            "outer": self.outer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        for k in ("weights", "velocity", "buffers", "tw", "tv", "hparams", "t"):
            setattr(self, k, state[k])
        self.outer.load_state_dict(state["outer"])
