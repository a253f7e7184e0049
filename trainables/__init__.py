"""Ray Tune trainables: datasets, models, SupervisedTrainable and FDSTrainable, and the registry
through which a config names built-in (or registered) data and models."""
from trainables.data import DATASETS, Splits, as_splits, load_dataset, register_dataset
from trainables.fds import FDSTrainable
from trainables.models import MODELS, build_model, register_model
from trainables.supervised import SupervisedTrainable

__all__ = ["DATASETS", "FDSTrainable", "MODELS", "Splits", "SupervisedTrainable", "as_splits",
           "build_model", "load_dataset", "register_dataset", "register_model"]
