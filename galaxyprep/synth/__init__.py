"""A synthetic Galaxy Zoo data set in the Kaggle layout, so that everything runs without the real data.

population: what each galaxy is and the tables it is drawn from; votes: the
simulated volunteers who label it; render: the numba kernels that draw it;
streams: which random stream draws what (determinism, prefixes);
kaggle_layout: the folders, JPEGs and labels CSV on disk.
"""

from .kaggle_layout import LABELS_CSV, TEST_FOLDER, TRAIN_FOLDER, SynthResult, synthesize
from .streams import synthesize_arrays

__all__ = ["LABELS_CSV", "TEST_FOLDER", "TRAIN_FOLDER", "SynthResult", "synthesize", "synthesize_arrays"]
