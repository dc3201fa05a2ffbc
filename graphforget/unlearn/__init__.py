"""Unlearning methods behind one contract (see :mod:`graphforget.unlearn.base`)."""
from .base import UnlearnReport, UnlearnResult, Unlearner, UnlearningRequest
from .objective import SampleSet, sample_losses, total_loss

__all__ = ["Unlearner", "UnlearningRequest", "UnlearnReport", "UnlearnResult", "SampleSet",
           "sample_losses", "total_loss"]
