"""Validation of trainable configs: every error names the key and what is allowed."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from trainables.data import DATASETS
from trainables.models import MODELS
from trainables.registry import did_you_mean

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
        hint = did_you_mean(key, known)
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


@dataclass(frozen=True)
class SGDSchedule:
    """An SGD schedule: learning rates over equal windows of the run, momentum, weight decay."""

    lrs: tuple[float, ...]
    momentum: float
    weight_decay: float

    @classmethod
    def from_config(cls, config: dict) -> "SGDSchedule":
        """Read ``lr_0 .. lr_{k-1}``, ``momentum`` and ``weight_decay`` (torch.optim.SGD meanings).

        Every ``lr_i`` up to the highest index given must be present; ``momentum`` defaults to 0
        and ``weight_decay`` to 0.
        """
        indices = sorted(int(k[3:]) for k in config if k.startswith("lr_") and k[3:].isdigit())
        if not indices:
            raise ValueError("config is missing 'lr_0': give the learning rate of each window as "
                             "lr_0, lr_1, ..., lr_{k-1}")
        missing = sorted(set(range(indices[-1] + 1)) - set(indices))
        if missing:
            raise ValueError(f"config is missing 'lr_{missing[0]}': learning-rate windows must be "
                             f"numbered lr_0 .. lr_{indices[-1]} without gaps")
        lrs = tuple(non_negative(config, f"lr_{i}") for i in range(indices[-1] + 1))
        momentum = non_negative(config, "momentum", 0.0)
        if momentum >= 1.0:
            raise ValueError(f"config['momentum'] must be in [0, 1), got {momentum}")
        return cls(lrs, momentum, non_negative(config, "weight_decay", 0.0))


def positive_int(config: dict, key: str, default=None) -> int:
    value = config.get(key, default)
    if value is None:
        raise ValueError(f"config is missing {key!r} (a positive int)")
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"config[{key!r}] must be a positive int, got {value!r}")
    return int(value)


def non_negative(config: dict, key: str, default=None) -> float:
    value = config.get(key, default)
    if value is None:
        raise ValueError(f"config is missing {key!r} (a number >= 0)")
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"config[{key!r}] must be a number >= 0, got {value!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"config[{key!r}] must be a finite number >= 0, got {value}")
    return value
