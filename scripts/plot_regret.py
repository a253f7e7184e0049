"""Redraw a benchmark folder's plots: the installed ``tune-ext-plot OUT``."""
from tune_ext.benchmark.cli import plot_main

if __name__ == "__main__":
    plot_main()
