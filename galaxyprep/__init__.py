"""galaxyprep: the Kaggle Galaxy Zoo images as one chunked HDF5 file, at the speed of the JPEG decoder."""

__version__ = "0.1.0"

from .errors import InputError
from .galaxy_file import GalaxyFileInfo, open_galaxy_file, read_info, write_galaxy_file
from .tree import CLASS_NAMES, QUESTION_SLICES

__all__ = [
    "CLASS_NAMES",
    "QUESTION_SLICES",
    "GalaxyFileInfo",
    "InputError",
    "open_galaxy_file",
    "read_info",
    "write_galaxy_file",
]
