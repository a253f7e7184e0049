"""Exact hypergradients in PyTorch (torch.func): forward, reverse, checkpointed, auto; no Ray import."""
from tune_ext.hypergrad.choice import MODES, ModeChoice, choose_mode, default_memory_budget
from tune_ext.hypergrad.engine import InnerRun, Trainer, forward_run
from tune_ext.hypergrad.losses import regularised, regularised_cross_entropy, smoothed_cross_entropy
from tune_ext.hypergrad.reverse import checkpointed_run, reverse_run
from tune_ext.hypergrad.run import hypergradient, inner_run
from tune_ext.hypergrad.schedule import window_index
from tune_ext.hypergrad.state import CarriedState
from tune_ext.hypergrad.updates import SGD, AdamW, layers_of, per_layer_sgd, sgd_momentum

__all__ = ["AdamW", "CarriedState", "InnerRun", "MODES", "ModeChoice", "SGD", "Trainer",
           "checkpointed_run", "choose_mode", "default_memory_budget", "forward_run",
           "hypergradient", "inner_run", "layers_of", "per_layer_sgd", "regularised",
           "regularised_cross_entropy", "reverse_run", "sgd_momentum", "smoothed_cross_entropy",
           "window_index"]
