"""The evaluation report: values agree with the metrics, JSON is strict, plots are PNGs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from galaxyprep.tree import CLASS_NAMES, QUESTION_NAMES, normalize_tree
from galaxytrain.evaluation.leaderboard import leaderboard_place
from galaxytrain.evaluation.metrics import question_accuracy, rmse, rmse_mean_predictor, roc_auc_binarized
from galaxytrain.evaluation.report import build_report, format_report, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _case(n: int = 120, seed: int = 0):
    rng = np.random.default_rng(seed)
    t = normalize_tree(rng.random((n, 37)) ** 3)
    p = np.clip(t + rng.normal(0, 0.1, t.shape), 0, 1)
    t[:, CLASS_NAMES.index("Class8.2")] = 0.0  # one class with no positive label
    return t, p


def test_report_values_match_metrics():
    t, p = _case()
    r = build_report(t, p, meta={"model": "tiny", "lr": np.float32(1e-3), "epochs": np.int64(3)})
    assert r["n_images"] == len(t)
    assert r["rmse"] == pytest.approx(rmse(t, p))
    assert r["rmse_mean_predictor"] == pytest.approx(rmse_mean_predictor(t))
    assert r["question_accuracy"] == question_accuracy(t, p)
    assert r["roc_auc"] == roc_auc_binarized(t, p)
    assert r["leaderboard"] == leaderboard_place(rmse(t, p))
    assert r["roc_auc"]["Class8.2"] is None
    assert "Class8.2" in r["roc_auc_summary"]["undefined"]
    defined = [v for v in r["roc_auc"].values() if v is not None]
    assert r["roc_auc_summary"]["n_defined"] == len(defined)
    assert r["roc_auc_summary"]["mean"] == pytest.approx(np.mean(defined))
    assert r["meta"] == {"model": "tiny", "lr": pytest.approx(1e-3), "epochs": 3}
    assert r["plots"] == []


def test_report_is_strict_json(tmp_path):
    t, p = _case()
    t[:, CLASS_NAMES.index("Class6.1")] = 0.0  # Q8 never reached: accuracy None
    r = build_report(t, p, meta={"bad": float("nan"), "path": tmp_path})
    text = json.dumps(r, allow_nan=False)
    back = json.loads(text)
    assert back == r
    assert back["question_accuracy"]["per_question"]["Class8"]["accuracy"] is None
    assert back["meta"]["bad"] is None and back["meta"]["path"] == str(tmp_path)

    out = write_report(r, tmp_path / "sub" / "report.json")
    assert json.loads(out.read_text()) == r
    write_report({**r, "rmse": 0.5}, out)  # replaces in place, leaves no temporary file
    assert json.loads(out.read_text())["rmse"] == 0.5
    assert [f.name for f in out.parent.iterdir()] == ["report.json"]
    # An undefined number is written as null, never as the non-JSON NaN.
    assert json.loads(write_report({"x": float("nan")}, tmp_path / "nan.json").read_text()) == {"x": None}


def test_plots_are_valid_pngs(tmp_path):
    from PIL import Image

    t, p = _case(n=60, seed=1)
    r = build_report(t, p, plots_dir=tmp_path / "plots")
    names = sorted(f.rsplit("/", 1)[-1] for f in r["plots"])
    assert names == sorted([f"roc_{c}.png" for c in CLASS_NAMES] + ["roc_grid.png", "question_accuracy.png"])
    for f in r["plots"]:
        with open(f, "rb") as fh:
            assert fh.read(8) == PNG_MAGIC
        with Image.open(f) as im:
            im.verify()
    with Image.open(tmp_path / "plots" / "roc_grid.png") as im:
        assert im.size[0] > 800 and im.size[1] > 600
    # The undefined class still has its (empty, labelled) panel.
    assert (tmp_path / "plots" / "roc_Class8.2.png").stat().st_size > 1000


def test_format_report_lists_everything():
    t, p = _case()
    r = build_report(t, p)
    text = format_report(r)
    assert f"{r['rmse']:.5f}" in text
    assert f"{r['rmse_mean_predictor']:.5f}" in text
    assert "0.07492" in text and "0.16194" in text
    for q in QUESTION_NAMES:
        row = r["question_accuracy"]["per_question"][q]
        assert any(line.split()[:3] == [q, f"{row['accuracy']:.3f}", str(row["n"])]
                   for line in text.splitlines())
    assert "Class8.2" in text  # listed as undefined
