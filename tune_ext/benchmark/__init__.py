"""The benchmark harness: tasks, method registry, runner, regret, statistics, plots and CLI."""
from tune_ext.benchmark.budget import Budget
from tune_ext.benchmark.methods import METHODS, Method, get_methods
from tune_ext.benchmark.record import RunRecord
from tune_ext.benchmark.regret import IncumbentTracker, RegretCallback
from tune_ext.benchmark.runner import RunOptions, run_benchmark
from tune_ext.benchmark.tasks import TASKS, Task, get_task, sgd_task

__all__ = ["METHODS", "TASKS", "Budget", "IncumbentTracker", "Method", "RegretCallback", "RunOptions",
           "RunRecord", "Task", "get_methods", "get_task", "run_benchmark", "sgd_task"]
