"""Inference: trained runs applied to files (predict, score). It never imports training."""

from .predict import predict_file, predict_runs
from .score import score_run
from .submission import predict_submission, write_submission
from .trained import TrainedRun, load_run

__all__ = ["TrainedRun", "load_run", "predict_file", "predict_runs", "predict_submission", "score_run",
           "write_submission"]
