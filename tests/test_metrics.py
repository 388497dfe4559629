"""Metrics and leaderboard place, checked against scikit-learn and plain loops."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import mean_squared_error, roc_auc_score, roc_curve

from galaxyprep.tree import CLASS_NAMES, QUESTION_NAMES, QUESTION_SLICES, normalize_tree, parent_totals
from galaxytrain.evaluation.leaderboard import N_TEAMS, TOP_SCORES, leaderboard_place
from galaxytrain.evaluation.metrics import (
    binary_auc,
    question_accuracy,
    rmse,
    rmse_mean_predictor,
    roc_auc_binarized,
    roc_curve_points,
)


def _labels(n: int, seed: int) -> np.ndarray:
    return normalize_tree(np.random.default_rng(seed).random((n, 37)) ** 3)


@pytest.fixture(scope="module")
def real_labels(shared_gz) -> np.ndarray:
    import pandas as pd

    df = pd.read_csv(shared_gz / "training_solutions_rev1.csv")
    assert list(df.columns[1:]) == list(CLASS_NAMES)
    return df.iloc[:, 1:].to_numpy(dtype=np.float64)


# --- RMSE -------------------------------------------------------------------

def test_rmse_matches_sklearn_on_random():
    rng = np.random.default_rng(1)
    t, p = rng.random((200, 37)), rng.random((200, 37))
    assert rmse(t, p) == pytest.approx(np.sqrt(mean_squared_error(t.ravel(), p.ravel())), rel=1e-12)
    assert rmse(t, t) == 0.0


def test_rmse_rejects_bad_input():
    with pytest.raises(ValueError, match="shape"):
        rmse(np.zeros((3, 37)), np.zeros((4, 37)))
    with pytest.raises(ValueError, match="NaN"):
        rmse(np.zeros((3, 37)), np.full((3, 37), np.nan))


def test_mean_predictor_on_real_labels(real_labels):
    mean = real_labels.mean(axis=0)
    expected = np.sqrt(mean_squared_error(real_labels, np.tile(mean, (len(real_labels), 1))))
    got = rmse_mean_predictor(real_labels)
    assert got == pytest.approx(expected, rel=1e-12)
    assert 0.15 < got < 0.19  # ANCHORS.md: about 0.16-0.18 on the real labels
    # Any other constant does worse than the mean.
    assert rmse(real_labels, np.tile(np.median(real_labels, axis=0), (len(real_labels), 1))) > got


# --- per-question accuracy ---------------------------------------------------

def _accuracy_reference(t, p, min_reached):
    """Plain loop: row by row, question by question."""
    totals = parent_totals(t)
    out = {}
    for q, sl in enumerate(QUESTION_SLICES):
        hits, n = 0, 0
        for i in range(len(t)):
            if totals[i, q] < min_reached:
                continue
            n += 1
            truth = list(t[i, sl])
            top = [k for k, v in enumerate(truth) if v >= max(truth) - 1e-9]
            hits += int(int(np.argmax(p[i, sl])) in top)
        out[QUESTION_NAMES[q]] = (hits / n if n else None, n)
    return out


@pytest.mark.parametrize("min_reached", [0.5, 0.2])
def test_question_accuracy_matches_loop(min_reached):
    t = _labels(300, 2)
    p = t + np.random.default_rng(3).normal(0, 0.15, t.shape)
    got = question_accuracy(t, p, min_reached=min_reached)
    ref = _accuracy_reference(t, p, min_reached)
    assert set(got["per_question"]) == set(QUESTION_NAMES)
    for name, (acc, n) in ref.items():
        assert got["per_question"][name]["n"] == n
        if acc is None:
            assert got["per_question"][name]["accuracy"] is None
        else:
            assert got["per_question"][name]["accuracy"] == pytest.approx(acc)
    defined = [a for a, _ in ref.values() if a is not None]
    assert got["mean"] == pytest.approx(np.mean(defined))


def test_question_accuracy_perfect_and_unreached():
    t = _labels(50, 4)
    t[:, CLASS_NAMES.index("Class6.1")] = 0.0  # nobody saw anything odd ...
    t[:, CLASS_NAMES.index("Class6.2")] = 1.0  # ... so Q8 is never reached
    acc = question_accuracy(t, t)
    assert acc["per_question"]["Class8"] == {"accuracy": None, "n": 0}
    assert acc["per_question"]["Class1"] == {"accuracy": 1.0, "n": 50}
    assert acc["n_questions"] == 10
    assert all(v["accuracy"] in (None, 1.0) for v in acc["per_question"].values())


def test_question_accuracy_ties_count_either_answer():
    t = np.zeros((2, 37))
    t[:, 0:2] = 0.5   # Q1: smooth and featured tie
    t[:, 13:15] = 0.5  # Q6: tie
    t[:, 3:5] = 0.25  # Q2 reached by half the crowd, tie
    p = np.zeros_like(t)
    p[0, 0], p[1, 1] = 1.0, 1.0  # picks either tied answer
    p[:, 2] = 0.5  # never the star
    got = question_accuracy(t, p)["per_question"]
    assert got["Class1"] == {"accuracy": 1.0, "n": 2}
    p[:, 2] = 2.0  # now the top pick is the star, which the crowd did not choose
    assert question_accuracy(t, p)["per_question"]["Class1"]["accuracy"] == 0.0


def test_mean_predictor_accuracy_on_real_labels(real_labels):
    """The mean predictor always gives the same answer: accuracy = that answer's share."""
    const = np.tile(real_labels.mean(axis=0), (len(real_labels), 1))
    got = question_accuracy(real_labels, const)
    ref = _accuracy_reference(real_labels[:1500], const[:1500], 0.5)
    small = question_accuracy(real_labels[:1500], const[:1500])
    for name, (acc, n) in ref.items():
        assert small["per_question"][name]["n"] == n
        assert small["per_question"][name]["accuracy"] == pytest.approx(acc)
    assert got["per_question"]["Class1"]["n"] == len(real_labels)
    assert 0.0 < got["mean"] < 1.0


# --- ROC AUC -----------------------------------------------------------------

def test_binary_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(5)
    for _ in range(20):
        y = rng.random(120) < rng.uniform(0.1, 0.9)
        if y.all() or not y.any():
            continue
        s = np.round(rng.random(120), 1)  # many ties
        assert binary_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert binary_auc(np.array([0, 0, 1]), np.array([0.1, 0.1, 0.1])) == pytest.approx(0.5)


def test_roc_auc_binarized_random_and_undefined():
    t = _labels(400, 6)
    p = np.clip(t + np.random.default_rng(7).normal(0, 0.2, t.shape), 0, 1)
    t[:, CLASS_NAMES.index("Class8.2")] = 0.0  # never a majority: undefined
    t[:, CLASS_NAMES.index("Class6.2")] = 1.0  # always a majority: undefined
    got = roc_auc_binarized(t, p)
    assert list(got) == list(CLASS_NAMES)
    for j, name in enumerate(CLASS_NAMES):
        labels = t[:, j] >= 0.5
        if labels.all() or not labels.any():
            assert got[name] is None
        else:
            assert got[name] == pytest.approx(roc_auc_score(labels, p[:, j]), abs=1e-12)
    assert got["Class8.2"] is None and got["Class6.2"] is None


def test_roc_auc_threshold_is_inclusive():
    t = np.zeros((4, 37))
    t[:2, 0] = 0.5  # exactly half: positive
    p = np.zeros_like(t)
    p[:, 0] = [0.9, 0.8, 0.1, 0.2]
    assert roc_auc_binarized(t, p)["Class1.1"] == 1.0
    assert roc_auc_binarized(t, p, threshold=0.6)["Class1.1"] is None


def test_roc_auc_on_real_labels(real_labels):
    rng = np.random.default_rng(8)
    p = np.clip(real_labels + rng.normal(0, 0.1, real_labels.shape), 0, 1)
    got = roc_auc_binarized(real_labels, p)
    for j, name in enumerate(CLASS_NAMES):
        labels = real_labels[:, j] >= 0.5
        if 0 < labels.sum() < len(labels):
            assert got[name] == pytest.approx(roc_auc_score(labels, p[:, j]), abs=1e-10)
        else:
            assert got[name] is None


def test_roc_curve_points_match_sklearn():
    rng = np.random.default_rng(9)
    y = rng.random(300) < 0.3
    s = np.round(rng.random(300), 2)
    fpr, tpr, thr = roc_curve_points(y, s)
    ref_fpr, ref_tpr, ref_thr = roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, ref_fpr)
    np.testing.assert_allclose(tpr, ref_tpr)
    np.testing.assert_allclose(thr[1:], ref_thr[1:])
    assert np.trapezoid(tpr, fpr) == pytest.approx(roc_auc_score(y, s))
    with pytest.raises(ValueError):
        roc_curve_points(np.ones(5), np.arange(5.0))


# --- leaderboard -------------------------------------------------------------

def test_leaderboard_monotonic():
    grid = np.linspace(0.06, 0.30, 2000)
    places = [leaderboard_place(r) for r in grid]
    for a, b in zip(places, places[1:]):
        assert a["place_range"][0] <= b["place_range"][0]
        assert a["place_range"][1] <= b["place_range"][1]
        assert set(b["better_than"]) <= set(a["better_than"])
        if a["place"] is not None and b["place"] is not None:
            assert a["place"] <= b["place"]
    assert all(p["of"] == N_TEAMS for p in places)


def test_leaderboard_places_around_the_student_project_and_below_every_known_score():
    # The student project's 0.17493 lies between 307th (0.17192) and 308th (0.17547): exactly 308th,
    # where its report placed it.
    assert leaderboard_place(0.17493)["place"] == 308
    assert leaderboard_place(0.17547)["place"] == 308  # a tie takes the place
    worst = leaderboard_place(0.5)
    assert worst["place"] is None and worst["place_range"] == [312, N_TEAMS]
    assert "last" in worst["note"]
    for r in np.linspace(0.0, 1.0, 201):
        assert leaderboard_place(r)["place_range"][1] <= N_TEAMS  # a place never exceeds the count


def test_leaderboard_boundaries():
    first = leaderboard_place(0.07)
    assert first["place"] == 1 and len(first["better_than"]) == 5 + 1 + 7 + 2  # top 5, 145th, 305-311th, 2 benchmarks
    assert leaderboard_place(TOP_SCORES[0])["place"] == 1  # a tie takes the place
    assert leaderboard_place(TOP_SCORES[0] + 1e-6)["place"] == 2
    assert leaderboard_place(TOP_SCORES[-1])["place"] == len(TOP_SCORES)
    after_top = leaderboard_place(TOP_SCORES[-1] + 1e-6)
    assert after_top["place"] is None and after_top["place_range"] == [len(TOP_SCORES) + 1, 145]
    mean_like = leaderboard_place(0.1614)
    assert mean_like["place"] is None and mean_like["place_range"] == [146, 305]
    assert any("central pixel" in b for b in mean_like["better_than"])
    assert leaderboard_place(0.5)["better_than"] == []
    with pytest.raises(ValueError):
        leaderboard_place(float("nan"))


def test_a_score_in_a_gap_of_published_places_gets_no_place():
    """0.142 and 0.161 once both printed "146th-305th": say only what the published rows support."""
    for rmse in (0.142, 0.161):
        lb = leaderboard_place(rmse)
        assert lb["place"] is None and lb["place_range"] == [146, 305]
        assert lb["note"].startswith("no place: it falls between the 145th place (0.12859) and the 305th (0.16869)")
        assert "146th" not in lb["note"]
