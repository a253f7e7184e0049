"""Compute and store a task's reference score: the installed ``tune-ext-reference``."""
from tune_ext.benchmark.cli import reference_main

if __name__ == "__main__":
    reference_main()
