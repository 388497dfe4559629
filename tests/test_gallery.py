"""Pictures of the answers: the gallery picks the right galaxies, the accuracy chart's baseline is right, both are PNGs."""

from __future__ import annotations

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from galaxyprep import CLASS_NAMES, QUESTION_NAMES, QUESTION_SLICES, GalaxyFile
from galaxyprep.tree import normalize_tree, parent_totals
from galaxytrain.data.views import centre_view
from galaxytrain.evaluation import (
    build_report,
    gallery_rows,
    most_common_answer_accuracy,
    per_galaxy_rmse,
    question_accuracy,
    write_gallery,
    write_question_accuracy_chart,
)
from galaxytrain.evaluation.pictures import ANSWER_NAMES, QUESTION_TOPICS

# Keras 3.15 calls np.array(x, copy=False) on its variables under numpy 2.4: not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _case(n: int = 40, seed: int = 0):
    rng = np.random.default_rng(seed)
    t = normalize_tree(rng.random((n, 37)) ** 3)
    p = np.clip(t + rng.normal(0, 0.1, t.shape) * rng.random((n, 1)), 0, 1)
    return t, p


def _assert_png(path, min_size=(400, 300)):
    from PIL import Image

    with open(path, "rb") as fh:
        assert fh.read(8) == PNG_MAGIC
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.size[0] >= min_size[0] and im.size[1] >= min_size[1]


def test_every_answer_and_question_has_a_short_name():
    assert list(ANSWER_NAMES) == list(CLASS_NAMES)
    assert list(QUESTION_TOPICS) == list(QUESTION_NAMES)
    assert ANSWER_NAMES["Class1.1"] == "smooth" and ANSWER_NAMES["Class2.1"] == "edge-on"
    assert all(0 < len(v) <= 14 for v in ANSWER_NAMES.values())


def test_per_galaxy_rmse_is_the_plain_computation():
    t, p = _case(n=7)
    plain = [np.sqrt(sum((t[i, j] - p[i, j]) ** 2 for j in range(37)) / 37) for i in range(7)]
    np.testing.assert_allclose(per_galaxy_rmse(t, p), plain, rtol=1e-12)
    with pytest.raises(ValueError):
        per_galaxy_rmse(t, p[:, :36])


@pytest.mark.parametrize("n, k", [(40, 8), (16, 8), (11, 8), (5, 2), (1, 8), (6, 0)])
def test_gallery_rows_are_the_lowest_and_highest_errors(n, k):
    errors = np.random.default_rng(n).random(n)
    errors[n // 2:n // 2 + 2] = 0.5  # a tie, broken by file order
    best, worst = gallery_rows(errors, k)
    order = np.argsort(errors, kind="stable")
    n_best = min(k, (n + 1) // 2)
    n_worst = min(k, n - n_best)
    np.testing.assert_array_equal(best, order[:n_best])
    np.testing.assert_array_equal(worst, order[n - n_worst:][::-1])
    assert not set(best) & set(worst)
    assert list(errors[best]) == sorted(errors[best])  # best first
    assert list(errors[worst]) == sorted(errors[worst], reverse=True)  # worst first
    if k and n >= 2 * k:
        assert errors[best].max() <= errors[np.setdiff1d(np.arange(n), best)].min()
        assert errors[worst].min() >= errors[np.setdiff1d(np.arange(n), worst)].max()


def _plain_most_common(t, min_reached=0.5):
    """A plain loop: count each answer whenever it is (one of) the crowd's top answer(s) of a reached galaxy."""
    totals = parent_totals(t)
    out = {}
    for q, (name, sl) in enumerate(zip(QUESTION_NAMES, QUESTION_SLICES)):
        counts, n = [0] * (sl.stop - sl.start), 0
        for i in range(len(t)):
            if totals[i, q] < min_reached:
                continue
            n += 1
            top = max(t[i, sl])
            for a in range(len(counts)):
                if t[i, sl.start + a] >= top - 1e-9:
                    counts[a] += 1
        if n == 0:
            out[name] = {"answer": None, "accuracy": None, "n": 0}
        else:
            a = counts.index(max(counts))
            out[name] = {"answer": CLASS_NAMES[sl.start + a], "accuracy": counts[a] / n, "n": n}
    return out


def test_most_common_answer_baseline_by_hand():
    t = np.zeros((5, 37))
    c = CLASS_NAMES.index
    # Q1: smooth, smooth, disc, disc, disc -> "features/disc", 3 of 5.
    for i, (smooth, disc) in enumerate([(0.8, 0.2), (0.7, 0.3), (0.1, 0.9), (0.3, 0.7), (0.4, 0.6)]):
        t[i, c("Class1.1")], t[i, c("Class1.2")] = smooth, disc
    # Q2 reached by the 3 disc galaxies: not edge-on, not, a tie, which counts for both -> "not edge-on", 3 of 3.
    t[2, c("Class2.1")], t[2, c("Class2.2")] = 0.2, 0.7
    t[3, c("Class2.1")], t[3, c("Class2.2")] = 0.2, 0.5
    t[4, c("Class2.1")], t[4, c("Class2.2")] = 0.3, 0.3
    # Q7 reached by the 2 smooth galaxies: round, in between -> 1 each; the first answer wins the tie of counts.
    t[0, c("Class7.1")], t[1, c("Class7.2")] = 0.8, 0.7
    # Q6 (asked of all): nothing odd everywhere but in galaxy 0.
    t[:, c("Class6.2")] = 1.0
    t[0, c("Class6.1")], t[0, c("Class6.2")] = 0.9, 0.1
    got = most_common_answer_accuracy(t)
    assert got["Class1"] == {"answer": "Class1.2", "accuracy": pytest.approx(3 / 5), "n": 5}
    assert got["Class2"] == {"answer": "Class2.2", "accuracy": 1.0, "n": 3}
    assert got["Class6"] == {"answer": "Class6.2", "accuracy": pytest.approx(4 / 5), "n": 5}
    assert got["Class7"] == {"answer": "Class7.1", "accuracy": 0.5, "n": 2}
    assert got["Class8"] == {"answer": "Class8.1", "accuracy": 1.0, "n": 1}
    assert got["Class11"] == {"answer": None, "accuracy": None, "n": 0}
    assert got == _plain_most_common(t)


def test_most_common_answer_is_the_accuracy_of_that_constant_prediction():
    t, _ = _case(n=200, seed=3)
    got = most_common_answer_accuracy(t)
    assert got == _plain_most_common(t)
    for name, row in got.items():
        if row["answer"] is None:
            continue
        constant = np.zeros_like(t)
        constant[:, CLASS_NAMES.index(row["answer"])] = 1.0
        assert question_accuracy(t, constant)["per_question"][name]["accuracy"] == pytest.approx(row["accuracy"])


def test_accuracy_chart_is_a_png_with_an_unreached_question(tmp_path):
    t, p = _case(n=60, seed=1)
    t[:, CLASS_NAMES.index("Class6.1")] = 0.0  # Q8 never reached: no bar, "n/a"
    acc = question_accuracy(t, p)
    assert acc["per_question"]["Class8"]["accuracy"] is None
    out = write_question_accuracy_chart(acc, most_common_answer_accuracy(t), tmp_path / "plots")
    assert out == tmp_path / "plots" / "question_accuracy.png"
    _assert_png(out, (800, 350))
    assert [f.name for f in out.parent.iterdir()] == ["question_accuracy.png"]  # no temporary file left
    _assert_png(write_question_accuracy_chart(acc, None, tmp_path / "nobase"), (800, 350))


def test_build_report_lists_the_chart_and_its_baseline(tmp_path):
    t, p = _case(n=60, seed=2)
    r = build_report(t, p, plots_dir=tmp_path / "plots")
    assert r["plots"][0] == str(tmp_path / "plots" / "question_accuracy.png")
    assert r["question_accuracy_most_common"] == most_common_answer_accuracy(t)
    assert json.loads(json.dumps(r, allow_nan=False)) == r


@pytest.mark.parametrize("n", [40, 3])
def test_gallery_is_a_png(tmp_path, n):
    t, p = _case(n=n)
    images = np.random.default_rng(0).integers(0, 256, (n, 20, 20, 3), dtype=np.uint8)
    out = write_gallery(images, np.arange(500, 500 + n), t, p, tmp_path)
    assert out == tmp_path / "gallery.png"
    _assert_png(out, (900, 400))
    with pytest.raises(ValueError):
        write_gallery(images.astype(np.float32), np.arange(n), t, p, tmp_path)


def test_gallery_images_read_one_row_at_a_time(make_galaxy_file):
    from galaxytrain.inference.score import gallery_images

    path = make_galaxy_file(n=30, size=24, chunk_images=8)
    rows = np.array([2, 9, 17, 29])
    with GalaxyFile(path) as f:
        everything = f.images(0, 30)
        calls = []
        read = f.images
        f.images = lambda lo, hi: calls.append((lo, hi)) or read(lo, hi)
        for size in (24, 20, 17):  # the whole image, an even margin, an odd margin (resampled)
            np.testing.assert_array_equal(gallery_images(f, rows, size), centre_view(everything[rows], size))
    assert calls and all(hi - lo == 1 for lo, hi in calls)


def _small_view_run(tmp_path, stored: int, size: int):
    """A run whose model takes the centre `size` pixels of `stored`-pixel images (fit's --input-size)."""
    import keras

    model = keras.Sequential([keras.Input((size, size, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(37, activation="sigmoid", name="out")])
    rng = np.random.default_rng(5)
    w = rng.normal(scale=3 / np.sqrt(size * size * 3), size=(size * size * 3, 37)).astype(np.float32)
    model.get_layer("out").set_weights([w, np.zeros(37, dtype=np.float32)])
    run = tmp_path / "run"
    run.mkdir()
    model.save(run / "best.keras")
    record = {"config": {"model": "pixel", "head": "sigmoid", "input_size": size},
              "data": {"path": "train.h5", "image_size": stored, "mean": [120.0] * 3, "std": [60.0] * 3}}
    (run / "config.json").write_text(json.dumps(record))
    return run


def test_score_shows_the_best_and_worst_galaxies_as_the_model_saw_them(make_galaxy_file, tmp_path, monkeypatch):
    import galaxytrain.inference.score as score_module
    from galaxytrain.inference import load_run, predict_file, score_run

    run = _small_view_run(tmp_path, stored=24, size=20)
    path = make_galaxy_file(n=30, size=24, name="holdout.h5", first_id=7000)
    shown = {}

    def spy(images, ids, y_true, y_pred, out_dir, **kw):
        shown.update(images=images, ids=ids, y_true=y_true, y_pred=y_pred, **kw)
        return write_gallery(images, ids, y_true, y_pred, out_dir, **kw)

    monkeypatch.setattr(score_module, "write_gallery", spy)
    report = score_run(run, path, tmp_path / "out" / "report.json", gallery=4, log=lambda s: None)

    trained = load_run(run)
    ids, preds = predict_file(trained.model, path, normalization=trained.normalization, source_size=24)
    with GalaxyFile(path) as f:
        labels, images = f.labels().astype(np.float64), f.images(0, 30)
    errors = np.sqrt(((labels - np.clip(preds, 0, 1)) ** 2).mean(axis=1))
    order = np.argsort(errors)
    expected = np.sort(np.r_[order[:4], order[-4:]])
    np.testing.assert_array_equal(shown["ids"], ids[expected])
    np.testing.assert_array_equal(shown["images"], images[expected, 2:22, 2:22])  # the centre 20 of 24
    np.testing.assert_allclose(shown["y_pred"], np.clip(preds, 0, 1)[expected], atol=1e-6)
    assert shown["k"] == 4 and shown["n_scored"] == 30

    plots = tmp_path / "out" / "report_plots"
    assert report["plots"][:2] == [str(plots / "gallery.png"), str(plots / "question_accuracy.png")]
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["plots"] == report["plots"]
    for name in ("gallery.png", "question_accuracy.png"):
        _assert_png(plots / name)
