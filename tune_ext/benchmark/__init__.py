"""The benchmark harness: tasks, method registry, runner, regret, statistics, plots and CLI."""
from tune_ext.benchmark.methods import METHODS, Method, get_methods
from tune_ext.benchmark.regret import IncumbentTracker, RegretCallback
from tune_ext.benchmark.runner import Budget, run_benchmark
from tune_ext.benchmark.tasks import TASKS, Task, get_task, sgd_task

__all__ = ["METHODS", "TASKS", "Budget", "IncumbentTracker", "Method", "RegretCallback", "Task",
           "get_methods", "get_task", "run_benchmark", "sgd_task"]
