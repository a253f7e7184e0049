"""tune-ext: paper-exact schedulers, restorable searchers and gradient-based HPO for Ray Tune."""
__version__ = "0.2.0.dev0"
