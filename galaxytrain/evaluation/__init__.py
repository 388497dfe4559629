"""Evaluation: metrics of 37-column predictions, the report, the leaderboard (numpy only, no Keras)."""

from .leaderboard import leaderboard_place
from .metrics import question_accuracy, rmse, rmse_mean_predictor, roc_auc_binarized
from .report import build_report, format_report, write_report

__all__ = ["build_report", "format_report", "leaderboard_place", "question_accuracy", "rmse",
           "rmse_mean_predictor", "roc_auc_binarized", "write_report"]
