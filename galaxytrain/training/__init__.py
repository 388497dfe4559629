"""Training: `fit` and what it is made of (callbacks, resume policy, schedule, data record, curves).

Nothing outside this package imports it but the CLI and the benches:
inference and evaluation stand on their own.
"""

from .fit import FitResult, fit, fit_ensemble

__all__ = ["FitResult", "fit", "fit_ensemble"]
