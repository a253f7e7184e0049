import json
import math

import pytest

from tune_ext.benchmark.curves import load_curves, regret_at, summarize, time_to_target
from tune_ext.benchmark.methods import METHODS, get_methods
from tune_ext.benchmark.reference import grid_configs, load_reference, reference_path
from tune_ext.benchmark.regret import IncumbentTracker, RegretCallback
from tune_ext.benchmark.tasks import TASKS, Task, get_task


def test_incumbent_is_chosen_by_validation_and_its_test_accuracy_counts():
    tr = IncumbentTracker(reference=0.9)
    assert tr.regret == pytest.approx(0.9)  # nothing found yet
    assert tr.update({"val_acc": 0.5, "test_acc": 0.6})
    assert not tr.update({"val_acc": 0.4, "test_acc": 0.89})  # better test, worse validation: ignored
    assert tr.regret == pytest.approx(0.3)
    assert tr.update({"val_acc": 0.7, "test_acc": 0.55})  # better validation wins even if it tests worse
    assert tr.regret == pytest.approx(0.35)
    assert not tr.update({"val_acc": float("nan"), "test_acc": 0.99})
    assert not tr.update({"val_acc": 0.99})  # incomplete result
    assert tr.val_score == 0.7


def test_incumbent_in_min_mode():
    tr = IncumbentTracker(reference=1.0, metric="val_loss", mode="min")
    assert tr.update({"val_loss": 2.0, "test_acc": 0.1})
    assert tr.update({"val_loss": 1.0, "test_acc": 0.2})
    assert not tr.update({"val_loss": 1.5, "test_acc": 0.9})
    assert tr.regret == pytest.approx(0.8)
    with pytest.raises(ValueError, match="mode"):
        IncumbentTracker(1.0, mode="up")


def test_curves_summary_and_time_to_target(tmp_path):
    csv_path = tmp_path / "regret.csv"

    class Writer:
        def __init__(self):
            self.scalars = []

        def add_scalar(self, tag, value, global_step, walltime):
            self.scalars.append((tag, value, global_step))

        def flush(self):
            pass

    class Trial:
        def __init__(self, tid):
            self.trial_id = tid

    for seed, accs in ((0, [(0.5, 0.8), (0.9, 0.975)]), (1, [(0.6, 0.95)])):
        writer = Writer()
        cb = RegretCallback("m", seed, 0.98, writer, str(csv_path))
        cb.setup()
        for i, (val, test) in enumerate(accs):
            cb.on_trial_result(i, [], Trial(f"t{i}"), {"val_acc": val, "test_acc": test,
                                                       "training_iteration": 1})
        cb.close()
        assert {t for t, _, _ in writer.scalars} == {"regret/m"}
        assert len(writer.scalars) == len(accs) + 1  # each incumbent change plus the end point
    curves = load_curves(str(csv_path))
    assert set(curves) == {"m"} and set(curves["m"]) == {0, 1}
    c0 = curves["m"][0]
    assert [round(r, 6) for _, r in c0] == [0.18, 0.005, 0.005]
    assert time_to_target(c0, 0.01) == c0[1][0]
    assert time_to_target(curves["m"][1], 0.01) is None
    assert regret_at(c0, -1.0, before=0.98) == 0.98
    assert regret_at(c0, c0[-1][0] + 5, before=0.98) == pytest.approx(0.005)
    s = summarize(curves, 0.01)["m"]
    assert s["final_regret"] == pytest.approx((0.005 + 0.03) / 2)
    # one seed of two never reached the target: the median time is then "never"
    assert s["time_to_target_s"] is None
    assert [x["seed"] for x in s["seeds"]] == [0, 1]


def test_registry_and_tasks_validate_names():
    with pytest.raises(ValueError, match="valid methods: .*ray-asha"):
        get_methods(["asha", "nope"])
    with pytest.raises(ValueError, match="valid tasks: cifar10, digits"):
        get_task("imagenet")
    assert {"random", "tpe", "cmaes", "hyperband", "bohb", "asha", "asha-tpe", "adaptive-asha",
            "fds", "oho", "hd", "ray-asha", "ray-bohb", "ray-optuna"} <= set(METHODS)
    space = get_task("digits").search_space()
    assert {"lr_0", "lr_1", "lr_2", "momentum", "weight_decay", "epochs"} <= set(space)


def test_compile_flag_reaches_only_the_gradient_trainables():
    from trainables import FDSTrainable, SupervisedTrainable
    from tune_ext.benchmark.runner import method_kwargs

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


def test_reference_is_stored_and_missing_ones_say_how_to_make_them():
    ref = load_reference(get_task("digits"))
    assert ref["task"] == "digits" and 0.9 < ref["reference_test_acc"] <= 1.0
    # the reference is the best mean over the grid that it records
    assert ref["reference_test_acc"] == max(r["mean_test_acc"] for r in ref["results"])
    assert len(ref["results"]) == len(list(grid_configs(get_task("digits"))))
    with pytest.raises(FileNotFoundError, match="scripts/reference.py --task nothere"):
        load_reference(Task("nothere", "digits", "mlp", 1, 8))
    assert not math.isnan(json.load(open(reference_path("digits")))["reference_test_acc"])
    assert set(TASKS) == {"digits", "cifar10"}
