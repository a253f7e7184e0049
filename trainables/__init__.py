"""Ray Tune trainables: datasets, models, SupervisedTrainable (and FDSTrainable)."""
from trainables.data import DATASETS, Splits, load_dataset
from trainables.fds import FDSTrainable
from trainables.models import MODELS, build_model
from trainables.supervised import SupervisedTrainable

__all__ = ["DATASETS", "FDSTrainable", "MODELS", "Splits", "SupervisedTrainable", "build_model", "load_dataset"]
