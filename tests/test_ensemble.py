"""Ensembles in one command: fit --seeds trains member runs into one folder that score and predict average."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import galaxytrain
from galaxyprep import InputError
from galaxytrain.cli import app

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def test_fit_seeds_trains_members_that_score_and_predict_as_one(make_galaxy_file, tmp_path):
    data = make_galaxy_file(n=64, size=24, seed=2)
    ens = tmp_path / "ens"
    lines: list[str] = []
    results = galaxytrain.fit(data, ens, model="galaxy_cnn", epochs=1, batch_size=16, seeds=[0, 1], log=lines.append)
    assert [r.run_dir for r in results] == [ens / "seed0", ens / "seed1"]
    assert json.loads((ens / "ensemble.json").read_text())["members"] == ["seed0", "seed1"]
    assert json.loads((ens / "seed1" / "config.json").read_text())["config"]["seed"] == 1
    assert any("member seed1 (--seed 1), 2 of 2" in line for line in lines)

    whole = galaxytrain.predict(ens, data)
    parts = [galaxytrain.predict(ens / name, data).mean for name in ("seed0", "seed1")]
    np.testing.assert_allclose(whole.mean, (parts[0].astype(np.float64) + parts[1]) / 2, atol=1e-6)
    assert [m.source for m in whole.models] == [str(ens / "seed0"), str(ens / "seed1")]
    with pytest.raises(InputError, match="is an ensemble of 2 runs"):
        galaxytrain.load(ens)

    runner = CliRunner()
    again = runner.invoke(app, ["fit", "--data", str(data), "--out", str(ens), "--model", "galaxy_cnn", "--epochs",
                                "1", "--batch-size", "16", "--seeds", "0,1", "--no-progress"])
    assert again.exit_code == 0 and again.output.count("nothing to do") == 2, again.output
    report = tmp_path / "report.json"
    scored = runner.invoke(app, ["score", "--run", str(ens), "--data", str(data), "--report", str(report),
                                 "--no-progress"])
    assert scored.exit_code == 0, scored.output
    assert json.loads(report.read_text())["meta"]["ensemble"] == [str(ens / "seed0" / "best.keras"),
                                                                  str(ens / "seed1" / "best.keras")]


def test_bad_seeds_and_unfinished_members_are_one_line(make_galaxy_file, tmp_path):
    data = make_galaxy_file(n=48, size=24, seed=3)
    runner = CliRunner()
    base = ["fit", "--data", str(data), "--model", "galaxy_cnn", "--epochs", "1", "--no-progress"]
    for extra, message in ((["--seeds", "a,b"], "expected seeds as 0,1,2"),
                           (["--seeds", "0,1", "--seed", "2"], "not both"),
                           (["--seeds", "1,1"], "give distinct seeds")):
        result = runner.invoke(app, base + ["--out", str(tmp_path / "e"), *extra])
        assert result.exit_code == 1 and message in result.output, result.output
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    result = runner.invoke(app, base + ["--out", str(other), "--seeds", "0,1"])
    assert result.exit_code == 1 and "not a galaxytrain ensemble" in result.output
    assert (other / "notes.txt").read_text() == "mine"

    from galaxytrain.ensemble import prepare_ensemble

    prepare_ensemble(tmp_path / "half", [0, 1])  # as an ensemble fit interrupted before its members trained
    with pytest.raises(InputError, match="seed0, seed1 are not trained yet"):
        galaxytrain.predict(tmp_path / "half", data)


def test_an_ensemble_recipe_trains_its_members_unless_one_seed_is_asked_for(make_galaxy_file, tmp_path, monkeypatch):
    from galaxytrain import recipes

    assert recipes.recipe_seeds("best-ensemble", None, None) == list(recipes.get_recipe("best-ensemble").seeds)
    assert recipes.recipe_seeds("best-ensemble", 3, None) is None  # one member of it, alone
    assert recipes.recipe_seeds("best", None, None) is None
    assert recipes.recipe_seeds(None, None, [4, 5]) == [4, 5]
    with pytest.raises(InputError, match="not both"):
        recipes.recipe_seeds("best-ensemble", 1, [0, 1])

    small = recipes.Recipe(name="tiny-ensemble", summary="test", seeds=(0, 2), tta=1, data_name="best",
                           options=dict(model="galaxy_cnn", head="sigmoid", loss="mse", epochs=1, batch_size=16))
    monkeypatch.setitem(recipes.RECIPES, "tiny-ensemble", small)
    data = make_galaxy_file(n=48, size=24, seed=4)
    runner = CliRunner()
    base = ["fit", "--recipe", "tiny-ensemble", "--allow-other-build", "--data", str(data), "--no-progress"]
    result = runner.invoke(app, base + ["--out", str(tmp_path / "ens")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "ens" / "ensemble.json").read_text())["members"] == ["seed0", "seed2"]
    assert json.loads((tmp_path / "ens" / "seed2" / "config.json").read_text())["config"]["recipe"] == "tiny-ensemble"
    result = runner.invoke(app, base + ["--out", str(tmp_path / "one"), "--seed", "2"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "one" / "best.keras").exists() and not (tmp_path / "one" / "ensemble.json").exists()
    listed = runner.invoke(app, ["recipes"])
    assert "best-ensemble:" in listed.output and "--seeds 0,1" in listed.output
