"""Forward-mode hypergradients in PyTorch (torch.func); no Ray import."""
from tune_ext.hypergrad.engine import InnerRun, Trainer, forward_run, hypergradient, reverse_run
from tune_ext.hypergrad.losses import regularised, regularised_cross_entropy, smoothed_cross_entropy
from tune_ext.hypergrad.schedule import window_index
from tune_ext.hypergrad.state import CarriedState
from tune_ext.hypergrad.updates import SGD, AdamW, layers_of, per_layer_sgd, sgd_momentum

__all__ = ["AdamW", "CarriedState", "InnerRun", "SGD", "Trainer", "forward_run", "hypergradient",
           "layers_of", "per_layer_sgd", "regularised", "regularised_cross_entropy", "reverse_run",
           "sgd_momentum", "smoothed_cross_entropy", "window_index"]
