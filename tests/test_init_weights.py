"""fit --init-from: a pretraining stage, a fit that starts from another run's weights."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import galaxyprep
import galaxytrain
from galaxyprep import InputError
from galaxytrain.models import load_model

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

CROP, SIZE = 100, 24
QUIET = dict(log=lambda s: None, mixed_precision=False, progress=False)
NET = dict(model="galaxy_cnn", head="tree", loss="mse", batch_size=16, input_size=20, augment="rotate")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Two synthetic sets (a 'simulated' one to pretrain on, a 'real' one), and a run on the first."""
    from galaxyprep.synth import synthesize

    root = tmp_path_factory.mktemp("init")
    made = {}
    for name, seed in (("sim", 1), ("real", 2)):
        syn = synthesize(root / name, 64, seed=seed, size=128)
        made[name] = galaxyprep.build(syn.train_images, root / f"{name}.h5", syn.labels_csv, crop=CROP,
                                      size=SIZE).out
    start = root / "pretrained"
    galaxytrain.fit(made["sim"], start, epochs=1, seed=7, **NET, **QUIET)  # not the fits' own seed 0
    return made["sim"], made["real"], start, root


def _weights(path) -> list[np.ndarray]:
    """The trainable ones: BatchNorm's moving statistics follow the data whatever the learning rate."""
    return [np.asarray(w) for w in load_model(path).trainable_weights]


def test_the_fit_starts_from_the_runs_weights_and_records_them(files, tmp_path):
    sim, real, start, _ = files
    # At a learning rate of 1e-9 Adam moves no weight by more than about 1e-9 a step: the weights at the
    # end are the ones the run started from.
    galaxytrain.fit(real, tmp_path / "warm", epochs=1, learning_rate=1e-9, init_from=str(start), **NET, **QUIET)
    galaxytrain.fit(real, tmp_path / "cold", epochs=1, learning_rate=1e-9, **NET, **QUIET)
    theirs = _weights(start / "best.keras")
    warm, cold = _weights(tmp_path / "warm" / "last.keras"), _weights(tmp_path / "cold" / "last.keras")
    assert max(float(np.abs(a - b).max()) for a, b in zip(warm, theirs)) < 1e-6
    assert max(float(np.abs(a - b).max()) for a, b in zip(cold, theirs)) > 1e-2
    record = galaxytrain.load(tmp_path / "warm").record
    assert record["config"]["init_from"] == str(start.resolve())
    from galaxytrain.run_dir import sha256_file

    assert record["init"]["sha256"] == sha256_file(start / "best.keras")


def test_a_run_resumes_only_from_the_same_start_weights(files, tmp_path):
    sim, real, start, root = files
    other = root / "pretrained_again"
    galaxytrain.fit(sim, other, epochs=1, seed=3, **NET, **QUIET)
    run = tmp_path / "run"
    galaxytrain.fit(real, run, epochs=1, init_from=str(other), **NET, **QUIET)
    galaxytrain.fit(sim, other, epochs=1, seed=4, overwrite=True, **NET, **QUIET)  # the same folder, new weights
    with pytest.raises(InputError, match="the weights started from"):
        galaxytrain.fit(real, run, epochs=2, init_from=str(other), **NET, **QUIET)


@pytest.mark.parametrize("change, problem", [
    (dict(model="vgg6", head="tree"), "is a run of model galaxy_cnn, this fit trains model vgg6"),
    (dict(head="sigmoid"), "is a run of head tree, this fit trains head sigmoid"),
    (dict(input_size=16), "takes 20 px inputs, this fit 16 px"),
])
def test_another_network_is_refused_in_one_line(files, tmp_path, change, problem):
    _, real, start, _ = files
    options = {**NET, **change}
    with pytest.raises(InputError, match=problem):
        galaxytrain.fit(real, tmp_path / "run", epochs=1, init_from=str(start), **options, **QUIET)
    assert not (tmp_path / "run" / "last.keras").exists()


def test_another_build_or_missing_run_is_refused(files, tmp_path):
    sim, real, start, root = files
    from galaxyprep.synth import synthesize

    syn = synthesize(root / "wide", 16, seed=5, size=128)
    wide = galaxyprep.build(syn.train_images, tmp_path / "wide.h5", syn.labels_csv, crop=120, size=SIZE).out
    with pytest.raises(InputError, match="was built with --crop 120 --size 24.*trained on --crop 100 --size 24"):
        galaxytrain.fit(wide, tmp_path / "run", epochs=1, init_from=str(start), **NET, **QUIET)
    with pytest.raises(InputError, match="no such run directory"):
        galaxytrain.fit(real, tmp_path / "run", epochs=1, init_from=str(root / "nowhere"), **NET, **QUIET)
    with pytest.raises(InputError, match="fine-tuning .* has its own start model"):
        galaxytrain.api.finetune(real, tmp_path / "ft", start=start, init_from=str(start), log=lambda s: None)


def test_the_shell_takes_init_from(files, tmp_path):
    from typer.testing import CliRunner

    from galaxytrain.cli import app

    _, real, start, root = files
    result = CliRunner().invoke(app, ["fit", "--data", str(real), "--out", str(tmp_path / "run"), "--model",
                                      "vgg6", "--init-from", str(start), "--epochs", "1", "--no-progress"])
    assert result.exit_code == 1
    assert "is a run of model galaxy_cnn, this fit trains model vgg6" in result.output
    assert "Traceback" not in result.output
    keras.backend.clear_session()


def test_best_synth_starts_from_the_shipped_simulation_network():
    """The recipe's start model fits the recipe's network, weight for weight (a change to best would break it)."""
    from galaxytrain.recipes import resolve_fit_config
    from galaxytrain.training.fit import build_model
    from galaxytrain.training.init_weights import initialised_model

    config = resolve_fit_config("best-synth", "d.h5", "run")
    assert config.init_from == "pretrained:synth"
    shipped = galaxytrain.load("synth")
    assert shipped.record["config"]["model"] == config.model and shipped.record["config"]["head"] == config.head
    assert shipped.record["model"]["input_shape"][0] == config.input_size
    model = initialised_model(build_model(config, config.input_size), config.init_from)
    for ours, theirs in zip(model.get_weights(), shipped.model.get_weights()):
        np.testing.assert_array_equal(ours, theirs)
