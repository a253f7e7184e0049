"""Ray Tune searchers: TPE and CMA-ES (optuna), BOHB (hpbandster's KDE), random search.

All take ``(space=None, metric=None, mode=None, points_to_evaluate=None, seed=None, ...)`` like
Ray's own, suggest any number of configurations concurrently, report plain Python values, and
save their state with the experiment as versioned plain data that a restore replays into the same
model (``tune_ext.searchers.state``).
"""
from tune_ext.searchers.bohb import BOHBSearch
from tune_ext.searchers.optuna import CMAESSearch, TPESearch
from tune_ext.searchers.random import RandomSearch
from tune_ext.searchers.space import SearchSpace

__all__ = ["BOHBSearch", "CMAESSearch", "RandomSearch", "SearchSpace", "TPESearch"]
