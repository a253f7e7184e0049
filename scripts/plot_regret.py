"""Redraw regret.png (median and IQR over seeds per method) from a benchmark's regret.csv.

    python scripts/plot_regret.py results/benchmark
"""
import argparse
import json
import os

from tune_ext.benchmark.curves import load_curves, plot_curves


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", help="a benchmark output folder (with regret.csv and summary.json)")
    p.add_argument("--png", default=None, help="where to write (default: OUT/regret.png)")
    args = p.parse_args()
    with open(os.path.join(args.out, "summary.json")) as f:
        summary = json.load(f)
    png = args.png or os.path.join(args.out, "regret.png")
    plot_curves(load_curves(os.path.join(args.out, "regret.csv")), png, summary["reference_test_acc"],
                summary["budget_s"], summary["target_regret"], title=f"{summary['task']}: regret, median and IQR over seeds")
    print(f"wrote {png}")


if __name__ == "__main__":
    main()
