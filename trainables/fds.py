"""The gradient-based trainable: FDS outer steps, or OHO / HD online training, one per ``step()``."""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass

import torch

from trainables.config import TASK_KEYS, non_negative, positive_int, refuse_unknown_keys
from trainables.task import ReusableTrainable, epoch_batches, load_task, scores, trial_device
from tune_ext.hypergrad.engine import forward_run
from tune_ext.hypergrad.online import OnlineHypergrad
from tune_ext.hypergrad.outer import MOMENTUM_MAX, OPTIMIZERS, make_outer

METHODS = ("fds", "oho", "hd")
HPARAMS = ("lr", "momentum", "weight_decay")
DEFAULT_STEPS = {"lr": 0.1, "momentum": 0.1, "weight_decay": 1e-4}
KEYS = (*TASK_KEYS, "method", "inner_epochs", "outer_steps", "outer_optimizer", "clip", "hyper_every",
        "val_batch_size", "compile", *(f"n_{h}_windows" for h in HPARAMS),
        *(f"{h}_init" for h in HPARAMS), *(f"{h}_step" for h in HPARAMS))


@dataclass(frozen=True)
class HypergradConfig:
    """The gradient-based part of an ``FDSTrainable`` config, validated (errors name the key)."""

    method: str
    inner_epochs: tuple[int, ...]
    outer_steps: int
    windows: dict
    init: dict
    steps: dict
    outer_optimizer: str
    clip: float | None
    hyper_every: int
    val_batch_size: int | None
    compile: bool

    @classmethod
    def from_config(cls, config: dict) -> "HypergradConfig":
        method = config.get("method", "fds")
        if method not in METHODS:
            raise ValueError(f"config['method'] must be one of {', '.join(METHODS)}; got {method!r}")
        epochs = config.get("inner_epochs", 1)
        if isinstance(epochs, (list, tuple)):
            if method != "fds":
                raise ValueError(f"config['inner_epochs'] must be one number for method {method!r} "
                                 f"(the length of the online run); a list is for 'fds' only")
            if not epochs:
                raise ValueError("config['inner_epochs'] must not be an empty list")
            epochs = tuple(positive_int({"inner_epochs": e}, "inner_epochs") for e in epochs)
        else:
            epochs = (positive_int(config, "inner_epochs", 1),)
        outer_steps = positive_int(config, "outer_steps", len(epochs) if len(epochs) > 1 else 10)
        windows = {h: positive_int(config, f"n_{h}_windows", 1) for h in HPARAMS}
        if method != "fds" and any(n != 1 for n in windows.values()):
            raise ValueError(f"config['n_*_windows'] must be 1 for method {method!r}: online methods "
                             f"learn one value per hyperparameter (got {windows})")
        init = {h: non_negative(config, f"{h}_init", 0.0) for h in HPARAMS}
        if init["momentum"] > MOMENTUM_MAX:
            raise ValueError(f"config['momentum_init'] must be in [0, {MOMENTUM_MAX}], got {init['momentum']}")
        steps = {h: non_negative(config, f"{h}_step", DEFAULT_STEPS[h]) for h in HPARAMS}
        if not any(steps.values()):
            raise ValueError("config['lr_step'], ['momentum_step'] and ['weight_decay_step'] are all 0: "
                             "give at least one a positive outer step size")
        outer = config.get("outer_optimizer", "sign" if method == "fds" else "sgd")
        if outer not in OPTIMIZERS:
            raise ValueError(f"config['outer_optimizer'] must be one of {', '.join(OPTIMIZERS)}; got {outer!r}")
        clip = config.get("clip", 1.0)
        if clip is not None:
            clip = non_negative(config, "clip", 1.0)
            if clip == 0:
                raise ValueError("config['clip'] must be > 0 or None (no clipping), got 0")
        val_bs = config.get("val_batch_size")
        if val_bs is not None:
            val_bs = positive_int(config, "val_batch_size")
        compile_ = config.get("compile", False)
        if not isinstance(compile_, bool):
            raise ValueError(f"config['compile'] must be True or False, got {compile_!r}")
        return cls(method, epochs, outer_steps, windows, init, steps, outer,
                   clip, positive_int(config, "hyper_every", 10), val_bs, compile_)


class IndexedBatches:
    """A run's minibatches as index tensors, gathered only when a step asks for one."""

    def __init__(self, x, y, indices):
        self.x, self.y, self.indices = x, y, indices

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        idx = self.indices[i]
        return self.x[idx], self.y[idx]


class FDSTrainable(ReusableTrainable):
    """Learns its SGD schedule from exact hypergradients: FDS, OHO or HD as a Ray Tune trainable.

    FDS is Micaelli & Storkey, "Gradient-based Hyperparameter Optimization Over Long Horizons"
    (NeurIPS 2021); OHO is Im, Savin & Cho (2021); HD is Baydin et al. (ICLR 2018).

    Config (defaults in brackets): ``dataset``, ``model``, ``batch_size``, ``seed`` (as for
    ``SupervisedTrainable``, including your own ``model_fn`` / ``data`` / ``loss_fn`` through
    ``tune.with_parameters``); ``method`` ["fds"] | "oho" | "hd"; ``inner_epochs`` [1]: for "fds"
    the length of each inner run, a number or a list with one entry per outer step (the last one
    repeats); for the online methods the length of the run; ``outer_steps`` [len(list) or 10]
    ("fds" only); ``n_lr_windows``, ``n_momentum_windows``, ``n_weight_decay_windows`` [1];
    ``lr_init``, ``momentum_init``, ``weight_decay_init`` [0]; outer step sizes ``lr_step`` [0.1],
    ``momentum_step`` [0.1], ``weight_decay_step`` [1e-4] (0 freezes that hyperparameter);
    ``outer_optimizer`` ["sign" for fds, "sgd" online] | "adam"; ``clip`` [1.0, None = off; not used
    by "sign"]; ``hyper_every`` [10] (OHO's k); ``val_batch_size`` [batch_size] (OHO); ``compile``
    [False]: ``torch.compile`` the differentiated step (a one-off compilation of seconds per worker
    process, then several times faster steps on small models: worth it for long runs).

    "fds": one ``step()`` = a full inner run from the same initial weights with forward-mode
    hypergradients of the validation loss, then one outer update. "oho"/"hd": one ``step()`` = one
    epoch of joint training. Reports ``val_loss``, ``val_acc``, ``test_acc`` (of the inner run, for
    "fds" with the hyperparameters reported alongside), ``lr_0 ..``, ``momentum_0 ..``,
    ``weight_decay_0 ..``, ``hypergrad_norm_<name>``, ``skipped_updates``. Checkpoints the
    hyperparameters, the outer optimiser's state and the shuffling RNG (and, online, the model, its
    velocity and the forward-mode influence), so PAUSE or failure resumes the same run.

    Example::

        from ray import tune
        from trainables import FDSTrainable

        tune.run(FDSTrainable, stop={"training_iteration": 5}, metric="val_acc", mode="max",
                 config={"dataset": "digits", "inner_epochs": 2, "n_lr_windows": 3,
                         "lr_init": 0.0, "lr_step": 0.1, "outer_steps": 5})
    """

    def setup(self, config, model_fn=None, data=None, loss_fn=None):
        refuse_unknown_keys(config, KEYS, "FDSTrainable", aliases={"learning_rate": "lr_init", "lr": "lr_init"})
        self.hc = HypergradConfig.from_config(config)
        self.device = trial_device()
        self.task, self.parts = load_task(config, self.device, model_fn=model_fn, data=data, loss_fn=loss_fn)
        self.data, self.model = self.parts.data, self.parts.model
        self.eval_model = copy.deepcopy(self.model)
        dtype = next(self.model.parameters()).dtype
        hparams = {h: torch.full((self.hc.windows[h],), self.hc.init[h], dtype=dtype, device=self.device)
                   for h in HPARAMS}
        kwargs = {} if self.hc.outer_optimizer == "sign" else {"clip": self.hc.clip}
        self.outer = make_outer(self.hc.outer_optimizer,
                                {h: s for h, s in self.hc.steps.items() if s > 0}, **kwargs)
        outer = self.outer
        self.hparams = hparams
        self.online = None
        if self.hc.method != "fds":
            self.online = OnlineHypergrad(self.model, self.parts.loss_fn, hparams, outer, method=self.hc.method,
                                          every=self.hc.hyper_every, compile=self.hc.compile)
        self.shuffle = torch.Generator().manual_seed(self.task.seed)
        self.val_shuffle = torch.Generator().manual_seed(self.task.seed + 1)
        self.done_steps = 0
        self.hypergrads = None

    def _epoch_batches(self):
        return epoch_batches(len(self.data.y_train), self.task.batch_size, self.shuffle, self.device)

    def step(self):
        result = self._fds_step() if self.online is None else self._online_step()
        self.done_steps += 1
        limit = self.hc.outer_steps if self.online is None else self.hc.inner_epochs[0]
        result.update(scores(self.eval_model, self.parts), skipped_updates=self.outer.skipped,
                      done=self.done_steps >= limit)
        for name, g in (self.hypergrads or {}).items():
            result[f"hypergrad_norm_{name}"] = float(g.norm())
        return result

    def _fds_step(self):
        epochs = self.hc.inner_epochs[min(self.done_steps, len(self.hc.inner_epochs) - 1)]
        indices = [idx for _ in range(epochs) for idx in self._epoch_batches()]
        batches = IndexedBatches(self.data.x_train, self.data.y_train, indices)
        used = self.hparams
        run = forward_run(self.model, self.parts.loss_fn, batches, (self.data.x_val, self.data.y_val), used,
                          compile=self.hc.compile)
        self.eval_model.load_state_dict({**run.weights, **run.buffers})
        self.hypergrads = run.hypergrads
        self.hparams, info = self.outer.step(used, run.hypergrads)
        # the hyperparameters that produced this run's scores (the update goes to the next run)
        return {**_flat(used), "outer_step": self.done_steps + 1, "inner_epochs": epochs,
                "inner_steps": len(batches), "hypergrad_nonfinite": len(info["nonfinite"])}

    def _online_step(self):
        x, y = self.data.x_train, self.data.y_train
        xv, yv = self.data.x_val, self.data.y_val
        vbs = self.hc.val_batch_size or self.task.batch_size
        updates = nonfinite = 0
        for idx in self._epoch_batches():
            val = None
            if self.hc.method == "oho" and (self.online.t + 1) % self.hc.hyper_every == 0:
                vidx = torch.randperm(len(yv), generator=self.val_shuffle)[:vbs].to(self.device)
                val = (xv[vidx], yv[vidx])
            info = self.online.step((x[idx], y[idx]), val)
            if info is not None:
                updates += 1
                nonfinite += bool(info["skipped"])
                self.hypergrads = info["hypergrads"]
        self.online.load_into(self.eval_model)
        return {**_flat(self.online.hparams), "epoch": self.done_steps + 1, "outer_updates": updates,
                "hypergrad_nonfinite": nonfinite}

    def save_checkpoint(self, checkpoint_dir):
        state = {"hparams": self.hparams, "outer": self.outer.state_dict(), "done": self.done_steps,
                 "shuffle": self.shuffle.get_state(), "val_shuffle": self.val_shuffle.get_state(),
                 "hypergrads": self.hypergrads}
        if self.online is not None:
            state["online"] = self.online.state_dict()
        torch.save(state, os.path.join(checkpoint_dir, "state.pt"))

    def load_checkpoint(self, checkpoint):
        state = torch.load(os.path.join(checkpoint, "state.pt"), map_location=self.device)
        self.hparams, self.done_steps, self.hypergrads = state["hparams"], state["done"], state["hypergrads"]
        self.outer.load_state_dict(state["outer"])
        self.shuffle.set_state(state["shuffle"].cpu())
        self.val_shuffle.set_state(state["val_shuffle"].cpu())
        if self.online is not None:
            self.online.load_state_dict(state["online"])
            self.online.load_into(self.eval_model)


def _flat(hparams: dict) -> dict:
    """``{"lr": [a, b]}`` -> ``{"lr_0": a, "lr_1": b}``: scalars TensorBoard can plot."""
    return {f"{n}_{i}": float(v) for n, h in hparams.items() for i, v in enumerate(h.flatten().tolist())}
