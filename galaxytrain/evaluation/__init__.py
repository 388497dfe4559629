"""Evaluation: metrics of 37-column predictions and of one's own columns, the reports, their pictures, the
leaderboard (numpy only, no Keras)."""

from .leaderboard import leaderboard_place
from .metrics import most_common_answer_accuracy, question_accuracy, rmse, rmse_mean_predictor, roc_auc_binarized
from .pictures import gallery_rows, per_galaxy_rmse, write_gallery, write_question_accuracy_chart
from .report import build_columns_report, build_report, format_columns_report, format_report, write_report

__all__ = ["build_columns_report", "build_report", "format_columns_report", "format_report", "gallery_rows",
           "leaderboard_place", "most_common_answer_accuracy", "per_galaxy_rmse", "question_accuracy", "rmse",
           "rmse_mean_predictor", "roc_auc_binarized", "write_gallery", "write_question_accuracy_chart",
           "write_report"]
