"""The planner's fits are the testbed's (experiments.fits): one non-negative least-squares fit, which the
energy attribution uses too."""

from experiments.fits import MAX_FEATURES, Fit, FitError, fit_nonnegative

__all__ = ["MAX_FEATURES", "Fit", "FitError", "fit_nonnegative"]
