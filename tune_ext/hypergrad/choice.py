"""Which exact path computes the hypergradients: the cheapest one whose memory fits a budget.

All three paths give the same numbers; they differ in cost and memory:

- ``"reverse"``: back-propagation through the recorded run. Cost ~ ``COST["reverse"]`` plain runs
  whatever the number of entries K; memory ~ T x (one step's graph).
- ``"checkpointed"``: reverse with the state stored every k steps and one segment recomputed at a
  time. Cost ~ one plain sweep more than reverse; memory ~ ceil(T/k) states + k steps' graphs,
  smallest at k = sqrt(T x state / graph).
- ``"forward"``: tangents carried forward. Cost grows with K (``FORWARD_COST``); memory is flat in
  T but grows with K (K tangents of the state, K tangents of a step's intermediate values).

The costs are in plain training runs of the same horizon, measured on the mnist1d CNN on a CPU
(``scripts/bench_hypergrad.py``, docs/gradient-hpo.md); they only rank the paths. The memory
estimates come from one measured step (``reverse.step_graph_bytes``) times ``SAFETY``.

A budget below every path's estimate is an error rather than a silent choice: forward mode's
memory does not grow with T, but it does grow with K, and no path is known to fit.

Example::

    from tune_ext.hypergrad.choice import choose_mode
    c = choose_mode(entries=30, steps=560, step_bytes=2_000_000, state_bytes=60_000,
                    budget=8e9)
    c.mode  # 'reverse'
    choose_mode(entries=30, steps=560, step_bytes=2_000_000, state_bytes=60_000,
                budget=1e8).mode  # 'checkpointed'
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import torch

MODES = ("auto", "forward", "reverse", "checkpointed")
PATHS = ("reverse", "checkpointed", "forward")  # the exact paths; ties go to the earlier one
COST = {"reverse": 3.1, "checkpointed": 4.0}  # plain runs of the same horizon
SAFETY = 1.25  # allocator slack and what a step holds beyond its saved tensors


def forward_cost(entries: int) -> float:
    """Forward mode's cost in plain runs: the primal step, plus about two steps per entry."""
    return 3.0 + 2.0 * entries


@dataclass(frozen=True)
class ModeChoice:
    """The path ``choose_mode`` picked, with what it compared (bytes, plain runs)."""

    mode: str
    segment: int | None  # steps per segment when mode is "checkpointed"
    budget: float
    memory: dict = field(default_factory=dict)  # {path: estimated bytes}
    cost: dict = field(default_factory=dict)  # {path: estimated plain runs}


def optimal_segment(steps: int, step_bytes: float, state_bytes: float) -> int:
    """k minimising ceil(T/k) x state + k x step graph: about sqrt(T x state / graph)."""
    k = math.sqrt(steps * max(state_bytes, 1) / max(step_bytes, 1))
    best = min({max(1, math.floor(k)), max(1, math.ceil(k))},
               key=lambda s: checkpointed_bytes(steps, s, step_bytes, state_bytes))
    return min(best, steps)


def checkpointed_bytes(steps: int, segment: int, step_bytes: float, state_bytes: float) -> float:
    """Stored states, one segment's graph and the live state, times ``SAFETY``."""
    return SAFETY * (math.ceil(steps / segment) * state_bytes + segment * step_bytes + 2 * state_bytes)


def estimates(entries: int, steps: int, step_bytes: float, state_bytes: float,
              segment: int | None = None) -> tuple[dict, dict, int]:
    """({path: bytes}, {path: plain runs}, the checkpointed segment used) for one inner run."""
    k = optimal_segment(steps, step_bytes, state_bytes) if segment is None else segment
    memory = {"reverse": SAFETY * (steps * step_bytes + 2 * state_bytes),
              "checkpointed": checkpointed_bytes(steps, k, step_bytes, state_bytes),
              "forward": SAFETY * (entries + 1) * (step_bytes + 2 * state_bytes)}
    return memory, {**COST, "forward": forward_cost(entries)}, k


def choose_mode(entries: int, steps: int, step_bytes: float, state_bytes: float, budget: float,
                segment: int | None = None) -> ModeChoice:
    """The cheapest exact path whose estimated memory fits ``budget`` bytes.

    Args:
        entries: K, hyperparameter entries (all windows, all layers).
        steps: T, training steps of the inner run.
        step_bytes: what one recorded step keeps alive (``reverse.step_graph_bytes``).
        state_bytes: weights + velocity + buffers.
        budget: bytes the run may use (``default_memory_budget``).
        segment: the checkpointed path's k; None picks the one with the least memory.
    """
    if not budget > 0:
        raise ValueError(f"memory_budget must be > 0 bytes, got {budget!r}")
    memory, cost, k = estimates(entries, steps, step_bytes, state_bytes, segment)
    fits = [p for p in sorted(PATHS, key=lambda p: (cost[p], PATHS.index(p))) if memory[p] <= budget]
    if not fits:
        smallest = min(memory, key=memory.get)
        raise ValueError(
            f"memory_budget {budget / 2**20:.1f} MiB is below every exact path's estimate (smallest: "
            f"{smallest}, {memory[smallest] / 2**20:.1f} MiB; reverse {memory['reverse'] / 2**20:.1f}, "
            f"checkpointed {memory['checkpointed'] / 2**20:.1f}, forward "
            f"{memory['forward'] / 2**20:.1f} MiB): raise memory_budget, shorten the inner run or "
            f"use fewer hyperparameter entries")
    mode = fits[0]
    return ModeChoice(mode, k if mode == "checkpointed" else None, budget, memory, cost)


DEFAULT_FRACTION = 0.5  # of the free memory: trials side by side and their data share the rest


def default_memory_budget(device: torch.device | str = "cpu") -> float:
    """``DEFAULT_FRACTION`` of the free memory on ``device``, in bytes."""
    return DEFAULT_FRACTION * free_memory(device)


def free_memory(device: torch.device | str = "cpu") -> float:
    """Free memory on ``device`` in bytes: ``torch.cuda.mem_get_info`` on a GPU, else the
    system's available memory (``MemAvailable`` in /proc/meminfo, or ``os.sysconf``)."""
    device = torch.device(device)
    if device.type == "cuda":
        return float(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        raise RuntimeError("cannot read the available memory on this system: pass memory_budget "
                           "(bytes) explicitly") from None
