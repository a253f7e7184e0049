"""The main job (placeholder until the harness of issue 7 lands): a small tune.run on digits.

Runs random search over the SGD schedule under Ray's ASHAScheduler with SupervisedTrainable on
scikit-learn's digits, on a local Ray, on the CPU, and prints the best configuration found.
"""
import argparse

import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler

from trainables import SupervisedTrainable


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=9)
    parser.add_argument("--out", default="results")
    args = parser.parse_args()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    space = {"dataset": "digits", "model": "mlp", "epochs": args.epochs,
             "lr_0": tune.loguniform(1e-3, 1.0), "lr_1": tune.loguniform(1e-3, 1.0),
             "momentum": tune.uniform(0.0, 0.99), "weight_decay": tune.loguniform(1e-6, 1e-2)}
    analysis = tune.run(SupervisedTrainable, config=space, num_samples=args.samples,
                        metric="val_acc", mode="max", verbose=1,
                        scheduler=ASHAScheduler(max_t=args.epochs, grace_period=1),
                        storage_path=__import__("os").path.abspath(args.out))
    best = analysis.best_result
    print(f"best val_acc {best['val_acc']:.4f}  test_acc {best['test_acc']:.4f}  "
          f"after {best['epoch']} epochs  config "
          f"{ {k: v for k, v in analysis.best_config.items() if k.startswith(('lr_', 'mom', 'weight'))} }")


if __name__ == "__main__":
    main()
