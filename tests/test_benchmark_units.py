"""The harness's parts without a benchmark run: incumbent, statistics, summary, tasks, data, registry."""
import itertools
import json
import math
import random
from math import comb

import numpy as np
import pytest

from tune_ext.benchmark import Budget, RunRecord, Task, get_task
from tune_ext.benchmark.cluster import runs_at_once
from tune_ext.benchmark.methods import METHODS, get_methods
from tune_ext.benchmark.reference import load_reference, packaged_reference, sgd_grid
from tune_ext.benchmark.regret import BudgetStopper, IncumbentTracker, RegretCallback
from tune_ext.benchmark.runner import method_kwargs
from tune_ext.benchmark.stats import (bootstrap_median_ci, describe, disjoint, median,
                                      ranks_over_time, rank_row)
from tune_ext.benchmark.summary import format_table, summarize_runs


def test_incumbent_is_chosen_by_validation_and_its_test_score_counts():
    tr = IncumbentTracker(reference=0.9)
    assert tr.regret is None  # nothing found yet: no regret at all, not "the whole reference"
    assert tr.update({"val_acc": 0.5, "test_acc": 0.6})
    assert not tr.update({"val_acc": 0.4, "test_acc": 0.89})  # better test, worse validation: ignored
    assert tr.regret == pytest.approx(0.3)
    assert tr.update({"val_acc": 0.7, "test_acc": 0.55})  # better validation wins even if it tests worse
    assert tr.regret == pytest.approx(0.35)
    assert not tr.update({"val_acc": float("nan"), "test_acc": 0.99})
    assert not tr.update({"val_acc": 0.99})  # incomplete result
    assert tr.val_score == 0.7


def test_incumbent_and_regret_in_min_mode():
    tr = IncumbentTracker(reference=0.2, metric="val_loss", mode="min", test_metric="test_loss")
    assert tr.update({"val_loss": 2.0, "test_loss": 1.0})
    assert tr.update({"val_loss": 1.0, "test_loss": 0.5})
    assert not tr.update({"val_loss": 1.5, "test_loss": 0.21})
    assert tr.regret == pytest.approx(0.3)  # test - reference in mode "min"
    with pytest.raises(ValueError, match="mode"):
        IncumbentTracker(1.0, mode="up")


class _Trial:
    def __init__(self, tid):
        self.trial_id = tid


def test_regret_callback_records_changes_and_an_end_point_only_with_an_incumbent():
    cb = RegretCallback(IncumbentTracker(0.98))
    cb.setup()
    for i, (val, test) in enumerate([(0.5, 0.8), (0.4, 0.99), (0.9, 0.975)]):
        cb.on_trial_result(i, [], _Trial(f"t{i}"), {"val_acc": val, "test_acc": test,
                                                    "training_iteration": i + 1})
    cb.close()
    assert [round(p["regret"], 6) for p in cb.points] == [0.18, 0.005, 0.005]
    assert [p["trial_id"] for p in cb.points] == ["t0", "t2", ""]
    assert cb.n_results == 3 and cb.trials == {"t0", "t1", "t2"} and cb.first_result_s is not None
    empty = RegretCallback(IncumbentTracker(0.98))
    empty.setup()
    empty.on_trial_result(0, [], _Trial("t"), {"val_acc": float("nan"), "test_acc": 0.5})
    empty.close()
    assert empty.points == [] and empty.n_results == 1  # a result, but no regret to report


def test_results_after_the_budget_never_change_the_incumbent():
    cb = RegretCallback(IncumbentTracker(0.98), budget_s=-1.0)   # every result arrives "late"
    cb.setup()
    for i in range(2):
        cb.on_trial_result(i, [], _Trial("t"), {"val_acc": 0.9, "test_acc": 0.97})
    cb.close()
    assert cb.points == [] and cb.n_late == 2 and cb.first_result_s is None


def test_the_clock_starts_when_the_first_trial_is_up():
    cb = RegretCallback(IncumbentTracker(0.98), budget_s=10.0)
    cb.setup()
    assert not cb.started and cb.elapsed() == 0.0 and cb.startup_s is None
    cb.on_trial_start(0, [], _Trial("t0"))
    assert cb.started and cb.startup_s is not None and cb.startup_s >= 0
    start = cb.start_wall
    cb.on_trial_start(1, [], _Trial("t1"))     # a later trial's start leaves the clock alone
    assert cb.start_wall == start
    cb.on_trial_result(2, [], _Trial("t0"), {"val_acc": 0.5, "test_acc": 0.9})
    assert 0 <= cb.first_result_s <= cb.elapsed() and cb.points[0]["time_s"] <= cb.elapsed()


def test_the_budget_stopper_ends_a_run_on_its_clock_its_results_or_a_start_that_never_comes():
    waiting = RegretCallback(IncumbentTracker(0.98))
    waiting.setup()
    assert BudgetStopper(waiting, 10.0, start_limit_s=-1.0).stop_all()   # no trial came up
    assert not BudgetStopper(waiting, 10.0, start_limit_s=1e9).stop_all()
    running = RegretCallback(IncumbentTracker(0.98))
    running.setup()
    running.on_trial_start(0, [], _Trial("t"))
    assert BudgetStopper(running, 0.0).stop_all()                      # the budget is spent
    limited, unlimited = BudgetStopper(running, 1e9, max_results=2), BudgetStopper(running, 1e9)
    assert not limited.stop_all() and not limited("t", {})
    for i in range(2):
        running.on_trial_result(i, [], _Trial("t"), {"val_acc": 0.5, "test_acc": 0.9})
    assert limited.stop_all() and not unlimited.stop_all()


def test_median_and_exact_bootstrap_on_a_hand_computed_example():
    assert median([3, 1, 2]) == 2 and median([4, 1, 3, 2]) == 2.5
    assert median([1, math.inf]) == math.inf
    # 3 values: 27 resamples; the median is 1 when >= 2 draws are 1 (3*2 + 1 = 7 resamples),
    # 3 likewise (7), else 2 (13). Bounds: the 0th and the 26th of the sorted 27 medians.
    assert bootstrap_median_ci([1.0, 2.0, 3.0]) == (1.0, 3.0)
    assert bootstrap_median_ci([1.0, 2.0, 3.0], level=0.4) == (2.0, 2.0)  # the 8th and the 18th


def test_bootstrap_matches_the_binomial_distribution_of_the_resampled_median():
    # 5 distinct values, all 3125 resamples: the median is <= the k-th smallest value iff at
    # least 3 of the 5 draws are among the k smallest, P = sum_j C(5,j) (k/5)^j (1-k/5)^(5-j)
    values = [0.1, 0.4, 0.2, 0.9, 0.3]
    s = sorted(values)
    cdf = [sum(comb(5, j) * (k / 5) ** j * (1 - k / 5) ** (5 - j) for j in range(3, 6))
           for k in range(1, 6)]
    count = [round(3125 * p) for p in cdf]           # resamples with median <= s[k-1]
    lo_index, hi_index = math.floor(0.025 * 3125), math.ceil(0.975 * 3125) - 1
    lo = s[next(k for k in range(5) if count[k] > lo_index)]
    hi = s[next(k for k in range(5) if count[k] > hi_index)]
    assert bootstrap_median_ci(values) == (lo, hi) == (0.1, 0.9)
    assert bootstrap_median_ci(values, level=0.5) == (
        s[next(k for k in range(5) if count[k] > math.floor(0.25 * 3125))],
        s[next(k for k in range(5) if count[k] > math.ceil(0.75 * 3125) - 1)])


def test_bootstrap_samples_when_exact_enumeration_is_too_large():
    values = [float(v) for v in range(8)]              # 8**8 resamples: sampled, seeded
    lo, hi = bootstrap_median_ci(values)
    assert (lo, hi) == bootstrap_median_ci(values) and lo < 3.5 < hi
    assert bootstrap_median_ci([5.0] * 8) == (5.0, 5.0)


def test_describe_treats_never_as_infinitely_late():
    d = describe([1.0, None, 3.0])                     # median 3, interval [1, never]
    assert d == {"median": 3.0, "ci95": [1.0, None]}
    assert describe([None, None, 2.0])["median"] is None


def test_ranks_share_ties_and_average_over_seeds():
    assert rank_row([0.3, 0.1, 0.3, math.inf]) == [2.5, 1.0, 2.5, 4.0]
    curves = {"a": {0: [(0.0, 0.5), (2.0, 0.1)], 1: [(1.0, 0.2)]},
              "b": {0: [(1.0, 0.3)], 1: [(0.0, 0.4), (3.0, 0.1)]}}
    ranks = ranks_over_time(curves, [0.5, 1.5, 2.5, 3.5])
    # seed 0: t=0.5 a 0.5 vs b none -> a; 1.5: 0.5 vs 0.3 -> b; 2.5, 3.5: 0.1 vs 0.3 -> a
    # seed 1: t=0.5 a none vs b 0.4 -> b; 1.5, 2.5: 0.2 vs 0.4 -> a; 3.5: 0.2 vs 0.1 -> b
    assert ranks["a"] == [1.5, 1.5, 1.0, 1.5] and ranks["b"] == [1.5, 1.5, 2.0, 1.5]


def test_disjoint_intervals_with_never():
    assert disjoint([0.0, 0.1], [0.2, None]) and not disjoint([0.0, 0.3], [0.2, None])
    assert not disjoint([0.1, None], [0.2, 0.3])


def _record(method, seed, points=(), results=0, trials=2, errored=0, error=None, first=None,
            startup=None):
    return RunRecord(method=method, seed=seed, node="127.0.0.1", start=100.0 + seed,
                     end=110.0 + seed, points=[{"time_s": t, "regret": r} for t, r in points],
                     trials=trials, errored=errored, first_error="err.txt" if errored else None,
                     error=error, results=results, first_result_s=first, startup_s=startup)


def test_a_run_without_a_curve_says_why():
    assert _record("a", 0, [(1.0, 0.1)], 1).no_result_reason("val", "test") is None
    assert _record("a", 0, error="RuntimeError: boom").no_result_reason("val", "test") == \
        "the run failed: RuntimeError: boom"
    assert _record("a", 0, errored=2).no_result_reason("val", "test").startswith(
        "2 of 2 trials errored, none reported a usable result (first error: err.txt)")
    assert _record("a", 0, results=3).no_result_reason("val", "test") == \
        "3 results, none with a finite 'val' and 'test'"
    assert _record("a", 0).no_result_reason("val", "test") == \
        "no trial came up (2 trials created, none started)"
    assert _record("a", 0, startup=3.0).no_result_reason("val", "test") == \
        "no result within the budget (2 trials started)"
    assert _record("a", 0, [(1.0, 0.1), (2.0, 0.05)], 2).curve() == [(1.0, 0.1), (2.0, 0.05)]


def test_summary_statistics_and_no_result_are_never_a_number():
    task = get_task("digits")
    methods = get_methods(["asha", "random", "fds"])
    records = []
    for s in range(3):
        records.append(_record("asha", s, [(1.0, 0.05), (2.0 + s, 0.002 * (s + 1))], 10, first=1.0))
        records.append(_record("random", s, [(3.0, 0.2 + 0.01 * s)], 5, first=2.0))
        records.append(_record("fds", s, errored=2, trials=2))            # nothing usable
    summary = summarize_runs(task, methods, [0, 1, 2], Budget(10.0), 0.98, records,
                             {"CPU": 2.0}, 1, False, wall_s=30.0)
    asha, rnd, fds = (summary["methods"][m] for m in ("asha", "random", "fds"))
    assert asha["final_regret"] == pytest.approx(0.004)
    assert asha["final_regret_ci95"] == pytest.approx([0.002, 0.006])
    assert asha["seeds_reached"] == 3 and asha["time_to_target_s"] == 3.0
    assert asha["time_to_target_ci95"] == [2.0, 4.0]
    assert rnd["time_to_target_s"] is None and rnd["seeds_reached"] == 0
    assert rnd["results"] == 15 and rnd["time_to_first_result_s"] == 2.0
    assert fds["final_regret"] is None and "2 of 2 trials errored" in fds["no_result"]
    assert fds["errored_trials"] == 6 and fds["time_to_first_result_s"] is None
    assert asha["mean_rank"] < rnd["mean_rank"] < fds["mean_rank"]
    assert ["asha", "random"] in summary["separated_final_regret"]
    assert ["asha", "fds"] in summary["separated_final_regret"]
    assert summary["placement"]["mode"] == "sequential"
    table = format_table(summary)
    assert "| fds | no result |" in table and "0 of 3" in table and "asha < random" in table
    json.dumps(summary, allow_nan=False)                # plain JSON, no NaN or Infinity


def test_one_seed_claims_no_difference():
    task = get_task("digits")
    records = [_record("asha", 0, [(1.0, 0.01)], 1), _record("random", 0, [(1.0, 0.5)], 1)]
    summary = summarize_runs(task, get_methods(["asha", "random"]), [0], Budget(5.0), 0.98,
                             records, {"CPU": 2.0}, 1, False, wall_s=10.0)
    assert summary["separated_final_regret"] == []
    assert "no difference can be shown" in format_table(summary)


def test_placement_runs_side_by_side_only_where_the_cluster_has_room():
    b = Budget(10.0, concurrency=2)
    assert runs_at_once(b, {"CPU": 2.0}, 14) == 1            # the local Ray the harness starts
    assert runs_at_once(b, {"CPU": 16.0}, 14) == 8
    assert runs_at_once(b, {"CPU": 64.0}, 14) == 14
    assert runs_at_once(b, {"CPU": 64.0}, 14, parallel=1) == 1
    g = Budget(10.0, concurrency=2, gpus_per_trial=0.5)
    assert runs_at_once(g, {"CPU": 64.0, "GPU": 2.0}, 14) == 2


@pytest.mark.parametrize("kwargs, match", [
    (dict(seconds=0), "finite number > 0"), (dict(seconds=float("nan")), "finite number > 0"),
    (dict(seconds=float("inf")), "finite number > 0"), (dict(seconds=5, concurrency=0), "concurrency"),
    (dict(seconds=5, gpus_per_trial=-1), "gpus_per_trial"),
    (dict(seconds=5, max_results=0), "max_results must be an int >= 1"),
    (dict(seconds=5, max_results=2.5), "max_results must be an int >= 1")])
def test_budget_refuses_nonsense(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Budget(**kwargs)


def test_registry_and_tasks_validate_names():
    with pytest.raises(ValueError, match="valid methods: .*ray-asha"):
        get_methods(["asha", "nope"])
    with pytest.raises(ValueError, match="valid tasks: mnist1d, digits, cifar10"):
        get_task("imagenet")
    assert {"random", "tpe", "cmaes", "hyperband", "bohb", "asha", "asha-tpe", "adaptive-asha",
            "fds", "oho", "hd", "asha-fds", "ray-asha", "ray-bohb", "ray-optuna"} <= set(METHODS)
    assert {m.family for m in METHODS.values()} == {"full-budget", "multi-fidelity", "gradient",
                                                    "hybrid", "ray"}
    space = get_task("mnist1d").search_space()
    assert {"lr_0", "lr_1", "lr_2", "momentum", "weight_decay"} <= set(space)
    assert space["dataset"] == "mnist1d" and space["model"] == "cnn1d" and space["epochs"] == 20
    assert get_task("mnist1d").target_regret == 0.02


def test_user_tasks_are_validated_and_importable():
    import user_task

    with pytest.raises(ValueError, match="mode"):
        Task("t", trainable=user_task.train, space={}, max_t=3, mode="up")
    with pytest.raises(ValueError, match="max_t"):
        Task("t", trainable=user_task.train, space={}, max_t=0)
    with pytest.raises(ValueError, match="reference"):
        Task("t", trainable=user_task.train, space={}, max_t=3, reference=float("nan"))
    t = get_task("user_task:task")
    assert t.name == "parabola" and t.mode == "min" and t.reference is None
    with pytest.raises(ValueError, match="no reference.*tune-ext-reference"):
        t.reference_value()
    with pytest.raises(ValueError, match="needs a task with a gradient_config"):
        METHODS["fds"].check(t)
    assert Task("t", trainable=user_task.train, space={}, max_t=3, mode="min",
                reference=0.25).regret(0.3) == pytest.approx(0.05)


def test_compile_flag_reaches_only_the_gradient_trainables():
    from trainables import FDSTrainable, SupervisedTrainable

    task = get_task("digits")
    for name in ("fds", "oho", "hd"):
        on = method_kwargs(METHODS[name], task, 0, compile_gradient=True)
        off = method_kwargs(METHODS[name], task, 0)
        assert on["run_or_experiment"] is FDSTrainable and on["config"]["compile"] is True
        assert "compile" not in off["config"] and off["config"]["method"] == name
        assert {k: v for k, v in on["config"].items() if k not in ("compile", "seed")} == \
            {k: v for k, v in off["config"].items() if k != "seed"}
    black = method_kwargs(METHODS["asha"], task, 0, compile_gradient=True)
    assert black["run_or_experiment"] is SupervisedTrainable and "compile" not in black["config"]


@pytest.mark.parametrize("name", ["digits", "mnist1d"])
def test_references_are_stored_with_their_grid(name):
    ref = load_reference(get_task(name))
    assert ref["task"] == name and ref["metric"] == "test_acc" and 0.8 < ref["reference"] <= 1.0
    assert ref["reference"] == max(r["mean"] for r in ref["results"])
    assert len(ref["results"]) == len(sgd_grid(3)) and len(ref["seeds"]) >= 2
    assert all(len(r["test_acc"]) == len(ref["seeds"]) for r in ref["results"])


def test_missing_or_broken_reference_files_name_the_file(tmp_path):
    import user_task

    missing = user_task.task(reference_path=str(tmp_path / "none.json"))
    with pytest.raises(FileNotFoundError, match="none.json is missing.*tune-ext-reference"):
        missing.reference_value()
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json.*unreadable"):
        user_task.task(reference_path=str(tmp_path / "bad.json")).reference_value()
    assert packaged_reference("digits").endswith("tune_ext/benchmark/references/digits.json")


def test_mnist1d_is_generated_once_without_touching_global_rngs(tmp_path):
    from trainables.data import load_dataset, mnist1d_arrays

    random.seed(7)
    np.random.seed(7)
    before = (random.random(), np.random.rand())
    random.seed(7)
    np.random.seed(7)
    x_tr, y_tr, x_te, y_te = mnist1d_arrays(cache_dir=str(tmp_path))
    assert (random.random(), np.random.rand()) == before   # mnist1d reseeds both; restored
    assert x_tr.shape == (4000, 1, 40) and x_te.shape == (1000, 1, 40) and x_tr.dtype == np.float32
    assert sorted(set(y_tr.tolist())) == list(range(10))
    cached = list(tmp_path.glob("mnist1d-v*.npz"))
    assert len(cached) == 1
    again = mnist1d_arrays(cache_dir=str(tmp_path))
    assert all(np.array_equal(a, b) for a, b in zip(again, (x_tr, y_tr, x_te, y_te)))
    cached[0].write_bytes(b"truncated")                      # unreadable cache: generated again
    assert np.array_equal(mnist1d_arrays(cache_dir=str(tmp_path))[0], x_tr)
    splits = load_dataset("mnist1d")
    assert len(splits.y_train) + len(splits.y_val) == 4000 and len(splits.y_test) == 1000
    assert abs(len(splits.y_val) - 400) <= 5        # 10% of every class, rounded per class
    assert np.bincount(splits.y_val.numpy()).min() >= 39           # stratified 10% of train


def test_cnn1d_has_the_specified_shape():
    import torch

    from trainables import build_model

    model = build_model("cnn1d", (1, 40), 10)
    assert sum(p.numel() for p in model.parameters()) == 7594
    assert model(torch.zeros(3, 1, 40)).shape == (3, 10)
    with pytest.raises(ValueError, match="cnn1d.*signal"):
        build_model("cnn1d", (1, 8, 8), 10)


def _suggestions(method, task, seed, n):
    kwargs = method_kwargs(METHODS[method], task, seed)
    alg = kwargs["search_alg"]
    assert alg.set_search_properties(task.metric, task.mode, kwargs["config"])
    return [alg.suggest(f"t{i}") for i in range(n)]


def test_concurrent_fds_trials_start_from_different_points_of_the_space():
    task = get_task("mnist1d")
    starts = [c["start"] for c in _suggestions("fds", task, 0, 4)]
    # the paper's start first (lr, weight decay at the space's lower ends), then spread points
    assert starts[0] == {"lr_0": 1e-3, "lr_1": 1e-3, "lr_2": 1e-3, "momentum": 0.5, "weight_decay": 1e-6}
    for key in ("lr_0", "lr_1", "lr_2", "momentum", "weight_decay"):
        values = [s[key] for s in starts]
        assert len(set(values)) == 4, key  # every trial starts elsewhere in every coordinate
        domain = task.space[key]
        assert all(domain.lower <= v <= domain.upper for v in values)
    assert [c["start"] for c in _suggestions("fds", task, 0, 4)] == starts    # the run seed fixes them
    assert [c["start"] for c in _suggestions("fds", task, 1, 4)][1:] != starts[1:]
    # and FDSTrainable takes them: no starting-value keys of its own next to "start"
    assert not {"lr_init", "momentum_init", "weight_decay_init"} & set(_suggestions("fds", task, 0, 1)[0])
    # HD and OHO too, over one value of each kind, at the step sizes of their papers' range
    for method in ("hd", "oho"):
        configs = _suggestions(method, task, 0, 3)
        assert configs[0]["start"] == {"lr_0": 1e-3, "momentum": 0.5, "weight_decay": 1e-6}
        assert len({c["start"]["lr_0"] for c in configs}) == 3
        assert all(set(c["start"]) == {"lr_0", "momentum", "weight_decay"} for c in configs)
        assert not any(k.endswith("_init") or k.startswith("n_") for k in configs[0])
        # lr's step in their papers' range; weight decay's smaller, every kind's clipped
        assert configs[0]["clip"] == 10.0 and 1e-6 <= configs[0]["lr_step"] <= 1e-2
        assert configs[0]["weight_decay_step"] < configs[0]["lr_step"]


def test_the_hybrid_searches_width_batch_size_and_fds_start_under_asha():
    from tune_ext.benchmark.methods import hybrid_max_t
    from tune_ext.schedulers import ASHAScheduler

    task = get_task("mnist1d")
    kwargs = method_kwargs(METHODS["asha-fds"], task, 0)
    assert isinstance(kwargs["scheduler"], ASHAScheduler)
    assert hybrid_max_t(task) == 6 and kwargs["config"]["outer_steps"] == 6
    configs = _suggestions("asha-fds", task, 0, 6)
    assert {c["model_kwargs"]["channels"] for c in configs} <= {16, 32, 64}
    assert len({c["batch_size"] for c in configs}) > 1 and len({c["model_kwargs"]["channels"] for c in configs}) > 1
    assert len({c["start"]["lr_0"] for c in configs}) == 6 and configs[0]["start"]["momentum"] == 0.5
    assert all(c["method"] == "fds" and c["inner_epochs"] == [1, 2, 4, 20] for c in configs)
    with pytest.raises(ValueError, match="needs a task with a gradient_config"):
        import user_task
        METHODS["asha-fds"].check(get_task("user_task:task"))


def test_horizon_ladder_doubles_up_to_its_longest_warm_up_then_the_horizon():
    from tune_ext.benchmark.methods import horizon_ladder

    assert horizon_ladder(20) == [1, 2, 4, 20]    # the harness's: warm-up up to a fifth, 7 epochs
    assert horizon_ladder(20, longest=10) == [1, 2, 5, 10, 20]   # up to half: 18 epochs
    assert horizon_ladder(50, rungs=3) == [5, 10, 50]
    assert horizon_ladder(1) == [1]
    with pytest.raises(ValueError, match="longest <= horizon"):
        horizon_ladder(20, longest=30)


def test_tensorboard_steps_are_milliseconds_on_each_runs_clock(tmp_path):
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    from tune_ext.benchmark.curves import write_tensorboard

    def points(*pairs):
        return [{"time_s": t, "regret": r} for t, r in pairs]

    # two runs that started 100 s apart: on the step axis both begin at 0, and points within one
    # second keep steps of their own
    write_tensorboard(str(tmp_path), "a", 0, points((0.25, 0.3), (1.0, 0.1), (1.002, 0.05)), 1000.0)
    write_tensorboard(str(tmp_path), "b", 0, points((0.5, 0.2), (2.0, 0.2)), 1100.0)
    mux = EventMultiplexer()
    mux.AddRunsFromDirectory(str(tmp_path))
    mux.Reload()
    a, b = mux.Scalars("a/seed0", "regret"), mux.Scalars("b/seed0", "regret")
    assert [e.step for e in a] == [250, 1000, 1002] and [e.step for e in b] == [500, 2000]
    assert [round(e.value, 6) for e in a] == [0.3, 0.1, 0.05]
    assert [e.wall_time for e in b] == pytest.approx([1100.5, 1102.0])


def _entries(space, kind):
    from tune_ext.hypergrad.kinds import kind_of

    return [k for k in space if kind_of(k) == kind]


@pytest.mark.parametrize("name, counts, per_layer", [
    ("mnist1d", {"lr": 3, "momentum": 1, "weight_decay": 1}, False),
    ("mnist1d-30", {"lr": 12, "momentum": 9, "weight_decay": 9}, False),
    ("mnist1d-100", {"lr": 45, "momentum": 15, "weight_decay": 45}, True)])
def test_mnist1d_variants_search_many_hyperparameters_and_share_the_reference(name, counts, per_layer):
    from ray.tune.search.sample import Domain

    from tune_ext.benchmark.methods import gradient_config

    task, base = get_task(name), get_task("mnist1d")
    space = task.search_space()
    assert {k: len(_entries(space, k)) for k in counts} == counts
    assert sum(isinstance(v, Domain) for v in space.values()) == sum(counts.values())
    assert task.n_hyperparameters() == sum(counts.values())   # 5, 30, 105: the study's x axis
    for key, domain in space.items():  # the default task's wide ranges
        if isinstance(domain, Domain):
            from tune_ext.hypergrad.kinds import kind_of

            kind = kind_of(key)
            ref = base.space["lr_0" if kind == "lr" else kind]
            assert (domain.lower, domain.upper) == (ref.lower, ref.upper), key
    assert {k: space[k] for k in ("dataset", "model", "epochs", "batch_size")} == \
        {"dataset": "mnist1d", "model": "cnn1d", "epochs": 20, "batch_size": 128}
    assert task.reference_value() == base.reference_value() and task.target_regret == 0.02
    # every reference-grid schedule is a point of the space: its keys, inside the ranges (weight
    # decay 0 sits at the range's lower end, 1e-6, as in the default task)
    assert len(task.reference_grid) == len(base.reference_grid)
    for point in task.reference_grid:
        searched = {k: v for k, v in point.items() if isinstance(space.get(k), Domain)}
        assert set(searched) == {k for k, v in space.items() if isinstance(v, Domain)}
        assert all(space[k].lower <= v <= space[k].upper for k, v in searched.items() if v > 0)
    # FDS learns the same keys: its windows, per layer on mnist1d-100
    fds = gradient_config(task, "fds")
    assert {k: fds[f"n_{k}_windows"] for k in counts} == \
        {k: n // (3 if per_layer and k != "momentum" else 1) for k, n in counts.items()}
    assert fds.get("per_layer", False) == per_layer
    # ... and the grid is mnist1d's own, refined
    from tune_ext.benchmark.tasks import refine_schedule

    def searched(point, of):
        return {k: v for k, v in point.items() if isinstance(of.space.get(k), Domain)}

    windows = {k: fds[f"n_{k}_windows"] for k in counts}
    assert [searched(p, task) for p in task.reference_grid] == \
        [refine_schedule(searched(p, base), windows, per_layer, 3) for p in base.reference_grid]


def test_n_hyperparameters_counts_searched_keys_also_nested_and_not_fixed_values():
    from ray import tune

    task = Task("nested", trainable=lambda config: None, max_t=1, reference=1.0,
                space={"a": tune.uniform(0, 1), "fixed": 3, "model_kwargs": {
                    "width": tune.choice([8, 16]), "depth": 2, "deeper": {"b": tune.loguniform(1e-3, 1)}}},
                extra_space={"batch_size": tune.choice([32, 64])})
    assert task.n_hyperparameters() == 3


def test_cnn1d_has_the_layers_the_per_layer_variant_counts():
    from trainables import build_model
    from tune_ext.benchmark.tasks import CNN1D_LAYERS
    from tune_ext.hypergrad import layers_of

    assert len(set(layers_of(build_model("cnn1d", (1, 40), 10)).values())) == CNN1D_LAYERS == 3


def test_a_grid_schedule_refines_exactly_onto_windows_that_are_multiples_of_three():
    from tune_ext.benchmark.tasks import refine_schedule
    from tune_ext.hypergrad.schedule import window_index

    # window j of n = 3m covers exactly the steps of window j // m of 3, whatever the horizon T
    for n in (3, 6, 9, 12, 15):
        for total in (1, 2, 5, 29, 580, 581, 1000):
            assert all(window_index(t, total, n) // (n // 3) == window_index(t, total, 3)
                       for t in range(total + 3))
    # ... while 10 windows would not be exact (a third of 580 steps does not end on a tenth)
    assert any(window_index(t, 580, 10) // 3 != window_index(t, 580, 3) for t in range(580))
    grid = {"lr_0": 0.3, "lr_1": 0.3, "lr_2": 0.03, "momentum": 0.9, "weight_decay": 5e-4}
    fine = refine_schedule(grid, {"lr": 6, "momentum": 2, "weight_decay": 1})
    assert fine == {"lr_0": 0.3, "lr_1": 0.3, "lr_2": 0.3, "lr_3": 0.3, "lr_4": 0.03, "lr_5": 0.03,
                    "momentum_0": 0.9, "momentum_1": 0.9, "weight_decay": 5e-4}
    layered = refine_schedule(grid, {"lr": 3, "momentum": 1, "weight_decay": 1}, True, 2)
    assert [layered[f"lr_{i}"] for i in range(6)] == [0.3, 0.3, 0.3, 0.3, 0.03, 0.03]
    assert layered["momentum"] == 0.9 and [layered["weight_decay_0"], layered["weight_decay_1"]] == [5e-4] * 2
    with pytest.raises(ValueError, match="10 lr windows do not refine 3"):
        refine_schedule(grid, {"lr": 10, "momentum": 1, "weight_decay": 1})


@pytest.mark.parametrize("windows, per_layer", [({"lr": 12, "momentum": 9, "weight_decay": 9}, False),
                                                ({"lr": 6, "momentum": 3, "weight_decay": 3}, True)])
def test_a_refined_grid_schedule_trains_exactly_as_the_original(windows, per_layer):
    from trainables import SupervisedTrainable
    from tune_ext.benchmark.tasks import refine_schedule

    grid = {"lr_0": 0.2, "lr_1": 0.1, "lr_2": 0.01, "momentum": 0.9, "weight_decay": 5e-4}
    base = {"dataset": "digits", "model": "mlp", "batch_size": 100, "epochs": 2, "seed": 1}
    runs = []
    for schedule in (grid, {**refine_schedule(grid, windows, per_layer, 2),
                            **({"per_layer": True} if per_layer else {})}):
        t = SupervisedTrainable(config={**base, **schedule})
        runs.append([t.train()["val_loss"] for _ in range(2)] + [t.model.state_dict()])
        t.stop()
    assert runs[0][:2] == runs[1][:2]
    assert all(bool((runs[0][2][k] == runs[1][2][k]).all()) for k in runs[0][2])


@pytest.mark.parametrize("name", ["mnist1d-30", "mnist1d-100"])
def test_every_gradient_method_takes_its_start_on_the_variants(name):
    from trainables import FDSTrainable
    from tune_ext.benchmark.methods import fds_starts, gradient_config

    task = get_task(name)
    expected = {"mnist1d-30": {"fds": {"lr": (12,), "momentum": (9,), "weight_decay": (9,)},
                               "hd": {"lr": (1,), "momentum": (1,), "weight_decay": (1,)}},
                "mnist1d-100": {"fds": {"lr": (15, 3), "momentum": (15,), "weight_decay": (15, 3)},
                                "hd": {"lr": (1, 3), "momentum": (1,), "weight_decay": (1, 3)}}}[name]
    for method in ("fds", "hd"):
        space, first = fds_starts(task, online=method != "fds")
        config = {k: v for k, v in gradient_config(task, method).items() if not k.endswith("_init")}
        t = FDSTrainable(config={**config, "start": first, "seed": 0})
        assert {h: tuple(v.shape) for h, v in t.engine["hparams"].items()} == expected[method]
        assert float(t.engine["hparams"]["momentum"][0]) == 0.5 and set(first) == set(space)
        t.stop()


def test_a_task_with_lr_windows_the_grid_does_not_divide_keeps_its_own_grid():
    import user_task

    from tune_ext.benchmark.reference import sgd_grid

    task = user_task.own_model_task()     # 2 learning-rate windows: the grid over 2 windows
    assert [{k: p[k] for k in ("lr_0", "lr_1", "momentum", "weight_decay")} for p in task.reference_grid] \
        == sgd_grid(2)
    assert len(get_task("cifar10").reference_grid[0]) and \
        [p["lr_6"] for p in get_task("cifar10").reference_grid[:4]] == [g["lr_6"] for g in sgd_grid(7)[:4]]
