"""The Python API: build, fit, load and predict from a notebook, with the shell's results and the shell's errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import galaxyprep
import galaxytrain
from galaxyprep import CLASS_NAMES, GalaxyFile, InputError, crop_resize
from galaxytrain.config import FitConfig

from reference import crop_area_resample

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

CROP, SIZE = 100, 24


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Synthetic JPEGs, a file built through the API, and a one-epoch run trained through it."""
    from galaxyprep.synth import synthesize

    root = tmp_path_factory.mktemp("api")
    syn = synthesize(root / "synth", 96, n_test=12, seed=3, size=128)
    data = root / "train.h5"
    summary = galaxyprep.build(syn.train_images, data, syn.labels_csv, crop=CROP, size=SIZE)
    assert summary.n_written == 96
    lines: list[str] = []
    result = galaxytrain.fit(data, root / "run", model="galaxy_cnn", epochs=1, batch_size=16, log=lines.append)
    assert result.epochs_done == 1 and any(line.startswith("epoch 1/1") for line in lines)
    return syn, data, root / "run"


def test_crop_resize_matches_the_reference_on_real_frames(shared_gz):
    files = sorted((shared_gz / "images").glob("*.jpg"))[:6]
    frames = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    got = crop_resize(frames, 207, 69)
    box = (424 - 207) / 2
    exact = np.stack([crop_area_resample(frame, box, box, 207, 207, 69) for frame in frames])
    assert np.abs(got.astype(np.float64) - exact).max() <= 0.5 + 2e-3
    # A 207-pixel box starts half a pixel in, so averages of 3x3 pixels land on .5 ties often (k/36);
    # float32 may round a tie either way, every other value exactly.
    not_tie = np.abs(exact - np.floor(exact) - 0.5) > 1e-3
    np.testing.assert_array_equal(got[not_tie], np.floor(exact + 0.5)[not_tie])


def test_crop_resize_refuses_what_it_cannot_cut():
    with pytest.raises(ValueError, match="crop"):
        crop_resize(np.zeros((1, 50, 50, 3), np.uint8), 60, 20)
    with pytest.raises(ValueError, match="uint8"):
        crop_resize(np.zeros((1, 50, 50, 3), np.float32), 40, 20)


def test_a_recipe_is_named_only_by_resolving_it(tmp_path):
    """FitConfig(recipe=...) once trained vgg6 while recording `best`; now it cannot be written."""
    with pytest.raises(TypeError, match="recipe"):
        FitConfig(data="d.h5", out="run", recipe="best")
    from galaxytrain.recipes import RECIPES, resolve_fit_config

    config = resolve_fit_config("best", "d.h5", "run", epochs=3)
    assert config.recipe == "best" and config.model == RECIPES["best"].options["model"] and config.epochs == 3
    assert FitConfig.from_dict(config.to_dict()).recipe == "best"


def test_build_takes_a_recipes_crop_and_size(tmp_path):
    config = galaxyprep.build_config("imgs", tmp_path / "o.h5", recipe="best")
    assert (config.crop, config.size) == (galaxyprep.data_recipe("best").crop, galaxyprep.data_recipe("best").size)
    with pytest.raises(TypeError, match="bogus"):
        galaxyprep.build_config("imgs", tmp_path / "o.h5", bogus=1)
    with pytest.raises(InputError, match="no such"):
        galaxyprep.build(tmp_path / "missing", tmp_path / "o.h5", crop=CROP, size=SIZE)


def test_load_predicts_a_file_its_jpegs_and_arrays_alike(trained, tmp_path):
    syn, data, run = trained
    model = galaxytrain.load(run)
    from_file = model.predict(data, tta=2)
    with GalaxyFile(data) as f:
        stored, ids = f.images(0, f.n_images), f.ids.copy()
    np.testing.assert_array_equal(from_file.ids, ids)
    from_array = model.predict(stored, ids=ids, tta=2)
    np.testing.assert_allclose(from_array.mean, from_file.mean, atol=1e-6)
    from_jpegs = model.predict(syn.train_images, tta=2)
    np.testing.assert_array_equal(from_jpegs.ids, ids)
    np.testing.assert_allclose(from_jpegs.mean, from_file.mean, atol=1e-6)
    frame = from_file.to_frame()
    assert list(frame.columns) == list(CLASS_NAMES) and frame.index.name == "GalaxyID"
    assert frame.values.min() >= 0 and frame.values.max() <= 1
    assert from_file.spread is not None and from_file.tta == 2


def test_full_frames_predict_as_a_full_decode_build_does(trained, tmp_path):
    """An array of decoded frames is cut and resampled as `build --no-dct-scaling --no-crop-decode` does."""
    syn, _, run = trained
    files = sorted(Path(syn.train_images).glob("*.jpg"))[:10]
    frames = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    ids = [int(f.stem) for f in files]
    folder = tmp_path / "ten"
    folder.mkdir()
    for f in files:
        (folder / f.name).write_bytes(f.read_bytes())
    full = tmp_path / "full.h5"
    galaxyprep.build(folder, full, crop=CROP, size=SIZE, dct_scaling=False, crop_decode=False)
    model = galaxytrain.load(run)
    with GalaxyFile(full) as f:
        np.testing.assert_array_equal(crop_resize(frames, CROP, SIZE), f.images(0, f.n_images))
    np.testing.assert_allclose(model.predict(frames, ids=ids).mean, model.predict(full).mean, atol=1e-6)


def test_bad_arrays_and_ids_raise_one_line(trained):
    _, _, run = trained
    model = galaxytrain.load(run)
    with pytest.raises(InputError, match="uint8"):
        model.predict(np.zeros((2, SIZE, SIZE, 3), np.float32))
    with pytest.raises(InputError, match="at least 100"):
        model.predict(np.zeros((2, 50, 50, 3), np.uint8))
    with pytest.raises(InputError, match="one GalaxyID per image"):
        model.predict(np.zeros((2, SIZE, SIZE, 3), np.uint8), ids=[1])
    with pytest.raises(InputError, match="square RGB"):
        model.predict(np.zeros((2, SIZE, SIZE), np.uint8))


def test_score_from_python_returns_the_report(trained, tmp_path):
    _, data, run = trained
    report = galaxytrain.score(run, data, tmp_path / "r.json", tta=1, log=lambda line: None)
    assert (tmp_path / "r.json").exists() and 0 < report["rmse"] < 0.5


@pytest.fixture
def shipped(trained, tmp_path, monkeypatch):
    """The tiny run exported as a shipped model `tiny`, in a package folder of the test's own."""
    import galaxytrain.models.pretrained as pretrained

    _, _, run = trained
    monkeypatch.setattr(pretrained, "PRETRAINED_ROOT", tmp_path / "pretrained")
    evaluation = {"tta": 1, "rmse_tta": 0.2, "rmse_1": 0.2, "rmse_mean_predictor": 0.25, "question_rmse": {},
                  "float16_max_abs_change": 0.0, "float16_rmse_change": 0.0}
    made_by = {"command": "test", "commit": "abc", "machine": "here", "date": "today"}
    return pretrained.export_run(run, tmp_path / "pretrained" / "tiny", summary="a tiny test model",
                                 evaluation=evaluation, made_by=made_by)


def test_a_shipped_model_predicts_as_its_run_did(trained, shipped, tmp_path, monkeypatch):
    _, data, run = trained
    card = shipped.card_path.read_text()
    for fragment in ("## How it was made", "## Intended use", "## Limits", "## Data terms", "commit abc"):
        assert fragment in card
    assert galaxytrain.list_pretrained() == {"tiny": "a tiny test model"}
    loaded = galaxytrain.load("tiny")
    assert loaded.source == "pretrained:tiny" and loaded.record["data"]["crop"] == CROP
    assert "path" not in loaded.record["data"]  # the training machine's paths stay behind
    # float16 storage: the run's own predictions, to float16's rounding
    np.testing.assert_allclose(loaded.predict(data).mean, galaxytrain.load(run).predict(data).mean, atol=5e-3)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny").mkdir()
    with pytest.raises(InputError, match="both a path and a shipped model"):
        galaxytrain.load("tiny")
    assert galaxytrain.load("pretrained:tiny").source == "pretrained:tiny"


def test_changed_shipped_weights_are_refused(shipped):
    weights = shipped.weights_path
    raw = bytearray(weights.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    weights.write_bytes(bytes(raw))
    with pytest.raises(InputError, match="does not match the SHA-256"):
        galaxytrain.load("tiny")
    with pytest.raises(InputError, match="no shipped model of that name; shipped: tiny"):
        galaxytrain.load("pretrained:nothing")


def test_the_shell_predicts_and_scores_with_a_shipped_model(trained, shipped, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from galaxytrain.cli import app

    syn, data, _ = trained
    runner = CliRunner()
    listed = runner.invoke(app, ["models"])
    assert listed.exit_code == 0 and "tiny: a tiny test model" in listed.stdout and "galaxy_parts" in listed.stdout
    out = tmp_path / "sub.csv"
    done = runner.invoke(app, ["predict", "--pretrained", "tiny", "--images", str(syn.train_images), "--out", str(out),
                               "--no-progress"])
    assert done.exit_code == 0, done.output
    assert len(out.read_text().splitlines()) == 97
    monkeypatch.chdir(tmp_path)
    scored = runner.invoke(app, ["score", "--pretrained", "tiny", "--data", str(data), "--tta", "1"])
    assert scored.exit_code == 0, scored.output
    assert (tmp_path / "tiny-report.json").exists()
    # its own files are never an output
    target = shipped.folder / "MODEL_CARD.md"
    refused = runner.invoke(app, ["predict", "--pretrained", "tiny", "--data", str(data), "--out", str(target),
                                  "--overwrite"])
    assert refused.exit_code == 1 and "--pretrained" in refused.stderr
    neither = runner.invoke(app, ["predict", "--data", str(data), "--out", str(tmp_path / "x.csv")])
    assert neither.exit_code == 1 and "--run/--pretrained" in neither.stderr


def _ensemble_card() -> dict:
    """What scripts/train_pretrained.py records of a shipped ensemble, with figures of its kind."""
    evaluation = {"tta": 16, "n_val": 620, "rmse_tta": 0.0862, "rmse_1": 0.0870, "rmse_mean_predictor": 0.173,
                  "question_rmse": {"Class1": 0.118}}
    members = [{"name": "best-three/seed0", "role": "teacher, seed 0", "val_rmse_tta": 0.0897, "n_val": 620,
                "minutes": 30.0, "rmse_tta_here": 0.0897, "trained_on_val": 0},
               {"name": "best-three/seed1", "role": "teacher, seed 1", "val_rmse_tta": 0.0905, "n_val": 581,
                "minutes": 31.5, "rmse_tta_here": None, "trained_on_val": 557},
               {"name": "best", "role": "student", "val_rmse_tta": 0.0881, "n_val": 620, "minutes": 37.6,
                "rmse_tta_here": 0.0881, "trained_on_val": 0}]
    card = {"evaluation": evaluation, "made_by": {"command": "c", "commit": "abc", "machine": "m", "date": "d"},
            "members": members, "recipe": "best-synth-distil",
            "data": {"n_labelled": 5866, "n_unlabelled": 1197, "n_labelled_train": 5246, "build": "best", "crop": 207,
                     "image_size": 69},
            "holdout": {"rmse": 0.0873, "networks": [0.0884, 0.0889, 0.0881], "n_train": 4230, "n": 1156,
                        "source": "the bench"}}
    return card


@pytest.fixture
def shipped_ensemble(shipped, tmp_path):
    """`tiny` and a second network of its architecture (other output biases), shipped as the ensemble `pair`."""
    import json

    import galaxytrain.models.pretrained as pretrained

    root = tmp_path / "pretrained"
    other = [w.astype(np.float32) for w in shipped.stored_weights()]
    bias = max(i for i, w in enumerate(other) if w.shape == (len(CLASS_NAMES),))  # the output layer's bias
    other[bias] = other[bias] - 0.5  # another network's answers
    second = pretrained.write_shipped_model(root / "pair" / "b", architecture=shipped.meta["architecture"],
                                            weights=other, record=shipped.record, summary="a second network",
                                            card=shipped.meta["card"], name="pair/b")
    assert json.loads((root / "pair" / "b" / "model.json").read_text())["name"] == "pair/b"
    return pretrained.write_shipped_ensemble(root / "pair", [shipped, second], summary="two networks",
                                             card=_ensemble_card())


def test_a_shipped_ensemble_predicts_its_networks_average(trained, shipped_ensemble):
    _, data, _ = trained
    # listed by its own name; its networks load alone, by theirs
    assert set(galaxytrain.list_pretrained()) == {"tiny", "pair"}
    one, two = galaxytrain.load("tiny"), galaxytrain.load("pair/b")
    assert two.source == "pretrained:pair/b"
    alone = [m.predict(data, tta=2).mean for m in (one, two)]
    assert np.abs(alone[0] - alone[1]).max() > 0.01  # two networks that answer differently
    both = galaxytrain.predict("pair", data, tta=2)
    np.testing.assert_allclose(both.mean, (alone[0] + alone[1]) / 2, atol=1e-5)
    with pytest.raises(InputError, match="shipped ensemble of 2 networks: predict or score it whole .*tiny, pair/b"):
        galaxytrain.load("pair")
    with pytest.raises(InputError, match="shipped ensemble"):
        galaxytrain.finetune(data, shipped_ensemble.folder.parent.parent / "ft", pretrained="pair", epochs=1)
    with pytest.raises(InputError, match="no shipped model of that name"):
        galaxytrain.load("pretrained:pair/../tiny")


def test_a_shipped_ensemble_refuses_a_network_exported_without_it(trained, shipped, shipped_ensemble):
    """Networks of two trainings would describe neither: a member must be the one the ensemble was made with."""
    import galaxytrain.models.pretrained as pretrained

    _, data, _ = trained
    (shipped_ensemble.folder / "b" / "model.json").unlink()
    with pytest.raises(InputError, match="names the member 'pair/b', which is not a shipped network"):
        galaxytrain.predict("pretrained:pair", data, tta=1)
    # `tiny` exported again from another training: the ensemble does not name these weights
    again = [w.astype(np.float32) * 0.99 for w in shipped.stored_weights()]
    pretrained.write_shipped_model(shipped.folder, architecture=shipped.meta["architecture"], weights=again,
                                   record=shipped.record, summary="a tiny test model", card=shipped.meta["card"])
    assert galaxytrain.load("tiny").source == "pretrained:tiny"  # alone, it is a model as any other
    with pytest.raises(InputError, match="is not the network the shipped ensemble 'pair' was made with"):
        galaxytrain.predict("pair", data, tta=1)


def test_the_shell_predicts_with_a_shipped_ensemble_and_never_writes_over_it(trained, shipped_ensemble, tmp_path):
    import json

    from typer.testing import CliRunner

    from galaxytrain.cli import app

    _, data, _ = trained
    with GalaxyFile(data) as f:
        labels = f.labels().astype(np.float64)
    runner = CliRunner()
    listed = runner.invoke(app, ["models"])
    assert listed.exit_code == 0 and "pair: two networks" in listed.stdout and "pair/b" not in listed.stdout
    out = tmp_path / "pair.csv"
    done = runner.invoke(app, ["predict", "--pretrained", "pair", "--data", str(data), "--out", str(out), "--tta", "1",
                               "--no-progress"])
    assert done.exit_code == 0, done.output
    found = np.loadtxt(out, delimiter=",", skiprows=1)[:, 1:]
    np.testing.assert_allclose(found, np.clip(galaxytrain.predict("pair", data, tta=1).mean, 0, 1), atol=1e-5)
    scored = runner.invoke(app, ["score", "--pretrained", "pair", "--data", str(data), "--tta", "1",
                                 "--report", str(tmp_path / "pair.json")])
    assert scored.exit_code == 0, scored.output
    report = json.loads((tmp_path / "pair.json").read_text())
    assert report["rmse"] == pytest.approx(float(np.sqrt(np.mean((found - labels) ** 2))), abs=1e-4)
    for target in (shipped_ensemble.card_path, shipped_ensemble.folder / "b" / "weights.npz"):
        refused = runner.invoke(app, ["predict", "--pretrained", "pair", "--data", str(data), "--out", str(target),
                                      "--overwrite"])
        assert refused.exit_code == 1 and "--pretrained" in refused.stderr


def test_an_ensembles_card_names_its_networks_and_what_each_trained_on():
    from galaxytrain.models.pretrained import ensemble_card

    card = _ensemble_card()
    text = ensemble_card("best-three", "three networks", card)
    assert "| `best-three/seed1` | teacher, seed 1 | 0.0905 (581) | 31.5 |" in text
    assert "`best-three/seed0` and `best` kept them out; `best-three/seed1` trained on 557 of them" in text
    assert "the average's figures here are optimistic" in text
    assert "| this ensemble, 16 test-time views (the default) | 0.0862 |" in text
    assert "| `best` alone, 16 views | 0.0881 |" in text and "`best-three/seed1` alone" not in text
    assert "99.1 min of\n  training in all" in text and "scored **0.0873** on 1,156 kept out" in text
    assert "Trained on 5,246 galaxies" in text and "## Data terms" in text


def test_build_split_gives_two_disjoint_sides_decided_by_galaxyid(tmp_path):
    """--split train|holdout: a labelled holdout for score, by the hash fit and the bench use."""
    from galaxyprep.synth import synthesize
    from galaxytrain.data import split_rows

    syn = synthesize(tmp_path / "s", 60, seed=5, size=128)
    sides = {}
    for side in ("train", "holdout"):
        summary = galaxyprep.build(syn.train_images, tmp_path / f"{side}.h5", syn.labels_csv, crop=CROP, size=SIZE,
                                   split=side, holdout_fraction=0.3, split_seed=7)
        with GalaxyFile(tmp_path / f"{side}.h5") as f:
            sides[side] = f.ids.copy()
        assert summary.other_split == 60 - len(sides[side])
        assert any(f"--split {side}" in line for line in summary.lines())
    all_ids = np.sort(np.concatenate(list(sides.values())))
    train_rows, hold_rows = split_rows(all_ids, 0.3, 7)
    np.testing.assert_array_equal(sides["train"], all_ids[train_rows])
    np.testing.assert_array_equal(sides["holdout"], all_ids[hold_rows])
    with pytest.raises(InputError, match="--split"):
        galaxyprep.build(syn.train_images, tmp_path / "x.h5", crop=CROP, size=SIZE, split="test")


def test_a_build_says_what_its_id_list_left_out(tmp_path):
    from galaxyprep.synth import synthesize

    syn = synthesize(tmp_path / "s", 20, seed=5, size=128)
    ids = sorted(int(p.stem) for p in Path(syn.train_images).glob("*.jpg"))
    (tmp_path / "ids.txt").write_text("\n".join(str(i) for i in ids[:5] + [123456789]) + "\n")
    summary = galaxyprep.build(syn.train_images, tmp_path / "x.h5", crop=CROP, size=SIZE,
                               ids_file=tmp_path / "ids.txt")
    assert summary.n_written == 5 and summary.left_by_id_list == 15 and summary.not_in_id_list == 1
    assert "15 image(s) not in the --ids list: not built" in summary.lines()


@pytest.fixture(scope="module")
def shared_built(shared_gz, tmp_path_factory):
    """Every shared labelled image built as the shipped models' file was: (build summary, ids, images, labels)."""
    out = tmp_path_factory.mktemp("shared") / "all.h5"
    summary = galaxyprep.build(shared_gz / "images", out, shared_gz / "training_solutions_rev1.csv", recipe="best")
    with GalaxyFile(out) as f:
        return summary, f.ids.copy(), f.images(0, f.n_images), f.labels().astype(np.float64)


def test_the_shipped_best_model_scores_on_its_validation_galaxies_as_its_card_says(shared_built):
    """The package's own model, loaded as a user would, on the real galaxies it was not trained on."""
    from galaxytrain.data import split_rows

    summary, ids, images, labels = shared_built
    model = galaxytrain.load("best")
    card = galaxytrain.models.pretrained.shipped_model("best").meta["card"]["evaluation"]
    split = model.record["split"]
    student = galaxytrain.models.pretrained.shipped_model("best").meta["card"].get("student")
    # a student's own file also held the soft-labelled test galaxies; the card counts the labelled ones
    assert summary.n_written == (student["n_labelled"] if student else model.record["data"]["n_images"])
    _, val = split_rows(ids, split["val_fraction"], split["seed"])
    assert len(val) == card["n_val"]
    found = model.predict(images[val], ids=ids[val], tta=1)
    rmse = float(np.sqrt(np.mean((np.clip(found.mean, 0, 1) - labels[val]) ** 2)))
    # the card's figure was computed in float32; this CPU may compute in bfloat16: rounding apart
    assert rmse == pytest.approx(card["rmse_1"], abs=2e-3)
    assert rmse < 0.75 * card["rmse_mean_predictor"]


def test_the_shipped_ensemble_averages_best_and_its_teachers_as_its_card_says(shared_built):
    """best-three: the recipe's teachers and the shipped `best` itself, on the student's validation galaxies."""
    from galaxytrain.data import split_rows
    from galaxytrain.models.pretrained import shipped_model

    _, ids, images, labels = shared_built
    ensemble = shipped_model("best-three")
    networks = ensemble.members()  # each checked against the SHA-256 the ensemble names
    assert [n.name for n in networks] == ["best-three/seed0", "best-three/seed1", "best"]
    card = ensemble.meta["card"]["evaluation"]
    _, val = split_rows(ids, networks[-1].record["split"]["val_fraction"], networks[-1].record["split"]["seed"])
    assert len(val) == card["n_val"]
    found = galaxytrain.predict("best-three", images[val], ids=ids[val], tta=1)
    rmse = float(np.sqrt(np.mean((np.clip(found.mean, 0, 1) - labels[val]) ** 2)))
    assert rmse == pytest.approx(card["rmse_1"], abs=2e-3)  # float32 on the card, maybe bfloat16 here


def test_a_students_card_says_what_it_learnt_from_and_scores_only_its_labelled_validation_galaxies():
    """Its own split mixes labelled and soft-labelled galaxies; the card's figures are on the labelled ones."""
    from galaxytrain.models.pretrained import model_card

    record = {"config": {"recipe": "best-synth-distil", "model": "galaxy_parts", "head": "tree", "seed": 0},
              "data": {"n_images": 7063, "crop": 207, "image_size": 69},
              "split": {"n_train": 6357, "n_val": 706, "seed": 0, "val_fraction": 0.1}}
    card = {"evaluation": {"tta": 16, "n_val": 620, "rmse_tta": 0.0893, "rmse_1": 0.0905, "rmse_mean_predictor": 0.17,
                           "question_rmse": {}, "float16_max_abs_change": 1e-4, "float16_rmse_change": 1e-7},
            "made_by": {"command": "c", "commit": "abc", "machine": "m", "date": "d"},
            "training": {"epochs": 80, "best_epoch": 70, "minutes": 40.0},
            "student": {"teachers": [{"run": "seed0", "seed": 0, "minutes": 30.5, "val_rmse_tta": 0.0901},
                                     {"run": "seed1", "seed": 1, "minutes": 31.0, "val_rmse_tta": None}],
                        "n_labelled": 5866, "n_unlabelled": 1197, "n_labelled_train": 5246,
                        "n_unlabelled_train": 1111, "views": 16}}
    text = model_card("best", "a student", record, card)
    assert "5,246 labelled and 1,111 soft-labelled galaxies trained on, 706 kept for validation" in text
    assert "On the 620 validation galaxies" in text and "Trained on 5,246 galaxies" in text
    assert "the 5,866 labelled Kaggle training JPEGs" in text and "and its 1,197 unlabelled test JPEGs" in text
    assert "they trained 61.5 min before it" in text
    # only the teacher that kept the student's validation galaxies out is scored on them
    assert "| its teacher seed0 alone, 16 views | 0.0901 |" in text and "seed1 alone" not in text
    assert "`galaxyprep build --recipe best`" in text  # the data recipe, not the training one


def test_info_says_what_the_build_left_out(tmp_path, capsys):
    from galaxyprep.cli import main
    from galaxyprep.synth import synthesize

    syn = synthesize(tmp_path / "s", 12, seed=2, size=128)
    rows = syn.labels_csv.read_text().splitlines()
    labels = tmp_path / "labels.csv"
    labels.write_text("\n".join(rows[:-2] + [rows[1].replace(rows[1].split(",")[0], "99", 1)]) + "\n")
    galaxyprep.build(syn.train_images, tmp_path / "x.h5", labels, crop=CROP, size=SIZE)
    with pytest.raises(SystemExit) as done:
        main(["info", str(tmp_path / "x.h5")])
    assert done.value.code == 0
    assert "not built: 2 image(s) without a label row; 1 label row(s) without an image" in capsys.readouterr().out


def test_predict_and_score_show_progress_in_a_log(trained, tmp_path):
    """4 silent minutes on 1,197 images once: now a line when it starts, every 5 s, and at the end."""
    from typer.testing import CliRunner

    from galaxytrain.cli import app

    _, data, run = trained
    runner = CliRunner()
    scored = runner.invoke(app, ["score", "--run", str(run), "--data", str(data), "--report", str(tmp_path / "r.json"),
                                 "--tta", "2"])
    assert scored.exit_code == 0 and "score: 96/96 galaxies (100.0%)" in scored.stderr, scored.stderr
    quiet = runner.invoke(app, ["predict", "--run", str(run), "--data", str(data), "--out", str(tmp_path / "s.csv"),
                                "--no-progress"])
    assert quiet.exit_code == 0 and "galaxies (" not in quiet.stderr
