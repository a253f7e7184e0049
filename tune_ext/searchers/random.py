"""RandomSearch: seeded sampling with exactly Ray Tune's distributions — the baseline.

Bergstra & Bengio, "Random Search for Hyper-Parameter Optimization", JMLR 2012.
"""
from __future__ import annotations

import numpy as np

from tune_ext.searchers._base import SpaceSearcher


class RandomSearch(SpaceSearcher):
    """Draws every parameter independently with Ray's own sampling rule (log scales, quantisation,
    exclusive ``randint`` upper bound) from one ``numpy.random.Generator(seed)``; keeps every outcome
    in ``observations`` so a restored run has the same history and continues the same random stream.

    Bergstra & Bengio 2012 (JMLR), the baseline every comparison needs.

    Args:
        space: the search space (Ray Tune domains); or leave None and give ``config=`` /
            ``param_space=`` to Ray Tune.
        metric, mode: what to optimise, "min" or "max"; or give them to ``tune.run`` /
            ``tune.TuneConfig``.
        points_to_evaluate: configurations to try first, as Ray's searchers take them.
        seed: the seed of every random draw (same seed, same suggestions).

    Example::

        from ray import tune
        from tune_ext.searchers import RandomSearch

        def f(config):
            tune.report({"loss": (config["x"] - 2) ** 2})

        tune.run(f, config={"x": tune.uniform(-5, 5)}, num_samples=10,
                 search_alg=RandomSearch(metric="loss", mode="min", seed=0))
    """

    def _setup(self) -> None:
        self._rng = np.random.default_rng(self._seed)
        self.observations: list[dict] = []

    def _propose(self, trial_id: str, fixed: dict) -> dict:
        sample = self._space.sample(self._rng)  # drawn even for fixed points: one stream per trial
        return {**sample, **fixed}

    def _record(self, trial_id, entry, state, step, value) -> None:
        self.observations.append({"params": entry["params"], "state": state, "step": step,
                                  "value": value})
