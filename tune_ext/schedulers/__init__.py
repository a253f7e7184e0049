"""Ray Tune trial schedulers: SHA, paper-exact Hyperband, ASHA (promotion and stopping), adaptive ASHA."""
from tune_ext.schedulers.adaptive import AdaptiveASHAScheduler
from tune_ext.schedulers.asha import ASHAScheduler
from tune_ext.schedulers.brackets import hyperband_brackets
from tune_ext.schedulers.hyperband import HyperbandScheduler
from tune_ext.schedulers.sha import SuccessiveHalvingScheduler
from tune_ext.schedulers.state import SchedulerStateCallback

__all__ = ["ASHAScheduler", "AdaptiveASHAScheduler", "HyperbandScheduler", "SchedulerStateCallback",
           "SuccessiveHalvingScheduler",
           "hyperband_brackets"]
