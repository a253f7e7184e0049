"""Ray Tune trial schedulers: SHA, paper-exact Hyperband, ASHA (promotion and stopping), adaptive ASHA."""
from tune_ext.schedulers.asha import ASHAScheduler
from tune_ext.schedulers.brackets import hyperband_brackets

__all__ = ["ASHAScheduler", "hyperband_brackets"]
