"""Forward-mode hypergradients in PyTorch (torch.func); no Ray import."""
from tune_ext.hypergrad.schedule import window_index

__all__ = ["window_index"]
