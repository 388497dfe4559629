"""A pretraining stage: a fit that starts from another run's weights instead of the seed's.

Unlike fine-tuning, nothing is replaced or frozen: the network, its head and
the label columns are the start model's, and every layer trains from the
first step at the run's own rate and schedule. The use it was built for is
simulation as pretraining: a run on `galaxyprep synth` galaxies, whose votes
obey the decision tree, before the real images.
"""

from __future__ import annotations

import keras

from galaxyprep import GalaxyFile, InputError

from ..config import FitConfig
from ..run_dir import sha256_file
from .finetune import check_same_build, start_model


def check_init_data(config: FitConfig, f: GalaxyFile, record: dict, size: int) -> None:
    """Refuse a start model of another network, head, input or columns than this fit's; note it in `record`.

    The note (source and the weights' SHA-256) makes a resumed run refuse a
    start model that has changed since.
    """
    trained = start_model(config.init_from)
    recorded = trained.record.get("config", {})
    what = f"--init-from {config.init_from}"
    for key, ours in (("model", config.model), ("head", config.head)):
        if recorded.get(key) != ours:
            raise InputError(what, f"is a run of {key} {recorded.get(key)}, this fit trains {key} {ours}: start "
                                   "from a run of the same network and head")
    theirs = (trained.record.get("model") or {}).get("input_shape", [None])[0]
    if theirs is not None and int(theirs) != size:
        raise InputError(what, f"takes {theirs} px inputs, this fit {size} px: give the same --input-size")
    columns = (record["data"].get("labels") or {}).get("columns")
    if columns is not None and list(trained.label_schema.columns) != list(columns):
        raise InputError(what, f"predicts other label columns than {config.data} holds; galaxytrain finetune "
                               "gives a trained network a new head for new columns")
    check_same_build(trained, f)
    record["init"] = {"source": trained.source, "weights": str(trained.model_path),
                      "sha256": sha256_file(trained.model_path)}


def initialised_model(model: keras.Model, init_from: str) -> keras.Model:
    """`model` (new, compiled) with the start model's weights, checked shape by shape."""
    source = start_model(init_from).fresh_model(keras.mixed_precision.global_policy().name)
    theirs, ours = source.get_weights(), model.get_weights()
    if [w.shape for w in theirs] != [w.shape for w in ours]:
        raise InputError(f"--init-from {init_from}", "its weights do not fit this network (other layers or shapes)")
    model.set_weights(theirs)
    return model
