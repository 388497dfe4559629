"""An ensemble's student: fit --unlabelled joins the members' soft votes to the labelled galaxies and trains one more member."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import galaxytrain
from galaxyprep import GalaxyFile, InputError, LabelSchema, write_galaxy_file, write_joined_galaxy_file
from galaxyprep.tree import normalize_tree
from galaxytrain.cli import app
from galaxytrain.config import FitConfig
from galaxytrain.training.fit import _member
from galaxytrain.training.student import DEFAULT_VIEWS, soft_labels, student_file

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

TINY = dict(model="galaxy_cnn", epochs=1, batch_size=16, mixed_precision=False)


def _file(path, ids, size=12, labels=True, seed=0, crop=None):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(len(ids), size, size, 3), dtype=np.uint8)
    y = normalize_tree(rng.random((len(ids), 37))).astype(np.float32) if labels else None
    return write_galaxy_file(path, images, np.asarray(ids, dtype=np.int64), y, crop=crop or size, chunk_images=4)


def _rows(path) -> dict:
    """GalaxyID -> (image, labels or None), read row by row: the plain reference."""
    with GalaxyFile(path) as f:
        labels = f.labels() if f.has_labels else None
        return {int(g): (f.images(i, i + 1)[0], None if labels is None else labels[i]) for i, g in enumerate(f.ids)}


def test_a_join_holds_both_files_galaxies_in_id_order_with_the_given_labels(tmp_path):
    first = _file(tmp_path / "a.h5", np.arange(0, 40, 2), seed=1)             # even GalaxyIDs
    second = _file(tmp_path / "b.h5", [*range(1, 30, 2), 4, 41], labels=False, seed=2)  # odd, one shared, one last
    with GalaxyFile(second) as s:
        given = np.random.default_rng(3).random((s.n_images, 37)).astype(np.float32)
        second_ids = s.ids.copy()
    out = tmp_path / "joined.h5"
    with GalaxyFile(first) as a, GalaxyFile(second) as b:
        write_joined_galaxy_file(out, a, b, given, {"source": "test"}, made_from={"teachers": [1, 2]},
                                 block_images=3)  # windows across both files
        assert a.made_from is None  # a file of a build says nothing
    a_rows, b_rows, joined = _rows(first), _rows(second), _rows(out)
    assert list(joined) == sorted({*a_rows, *b_rows})
    for galaxy, (image, label) in joined.items():
        if galaxy in a_rows:  # the first file's galaxy and label win (GalaxyID 4 is in both)
            np.testing.assert_array_equal(image, a_rows[galaxy][0])
            np.testing.assert_array_equal(label, a_rows[galaxy][1])
        else:
            np.testing.assert_array_equal(image, b_rows[galaxy][0])
            np.testing.assert_array_equal(label, given[list(second_ids).index(galaxy)])
    with GalaxyFile(out) as f:
        pixels = np.stack([image for image, _ in joined.values()]).reshape(-1, 3).astype(np.float64)
        np.testing.assert_allclose(f.normalization[0], pixels.mean(axis=0), rtol=1e-9)
        np.testing.assert_allclose(f.normalization[1], pixels.std(axis=0), rtol=1e-9)
        assert f.info.source == "test" and f.info.crop == 12 and f.label_schema.width == 37
        assert f.made_from == {"teachers": [1, 2]}

    other = _file(tmp_path / "c.h5", [101, 103], size=16, labels=False)
    with GalaxyFile(first) as a, GalaxyFile(other) as c:
        with pytest.raises(InputError, match="c.h5.*--size 16.*build both alike"):
            write_joined_galaxy_file(tmp_path / "x.h5", a, c, np.zeros((2, 37)), {})
    with GalaxyFile(first) as a, GalaxyFile(second) as b:
        with pytest.raises(InputError, match="b.h5: holds 17 galaxies but 2 label rows"):
            write_joined_galaxy_file(tmp_path / "x.h5", a, b, np.zeros((2, 37)), {})
    assert not (tmp_path / "x.h5").exists() and not list(tmp_path.glob("*.partial"))


def test_fit_unlabelled_trains_a_student_on_the_members_soft_votes(make_galaxy_file, tmp_path):
    data = make_galaxy_file(n=64, size=24, seed=4)
    # 24 unlabelled galaxies, 4 of them also labelled (100060-100063): 20 join as soft-labelled.
    test = make_galaxy_file(n=24, size=24, labels=False, seed=5, name="test.h5", first_id=100060)
    ens = tmp_path / "ens"
    lines: list[str] = []
    results = galaxytrain.fit(data, ens, seeds=[0, 1], unlabelled=test, log=lines.append, **TINY)
    assert [r.run_dir for r in results] == [ens / "seed0", ens / "seed1", ens / "student"]
    assert json.loads((ens / "ensemble.json").read_text())["members"] == ["seed0", "seed1", "student"]
    record = json.loads((ens / "student" / "config.json").read_text())
    assert record["config"]["seed"] == 0 and record["config"]["data"] == str(ens / "student.h5")
    assert any("on 64 labelled and 20 soft-labelled galaxies" in line for line in lines), lines

    # The student's labels: the labelled file's own, and the two teachers' average over 16 views for the rest.
    teachers = galaxytrain.predict([ens / "seed0", ens / "seed1"], test, tta=DEFAULT_VIEWS)
    # Independent sigmoids (the default head) do not obey the tree: their votes are normalised along it.
    votes = dict(zip(teachers.ids.tolist(), normalize_tree(np.clip(teachers.mean, 0, 1))))
    truth, joined = _rows(data), _rows(ens / "student.h5")
    assert len(joined) == 84 and list(joined) == sorted(joined)
    for galaxy, (_, label) in joined.items():
        np.testing.assert_allclose(label, truth[galaxy][1] if galaxy in truth else votes[galaxy], atol=1e-6)

    whole = galaxytrain.predict(ens, data)
    assert [m.source for m in whole.models] == [str(ens / name) for name in ("seed0", "seed1", "student")]
    parts = [galaxytrain.predict(ens / name, data).mean.astype(np.float64) for name in ("seed0", "seed1", "student")]
    np.testing.assert_allclose(whole.mean, sum(parts) / 3, atol=1e-6)

    # Rerun: every step resumes (nothing trains, the votes are not predicted again).
    lines.clear()
    again = galaxytrain.fit(data, ens, seeds=[0, 1], unlabelled=test, log=lines.append, **TINY)
    assert len(again) == 3 and sum("nothing to do" in line for line in lines) == 3, lines
    assert any("holds the teachers' soft votes already" in line for line in lines)

    # Votes from other teachers (here: seed0 alone): the file is made again and the student starts again.
    student_file(ens, [ens / "seed0"], data, test, DEFAULT_VIEWS, False, lambda s: None)
    lines.clear()
    galaxytrain.fit(data, ens, seeds=[0, 1], unlabelled=test, log=lines.append, **TINY)
    assert any("making it again" in line for line in lines) and any("trains again" in line for line in lines)
    assert not any("nothing to do" in line and "student" in line for line in lines), lines
    np.testing.assert_allclose(_rows(ens / "student.h5")[100070][1], votes[100070], atol=1e-6)

    # A file of the same name that galaxytrain did not make is refused, not written over.
    (ens / "student.h5").unlink()
    _file(ens / "student.h5", [1, 2], size=24)
    with pytest.raises(InputError, match="student.h5: is not a student file that galaxytrain made"):
        galaxytrain.fit(data, ens, seeds=[0, 1], unlabelled=test, log=lines.append, **TINY)
    assert _rows(ens / "student.h5").keys() == {1, 2}


def test_a_student_needs_an_ensemble_and_unlabelled_galaxies_of_the_same_build(make_galaxy_file, tmp_path):
    data = make_galaxy_file(n=48, size=24, seed=6)
    runner = CliRunner()
    base = ["fit", "--data", str(data), "--model", "galaxy_cnn", "--epochs", "1", "--no-progress"]
    other = make_galaxy_file(n=8, size=16, labels=False, name="other.h5", first_id=5)
    same = make_galaxy_file(n=8, size=24, labels=False, name="same.h5")  # only galaxies already labelled
    for extra, message in (
            (["--unlabelled", str(same)], "--unlabelled: teaches a student with an ensemble's soft votes"),
            (["--seeds", "0", "--unlabelled", str(tmp_path / "none.h5")], "none.h5: no such galaxyprep file"),
            (["--seeds", "0", "--unlabelled", str(other)], "other.h5: was built with --crop 16 --size 16"),
            (["--seeds", "0", "--unlabelled", str(same)], "same.h5: holds no galaxy that"),
            (["--recipe", "best-synth-distil"], "recipe best-synth-distil trains a student on unlabelled galaxies")):
        out = tmp_path / "ens"
        result = runner.invoke(app, base + ["--out", str(out), *extra])
        assert result.exit_code == 1 and message in result.output, (extra, result.output)
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
        assert not (out / "seed0").exists()  # refused before any member trained


def test_a_time_budget_gives_the_student_its_larger_share():
    config = FitConfig(data="d.h5", out="ens", hours=3.25, epochs=80)
    first = _member(config, config.out / "seed0", 0, None, 3.25)
    assert first.hours == pytest.approx(1.0) and first.epochs == 80 and first.unlabelled is None
    student = _member(config, config.out / "student", 0, None, 3.25, cost=1.25)
    assert student.hours == pytest.approx(1.25)
    config.recipe = "best-synth-distil"
    planned = _member(config, config.out / "student", 0, 42, 3.25, cost=1.25, data="ens/student.h5")
    assert planned.epochs == 42 and planned.hours is None and planned.seed == 0
    assert planned.recipe == "best-synth-distil" and str(planned.data) == "ens/student.h5"  # the record names both


def test_soft_labels_keep_a_tree_heads_votes_and_bound_own_columns():
    rng = np.random.default_rng(7)
    tree_votes = normalize_tree(rng.random((50, 37)))
    np.testing.assert_allclose(soft_labels(tree_votes, LabelSchema.kaggle()), tree_votes, atol=1e-6)
    sigmoids = rng.random((50, 37))
    fixed = soft_labels(sigmoids, LabelSchema.kaggle())
    assert not LabelSchema.kaggle().invalid_rows(fixed).any() and LabelSchema.kaggle().invalid_rows(sigmoids).any()
    own = LabelSchema.from_stored(["bar", "ring"], ["fraction", "binary"])
    np.testing.assert_allclose(soft_labels(np.array([[1.2, -0.1], [0.3, 0.7]]), own), [[1.0, 0.0], [0.3, 0.7]], atol=1e-7)


def test_the_distil_recipe_is_one_command_whose_student_keeps_the_recipe(make_galaxy_file, tmp_path):
    from galaxytrain.recipes import get_recipe

    recipe = get_recipe("best-synth-distil")
    data = make_galaxy_file(n=40, size=recipe.size, crop=recipe.crop, seed=8, name="train.h5")
    test = make_galaxy_file(n=12, size=recipe.size, crop=recipe.crop, labels=False, seed=9, name="test.h5",
                            first_id=300000)
    ens = tmp_path / "ens"
    done = CliRunner().invoke(app, ["fit", "--recipe", "best-synth-distil", "--data", str(data), "--out", str(ens),
                                    "--unlabelled", str(test), "--epochs", "1", "--batch-size", "16", "--hours", "3",
                                    "--no-progress"])
    assert done.exit_code == 0, done.output
    assert "a time budget of 3 h for 2 members" in done.output and "and a student" in done.output
    for name, seed, source in (("seed0", 0, data), ("seed1", 1, data), ("student", 0, ens / "student.h5")):
        cfg = json.loads((ens / name / "config.json").read_text())["config"]
        assert (cfg["recipe"], cfg["seed"], cfg["data"]) == ("best-synth-distil", seed, str(source)), name
        assert cfg["init_from"] == "pretrained:synth" and cfg["unlabelled"] is None, name
    with GalaxyFile(ens / "student.h5") as f:
        assert f.n_images == 52 and (f.info.crop, f.size) == (recipe.crop, recipe.size)
