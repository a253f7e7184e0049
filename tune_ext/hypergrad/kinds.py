"""The hyperparameter kinds both families tune, described once: the registry ``KINDS``.

A *kind* is one named hyperparameter of training (the learning rate, momentum, ...): its valid
values, where the outer optimisers keep it, the gradient methods' default start and outer step,
whether it can hold one value per layer, whether the optimiser update or the training loss reads
it (and which optimisers), and the black-box search range (wide, as in Micaelli & Storkey 2021,
section 5.4). ``FDSTrainable`` reads its config from here, ``SupervisedTrainable`` runs any
schedule of these kinds, and the benchmark builds a task's search space from it. A new kind is
one entry here (for an update kind with the ``torch.optim`` param-group entry that plain runs
set) plus the term that reads it (``updates.py`` or ``losses.py``).

A schedule of a kind is given in config keys shared by both families: ``<kind>_0 ..
<kind>_{n-1}``, one value per entry in window-major order (entry ``i`` is window ``i // L``, layer
``i % L`` for a per-layer kind with L layers, window ``i`` otherwise), or ``<kind>`` alone, one
value for the whole run (e.g. ``momentum``).

Example::

    from tune_ext.hypergrad.kinds import KINDS, kinds_of
    KINDS["momentum"].bounds      # (0.0, 0.999): outer steps are clamped into this range
    kinds_of("adamw")             # ('lr', 'beta1', 'weight_decay')
"""
from __future__ import annotations

import math
from dataclasses import dataclass

MOMENTUM_MAX = 0.999  # a learned momentum or beta1 stays below 1 by this margin


@dataclass(frozen=True)
class Kind:
    """One hyperparameter kind.

    Args:
        name: the config name (``lr``): keys ``lr``, ``lr_0 ..``, ``n_lr_windows``, ``lr_init``, ...
        label: what error messages call it (``learning-rate``).
        low, high: the valid values, ``low <= v <= high`` (``high`` excluded when ``open_high``).
        open_high: the upper end is not valid itself (momentum 1 never forgets).
        bounds: where outer steps keep a learned value (clamped), inside the valid values.
        init: the gradient methods' default starting value.
        step: the gradient methods' default outer step size.
        per_layer: holds one value per layer with ``per_layer=True``.
        term: ``"update"`` (the optimiser update reads it) or ``"loss"`` (the training loss does).
        optimizers: the optimisers whose update reads it (update kinds only).
        search: the black-box search range (low, high), wide.
        log: searched log-uniformly (else uniformly).
        param_group: update kinds: where a ``torch.optim`` param group holds the value
            (``("betas", 0)``: the first of ``group["betas"]``), so a plain run can set it there.
    """

    name: str
    label: str
    low: float
    high: float
    open_high: bool
    bounds: tuple[float, float]
    init: float
    step: float
    per_layer: bool
    term: str
    optimizers: tuple[str, ...]
    search: tuple[float, float]
    log: bool
    param_group: tuple = ()

    def check(self, value, key: str) -> float:
        """``value`` as a float, or a ValueError naming ``key`` and the valid range."""
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"config[{key!r}] must be a number in {self.valid()}, got {value!r}") from None
        above = v >= self.high if self.open_high else v > self.high
        if not math.isfinite(v) or v < self.low or above:
            raise ValueError(f"config[{key!r}] must be {'a finite number ' if math.isinf(self.high) else ''}"
                             f"in {self.valid()}, got {v}")
        return v

    def valid(self) -> str:
        """The valid values as an interval, e.g. ``[0, 1)``."""
        return f"[{self.low:g}, {self.high:g}{')' if self.open_high or math.isinf(self.high) else ']'}"


def _kind(name, label, high, open_high, bounds_high, init, step, per_layer, term, optimizers,
          search, log, param_group=()) -> Kind:
    return Kind(name, label, 0.0, high, open_high, (0.0, bounds_high), init, step, per_layer, term,
                optimizers, search, log, param_group)


_INF = math.inf
KINDS: dict[str, Kind] = {k.name: k for k in [
    _kind("lr", "learning-rate", _INF, True, _INF, 0.0, 0.1, True, "update", ("sgd", "adamw"),
          (1e-3, 1.0), True, ("lr",)),
    _kind("momentum", "momentum", 1.0, True, MOMENTUM_MAX, 0.0, 0.1, False, "update", ("sgd",),
          (0.0, 0.99), False, ("momentum",)),
    _kind("beta1", "beta1", 1.0, True, MOMENTUM_MAX, 0.9, 0.05, False, "update", ("adamw",),
          (0.5, 0.99), False, ("betas", 0)),
    _kind("weight_decay", "weight-decay", _INF, True, _INF, 0.0, 1e-4, True, "update",
          ("sgd", "adamw"), (1e-6, 1e-2), True, ("weight_decay",)),
    _kind("l2", "L2", _INF, True, _INF, 0.0, 1e-4, True, "loss", (), (1e-6, 1e-2), True),
    _kind("label_smoothing", "label-smoothing", 1.0, False, 1.0, 0.0, 0.02, False, "loss", (),
          (0.0, 0.3), False),
]}
OPTIMIZERS = ("sgd", "adamw")
BOUNDS = {name: kind.bounds for name, kind in KINDS.items()}


def kinds_of(optimizer: str) -> tuple[str, ...]:
    """The update kinds ``optimizer`` reads, in registry order."""
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}; got {optimizer!r}")
    return tuple(k.name for k in KINDS.values() if optimizer in k.optimizers)


def loss_kinds() -> tuple[str, ...]:
    """The kinds the training loss reads (opt-in: present when a config names them)."""
    return tuple(k.name for k in KINDS.values() if k.term == "loss")


def kind_of(key: str) -> str | None:
    """The kind a schedule key belongs to (``lr_3`` and ``lr``: ``"lr"``), None for other keys."""
    stem, _, index = key.rpartition("_")
    return key if key in KINDS else stem if stem in KINDS and index.isdigit() else None


def entries(kind: str, n_windows: int, per_layer: bool, n_layers: int) -> int:
    """How many entries (config keys ``<kind>_i``) a schedule of ``n_windows`` windows has."""
    return n_windows * (n_layers if per_layer and KINDS[kind].per_layer else 1)


def keys(kind: str, n_entries: int) -> list[str]:
    """The config keys of a schedule with ``n_entries`` entries: ``<kind>_0 .. <kind>_{n-1}``."""
    return [f"{kind}_{i}" for i in range(n_entries)]
