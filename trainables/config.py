"""Validation of trainable configs: every error names the key and what is allowed."""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from trainables.data import DATASETS
from trainables.models import MODELS
from trainables.registry import did_you_mean
from tune_ext import validate
from tune_ext.hypergrad.kinds import KINDS

TASK_KEYS = ("dataset", "model", "batch_size", "seed", "data_root", "model_kwargs", "dataset_kwargs")


def refuse_unknown_keys(config: dict, known, owner: str, patterns=(), aliases=None) -> None:
    """ValueError for the first key of ``config`` that ``owner`` does not read, with the closest.

    known: the valid keys; patterns: regexes of valid key families (``lr_\\d+``); aliases: other
    names people use for a key (``{"learning_rate": "lr_0"}``), suggested when no key is close.
    """
    aliases = aliases or {}
    for key in config:
        if key in known or any(re.fullmatch(p, str(key)) for p in patterns):
            continue
        numbered = re.fullmatch(r".+_(\d+)", str(key))  # lr_3: also close to known kinds + _3
        hint = did_you_mean(key, [*known, *([f"{k}_{numbered[1]}" for k in known] if numbered else [])])
        if not hint and key in aliases:
            hint = f"; did you mean {aliases[key]!r}?"
        raise ValueError(f"unknown config key {key!r} for {owner}{hint} (valid keys: "
                         f"{', '.join(sorted(known))}{''.join(', ' + readable(p) for p in patterns)})")


def readable(pattern: str) -> str:
    """A key family's regex as a person reads it: ``lr_\\d+`` -> ``lr_0, lr_1, ...``."""
    prefix = pattern[:-3] if pattern.endswith(r"\d+") else None
    if prefix is not None and re.fullmatch(r"\w*", prefix):
        return f"{prefix}0, {prefix}1, ..."
    return pattern


@dataclass(frozen=True)
class TaskConfig:
    """What every trainable shares: the data, the model, the batch size and the seed.

    With a user's own data (``data=``) or model (``model_fn=``) the config must not also name a
    built-in one: ``dataset`` / ``model`` are then None.
    """

    dataset: str = "digits"
    model: str = "mlp"
    batch_size: int = 64
    seed: int = 0
    data_root: str | None = None
    model_kwargs: tuple = ()  # sorted (key, value) pairs, e.g. (("activation", "tanh"),)
    dataset_kwargs: tuple = ()

    @classmethod
    def from_config(cls, config: dict, *, own_data: bool = False, own_model: bool = False) -> "TaskConfig":
        dataset = model = None
        if own_data:
            _not_both(config, "dataset", "data", ("dataset_kwargs", "data_root"))
        else:
            dataset = config.get("dataset", cls.dataset)
            DATASETS.lookup(dataset, "dataset")
        if own_model:
            _not_both(config, "model", "model_fn", ())
        else:
            model = config.get("model", cls.model)
            MODELS.lookup(model, "model")
        batch_size = positive_int(config, "batch_size", cls.batch_size)
        seed = config.get("seed", cls.seed)
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"config['seed'] must be a non-negative int, got {seed!r}")
        return cls(dataset, model, batch_size, seed, config.get("data_root"),
                   tuple(sorted(dict(config.get("model_kwargs") or {}).items())),
                   tuple(sorted(dict(config.get("dataset_kwargs") or {}).items())))


def _not_both(config, key, argument, related):
    for k in (key, *related):
        if k in config:
            raise ValueError(f"config[{k!r}] is for a built-in {key}, but {argument}= gives your own: "
                             f"drop one of them")


def schedule_patterns(kinds) -> tuple[str, ...]:
    """Regexes of the schedule keys of ``kinds`` (``lr_0``, ``momentum_3``): for ``refuse_unknown_keys``."""
    return tuple(rf"{k}_\d+" for k in kinds)


@dataclass(frozen=True)
class Schedule:
    """Hyperparameter schedules in the keys both trainables share (``tune_ext.hypergrad.kinds``).

    ``values[kind]`` holds the entries ``<kind>_0 .. <kind>_{n-1}`` in window-major order (per
    layer: entry i is window i // L, layer i % L), or one value for the whole run when the config
    gives the bare ``<kind>`` (then ``kind in whole``). ``owner`` names the config in errors.
    """

    values: dict
    whole: frozenset
    owner: str = "config"

    @classmethod
    def from_config(cls, config: dict, kinds, owner: str = "config",
                    required: tuple = ()) -> "Schedule":
        """Read the schedule keys of ``kinds`` from ``config``; each value checked against its kind.

        required: kinds that must be given (``lr``); the others are absent when not named.
        """
        values, whole = {}, set()
        for kind in kinds:
            spec = KINDS[kind]
            indices = sorted(int(k[len(kind) + 1:]) for k in config
                             if isinstance(k, str) and re.fullmatch(rf"{kind}_\d+", k))
            if kind in config:
                if indices:
                    raise ValueError(f"{owner} gives both {kind!r} (one value for the whole run) and "
                                     f"'{kind}_{indices[0]}' (one per entry): drop one of them")
                values[kind] = (spec.check(config[kind], kind),)
                whole.add(kind)
                continue
            if not indices:
                if kind in required:
                    raise ValueError(f"{owner} is missing '{kind}_0': give the {spec.label} of each "
                                     f"window as {kind}_0, {kind}_1, ..., {kind}_{{k-1}} (or one "
                                     f"{kind!r} for the whole run)")
                continue
            missing = sorted(set(range(indices[-1] + 1)) - set(indices))
            if missing:
                raise ValueError(f"{owner} is missing '{kind}_{missing[0]}': {spec.label} windows "
                                 f"must be numbered {kind}_0 .. {kind}_{indices[-1]} without gaps")
            values[kind] = tuple(spec.check(config[f"{kind}_{i}"], f"{kind}_{i}")
                                 for i in range(indices[-1] + 1))
        return cls(values, frozenset(whole), owner)

    def windows(self, kind: str, n_layers: int = 1) -> int | None:
        """The windows of ``kind``'s schedule given ``n_layers`` values per window (1 unless the
        kind is per layer), or None for one value for the whole run (any number of windows)."""
        if kind in self.whole:
            return None
        n = len(self.values[kind])
        if n % n_layers:
            raise ValueError(f"{self.owner} has {n} {kind} entries ({kind}_0 .. {kind}_{n - 1}), "
                             f"not a multiple of the model's {n_layers} layers: a per-layer "
                             f"{KINDS[kind].label} schedule has one entry per layer per window, "
                             f"window-major")
        return n // n_layers

    def tensor(self, kind: str, n_windows: int, n_layers: int | None, like):
        """``kind``'s schedule as a tensor of shape ``(n_windows,)`` or ``(n_windows, n_layers)``
        (``n_layers`` None: not per layer), of ``like``'s dtype and device."""
        shape = (n_windows,) + (() if n_layers is None else (n_layers,))
        values = torch.tensor(self.values[kind], dtype=like.dtype, device=like.device)
        if kind in self.whole:
            return values.expand(shape).clone()
        self.check_windows(kind, n_windows, n_layers or 1)
        return values.reshape(shape).clone()

    def check_windows(self, kind: str, n_windows: int | None, n_layers: int = 1) -> None:
        """ValueError unless ``kind``'s schedule has ``n_windows`` windows (None, or a bare key:
        any number)."""
        given = self.windows(kind, n_layers)
        if None not in (given, n_windows) and given != n_windows:
            raise ValueError(f"{self.owner} has {given} {KINDS[kind].label} windows ({kind}_0 .. "
                             f"{kind}_{len(self.values[kind]) - 1}) but config['n_{kind}_windows'] "
                             f"is {n_windows}")


def choice(config: dict, key: str, choices, default):
    """``config[key]`` (default ``default``), which must be one of ``choices``."""
    return validate.one_of(f"config[{key!r}]", config.get(key, default), choices)


def flag(config: dict, key: str, default: bool) -> bool:
    """``config[key]`` (default ``default``), which must be True or False."""
    return validate.flag(f"config[{key!r}]", config.get(key, default))


def positive_int(config: dict, key: str, default=None) -> int:
    value = config.get(key, default)
    if value is None:
        raise ValueError(f"config is missing {key!r} (a positive int)")
    return validate.positive_int(f"config[{key!r}]", value)


def non_negative(config: dict, key: str, default=None) -> float:
    value = config.get(key, default)
    if value is None:
        raise ValueError(f"config is missing {key!r} (a number >= 0)")
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"config[{key!r}] must be a number >= 0, got {value!r}") from None
    return validate.non_negative(f"config[{key!r}]", value)
