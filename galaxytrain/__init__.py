"""Train Galaxy Zoo morphology models from a galaxyprep HDF5 file (Keras 3)."""

__version__ = "0.1.0"
