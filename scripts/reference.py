"""Compute and store a task's reference test accuracy (grid around common SGD settings).

    python scripts/reference.py --task digits
"""
import argparse

import torch

from tune_ext.benchmark.reference import compute_reference, store_reference
from tune_ext.benchmark.tasks import TASKS, get_task


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="digits", help=f"one of {', '.join(sorted(TASKS))}")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--data-root", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)  # the benchmark's trials run with one thread each, as Ray sets them
    reference = compute_reference(get_task(args.task), seeds=tuple(range(args.seeds)),
                                  data_root=args.data_root)
    path = store_reference(reference)
    print(f"reference test accuracy for {args.task}: {reference['reference_test_acc']:.4f} "
          f"({reference['best']['config']}) -> {path}")


if __name__ == "__main__":
    main()
