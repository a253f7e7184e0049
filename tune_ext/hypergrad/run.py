"""One differentiated inner run by any exact path: forward, reverse, checkpointed, or the choice.

``inner_run`` is the single entry point the trainables call; ``hypergradient`` is its result's
hypergradients. Every mode gives the same numbers (``choice.py`` says which costs what).

Example::

    import torch
    from tune_ext.hypergrad import inner_run
    model = torch.nn.Linear(4, 3)
    batches = [(torch.randn(8, 4), torch.randint(0, 3, (8,))) for _ in range(10)]
    run = inner_run(model, torch.nn.functional.cross_entropy, batches, batches[0],
                    {"lr": torch.tensor([0.1, 0.05]), "momentum": torch.tensor([0.9])})
    run.mode, run.hypergrads["lr"].shape  # ('reverse', torch.Size([2]))
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from tune_ext.hypergrad.choice import MODES, choose_mode, default_memory_budget
from tune_ext.hypergrad.engine import DERIVATIVES, InnerRun, as_hparams, check_batches, forward_run
from tune_ext.hypergrad.reverse import checkpointed_run, reverse_run, step_graph_bytes
from tune_ext.hypergrad.updates import Update, sgd_momentum
from tune_ext.validate import one_of


def inner_run(model, loss_fn, train_batches: Sequence, val_batch, hparams: dict, *,
              mode: str = "auto", memory_budget: float | None = None, segment: int | None = None,
              update: Update = sgd_momentum, train_loss=None, compile: bool = False,
              batched: bool = True, derivative: str = "jvp",
              watch: Callable[[int, float], bool] | None = None,
              watch_every: int | None = None) -> InnerRun:
    """Train from ``model``'s parameters and return the run's end with its exact hypergradients.

    Args:
        mode: ``"auto"`` (the cheapest path that fits ``memory_budget``, from one measured step:
            ``choice.choose_mode``), ``"forward"`` (``engine.forward_run``), ``"reverse"``
            (``reverse.reverse_run``) or ``"checkpointed"`` (``reverse.checkpointed_run``).
            ``InnerRun.mode`` says which path ran.
        memory_budget: bytes an ``"auto"`` run may use [half the free memory of the model's
            device: ``choice.default_memory_budget``].
        segment: steps per checkpointed segment [ceil(sqrt(T)); under "auto", the k with the
            least memory].
        update, train_loss, compile, watch, watch_every: as ``engine.forward_run``, for every path.
        batched, derivative: forward mode's (``engine.Trainer``); the reverse paths have none.
    """
    one_of("mode", mode, MODES)
    one_of("derivative", derivative, DERIVATIVES)
    if memory_budget is not None and mode != "auto":
        raise ValueError(f"memory_budget is for mode='auto' (the choice of a path); got mode={mode!r}")
    if segment is not None and mode not in ("auto", "checkpointed"):
        raise ValueError(f"segment is for mode='checkpointed' or 'auto'; got mode={mode!r}")
    if segment is not None and (isinstance(segment, bool) or not isinstance(segment, int) or segment < 1):
        raise ValueError(f"segment must be a positive int (steps per checkpointed segment), got {segment!r}")
    common = dict(update=update, train_loss=train_loss, compile=compile, watch=watch,
                  watch_every=watch_every)
    if mode == "auto":
        like = next(model.parameters())
        budget = default_memory_budget(like.device) if memory_budget is None else memory_budget
        total = check_batches(train_batches)
        hp = as_hparams(hparams, like)
        step_bytes, state_bytes = step_graph_bytes(model, loss_fn, train_batches[0], hp,
                                                   update=update, train_loss=train_loss)
        choice = choose_mode(sum(h.numel() for h in hp.values()), total, step_bytes, state_bytes,
                             budget, segment)
        mode, segment = choice.mode, choice.segment
    if mode == "forward":
        return forward_run(model, loss_fn, train_batches, val_batch, hparams, batched=batched,
                           derivative=derivative, **common)
    if mode == "reverse":
        return reverse_run(model, loss_fn, train_batches, val_batch, hparams, **common)
    return checkpointed_run(model, loss_fn, train_batches, val_batch, hparams, segment=segment, **common)


def hypergradient(model, loss_fn, train_batches: Sequence, val_batch, hparams: dict,
                  mode: str = "auto", **kwargs) -> dict[str, torch.Tensor]:
    """d(validation loss after training)/d(hyperparameter), as ``{name: tensor}``: exact
    hypergradients with hyperparameter sharing (Micaelli & Storkey 2021, "Gradient-based
    Hyperparameter Optimization Over Long Horizons", NeurIPS), by any exact path.

    Args:
        model: starting point of training (its parameters and buffers are not modified).
        loss_fn: ``loss_fn(output, target)``, the validation loss (and the training loss unless
            ``train_loss`` is given).
        train_batches: a sequence of T ``(inputs, targets)``, the unrolled training run.
        val_batch: one ``(inputs, targets)``, evaluated in ``eval()`` mode after training.
        hparams: ``{"lr": t[n_lr], "momentum": t[n_mom], "weight_decay": t[n_wd]}`` schedules; step
            t uses entry ``floor(n * t / T)``. With a custom ``update`` any names and shapes it reads.
        mode: ``"auto"`` [default], ``"forward"``, ``"reverse"`` or ``"checkpointed"`` (see
            ``inner_run``; its ``InnerRun.mode`` says which path "auto" took).
        kwargs: ``inner_run``'s: ``update`` (``updates.py``: ``sgd_momentum``, ``AdamW()``, per
            layer), ``train_loss`` (``(output, target, weights, hp) -> scalar``, ``losses.py``),
            ``memory_budget``, ``segment``, ``compile``, ``batched``, ``derivative``.
    """
    return inner_run(model, loss_fn, train_batches, val_batch, hparams, mode=mode, **kwargs).hypergrads
