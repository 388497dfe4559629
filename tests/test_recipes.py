"""Named recipes: what they set, what explicit options override, and fit --recipe end to end."""

from __future__ import annotations

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest
from typer.testing import CliRunner

from galaxyprep.errors import InputError
from galaxytrain.cli import app
from galaxytrain.config import FitConfig
from galaxytrain.models import available_models, create_model
from galaxytrain.data.views import TTA_CHOICES
from galaxytrain.recipes import RECIPES, get_recipe, recipe_names, resolve_fit_config

# Keras 3.15 calls np.array(x, copy=False) on its variables under numpy 2.4: not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def test_no_recipe_is_the_plain_defaults_and_none_means_unset():
    config = resolve_fit_config(None, "d.h5", "run", epochs=None, model=None, learning_rate=None)
    defaults = FitConfig(data="d.h5", out="run")
    assert config == defaults and config.recipe is None
    assert resolve_fit_config(None, "d.h5", "run", epochs=3).epochs == 3


def test_baseline_is_the_student_projects_vgg6():
    config = resolve_fit_config("baseline", "d.h5", "run")
    assert (config.model, config.head, config.loss, config.augment) == ("vgg6", "sigmoid", "bce", "none")
    assert (config.learning_rate, config.lr_schedule, config.weight_decay) == (1e-3, "constant", 0.0)
    assert (config.batch_size, config.epochs, config.input_size) == (64, 20, None)
    assert config.recipe == "baseline"
    # It is also what fit does without a recipe, field for field, apart from the record of the name.
    plain = FitConfig(data="d.h5", out="run")
    assert {k: v for k, v in vars(config).items() if k != "recipe"} == {k: v for k, v in vars(plain).items() if k != "recipe"}


def test_best_sets_every_part_of_the_result_and_explicit_options_win():
    recipe = get_recipe("best")
    config = resolve_fit_config("best", "d.h5", "run")
    for key, value in recipe.options.items():
        assert getattr(config, key) == value
    assert config.head == "tree" and config.loss == "mse" and config.augment == "rotate"
    assert config.model in available_models() and config.lr_schedule != "constant"
    config.check()
    override = resolve_fit_config("best", "d.h5", "run", epochs=2, learning_rate=0.01, batch_size=None)
    assert (override.epochs, override.learning_rate) == (2, 0.01)
    assert override.batch_size == recipe.options["batch_size"]
    # The recipe leaves the precision to the hardware; --mixed-precision / --no-mixed-precision force it.
    assert config.mixed_precision is None
    assert resolve_fit_config("best", "d.h5", "run", mixed_precision=False).mixed_precision is False
    assert resolve_fit_config("best", "d.h5", "run", mixed_precision=True).mixed_precision is True
    # A sigmoid head replacing the recipe's tree head drops the recipe's tree warm-up with it ...
    sigmoid = resolve_fit_config("best", "d.h5", "run", head="sigmoid")
    assert sigmoid.tree_warmup_epochs == 0
    sigmoid.check()
    # ... but an explicit warm-up with it is the user's contradiction, and refused.
    with pytest.raises(InputError, match="--tree-warmup-epochs"):
        resolve_fit_config("best", "d.h5", "run", head="sigmoid", tree_warmup_epochs=2).check()


def test_unknown_recipe_and_option():
    with pytest.raises(InputError, match="best"):  # the message lists what exists
        resolve_fit_config("fastest", "d.h5", "run")
    with pytest.raises(TypeError, match="colour"):
        resolve_fit_config(None, "d.h5", "run", colour="red")
    assert recipe_names() == sorted(RECIPES) and {"best", "baseline"} <= set(recipe_names())


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_builds_its_model_on_its_files(name):
    recipe = get_recipe(name)
    config = resolve_fit_config(name, "d.h5", "run")
    config.check()
    size = config.input_size or recipe.size
    assert size <= recipe.size and recipe.tta in TTA_CHOICES
    model = create_model(config.model, (size, size, 3), head=config.head)
    assert model.output_shape == (None, 37)


def test_fit_recipe_best_resumes_and_scores_with_its_views(make_galaxy_file, tmp_path):
    recipe = get_recipe("best")
    data = make_galaxy_file(n=40, size=recipe.size, crop=recipe.crop, seed=2, name="train.h5")
    run = tmp_path / "run"
    command = ["fit", "--recipe", "best", "--data", str(data), "--out", str(run), "--batch-size", "16",
               "--max-zoom", "1.1"]
    first = CliRunner().invoke(app, command + ["--epochs", "1"])
    assert first.exit_code == 0, first.output
    assert "recipe: best" in first.output
    record = json.loads((run / "config.json").read_text())
    cfg = record["config"]
    assert cfg["recipe"] == "best" and (cfg["epochs"], cfg["batch_size"], cfg["max_zoom"]) == (1, 16, 1.1)
    for key, value in recipe.options.items():
        if key not in ("epochs", "batch_size", "max_zoom"):
            assert cfg[key] == value, key
    size = recipe.options.get("input_size") or recipe.size
    assert record["model"]["input_shape"] == [size, size, 3]

    # The same command with more epochs resumes: the recipe's values are the run's.
    second = CliRunner().invoke(app, command + ["--epochs", "2"])
    assert second.exit_code == 0, second.output
    assert "resuming" in second.output and "epoch 2/2" in second.output
    changed = CliRunner().invoke(app, command + ["--epochs", "3", "--learning-rate", "0.1"])
    assert changed.exit_code == 1 and "learning_rate" in changed.stderr

    scored = CliRunner().invoke(app, ["score", "--run", str(run), "--data", str(data), "--tta", str(recipe.tta),
                                      "--report", str(tmp_path / "report.json")])
    assert scored.exit_code == 0, scored.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["meta"]["tta"] == recipe.tta and 0 < report["rmse"] < 1


def test_recipes_command_lists_them():
    result = CliRunner().invoke(app, ["recipes"])
    assert result.exit_code == 0
    for name in RECIPES:
        assert f"{name}:" in result.stdout
    assert "--model vgg6" in result.stdout and "--head tree" in result.stdout


def test_best_150_is_best_trained_longer_on_best_s_file():
    """The slower recipe differs from best in its epochs alone and trains on the file best builds."""
    best, long = get_recipe("best"), get_recipe("best-150")
    assert {k: v for k, v in long.options.items() if k != "epochs"} == \
        {k: v for k, v in best.options.items() if k != "epochs"}
    assert long.options["epochs"] > best.options["epochs"] and long.tta == best.tta
    assert (long.crop, long.size, long.data.name) == (best.crop, best.size, "best")
