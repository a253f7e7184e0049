"""The state a differentiated training run carries from one step to the next.

Forward mode carries, next to the weights and the optimiser's state (SGD's velocity, Adam's
moments), their derivatives with respect to every hyperparameter entry: one tangent per entry,
stacked on a leading dimension of size K. ``CarriedState`` holds all of it, plus the running
statistics (buffers, not differentiated) and the number of steps taken.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch.utils._pytree import tree_map


@dataclass
class CarriedState:
    """weights, velocity (any pytree of tensors: the optimiser's state), their tangents, step.

    tweights / tvelocity: like weights / velocity with a leading entry dimension K.
    buffers: running statistics (BatchNorm), advanced in place, never differentiated.
    step: steps taken so far (step t of a run reads window ``floor(n * t / T)`` of a schedule).
    """

    weights: dict
    velocity: object
    tweights: dict
    tvelocity: object
    buffers: dict
    step: int = 0

    @classmethod
    def zeros(cls, weights: dict, velocity, buffers: dict, n_entries: int) -> "CarriedState":
        """A state at step 0 whose tangents are all zero (nothing has influenced it yet)."""
        return cls(weights, velocity, _zero_tangents(weights, n_entries),
                   _zero_tangents(velocity, n_entries), buffers, 0)

    @property
    def n_entries(self) -> int:
        return next(iter(self.tweights.values())).shape[0]

    def reset_tangents(self) -> "CarriedState":
        """The same point with zero tangents: influence from here on only (HD, OHO's reset)."""
        n = self.n_entries
        return replace(self, tweights=_zero_tangents(self.weights, n),
                       tvelocity=_zero_tangents(self.velocity, n))

    def state_dict(self) -> dict:
        return {"weights": self.weights, "velocity": self.velocity, "tweights": self.tweights,
                "tvelocity": self.tvelocity, "buffers": self.buffers, "step": self.step}

    @classmethod
    def from_state_dict(cls, state: dict) -> "CarriedState":
        return cls(**state)


def _zero_tangents(tree, n: int):
    return tree_map(lambda x: x.new_zeros((n, *x.shape)), tree)
