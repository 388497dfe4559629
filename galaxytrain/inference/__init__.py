"""Inference: trained models applied to files, JPEGs and arrays (predict, score). It never imports training."""

from .predict import Predictions, predict_array, predict_file, predict_runs, predict_source
from .score import score_run
from .submission import predict_submission, write_submission
from .trained import ModelSource, TrainedModel, load, load_run

__all__ = ["ModelSource", "Predictions", "TrainedModel", "load", "load_run", "predict_array", "predict_file",
           "predict_runs", "predict_source", "predict_submission", "score_run", "write_submission"]
