"""Train Galaxy Zoo morphology models from a galaxyprep HDF5 file (Keras 3).

The Python API (galaxytrain.api): `fit`, `finetune`, `load` (a run folder or a shipped
model) and the loaded model's ``.predict``, `predict`, `score`, `list_pretrained`.
TensorFlow is imported by the first of them that needs it, not here.
"""

from .compute import prefer_onednn

__version__ = "0.1.0"

prefer_onednn()  # before anything imports TensorFlow

from .api import finetune, fit, list_pretrained, load, predict, score  # noqa: E402

__all__ = ["__version__", "finetune", "fit", "list_pretrained", "load", "predict", "score"]
