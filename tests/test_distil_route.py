"""The README's distillation route: teachers' soft votes on unlabelled galaxies, one build, one student."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import galaxyprep
import galaxytrain
from galaxyprep import GalaxyFile
from galaxyprep.cli import app as prep_app
from galaxytrain.cli import app as train_app

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def test_soft_votes_of_the_test_folder_join_the_labels_in_one_build(tmp_path):
    from galaxyprep.synth import synthesize

    syn = synthesize(tmp_path / "kaggle", 48, n_test=12, seed=6, size=128)
    train = galaxyprep.build(syn.train_images, tmp_path / "train.h5", syn.labels_csv, crop=100, size=24).out
    teacher = tmp_path / "teacher"
    galaxytrain.fit(train, teacher, model="galaxy_cnn", head="tree", loss="mse", epochs=1, batch_size=16,
                    mixed_precision=False, log=lambda s: None)
    runner = CliRunner()
    soft = tmp_path / "soft.csv"
    test_images = tmp_path / "kaggle" / "images_test_rev1"
    done = runner.invoke(train_app, ["predict", "--run", str(teacher), "--images", str(test_images), "--out",
                                     str(soft), "--no-progress"])
    assert done.exit_code == 0, done.output
    # The README's merge: the predictions' header is the labels' own, so the rows append as they are.
    merged = tmp_path / "labels.csv"
    lines = soft.read_text().splitlines()
    assert lines[0] == syn.labels_csv.read_text().splitlines()[0]
    merged.write_text(syn.labels_csv.read_text().rstrip("\n") + "\n" + "\n".join(lines[1:]) + "\n")
    out = tmp_path / "student.h5"
    done = runner.invoke(prep_app, ["build", "--images", str(tmp_path / "kaggle"), "--labels", str(merged), "--crop",
                                    "100", "--size", "24", "--out", str(out), "--no-progress"])
    assert done.exit_code == 0, done.output
    votes = pd.read_csv(soft).set_index("GalaxyID")
    truth = pd.read_csv(syn.labels_csv).set_index("GalaxyID")
    with GalaxyFile(out) as f:
        ids, labels = f.ids, f.checked_labels()
    assert sorted(ids) == sorted([*truth.index, *votes.index])
    rows = {int(g): i for i, g in enumerate(ids)}
    for table in (votes, truth):
        got = labels[[rows[int(g)] for g in table.index]]
        np.testing.assert_allclose(got, table.to_numpy(np.float32), atol=1e-6)
    student = galaxytrain.fit(out, tmp_path / "student", model="galaxy_cnn", head="tree", loss="mse", epochs=1,
                              batch_size=16, mixed_precision=False, log=lambda s: None)
    assert student.epochs_done == 1
