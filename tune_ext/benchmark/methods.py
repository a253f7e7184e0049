"""The method registry: each method is a searcher + scheduler + trainable (+ per-trial resources).

Every method is built for a task and a seed into the keyword arguments of ``tune.run``; the
harness adds the same budget, resources and callbacks to all of them. Imports are local to each
builder so that a method's dependencies load only when it runs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from tune_ext.benchmark.tasks import Task

# black-box methods run "unlimited" samples: the wall-clock budget is what ends them
UNLIMITED = 100_000


@dataclass(frozen=True)
class Method:
    name: str
    kind: str  # "black-box" or "gradient"
    family: str  # "full-budget", "multi-fidelity", "gradient", "hybrid" or "ray" (the plots' panels)
    description: str
    build: Callable[[Task, int], dict]

    def check(self, task: Task) -> None:
        """ValueError if this method cannot run on ``task`` (before anything starts)."""
        if self.kind == "gradient" and task.gradient_config is None:
            raise ValueError(f"method {self.name!r} learns an SGD schedule with FDSTrainable and "
                             f"needs a task with a gradient_config (the built-in tasks have one); "
                             f"task {task.name!r} has none")
        if self.family == "hybrid" and fds_starts(task) is None:
            raise ValueError(f"method {self.name!r} searches FDS's starting schedule in the task's "
                             f"space, which needs lr_0 .. lr_{{k-1}}, momentum and weight_decay "
                             f"(as sgd_task makes it); task {task.name!r} has no such space")


def check_trial_config(method: Method, task: Task) -> None:
    """ValueError, in the driver and before any trial starts, for a configuration that
    ``method``'s trainable would refuse in every trial (a misspelled key, a missing ``lr_0``, ...).

    Checks one configuration drawn from the method's space (fixed seed), with the trainable's own
    ``check_config`` (``SupervisedTrainable``, ``FDSTrainable``); a trainable without one (a
    function of your own, or a subclass with its own ``setup``) is not checked here. Inside Ray
    the same error would come back from every trial wrapped in Ray's errors; here it is one
    message naming the method.
    """
    import dataclasses

    import numpy as np
    from ray.tune.search.variant_generator import generate_variants

    own = dict(task.trainable_kwargs or {})
    # the bare trainable: with trainable_kwargs, runnable() would put them into Ray's object store
    kwargs = method.build(dataclasses.replace(task, trainable_kwargs=None), 0)
    trainable = kwargs["run_or_experiment"]
    owner = next((c for c in getattr(trainable, "__mro__", ()) if "check_config" in vars(c)), None)
    if owner is None or trainable.setup is not owner.setup:
        return   # not ours, or a subclass with its own setup (it may read keys ours does not)
    check = trainable.check_config
    _, spec = next(generate_variants({"config": kwargs.get("config") or {}},
                                     random_state=np.random.RandomState(0)))
    try:
        check(spec["config"], **{k: own[k] for k in ("model_fn", "data", "loss_fn") if k in own})
    except ValueError as exc:
        raise ValueError(f"method {method.name!r} on task {task.name!r}: {exc}") from None


def _black_box(search_alg=None, scheduler=None):
    def build(task: Task, seed: int) -> dict:
        return {"run_or_experiment": task.runnable(),
                "config": {**task.search_space(), "seed": seed},
                "search_alg": search_alg(seed) if search_alg else None,
                "scheduler": scheduler(task) if scheduler else None,
                "num_samples": UNLIMITED}
    return build


def gradient_trials(method: str, spread_starts: bool = True):
    """A gradient method's ``Method.build`` (``method``: "fds", "oho" or "hd"; scripts build
    variants with it): FDSTrainable trials with ``gradient_config``; with ``spread_starts``,
    consecutive and concurrent trials each start from their own point of the task's space
    (``fds_starts``: random search over the starting schedule, the paper's point first; for HD
    and OHO over one value of each kind, as the FDS paper's appendix C random-searches HD's
    initial values), else every trial starts from the paper's point and only the seeds differ."""
    def build(task: Task, seed: int) -> dict:
        from ray import tune

        from trainables import FDSTrainable

        config = {**gradient_config(task, method), "seed": tune.randint(0, 2**31 - 1)}
        starts = fds_starts(task, online=method != "fds") if spread_starts else None
        if starts is None:
            search_alg = _random_variants(seed)
        else:  # every trial from its own point of the space, the paper's first
            space, first = starts
            config = {**_without_inits(config), "start": space}
            search_alg = _ours_random(seed, points_to_evaluate=[{"start": first}])
        return {"run_or_experiment": task.runnable(FDSTrainable), "config": config,
                "search_alg": search_alg, "num_samples": UNLIMITED}
    return build


def _without_inits(config: dict) -> dict:
    return {k: v for k, v in config.items() if not k.endswith("_init")}


# the FDS paper's starting point (lr and weight decay 0, momentum 0.5); other kinds at their
# registry default; clipped into the task's search ranges
PAPER_START = {"lr": 0.0, "momentum": 0.5, "weight_decay": 0.0}


def fds_starts(task: Task, online: bool = False):
    """Where gradient trials start: the task's black-box schedule space (its keys of every
    hyperparameter kind, ``lr_0 ..``, ``momentum``, ..., as FDSTrainable's ``start``) and the FDS
    paper's starting point in it (lr and weight decay at the space's lower ends, about 0;
    momentum 0.5, clipped into its range). online: for HD and OHO, which learn one value of each
    kind (per layer with ``per_layer``), the space of the first window's keys. None when the
    task's space does not search lr, momentum and weight decay (its trials then all start at
    the paper's point)."""
    from ray.tune.search.sample import Domain

    from tune_ext.hypergrad.kinds import KINDS, kind_of

    schedule = {k: v for k, v in task.space.items() if kind_of(k) and isinstance(v, Domain)}
    kinds = {kind_of(k) for k in schedule}
    if not {"lr", "momentum", "weight_decay"} <= kinds:
        return None
    if online:
        keep = {}
        for kind in kinds:
            keys = [k for k in schedule if kind_of(k) == kind]
            windows = (task.gradient_config or {}).get(f"n_{kind}_windows", 1)
            keep.update({k: schedule[k] for k in keys[:max(1, len(keys) // windows)]})
        schedule = {k: v for k, v in schedule.items() if k in keep}
    first = {k: min(max(PAPER_START.get(kind_of(k), KINDS[kind_of(k)].init), v.lower), v.upper)
             for k, v in schedule.items() if hasattr(v, "lower")}
    return schedule, first


def _hybrid(search_alg):
    """A black-box searcher and our ASHA choose what gradients cannot — the task's
    ``extra_space`` (model width, batch size: non-differentiable) and FDS's starting schedule —
    while every trial learns its schedule with FDS (one outer step per ``training_iteration``)."""
    def build(task: Task, seed: int) -> dict:
        from tune_ext.schedulers import ASHAScheduler
        from trainables import FDSTrainable

        space, first = fds_starts(task)
        fds = gradient_config(task, "fds")
        max_t = hybrid_max_t(task)
        config = {**_without_inits(fds), "outer_steps": max_t, "start": space,
                  **(task.extra_space or {}), "seed": seed}
        return {"run_or_experiment": task.runnable(FDSTrainable), "config": config,
                "search_alg": search_alg(seed, points_to_evaluate=[{"start": first}]),
                "scheduler": ASHAScheduler(max_t=max_t, reduction_factor=3, variant="promotion"),
                "num_samples": UNLIMITED}
    return build


def hybrid_max_t(task: Task) -> int:
    """Outer steps of a hybrid trial: FDS's horizon ladder, then two more full-horizon steps
    (on mnist1d 6: ASHA's rung below max_t, with eta 3, falls after the 2nd outer step, so trials
    are stopped after the cheapest inner runs)."""
    return len(gradient_config(task, "fds")["inner_epochs"]) + 2


# the online methods' outer steps: plain SGD with a hyper-step per kind on the hypergradient
# clipped to norm ONLINE_CLIP per kind; measured by scripts/online_step_sizes.py from four starts
# (docs/gradient-hpo.md): the lr step in the range of Baydin et al. 2018 (HD) and Im, Savin & Cho
# 2021 (OHO); weight decay's raw hypergradient reaches norms of 1,000 from starts with large lr
# or momentum, where a step of 1e-4 unclipped drove it to 0.15-2e9 and the run to chance
ONLINE_STEPS = {"lr": 1e-4, "momentum": 1e-4, "weight_decay": 1e-5}   # HD's and OHO's
ONLINE_CLIP = 10.0


def gradient_config(task: Task, method: str) -> dict:
    """FDSTrainable config for ``task``, from lr = 0 and weight decay = 0 as in the FDS paper.

    "fds" learns the task's schedule (``n_<kind>_windows`` of every kind in its space: the same
    keys the black-box methods search) from short warm-up inner runs, then the whole horizon
    (``horizon_ladder``: cheaper early outer steps; windows are fractions of the run, so the
    schedule stretches); the outer steps go on until the budget ends. "oho" and "hd" train one
    run of the task's horizon, learning one value of each kind online (per layer on a per-layer
    task), with plain SGD at ``ONLINE_STEPS`` (a step per kind) on the hypergradient clipped to
    ``ONLINE_CLIP``. (The harness's methods then replace the starting values by a ``start`` per
    trial, see ``fds_starts``.)
    """
    METHODS[method].check(task)
    cfg = dict(task.gradient_config)
    cfg.update(method=method, lr_init=0.0, momentum_init=0.5, weight_decay_init=0.0)
    if method == "fds":
        cfg.setdefault("n_lr_windows", task.n_lr_windows)
        cfg.update(inner_epochs=horizon_ladder(task.max_t), outer_steps=UNLIMITED)
    else:
        cfg = {k: v for k, v in cfg.items() if not (k.startswith("n_") and k.endswith("_windows"))}
        cfg.update(inner_epochs=task.max_t, outer_optimizer="sgd", clip=ONLINE_CLIP,
                   **{f"{kind}_step": step for kind, step in ONLINE_STEPS.items()})
    return cfg


def horizon_ladder(horizon: int, longest: int | None = None, rungs: int = 5) -> list[int]:
    """FDS's inner-run lengths, one per outer step (the last, the whole horizon, repeats): up to
    ``rungs - 1`` warm-up runs that double up to ``longest`` epochs (default a fifth of the
    horizon; at least 1 epoch each, repeats dropped), then the horizon. On mnist1d (20 epochs)
    that is 1, 2, 4, then 20: 7 warm-up epochs before the first full run. Warm-up up to half the
    horizon (1, 2, 5, 10, 20; 18 epochs) was 7 s later to regret 0.02 at the same number of
    seeds reached (``scripts/fds_variants.py``, docs/results.md). The warm-up runs' hypergradients are still non-greedy: the
    windows are fractions of the run, so a short run differentiates the whole (shortened)
    schedule."""
    longest = max(1, horizon // 5) if longest is None else longest
    if not 1 <= longest <= horizon or rungs < 1:
        raise ValueError(f"need 1 <= longest <= horizon and rungs >= 1, got longest={longest}, "
                         f"horizon={horizon}, rungs={rungs}")
    return sorted({max(1, longest // 2**k) for k in range(rungs - 1)} | {horizon})


def _random_variants(seed):
    from ray.tune.search import BasicVariantGenerator

    return BasicVariantGenerator(random_state=seed)


# --- ours --------------------------------------------------------------------------------------
def _ours_random(seed, **kwargs):
    from tune_ext.searchers import RandomSearch
    return RandomSearch(seed=seed, **kwargs)


def _ours_tpe(seed, **kwargs):
    from tune_ext.searchers import TPESearch
    return TPESearch(seed=seed, **kwargs)


def _ours_cmaes(seed):
    from tune_ext.searchers import CMAESSearch
    return CMAESSearch(seed=seed)


def _ours_bohb(seed):
    from tune_ext.searchers import BOHBSearch
    return BOHBSearch(seed=seed)


def _ours_hyperband(task):
    from tune_ext.schedulers import HyperbandScheduler
    return HyperbandScheduler(max_t=task.max_t, reduction_factor=3)


def _ours_asha(task):
    from tune_ext.schedulers import ASHAScheduler
    return ASHAScheduler(max_t=task.max_t, reduction_factor=3, variant="promotion")


def _ours_adaptive(task):
    from tune_ext.schedulers import AdaptiveASHAScheduler
    return AdaptiveASHAScheduler(max_t=task.max_t, max_trials=UNLIMITED)


# --- Ray's own, the yardstick ------------------------------------------------------------------
def _ray_asha(task):
    from ray.tune.schedulers import ASHAScheduler
    return ASHAScheduler(max_t=task.max_t, grace_period=1, reduction_factor=3)


def _ray_hb_bohb(task):
    from ray.tune.schedulers import HyperBandForBOHB
    return HyperBandForBOHB(max_t=task.max_t, reduction_factor=3)


def _ray_tune_bohb(seed):
    from ray.tune.search.bohb import TuneBOHB
    return TuneBOHB(seed=seed)


def _ray_optuna(seed):
    import optuna
    from ray.tune.search.optuna import OptunaSearch
    return OptunaSearch(sampler=optuna.samplers.TPESampler(seed=seed))


METHODS = {m.name: m for m in [
    Method("random", "black-box", "full-budget", "RandomSearch, full budget per trial", _black_box(_ours_random)),
    Method("tpe", "black-box", "full-budget", "TPESearch, full budget per trial", _black_box(_ours_tpe)),
    Method("cmaes", "black-box", "full-budget", "CMAESSearch, full budget per trial", _black_box(_ours_cmaes)),
    Method("hyperband", "black-box", "multi-fidelity", "HyperbandScheduler + RandomSearch",
           _black_box(_ours_random, _ours_hyperband)),
    Method("bohb", "black-box", "multi-fidelity", "HyperbandScheduler + BOHBSearch", _black_box(_ours_bohb, _ours_hyperband)),
    Method("asha", "black-box", "multi-fidelity", "ASHAScheduler (promotion) + RandomSearch",
           _black_box(_ours_random, _ours_asha)),
    Method("asha-tpe", "black-box", "multi-fidelity", "ASHAScheduler (promotion) + TPESearch",
           _black_box(_ours_tpe, _ours_asha)),
    Method("adaptive-asha", "black-box", "multi-fidelity", "AdaptiveASHAScheduler + RandomSearch",
           _black_box(_ours_random, _ours_adaptive)),
    Method("fds", "gradient", "gradient", "FDSTrainable: exact hypergradients over the whole run (hypergrad_mode auto)",
           gradient_trials("fds")),
    Method("oho", "gradient", "gradient", "FDSTrainable, online hyperparameter optimisation",
           gradient_trials("oho")),
    Method("hd", "gradient", "gradient", "FDSTrainable, greedy hypergradient descent",
           gradient_trials("hd")),
    Method("asha-fds", "gradient", "hybrid", "ASHAScheduler + TPESearch over width, batch size and "
           "FDS's start; FDS learns each trial's schedule", _hybrid(_ours_tpe)),
    Method("ray-asha", "black-box", "ray", "Ray's ASHAScheduler + Ray's random variants",
           _black_box(_random_variants, _ray_asha)),
    Method("ray-bohb", "black-box", "ray", "Ray's HyperBandForBOHB + TuneBOHB",
           _black_box(_ray_tune_bohb, _ray_hb_bohb)),
    Method("ray-optuna", "black-box", "ray", "Ray's OptunaSearch (TPE), full budget per trial",
           _black_box(_ray_optuna)),
]}

QUICK_METHODS = ("asha", "fds", "ray-asha")


def get_methods(names) -> list[Method]:
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; valid methods: {', '.join(METHODS)}")
    if not names:
        raise ValueError(f"no methods given; valid methods: {', '.join(METHODS)}")
    return [METHODS[n] for n in names]
