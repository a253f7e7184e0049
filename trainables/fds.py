"""The gradient-based trainable: FDS outer steps, or OHO / HD online training, one per ``step()``."""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass

import torch

from trainables.config import (TASK_KEYS, Schedule, choice, flag, non_negative, positive_int,
                               TaskConfig,
                               refuse_unknown_keys, schedule_patterns)
from trainables.data import use_compile_cache
from trainables.hyperparams import training_rule
from trainables.task import ReusableTrainable, epoch_batches, load_task, scores, trial_device
from tune_ext.hypergrad.choice import MODES
from tune_ext.hypergrad.engine import DERIVATIVES
from tune_ext.hypergrad.kinds import KINDS, OPTIMIZERS as INNER_OPTIMIZERS, kinds_of, loss_kinds
from tune_ext.hypergrad.online import OnlineHypergrad
from tune_ext.hypergrad.outer import OPTIMIZERS, make_outer
from tune_ext.hypergrad.run import inner_run
from tune_ext.hypergrad.safeguard import Safeguard

METHODS = ("fds", "oho", "hd")


SAFEGUARD_KEYS = ("backtrack", "collapse_ratio", "backtrack_shrink")  # FDS only
MODE_KEYS = ("hypergrad_mode", "memory_budget_gb")  # FDS only: the path of its inner runs
FDS_KEYS = ("ensemble", *SAFEGUARD_KEYS, *MODE_KEYS)


def _hparam_keys(h):
    return (f"n_{h}_windows", f"{h}_init", f"{h}_step")


KEYS = (*TASK_KEYS, "method", "optimizer", "per_layer", "inner_epochs", "outer_steps",
        "outer_optimizer", "clip", "hyper_every", "reset_every", "val_batch_size", "compile",
        "derivative", "start", *FDS_KEYS, *(k for h in KINDS for k in _hparam_keys(h)))


@dataclass(frozen=True)
class HypergradConfig:
    """The gradient-based part of an ``FDSTrainable`` config, validated (errors name the key)."""

    method: str
    optimizer: str
    per_layer: bool
    hparams: tuple[str, ...]
    inner_epochs: tuple[int, ...]
    outer_steps: int
    windows: dict  # {kind: n_<kind>_windows as given, or None: from the start, else 1}
    init: dict  # {kind: one starting value}; kinds in ``start`` start from its schedule instead
    steps: dict
    outer_optimizer: str
    clip: float | None
    hyper_every: int
    reset_every: int | None
    val_batch_size: int | None
    compile: bool
    derivative: str = "jvp"
    backtrack: bool = False
    collapse_ratio: float | None = None
    backtrack_shrink: float = 0.5
    ensemble: int = 1
    start: Schedule | None = None
    hypergrad_mode: str = "auto"
    memory_budget: float | None = None  # bytes, for hypergrad_mode "auto"; None: from the device

    @classmethod
    def from_config(cls, config: dict) -> "HypergradConfig":
        method = choice(config, "method", METHODS, "fds")
        optimizer = choice(config, "optimizer", INNER_OPTIMIZERS, "sgd")
        start = _start(config, optimizer)
        hparams = kinds_of(optimizer) + tuple(
            h for h in loss_kinds()
            if any(k in config for k in _hparam_keys(h)) or (start and h in start.values))
        for h in set(KINDS) - set(hparams) - set(loss_kinds()):
            for key in (k for k in _hparam_keys(h) if k in config):
                raise ValueError(f"config[{key!r}] is for a hyperparameter of another optimizer; "
                                 f"optimizer {optimizer!r} learns {', '.join(hparams)}")
        per_layer = flag(config, "per_layer", False)
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
        windows = {h: positive_int(config, f"n_{h}_windows") if f"n_{h}_windows" in config else None
                   for h in hparams}
        if method != "fds" and any(n not in (1, None) for n in windows.values()):
            raise ValueError(f"config['n_*_windows'] must be 1 for method {method!r}: online methods "
                             f"learn one value per hyperparameter (got {windows})")
        for h in (start.values if start is not None else ()):
            if not (per_layer and KINDS[h].per_layer):  # per layer: checked with the model's layers
                start.check_windows(h, windows.get(h))
                _one_window_online(method, h, start.windows(h))
        init = {h: KINDS[h].check(non_negative(config, f"{h}_init", KINDS[h].init), f"{h}_init")
                for h in hparams}
        steps = {h: non_negative(config, f"{h}_step", KINDS[h].step) for h in hparams}
        if not any(steps.values()):
            raise ValueError(f"config[{', '.join(repr(h + '_step') for h in hparams)}] are all 0: "
                             f"give at least one a positive outer step size")
        outer = choice(config, "outer_optimizer", OPTIMIZERS, "sign" if method == "fds" else "sgd")
        clip = config.get("clip", 1.0)
        if clip is not None:
            clip = non_negative(config, "clip", 1.0)
            if clip == 0:
                raise ValueError("config['clip'] must be > 0 or None (no clipping), got 0")
        val_bs = config.get("val_batch_size")
        if val_bs is not None:
            val_bs = positive_int(config, "val_batch_size")
        reset_every = config.get("reset_every")
        if reset_every is not None:
            if method != "oho":
                raise ValueError(f"config['reset_every'] is OHO's influence reset (tau); method "
                                 f"{method!r} does not use it")
            reset_every = positive_int(config, "reset_every")
        return cls(method, optimizer, per_layer, hparams, epochs, outer_steps, windows, init, steps,
                   outer, clip, positive_int(config, "hyper_every", 10), reset_every, val_bs,
                   flag(config, "compile", False), choice(config, "derivative", DERIVATIVES, "jvp"),
                   *_safeguard(config, method), _ensemble(config, method), start,
                   *_modes(config, method))

    def shapes(self, layers) -> dict:
        """The starting hyperparameters' shapes ``{kind: (windows,) or (windows, layers)}``;
        layers: ``kind -> values per window`` (None: one). Windows: ``n_<kind>_windows``, else the
        start's, else 1; for the online methods always 1."""
        out = {}
        for h in self.hparams:
            n = self.windows[h]
            if n is None and self.start is not None and h in self.start.values:
                n = self.start.windows(h, layers(h) or 1)
            _one_window_online(self.method, h, n)
            out[h] = (n or 1,) + (() if layers(h) is None else (layers(h),))
        return out


def _one_window_online(method: str, kind: str, n_windows: int | None) -> None:
    if method != "fds" and n_windows not in (1, None):
        raise ValueError(f"config['start'] has {n_windows} {KINDS[kind].label} windows; method "
                         f"{method!r} learns one value per hyperparameter: give one ({kind!r} or "
                         f"{kind}_0)")


def _start(config, optimizer) -> Schedule | None:
    """``config["start"]``: a schedule in the keys ``SupervisedTrainable`` takes and this trainable
    reports (``lr_0 ..``, ``momentum``, ...; any kinds of ``optimizer`` and the loss kinds), as the
    starting values; None without it."""
    start = config.get("start")
    if start is None:
        return None
    kinds = kinds_of(optimizer) + loss_kinds()
    if not isinstance(start, dict):
        raise ValueError(f"config['start'] must be a dict like {{'lr_0': 0.1, 'momentum': 0.9, "
                         f"'weight_decay': 5e-4}}, got {start!r}")
    refuse_unknown_keys(start, kinds, "FDSTrainable's config['start']", patterns=schedule_patterns(kinds))
    schedule = Schedule.from_config(start, kinds, owner="config['start']")
    for h in schedule.values:
        if f"{h}_init" in config:
            raise ValueError(f"config['start'] and config['{h}_init'] both give the starting {h}: "
                             f"drop one")
    return schedule


def _safeguard(config, method):
    """``backtrack``, ``collapse_ratio``, ``backtrack_shrink``: FDS's safeguard (``Safeguard``
    checks the values; its errors are told under the config's key names)."""
    if method != "fds":
        for key in (k for k in SAFEGUARD_KEYS if k in config):
            raise ValueError(f"config[{key!r}] is FDS's safeguard against lost inner runs; method "
                             f"{method!r} does not use it")
        return False, None, 0.5
    ratio = config.get("collapse_ratio", 2.0)
    if ratio is not None:
        ratio = non_negative(config, "collapse_ratio", 2.0)
    shrink = non_negative(config, "backtrack_shrink", 0.5)
    for key, args in (("collapse_ratio", (ratio, 0.5)), ("backtrack_shrink", (2.0, shrink))):
        try:
            Safeguard(*args)
        except ValueError as e:
            raise ValueError(f"config[{key!r}]: {e}") from None
    return flag(config, "backtrack", True), ratio, shrink


def _ensemble(config, method) -> int:
    """``ensemble``: inner runs per FDS outer step, each from its own seed, hypergradients averaged."""
    if method != "fds" and "ensemble" in config:
        raise ValueError(f"config['ensemble'] averages the hypergradients of several FDS inner runs; "
                         f"method {method!r} has no inner runs")
    return positive_int(config, "ensemble", 1)


def _modes(config, method) -> tuple[str, float | None]:
    """``hypergrad_mode`` ["auto"] and ``memory_budget_gb`` [None]: how FDS's inner runs are
    differentiated (``tune_ext.hypergrad.run.inner_run``); the budget in bytes."""
    if method != "fds":
        for key in (k for k in MODE_KEYS if k in config):
            raise ValueError(f"config[{key!r}] chooses how FDS's inner runs are differentiated; "
                             f"method {method!r} is online and always forward mode")
        return "forward", None
    mode = choice(config, "hypergrad_mode", MODES, "auto")
    budget = config.get("memory_budget_gb")
    if budget is None:
        return mode, None
    if mode != "auto":
        raise ValueError(f"config['memory_budget_gb'] is the budget hypergrad_mode 'auto' chooses a "
                         f"path within; hypergrad_mode is {mode!r}: drop one")
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not budget > 0:
        raise ValueError(f"config['memory_budget_gb'] must be a number > 0 (GiB), got {budget!r}")
    return mode, float(budget) * 2 ** 30


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
    """Learns its training hyperparameters from exact hypergradients: FDS, OHO or HD in Ray Tune.

    FDS is Micaelli & Storkey, "Gradient-based Hyperparameter Optimization Over Long Horizons"
    (NeurIPS 2021); OHO is Im, Savin & Cho (2021); HD is Baydin et al. (ICLR 2018).

    Config (defaults in brackets): ``dataset``, ``model``, ``batch_size``, ``seed`` (as for
    ``SupervisedTrainable``, including your own ``model_fn`` / ``data`` / ``loss_fn`` through
    ``tune.with_parameters``); ``method`` ["fds"] | "oho" | "hd"; ``inner_epochs`` [1]: for "fds"
    the length of each inner run, a number or a list with one entry per outer step (the last one
    repeats); for the online methods the length of the run; ``outer_steps`` [len(list) or 10]
    ("fds" only); ``n_lr_windows``, ``n_momentum_windows``, ``n_weight_decay_windows`` [1];
    ``lr_init``, ``momentum_init``, ``weight_decay_init`` [0], or ``start``: a schedule in the
    keys ``SupervisedTrainable`` takes and this trainable reports (``{"lr_0": .., "lr_1": ..,
    "momentum": .., "weight_decay": ..}``: per kind ``<h>_0 ..`` one entry per window, window-major
    per layer, or a bare ``<h>`` for one value) to start from (``n_<h>_windows`` defaults to its
    windows), so a black-box searcher can choose the starting point in the black-box search space;
    outer step sizes ``lr_step`` [0.1], ``momentum_step`` [0.1], ``weight_decay_step`` [1e-4] (0
    freezes that hyperparameter); defaults, bounds and per-layer kinds come from the registry
    ``tune_ext.hypergrad.kinds``;
    ``outer_optimizer`` ["sign" for fds, "sgd" online] | "adam"; ``clip`` [1.0, None = off; not used
    by "sign"]; ``hyper_every`` [10] (OHO's k); ``reset_every`` [None] (OHO's tau: zero the
    influence every tau steps; 1 is the greedy limit); ``val_batch_size`` [batch_size] (OHO);
    ``compile`` [False]: ``torch.compile`` the differentiated step (a one-off compilation of
    seconds per machine, then several times faster steps on small models; the kernels are cached
    under ``$TUNE_EXT_CACHE/torchinductor``, see ``trainables.data.use_compile_cache``);
    ``derivative`` ["jvp"] | "hvp": how each step's tangent is formed (``hypergrad.engine.Trainer``:
    the same hypergradients by forward-over-reverse or reverse-over-reverse second derivatives).

    ``hypergrad_mode`` ["auto"] | "forward" | "reverse" | "checkpointed" ("fds" only;
    ``tune_ext.hypergrad.run.inner_run``): how each inner run is differentiated, all exact and
    equal; "auto" takes the cheapest path whose estimated memory fits ``memory_budget_gb`` [half
    the device's free memory] and every result reports the path taken (``hypergrad_mode``;
    "forward" for the online methods). ``derivative`` applies to forward mode only.

    ``ensemble`` [1] ("fds" only): inner runs per outer step, each from its own seed (initial
    weights and batch order; run i is the run of this trial with ``seed + i``); the outer update
    takes the mean of their hypergradients (lower variance, S times the cost), and the trial
    reports the first run's scores.

    Safeguard ("fds" only; ``tune_ext.hypergrad.safeguard``): ``backtrack`` [True] watches every
    inner run at each epoch end and stops it as soon as it is lost: its validation loss is not
    finite (diverged) or above ``collapse_ratio`` [2.0; None: divergence only] x the validation
    loss the best run so far (lowest final validation loss) had at the same fraction of its run
    (collapsed). The next run then goes back to the best run's hyperparameters, and the entries
    that had moved away from them get their outer step sizes multiplied by ``backtrack_shrink``
    [0.5]. A lost run with nothing to go back to (the first run, or the best hyperparameters
    themselves) ends the trial (``done``).

    Beyond SGD: ``optimizer`` ["sgd"] | "adamw" (``torch.optim.AdamW``; learns ``lr``, ``beta1``
    [init 0.9, step 0.05] and ``weight_decay`` instead of momentum); loss hyperparameters, present
    when any of their keys is given: ``l2`` (an L2 term ``l2/2 ||w||^2`` in the training loss, step
    [1e-4]) and ``label_smoothing`` (step [0.02]; needs the default cross-entropy); ``per_layer``
    [False]: one ``lr``, ``weight_decay`` and ``l2`` per layer (module owning parameters), reported
    as ``lr_0 ..`` window-major. Every hyperparameter has ``n_<h>_windows``, ``<h>_init``,
    ``<h>_step``; outer updates are clamped to valid ranges (beta1, momentum <= 0.999, label
    smoothing <= 1), and an out-of-range init is a ValueError naming the key.

    "fds": one ``step()`` = a full inner run from the same initial weights with forward-mode
    hypergradients of the validation loss, then one outer update. "oho"/"hd": one ``step()`` = one
    epoch of joint training. Reports ``val_loss``, ``val_acc``, ``test_loss``, ``test_acc`` (as
    ``SupervisedTrainable``: no accuracy for float targets; of the inner run, for
    "fds" with the hyperparameters reported alongside), ``lr_0 ..``, ``momentum_0 ..``,
    ``weight_decay_0 ..``, ``hypergrad_norm_<name>`` (absent after a lost run), ``skipped_updates``;
    "fds" also ``inner_steps`` (the steps its inner runs took, all ensemble members), ``inner_lost``
    (None, "diverged" or "collapsed") and ``n_backtracks`` (so far). Checkpoints the hyperparameters, the outer optimiser's state, the safeguard's best run and the shuffling RNG
    (and, online, the model, its velocity and the forward-mode influence), so PAUSE or failure
    resumes the same run.

    Args:
        config: the trial's configuration, as Ray Tune passes it (the keys above).
        model_fn: your model, ``config -> nn.Module`` (given through ``tune.with_parameters``).
        data: your data, ``{"train": ..., "val": ..., "test": ...}`` (through ``with_parameters``).
        loss_fn: your loss, ``(output, target) -> scalar`` (default cross-entropy).

    Example::

        from ray import tune
        from trainables import FDSTrainable

        tune.run(FDSTrainable, stop={"training_iteration": 5}, metric="val_acc", mode="max",
                 config={"dataset": "digits", "inner_epochs": 2, "n_lr_windows": 3,
                         "lr_init": 0.0, "lr_step": 0.1, "outer_steps": 5})
    """

    @classmethod
    def check_config(cls, config, model_fn=None, data=None, loss_fn=None) -> None:
        """ValueError for what ``setup`` would refuse in ``config``, without loading data or
        building the model (the benchmark harness calls it in the driver, before any trial)."""
        refuse_unknown_keys(config, KEYS, "FDSTrainable", aliases={"learning_rate": "lr_init", "lr": "lr_init"})
        HypergradConfig.from_config(config)
        TaskConfig.from_config(config, own_data=data is not None, own_model=model_fn is not None)

    def setup(self, config, model_fn=None, data=None, loss_fn=None):
        self.check_config(config, model_fn, data, loss_fn)
        self.hc = hc = HypergradConfig.from_config(config)
        if hc.compile:  # one compilation per machine: every trial process shares the kernels
            use_compile_cache()
        self.device = trial_device()
        self.task, self.parts = load_task(config, self.device, model_fn=model_fn, data=data, loss_fn=loss_fn)
        self.data, self.model = self.parts.data, self.parts.model
        self.eval_model = copy.deepcopy(self.model)
        self.engine = self._engine_parts(loss_fn)
        kwargs = {} if hc.outer_optimizer == "sign" else {"clip": hc.clip}
        self.outer = make_outer(hc.outer_optimizer, {h: s for h, s in hc.steps.items() if s > 0}, **kwargs)
        self.shuffle = torch.Generator().manual_seed(self.task.seed)
        self.val_shuffle = torch.Generator().manual_seed(self.task.seed + 1)
        self.done_steps = 0
        self.hypergrads = None
        self.method = (FDSOuterSteps if hc.method == "fds" else OnlineEpochs)(self)

    def _engine_parts(self, own_loss) -> dict:
        """The update rule and training loss the config asks for, and the starting hyperparameters."""
        hc = self.hc
        rule = training_rule(self.model, hc.optimizer, hc.per_layer, hc.hparams, own_loss is not None,
                             self.data.classification, self.parts.loss_fn)
        like = next(self.model.parameters())
        hparams = {}
        for h, shape in hc.shapes(rule.layers).items():  # the start's schedule, or one value for all
            if hc.start is not None and h in hc.start.values:
                hparams[h] = hc.start.tensor(h, shape[0], rule.layers(h), like)
            else:
                hparams[h] = torch.full(shape, hc.init[h], dtype=like.dtype, device=like.device)
        return {"update": rule.update, "train_loss": rule.train_loss, "hparams": hparams}

    def epoch_batches(self, shuffle: torch.Generator | None = None):
        """One epoch's minibatch indices, drawn from ``shuffle`` (default: the trial's own)."""
        return epoch_batches(len(self.data.y_train), self.task.batch_size,
                             self.shuffle if shuffle is None else shuffle, self.device)

    def step(self):
        result = self.method.step()
        self.done_steps += 1
        result.update(scores(self.eval_model, self.parts), skipped_updates=self.outer.skipped,
                      done=self.done_steps >= self.method.limit or self.method.ended)
        for name, g in (self.hypergrads or {}).items():
            result[f"hypergrad_norm_{name}"] = float(g.norm())
        return result

    def save_checkpoint(self, checkpoint_dir):
        state = {"method": self.method.state_dict(), "outer": self.outer.state_dict(),
                 "done": self.done_steps, "shuffle": self.shuffle.get_state(),
                 "val_shuffle": self.val_shuffle.get_state(), "hypergrads": self.hypergrads}
        torch.save(state, os.path.join(checkpoint_dir, "state.pt"))

    def load_checkpoint(self, checkpoint):
        state = torch.load(os.path.join(checkpoint, "state.pt"), map_location=self.device)
        self.done_steps, self.hypergrads = state["done"], state["hypergrads"]
        self.outer.load_state_dict(state["outer"])
        self.shuffle.set_state(state["shuffle"].cpu())
        self.val_shuffle.set_state(state["val_shuffle"].cpu())
        self.method.load_state_dict(state["method"])


class FDSOuterSteps:
    """FDS: one ``step()`` is a whole inner run from the same initial weights, then one outer update.

    With ``ensemble`` = S > 1 an outer step is S inner runs of the same hyperparameters, each
    from its own seed (initial weights and batch order; the first is the trial's), and the outer
    update takes the mean of their hypergradients: an estimate of the expected hypergradient over
    seeds with 1/S of one run's variance, at S times the cost. The trial reports the first run's
    scores.

    With ``backtrack`` (the default) a ``Safeguard`` watches the run at every epoch end: a run that
    diverges or collapses stops there, the hyperparameters go back to the best run's and the
    step sizes of the entries that moved away from them shrink; with nothing to go back to, the
    trial ends (``done``). The safeguard follows the first run; the others are judged by the same
    rule (``Safeguard.check``), and one lost run loses the step.
    """

    def __init__(self, trainable: FDSTrainable):
        self.tr, hc = trainable, trainable.hc
        self.hparams = trainable.engine["hparams"]
        self.limit = hc.outer_steps
        self.guard = Safeguard(hc.collapse_ratio, hc.backtrack_shrink) if hc.backtrack else None
        self.ended = False
        seed = trainable.task.seed
        # member 0 is the trial itself (its model and shuffling); the others are seeded after it
        self.members = [(trainable.model, trainable.shuffle)] + [
            (trainable.parts.new_model(seed + i), torch.Generator().manual_seed(seed + i))
            for i in range(1, hc.ensemble)]

    def step(self) -> dict:
        tr, hc = self.tr, self.tr.hc
        epochs = hc.inner_epochs[min(tr.done_steps, len(hc.inner_epochs) - 1)]
        used = self.hparams
        guard = self.guard
        runs, lost = [], False
        for i, (model, shuffle) in enumerate(self.members):
            watch = None if guard is None else guard.begin(used) if i == 0 else guard.check
            run = self._inner_run(model, shuffle, epochs, used, watch)
            runs.append(run)
            lost = run.stopped or (guard is not None and guard.check(1.0, run.val_loss))
            if lost:
                break
        if guard is not None and not lost:
            guard.finish(runs[0].val_loss)   # the trial's own run: the best so far if lowest
        run = runs[0]
        tr.eval_model.load_state_dict({**run.weights, **run.buffers})
        nonfinite = 0
        if lost:
            tr.hypergrads = None
            back = self.guard.backtrack(tr.outer)
            self.ended = back is None
            self.hparams = used if back is None else back
        else:
            tr.hypergrads = {n: sum(r.hypergrads[n] for r in runs) / len(runs) for n in run.hypergrads}
            self.hparams, info = tr.outer.step(used, tr.hypergrads)
            nonfinite = len(info["nonfinite"])
        # the hyperparameters that produced this run's scores (the update goes to the next run)
        return {**_flat(used), "outer_step": tr.done_steps + 1, "inner_epochs": epochs,
                "inner_steps": sum(r.steps for r in runs), "hypergrad_nonfinite": nonfinite,
                "inner_lost": self.guard.reason if lost else None,
                "n_backtracks": self.guard.backtracks if self.guard is not None else 0,
                "hypergrad_mode": run.mode}

    def _inner_run(self, model, shuffle, epochs, hparams, judge):
        """One inner run of ``epochs`` from ``model``'s weights, batches drawn from ``shuffle``;
        ``judge(fraction, val_loss) -> lost?`` is asked at every epoch end."""
        tr, hc = self.tr, self.tr.hc
        indices = [idx for _ in range(epochs) for idx in tr.epoch_batches(shuffle)]
        batches = IndexedBatches(tr.data.x_train, tr.data.y_train, indices)
        watch = {}
        if judge is not None:  # checked at every epoch end (fractions of the run)
            watch = {"watch": lambda step, loss: judge(step / len(batches), loss),
                     "watch_every": len(indices) // epochs}
        return inner_run(model, tr.parts.loss_fn, batches, (tr.data.x_val, tr.data.y_val), hparams,
                         mode=hc.hypergrad_mode, memory_budget=hc.memory_budget,
                         update=tr.engine["update"], train_loss=tr.engine["train_loss"],
                         compile=hc.compile, derivative=hc.derivative, **watch)

    def state_dict(self) -> dict:
        return {"hparams": self.hparams, "ended": self.ended,
                "guard": self.guard.state_dict() if self.guard is not None else None,
                "ensemble_shuffles": [shuffle.get_state() for _, shuffle in self.members[1:]]}

    def load_state_dict(self, state: dict) -> None:
        self.hparams, self.ended = state["hparams"], state["ended"]
        if self.guard is not None:
            self.guard.load_state_dict(state["guard"])
        for (_, shuffle), saved in zip(self.members[1:], state["ensemble_shuffles"], strict=True):
            shuffle.set_state(saved.cpu())


class OnlineEpochs:
    """OHO / HD: one ``step()`` is one epoch of joint training of the weights and hyperparameters."""

    def __init__(self, trainable: FDSTrainable):
        self.tr, hc = trainable, trainable.hc
        self.online = OnlineHypergrad(
            trainable.model, trainable.parts.loss_fn, trainable.engine["hparams"], trainable.outer,
            method=hc.method, every=hc.hyper_every, reset_every=hc.reset_every,
            update=trainable.engine["update"], train_loss=trainable.engine["train_loss"],
            compile=hc.compile, derivative=hc.derivative)
        self.limit = hc.inner_epochs[0]
        self.ended = False  # online runs end at their limit

    def step(self) -> dict:
        tr, hc = self.tr, self.tr.hc
        x, y = tr.data.x_train, tr.data.y_train
        xv, yv = tr.data.x_val, tr.data.y_val
        vbs = hc.val_batch_size or tr.task.batch_size
        updates = nonfinite = 0
        for idx in tr.epoch_batches():
            val = None
            if hc.method == "oho" and (self.online.t + 1) % hc.hyper_every == 0:
                vidx = torch.randperm(len(yv), generator=tr.val_shuffle)[:vbs].to(tr.device)
                val = (xv[vidx], yv[vidx])
            info = self.online.step((x[idx], y[idx]), val)
            if info is not None:
                updates += 1
                nonfinite += bool(info["skipped"])
                tr.hypergrads = info["hypergrads"]
        self.online.load_into(tr.eval_model)
        return {**_flat(self.online.hparams), "epoch": tr.done_steps + 1, "outer_updates": updates,
                "hypergrad_nonfinite": nonfinite, "hypergrad_mode": "forward"}

    def state_dict(self) -> dict:
        return self.online.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.online.load_state_dict(state)
        self.online.load_into(self.tr.eval_model)


def _flat(hparams: dict) -> dict:
    """``{"lr": [a, b]}`` -> ``{"lr_0": a, "lr_1": b}``: scalars TensorBoard can plot."""
    return {f"{n}_{i}": float(v) for n, h in hparams.items() for i, v in enumerate(h.flatten().tolist())}
