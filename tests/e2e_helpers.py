"""Cheap checkpointing function trainable and a result collector for end-to-end scheduler tests."""
import json
import os
import tempfile
import threading

from ray import tune
from ray.tune import Checkpoint


def curve(config, t):
    """Deterministic learning curve: higher x is better at every t."""
    return config["x"] * (1 - 0.5 ** t)


def checkpointing_trainable(config):
    """Reports `score` each iteration and a checkpoint holding its step, so PAUSE resumes it."""
    start = 0
    ckpt = tune.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            with open(os.path.join(d, "step.json")) as f:
                start = json.load(f)["step"]
    hold = os.environ.get("TUNE_EXT_TEST_HOLD_STEP", "1") \
        if os.environ.get("TUNE_EXT_TEST_HOLD_X") == repr(config["x"]) else None
    for step in range(start + 1, config.get("steps", 9) + 1):
        if str(step) == hold:
            # The kill-and-restore test holds the experiment here (this trial never reports step
            # TUNE_EXT_TEST_HOLD_STEP) so that it can SIGKILL the driver at a known point; the
            # restored run does not set it.
            threading.Event().wait()
        if config.get("fail_once_at", {}).get(config["x"]) == step and ckpt is None:
            raise RuntimeError(f"injected failure at step {step}")   # the retry has a checkpoint
        if config.get("fail_always_at", {}).get(config["x"]) == step:
            raise RuntimeError(f"injected permanent failure at step {step}")
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "step.json"), "w") as f:
                json.dump({"step": step}, f)
            tune.report({"score": curve(config, step), "step": step},
                        checkpoint=Checkpoint.from_directory(d))


class Recorder(tune.Callback):
    """Collects every (trial config x, training_iteration, step) the driver receives."""

    def __init__(self):
        self.results = []

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.results.append((trial.config["x"], result["training_iteration"], result["step"]))


def damage_file(path, kind):
    """What a crash or a careless user does to a saved file: "delete" it, or "truncate" it to a
    third of its bytes."""
    if kind == "delete":
        os.remove(path)
        return
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[:len(data) // 3])
