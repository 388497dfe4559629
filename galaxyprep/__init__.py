"""galaxyprep: the Kaggle Galaxy Zoo images as one chunked HDF5 file, at the speed of the JPEG decoder.

What other packages (galaxytrain, the benches) may use is exported here;
every other module is the package's own business.
"""

from .api import build, build_config
from .atomic import atomic_write, jsonable, write_json_atomic, write_text_atomic
from .builder import BuildConfig, BuildSummary
from .builder import build as build_galaxy_file  # a BuildConfig's build; `build` takes the options
from .errors import InputError
from .interrupts import Terminated, interrupts_unmasked, sigterm_interrupts
from .galaxy_file import (GalaxyFile, GalaxyFileInfo, GalaxyFileWriter, check_joinable, read_info,
                          write_galaxy_file, write_joined_galaxy_file)
from .label_schema import LabelSchema
from .kernels import crop_resize, normalize_batch, normalize_batch_serial
from .outputs import check_output, disk_errors, disk_problem, exclusive_lock, same_path
from .progress import Progress
from .recipes import DATA_RECIPES, DataRecipe, data_recipe
from .split import HOLDOUT_FRACTION, HOLDOUT_SEED, in_holdout, unit_hash
from .tree import (
    CLASS_NAMES,
    N_CLASSES,
    PARENT_COLUMN,
    QUESTION_NAMES,
    QUESTION_SLICES,
    SCALING_ORDER,
    normalize_tree,
    parent_totals,
)
from .version import __version__

__all__ = [
    "BuildConfig",
    "BuildSummary",
    "CLASS_NAMES",
    "DATA_RECIPES",
    "DataRecipe",
    "HOLDOUT_FRACTION",
    "HOLDOUT_SEED",
    "N_CLASSES",
    "PARENT_COLUMN",
    "QUESTION_NAMES",
    "QUESTION_SLICES",
    "SCALING_ORDER",
    "Terminated",
    "GalaxyFile",
    "GalaxyFileInfo",
    "GalaxyFileWriter",
    "InputError",
    "LabelSchema",
    "Progress",
    "__version__",
    "atomic_write",
    "build",
    "build_config",
    "build_galaxy_file",
    "check_output",
    "check_joinable",
    "crop_resize",
    "data_recipe",
    "disk_errors",
    "disk_problem",
    "exclusive_lock",
    "in_holdout",
    "interrupts_unmasked",
    "same_path",
    "sigterm_interrupts",
    "unit_hash",
    "jsonable",
    "normalize_batch",
    "normalize_batch_serial",
    "normalize_tree",
    "parent_totals",
    "read_info",
    "write_galaxy_file",
    "write_joined_galaxy_file",
    "write_json_atomic",
    "write_text_atomic",
]
