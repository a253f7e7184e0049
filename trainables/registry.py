"""Named entries (datasets, models) that a config can ask for, with suggestions for typos.

The built-in datasets and models are entries of these registries, and a user's own are added the
same way (``register_dataset`` / ``register_model``); a trainable resolves ``config["dataset"]``
and ``config["model"]`` through them and nothing else. Names registered at import time of a module
that Ray workers also import (e.g. the module that defines the loader) are visible in every trial;
for one-off objects pass them to the trainable with ``tune.with_parameters`` instead.
"""
from __future__ import annotations

from typing import Callable

from tune_ext.validate import did_you_mean


class Registry(dict):
    """A dict of name -> factory whose lookups fail with the valid names and the closest one.

    kind: what the entries are ("dataset", "model"), used in error messages.
    """

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def register(self, name: str, factory: Callable) -> Callable:
        """Add ``factory`` under ``name`` (a name can be registered once); returns the factory."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} name must be a non-empty string, got {name!r}")
        if not callable(factory):
            raise ValueError(f"the {self.kind} {name!r} must be registered with a callable, got {factory!r}")
        if name in self and self[name] is not factory:
            raise ValueError(f"{self.kind} {name!r} is already registered; pick another name")
        self[name] = factory
        return factory

    def lookup(self, name: str, key: str | None = None) -> Callable:
        """The factory of ``name``; a ValueError naming ``key`` (or the kind) and the valid names."""
        if name not in self:
            where = f"config[{key!r}]" if key else self.kind
            raise ValueError(f"{where} must be one of {', '.join(self)}; got {name!r}"
                             f"{did_you_mean(name, self)}")
        return self[name]
