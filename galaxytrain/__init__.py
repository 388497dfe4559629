"""Train Galaxy Zoo morphology models from a galaxyprep HDF5 file (Keras 3)."""

from .compute import prefer_onednn

__version__ = "0.1.0"

prefer_onednn()  # before anything imports TensorFlow
