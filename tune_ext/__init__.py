"""tune-ext: paper-exact schedulers, restorable searchers and gradient-based HPO for Ray Tune."""
__version__ = "0.1.0"
