"""Forward-mode hypergradients in PyTorch (torch.func); no Ray import."""
from tune_ext.hypergrad.engine import InnerRun, forward_run, hypergradient, reverse_run
from tune_ext.hypergrad.schedule import window_index
from tune_ext.hypergrad.updates import per_layer_sgd, sgd_momentum

__all__ = ["InnerRun", "forward_run", "hypergradient", "per_layer_sgd", "reverse_run",
           "sgd_momentum", "window_index"]
