"""From a galaxyprep file to model inputs: batches, views, the train/validation split."""

from .batches import EpochOrder, GalaxyBatches
from .split import split_rows
from .views import (
    CentreView,
    DihedralView,
    Normalization,
    RotatedView,
    RotateRanges,
    TestTimeViews,
    training_view,
)

__all__ = ["CentreView", "DihedralView", "EpochOrder", "GalaxyBatches", "Normalization", "RotateRanges",
           "RotatedView", "TestTimeViews", "split_rows", "training_view"]
