"""Outer optimisers: turn hypergradients into new hyperparameters, within their valid ranges.

``SignDescent`` is FDS's update (Micaelli & Storkey 2021, section 4): every entry moves by its own
step size against the *sign* of its hypergradient, and the step size is halved whenever that sign
flips between outer steps, so an entry can travel at most ``outer steps x initial step size``.
``ClippedAdam`` and ``ClippedSGD`` apply Adam / SGD to hypergradients clipped to a maximum norm
per hyperparameter. All three skip (and report) an update whose hypergradients are not finite,
and clamp the result into ``bounds`` (default: each kind's ``bounds`` in ``kinds.KINDS``: lr >= 0,
0 <= momentum, beta1 <= 0.999, weight decay >= 0, L2 >= 0, 0 <= label smoothing <= 1). ``shrink`` scales chosen entries' moves from then on (FDS's
safeguard backtracks with it, ``safeguard.py``).

Example::

    import torch
    from tune_ext.hypergrad.outer import SignDescent
    opt = SignDescent({"lr": 0.1})
    hp, info = opt.step({"lr": torch.tensor([0.0, 0.2])}, {"lr": torch.tensor([-1.0, 2.0])})
    hp["lr"]  # tensor([0.1000, 0.1000])
"""
from __future__ import annotations

import math

import torch

from tune_ext.hypergrad.kinds import BOUNDS  # the kinds registry's bounds
from tune_ext.validate import non_negative


def clamp(hparams: dict, bounds: dict = BOUNDS) -> dict:
    """Each hyperparameter clipped into ``bounds[name]`` (names without bounds are left alone)."""
    out = {}
    for n, h in hparams.items():
        lo, hi = bounds.get(n, (-math.inf, math.inf))
        out[n] = h.clamp(min=lo, max=hi)
    return out


def nonfinite(hypergrads: dict) -> list[str]:
    """Names whose hypergradient holds a NaN or an infinity."""
    return [n for n, g in hypergrads.items() if not bool(torch.isfinite(g).all())]


class OuterOptimizer:
    """Shared bookkeeping: validation of step sizes, finiteness check, clamping, state."""

    def __init__(self, step_sizes: dict, bounds: dict | None = None):
        if not step_sizes:
            raise ValueError("step_sizes must give an outer step size per hyperparameter, e.g. {'lr': 0.1}")
        for n, s in step_sizes.items():
            non_negative(f"step_sizes[{n!r}]", s)
        self.step_sizes = {n: float(s) for n, s in step_sizes.items()}
        self.bounds = dict(BOUNDS if bounds is None else bounds)
        self.state: dict = {}
        self.skipped = 0

    def step(self, hparams: dict, hypergrads: dict) -> tuple[dict, dict]:
        """New hyperparameters and ``{"skipped": bool, "nonfinite": [names]}``.

        Hyperparameters without a step size stay fixed; an update with any non-finite
        hypergradient is skipped entirely (no state changes either).
        """
        unknown = set(self.step_sizes) - set(hparams)
        if unknown:
            raise ValueError(f"step_sizes name hyperparameters that are not in hparams: {sorted(unknown)}")
        bad = nonfinite({n: hypergrads[n] for n in self.step_sizes})
        if bad:
            self.skipped += 1
            return dict(hparams), {"skipped": True, "nonfinite": bad}
        new = dict(hparams)
        for n in self.step_sizes:
            h = hparams[n].detach()
            moved = self._move(n, h, hypergrads[n].detach().to(h.dtype))
            scale = self.state.get(n, {}).get("scale")
            new[n] = moved if scale is None else h + scale.to(h.dtype) * (moved - h)
        return clamp(new, self.bounds), {"skipped": False, "nonfinite": []}

    def shrink(self, entries: dict, factor: float) -> None:
        """Multiply the step size of some entries by ``factor`` from now on (a backtrack).

        entries: ``{name: bool tensor shaped like hparams[name]}``, True where the step shrinks;
        names without a step size are ignored. The factor applies to whatever the update would
        move, so it composes with sign descent's halving and with Adam's and SGD's state.
        """
        if not 0 < factor < 1:
            raise ValueError(f"factor must be in (0, 1), got {factor}")
        for n, mask in entries.items():
            if n not in self.step_sizes or not bool(mask.any()):
                continue
            st = self.state.setdefault(n, {})
            scale = st.get("scale", torch.ones(mask.shape, dtype=torch.float64, device=mask.device))
            st["scale"] = torch.where(mask, scale * factor, scale)

    def _move(self, name, h, g):
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {"state": {k: dict(v) for k, v in self.state.items()}, "skipped": self.skipped}

    def load_state_dict(self, state: dict) -> None:
        self.state = {k: dict(v) for k, v in state["state"].items()}
        self.skipped = state["skipped"]


class SignDescent(OuterOptimizer):
    """FDS: ``h -= step * sign(hypergradient)``, ``step`` halved per entry when its sign flips.

    step_sizes: initial step size per hyperparameter name, e.g. ``{"lr": 0.05, "momentum": 0.1}``.
    A zero hypergradient moves nothing and is not a flip.
    """

    def _move(self, name, h, g):
        st = self.state.setdefault(name, {})
        step = st.get("step", torch.full_like(h, self.step_sizes[name]))
        prev = st.get("sign", torch.zeros_like(h))
        sign = torch.sign(g)
        step = torch.where(sign * prev < 0, step / 2, step)
        st["step"], st["sign"] = step, torch.where(sign != 0, sign, prev)
        return h - step * sign


def _clip(g, max_norm):
    if max_norm is None:
        return g
    norm = g.norm()
    return g * (max_norm / norm) if norm > max_norm else g


class ClippedSGD(OuterOptimizer):
    """SGD (optionally with momentum) on hypergradients clipped to norm ``clip`` per name.

    ``clip=None`` applies the raw hypergradient: that is Baydin et al.'s hypergradient descent.
    """

    def __init__(self, step_sizes: dict, clip: float | None = 1.0, momentum: float = 0.0,
                 bounds: dict | None = None):
        super().__init__(step_sizes, bounds)
        if clip is not None and not clip > 0:
            raise ValueError(f"clip must be > 0 or None, got {clip}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.clip, self.momentum = clip, momentum

    def _move(self, name, h, g):
        g = _clip(g, self.clip)
        st = self.state.setdefault(name, {})
        buf = st.get("buf", torch.zeros_like(h)) * self.momentum + g
        st["buf"] = buf
        return h - self.step_sizes[name] * buf


class ClippedAdam(OuterOptimizer):
    """Adam (Kingma & Ba 2015) on hypergradients clipped to norm ``clip`` per name."""

    def __init__(self, step_sizes: dict, clip: float | None = 1.0, betas=(0.9, 0.999),
                 eps: float = 1e-8, bounds: dict | None = None):
        super().__init__(step_sizes, bounds)
        if clip is not None and not clip > 0:
            raise ValueError(f"clip must be > 0 or None, got {clip}")
        if not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"betas must be in [0, 1), got {betas}")
        self.clip, self.betas, self.eps = clip, tuple(betas), eps

    def _move(self, name, h, g):
        g = _clip(g, self.clip)
        b1, b2 = self.betas
        st = self.state.setdefault(name, {})
        t = st.get("t", 0) + 1
        m = st.get("m", torch.zeros_like(h)) * b1 + (1 - b1) * g
        v = st.get("v", torch.zeros_like(h)) * b2 + (1 - b2) * g * g
        st.update(t=t, m=m, v=v)
        mhat, vhat = m / (1 - b1 ** t), v / (1 - b2 ** t)
        return h - self.step_sizes[name] * mhat / (vhat.sqrt() + self.eps)


OPTIMIZERS = {"sign": SignDescent, "sgd": ClippedSGD, "adam": ClippedAdam}


def make_outer(name: str, step_sizes: dict, **kwargs) -> OuterOptimizer:
    """An outer optimiser by name: ``"sign"`` (FDS), ``"sgd"`` or ``"adam"``."""
    if name not in OPTIMIZERS:
        raise ValueError(f"outer optimiser must be one of {', '.join(OPTIMIZERS)}; got {name!r}")
    return OPTIMIZERS[name](step_sizes, **kwargs)
