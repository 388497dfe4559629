"""From a galaxyprep file to model inputs: batches, views, the train/validation split."""

from .batches import EpochOrder, GalaxyBatches
from .split import split_rows
from .views import (
    CentreView,
    ColourNoise,
    DihedralView,
    Normalization,
    RotatedView,
    RotateRanges,
    TestTimeViews,
    colour_axes,
    training_view,
)

__all__ = ["CentreView", "ColourNoise", "DihedralView", "EpochOrder", "GalaxyBatches", "Normalization", "RotateRanges",
           "RotatedView", "TestTimeViews", "colour_axes", "split_rows", "training_view"]
