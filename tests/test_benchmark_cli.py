"""Bad input to the benchmark command: one line ``error: ...``, exit code 2, Ray never started."""
import subprocess
import sys
from pathlib import Path

import pytest

from tune_ext.benchmark import cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_ray(monkeypatch):
    """Fails the test if anything tries to start or join Ray."""
    import ray

    def refuse(*args, **kwargs):
        raise AssertionError("Ray was started for an input that should have been refused")

    monkeypatch.setattr(ray, "init", refuse)


def _no_gpu():
    import torch

    return torch.cuda.device_count() == 0


BAD = [
    (["--budget-s", "0"], "--budget-s must be a finite number of seconds > 0, got 0"),
    (["--budget-s", "nan"], "--budget-s must be a finite number of seconds > 0, got nan"),
    (["--budget-s", "-3"], "--budget-s must be a finite number of seconds > 0, got -3"),
    (["--seeds", "0"], "--seeds must be >= 1, got 0"),
    (["--max-results", "0"], "--max-results must be >= 1, got 0"),
    (["--seeds", "two"], "argument --seeds: invalid int value: 'two'"),
    (["--concurrency", "0"], "--concurrency must be >= 1, got 0"),
    (["--parallel", "0"], "--parallel must be >= 1, got 0"),
    (["--methods", "asha,nope"], "unknown method(s) nope; valid methods: random"),
    (["--task", "imagenet"], "unknown task 'imagenet'; valid tasks: mnist1d, digits, cifar10"),
    (["--task", "no_such_module:task"], "could not be imported"),
    (["--task", "user_task:task", "--methods", "asha"], "no reference"),
    (["--task", "user_task:task", "--methods", "fds"], "needs a task with a gradient_config"),
    # a configuration every trial would refuse: our message once, before Ray (not from each trial)
    (["--task", "user_task:typo_task", "--methods", "asha"],
     "error: method 'asha' on task 'bumps': unknown config key 'momentun' for SupervisedTrainable; "
     "did you mean 'momentum'? (valid keys: batch_size, beta1, data_root, dataset, dataset_kwargs, "
     "epochs, l2, label_smoothing, lr, model, model_kwargs, momentum, optimizer, per_layer, seed, "
     "weight_decay, lr_0, lr_1, ..., momentum_0, momentum_1, ..., beta1_0, beta1_1, ..., "
     "weight_decay_0, weight_decay_1, ..., l2_0, l2_1, ..., label_smoothing_0, label_smoothing_1, "
     "...)\n"),
    (["--task", "user_task:gradient_typo_task", "--methods", "asha,fds"],
     "error: method 'fds' on task 'bumps': unknown config key 'lr_stpe' for FDSTrainable; did you "
     "mean 'lr_step'?"),
]


@pytest.mark.parametrize("argv, message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_and_exit_2_before_ray(argv, message, no_ray, capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        cli.main([*argv, "--out", str(tmp_path / "out")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err


def test_output_folder_that_cannot_be_written(no_ray, capsys, tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit) as exc:
        cli.main(["--quick", "--out", str(tmp_path / "file" / "out")])
    assert exc.value.code == 2
    assert "error: output folder" in capsys.readouterr().err


@pytest.mark.skipif(not _no_gpu(), reason="this machine has a GPU")
def test_gpus_requested_on_a_machine_without_one(no_ray, capsys, tmp_path):
    import ray

    with pytest.raises(SystemExit) as exc:
        cli.main(["--quick", "--gpus-per-trial", "0.5", "--out", str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    if ray.is_initialized():  # this session's Ray (no GPU): its cluster is what is checked
        assert "requests 0.5 GPU, but the Ray cluster has 0" in err
    else:
        assert "requests 0.5 GPU but this machine has no GPU" in err


def test_the_real_command_exits_2_without_a_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tune_ext.benchmark", "--seeds", "0",
                           "--out", str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == "error: --seeds must be >= 1, got 0\n"


@pytest.mark.parametrize("command", ["tune-ext-benchmark", "tune-ext-reference", "tune-ext-plot"])
def test_installed_commands_run_from_the_package(command, tmp_path):
    exe = Path(sys.executable).parent / command      # the entry point pip installed
    proc = subprocess.run([str(exe), "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith(f"usage: {command}"), proc.stderr
    proc = subprocess.run([sys.executable, "-m", "tune_ext.benchmark", "--help"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0 and "--budget-s" in proc.stdout


OWN_TASK = """from tune_ext.benchmark import Task


def train(config):
    pass


def task():
    return Task("own", trainable=train, space={"x": 1.0}, max_t=2, metric="loss", mode="min",
                test_metric="loss", reference=0.0)
"""


def _installed(command):
    return Path(sys.executable).parent / command      # the entry point pip installed


def _env():
    import os

    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def test_installed_command_finds_a_task_in_the_current_folder(tmp_path):
    (tmp_path / "goodtask.py").write_text(OWN_TASK)
    # the task is found, imported and built: what stops it is the method check that follows
    proc = subprocess.run([str(_installed("tune-ext-benchmark")), "--task", "goodtask:task",
                           "--methods", "fds", "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, cwd=tmp_path, env=_env())
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("error: method 'fds' learns an SGD schedule") \
        and "task 'own' has none" in proc.stderr, proc.stderr


def test_installed_command_reports_the_task_modules_own_failed_import(tmp_path):
    (tmp_path / "badtask.py").write_text("import os\nimport nonexistent_dependency_xyz\n" + OWN_TASK)
    proc = subprocess.run([str(_installed("tune-ext-benchmark")), "--task", "badtask:task",
                           "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, cwd=tmp_path, env=_env())
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == (f"error: task 'badtask:task' could not be imported: module 'badtask' "
                           f"raised ModuleNotFoundError: No module named "
                           f"'nonexistent_dependency_xyz' ({tmp_path / 'badtask.py'}, line 2)\n")


@pytest.fixture
def in_folder(tmp_path, monkeypatch):
    """The current folder is an empty temporary one; sys.path and sys.modules are put back after."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.setattr(sys, "modules", dict(sys.modules))
    return tmp_path


@pytest.mark.parametrize("source, message", [
    (None, "no module 'owntask_a' in the current folder ({cwd}) or on the Python path; run from "
           "the folder that holds owntask_a.py, or install it"),
    ("def task(:\n", "module 'owntask_a' raised SyntaxError: "),
    ("X = 1\nraise RuntimeError('no data here')\n",
     "module 'owntask_a' raised RuntimeError: no data here ({cwd}/owntask_a.py, line 2)"),
    (OWN_TASK.replace("def task", "def tsk"), "module 'owntask_a' ({cwd}/owntask_a.py) has no "
                                             "attribute 'task'"),
], ids=["missing", "syntax-error", "raises", "no-attribute"])
def test_a_task_module_that_cannot_be_imported_is_one_line_before_ray(source, message, in_folder,
                                                                       no_ray, capsys):
    if source is not None:
        (in_folder / "owntask_a.py").write_text(source)
    with pytest.raises(SystemExit) as exc:
        cli.main(["--task", "owntask_a:task", "--out", str(in_folder / "out")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("error: task 'owntask_a:task' could not be imported: "
                          + message.format(cwd=in_folder)), err


@pytest.mark.parametrize("task", ["typo_task", "gradient_typo_task"])
def test_run_benchmark_refuses_a_config_every_trial_would_refuse_before_ray(task, no_ray, tmp_path):
    import user_task

    from tune_ext.benchmark import Budget, get_methods, run_benchmark

    with pytest.raises(ValueError, match=r"^method '(asha|fds)' on task 'bumps': unknown config key"):
        run_benchmark(getattr(user_task, task)(), get_methods(["asha", "fds"]), [0], Budget(5.0),
                      str(tmp_path))
    assert not (tmp_path / "ray").exists()


def test_a_subclass_with_its_own_setup_is_not_checked_with_ours(no_ray):
    import dataclasses

    from trainables import SupervisedTrainable
    from tune_ext.benchmark import get_task
    from tune_ext.benchmark.methods import METHODS, check_trial_config

    class WithWarmup(SupervisedTrainable):   # reads a key of its own
        def setup(self, config, **kwargs):
            config = dict(config)
            self.warmup = config.pop("warmup")
            super().setup(config, **kwargs)

    digits = get_task("digits")
    own = dataclasses.replace(digits, trainable=WithWarmup, space={**digits.space, "warmup": 2})
    check_trial_config(METHODS["random"], own)   # its key is not refused by ours
    with pytest.raises(ValueError, match="unknown config key 'warmup' for SupervisedTrainable"):
        check_trial_config(METHODS["random"], dataclasses.replace(own, trainable=SupervisedTrainable))
