"""Online hyperparameter learning on the forward-mode engine: OHO and hypergradient descent.

- OHO (Im, Savin & Cho, "Online Hyperparameter Optimization by Real-time Recurrent Learning",
  2021): the forward-mode influence d(weights, velocity)/d(hyperparameters) is carried across the
  run and every ``every`` steps the hyperparameters take an outer step along <grad of a validation
  batch's loss, influence>. ``reset_every=tau`` zeroes the influence every tau steps (their
  long-term dependency experiment: tau = 1 is the greedy limit, None never resets).
- HD (Baydin et al., "Online Learning Rate Adaptation with Hypergradient Descent", ICLR 2018):
  the greedy one-step hypergradient. Before each step the influence of the previous step alone
  (reset to zero before it) is paired with the current training batch's gradient; for plain SGD
  this is Baydin's ``-grad_t . grad_{t-1}``, for momentum their SGDN-HD rule.

Both learn one value per hyperparameter entry (a single window, so ``hparams[name]`` has shape
(1, ...)); an entry may be a vector, e.g. one learning rate per layer with ``SGD(layers_of(model))``.

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

from tune_ext.hypergrad.engine import Trainer, as_hparams, split_entries
from tune_ext.hypergrad.outer import OuterOptimizer
from tune_ext.hypergrad.state import CarriedState
from tune_ext.hypergrad.updates import Update, sgd_momentum

METHODS = ("oho", "hd")


class OnlineHypergrad:
    """Trains a model and its hyperparameters together, one training step per ``step()``.

    model: initial weights and buffers (copied; ``load_into`` writes the current ones back).
    loss_fn: ``loss_fn(output, target)``. hparams: ``{name: tensor of shape (1, ...)}``.
    outer: an ``OuterOptimizer`` (its step sizes say which hyperparameters are learned).
    method: ``"oho"`` (carried influence, validation batch every ``every`` steps) or ``"hd"``.
    reset_every: OHO only; zero the influence every this many steps (None: never).
    update, train_loss, batched, compile, derivative: how the differentiated step runs (see
        ``engine.Trainer``).
    """

    def __init__(self, model, loss_fn, hparams: dict, outer: OuterOptimizer, *, method: str = "oho",
                 every: int = 10, reset_every: int | None = None, update: Update = sgd_momentum,
                 batched: bool = True, compile: bool = False, train_loss=None,
                 derivative: str = "jvp"):
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
        for name, value in (("every", every), ("reset_every", reset_every)):
            if value is not None and (isinstance(value, bool) or int(value) != value or value < 1):
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if reset_every is not None and method != "oho":
            raise ValueError("reset_every is OHO's; HD resets the influence before every step")
        self.trainer = Trainer(model, loss_fn, update, batched, compile, train_loss, derivative)
        self.method, self.every, self.outer = method, int(every), outer
        self.reset_every = None if reset_every is None else int(reset_every)
        self.hparams = as_hparams(hparams, next(model.parameters()))
        for n, h in self.hparams.items():
            if h.shape[0] != 1:
                raise ValueError(f"online methods learn one value per hyperparameter: hparams[{n!r}] "
                                 f"must have 1 window, got {h.shape[0]}")
        self.state = self.trainer.start(sum(h.numel() for h in self.hparams.values()))

    @property
    def t(self) -> int:
        return self.state.step

    @property
    def weights(self) -> dict:
        return self.state.weights

    @torch.no_grad()
    def step(self, batch, val_batch=None) -> dict | None:
        """One training step; returns the outer update's info (with ``hypergrads``) when one happened."""
        info = None
        if self.method == "hd":
            if self.t > 0:
                info = self._outer(batch, "train")
            self.state = self.state.reset_tangents()
        elif self.reset_every is not None and self.t % self.reset_every == 0:
            self.state = self.state.reset_tangents()
        # one window: step t of any horizon reads it
        self.state = self.trainer.tangent_step(self.state, batch, hparams=self.hparams, total=1)
        if self.method == "oho" and self.t % self.every == 0:
            if val_batch is None:
                raise ValueError(f"OHO needs a val_batch at every {self.every}-th step (step {self.t})")
            info = self._outer(val_batch, "val")
        return info

    def _outer(self, batch, objective):
        _, flat = self.trainer.hypergrad(self.state, batch, objective)
        hypergrads = split_entries(flat, self.hparams)
        self.hparams, info = self.outer.step(self.hparams, hypergrads)
        return {**info, "hypergrads": hypergrads}

    def load_into(self, model) -> None:
        """Copy the current weights and buffers into ``model`` (e.g. to evaluate it)."""
        model.load_state_dict({**self.state.weights, **self.state.buffers})

    def state_dict(self) -> dict:
        return {"state": self.state.state_dict(), "hparams": self.hparams, "outer": self.outer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.state = CarriedState.from_state_dict(state["state"])
        self.hparams = state["hparams"]
        self.outer.load_state_dict(state["outer"])
