"""Paired differences between sweep arms (:func:`dfkit.train.experiments.paired_differences`,
:func:`dfkit.train.scores.paired_bootstrap`): constructed predictions with known answers, the same-videos/seeds
checks, and the tiny sweep end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dfkit.errors import DfkitError
from tests.test_train_cli import demo_corpus, one_thread, quality_corpus, run_cli  # noqa: F401 - fixtures

CLASSES = ["real", "A"]


def make_test_set(n_videos: int = 40, frames: int = 2) -> pd.DataFrame:
    """``n_videos`` videos (even: real, odd: A) of ``frames`` crops each."""
    vids = np.repeat([f"v{i:03d}" for i in range(n_videos)], frames)
    method = np.where(np.repeat(np.arange(n_videos) % 2, frames) == 0, "real", "A")
    return pd.DataFrame({"sample_id": [f"ds/{v}/{i:06d}" for i, v in enumerate(vids)], "dataset": "ds",
                         "video_id": vids, "label": np.where(method == "real", "real", "fake"),
                         "method_canonical": method})


def preds(test: pd.DataFrame, wrong_videos: set[str]) -> pd.DataFrame:
    """Confident predictions: right everywhere except on the crops of ``wrong_videos``."""
    y = (test["method_canonical"] == "A").to_numpy().astype(int)
    wrong = test["video_id"].isin(wrong_videos).to_numpy()
    pred = np.where(wrong, 1 - y, y)
    probs = np.where(pred[:, None] == np.arange(2)[None, :], 0.9, 0.1)
    return pd.DataFrame({"sample_id": test["sample_id"], "probs": [list(p) for p in probs]})


def vids(idx) -> set[str]:
    return {f"v{i:03d}" for i in idx}


def test_paired_difference_exact_and_ci_excludes_zero():
    from dfkit.train.experiments import paired_differences

    t = make_test_set(40)
    # arm "good": 2 wrong videos (one per class); arm "bad": those 2 + 10 more (5 per class), for both seeds.
    # video balanced accuracy: good = 1 - 1/20 = 0.95, bad = 1 - 6/20 = 0.70 -> difference +0.25 exactly
    good_wrong = vids([0, 1])
    bad_wrong = good_wrong | vids(range(2, 12))
    runs = {"good": {0: preds(t, good_wrong), 1: preds(t, good_wrong)},
            "bad": {0: preds(t, bad_wrong), 1: preds(t, bad_wrong)}}
    # any row order of a run's predictions: aligned by sample id
    runs["bad"][1] = runs["bad"][1].iloc[::-1].reset_index(drop=True)
    res = paired_differences(t, runs, CLASSES, [("good", "bad")], n_boot=300,
                             better={("good", "bad"): ("the good arm", "the bad arm")})
    e = res["pairs"][0]
    assert e["value"] == pytest.approx(0.25)
    assert e["per_seed"] == pytest.approx([0.25, 0.25])
    assert res["arms"]["good"]["value"] == pytest.approx(0.95)
    assert res["arms"]["bad"]["value"] == pytest.approx(0.70)
    # paired: "good" is never wrong where "bad" is right, so every resample's difference is > 0
    assert e["ci"][0] > 0 and e["excludes_zero"]
    assert e["ci"][0] <= 0.25 <= e["ci"][1]
    assert e["sentence"].startswith("good - bad: +0.250 [") and "excludes 0: the good arm is better" in e["sentence"]
    assert res["n_videos"] == 40 and res["seeds"] == [0, 1] and res["n_seeds"] == 2
    # frame level and accuracy give the same point (2 frames per video, balanced classes)
    fr = paired_differences(t, runs, CLASSES, [("good", "bad")], metric="accuracy", level="frame", n_boot=0)
    assert fr["pairs"][0]["value"] == pytest.approx(0.25) and fr["pairs"][0]["ci"] is None


def test_paired_difference_ci_includes_zero_and_seeds_resampled():
    from dfkit.train.experiments import paired_differences

    t = make_test_set(40)
    # the arms are wrong on as many videos, but different ones: difference 0, CI around it
    a = {0: preds(t, vids(range(0, 8))), 1: preds(t, vids(range(8, 16)))}
    b = {0: preds(t, vids(range(16, 24))), 1: preds(t, vids(range(24, 32)))}
    res = paired_differences(t, {"a": a, "b": b}, CLASSES, [("a", "b")], n_boot=300)
    e = res["pairs"][0]
    assert e["value"] == pytest.approx(0.0)
    assert e["ci"][0] < 0 < e["ci"][1] and not e["excludes_zero"]
    assert "includes 0" in e["sentence"]
    # seed variation enters the CI: arm c is 0.2 better on seed 0 and 0.2 worse on seed 1 -> mean 0 and, with
    # the seeds resampled, resamples of (seed 0, seed 0) and (seed 1, seed 1) spread the CI past +-0.1
    base = {0: preds(t, vids(range(0, 10))), 1: preds(t, vids(range(0, 10)))}
    c = {0: preds(t, set()), 1: preds(t, vids(range(0, 18)))}
    res = paired_differences(t, {"c": c, "base": base}, CLASSES, [("c", "base")], n_boot=400)
    e = res["pairs"][0]
    assert e["per_seed"] == pytest.approx([0.25, -0.2])
    assert e["value"] == pytest.approx(0.025)
    assert e["ci"][0] < -0.1 and e["ci"][1] > 0.15


def test_paired_difference_refuses_different_videos_or_seeds():
    from dfkit.train.experiments import paired_differences

    t = make_test_set(20)
    ok = preds(t, set())
    with pytest.raises(DfkitError, match="same seeds"):
        paired_differences(t, {"a": {0: ok, 1: ok}, "b": {0: ok, 2: ok}}, CLASSES, [("a", "b")], n_boot=10)
    fewer = ok[~t["video_id"].isin(vids([3])).to_numpy()]
    with pytest.raises(DfkitError, match="same test videos"):
        paired_differences(t, {"a": {0: ok}, "b": {0: fewer}}, CLASSES, [("a", "b")], n_boot=10)
    other = ok.assign(sample_id=ok["sample_id"].str.replace("v019", "w019"))
    with pytest.raises(DfkitError, match="1 test videos missing"):
        paired_differences(t, {"a": {0: ok}, "b": {0: other}}, CLASSES, [("a", "b")], n_boot=10)


def test_sweep_reports_paired_differences_on_the_same_videos_and_seeds(quality_corpus, tmp_path, capsys):
    out = tmp_path / "sweep"
    args = ["experiment", "quality-sweep", "--corpus", quality_corpus, "--backbone", "tiny", "--img-size", "32",
            "--epochs", "1", "--batch-size", "16", "--thresholds", "0,0.6", "--seeds", "0,1", "--n-boot", "50",
            "--workers", "0", "--threads", "1", "--out", out]
    code, stdout, err = run_cli(args, capsys)
    assert code == 0, err
    rep = json.loads((out / "sweep.json").read_text())
    pairs = {(e["a"], e["b"]): e for e in rep["paired"]}
    assert set(pairs) == {("q>=0.6", "q>=0"), ("q<0.6 (low only)", "q>=0"), ("q>=0.6", "q<0.6 (low only)")}
    assert pairs[("q>=0.6", "q<0.6 (low only)")]["kind"] == "high_vs_low"
    pb = rep["paired_bootstrap"]
    assert pb["seeds"] == [0, 1] and pb["n_videos"] == rep["test_videos"] and pb["n_frames"] == rep["test_frames"]
    # every run was scored on the same test crops, and the paired point is the difference of the arms' means
    from dfkit.train.evaluation import load_predictions

    ids = None
    for r in rep["runs"]:
        got = set(load_predictions(f"{r['run']}/predictions_test.parquet")["sample_id"])
        ids = got if ids is None else ids
        assert got == ids and len(got) == rep["test_frames"]
    mean = {s["arm"]: s["mean"] for s in rep["summary"]}
    for (a, b), e in pairs.items():
        assert e["value"] == pytest.approx(mean[a] - mean[b])
        per = {r["seed"]: r["value"] for r in rep["runs"] if r["arm"] == a}
        per_b = {r["seed"]: r["value"] for r in rep["runs"] if r["arm"] == b}
        assert e["per_seed"] == pytest.approx([per[0] - per_b[0], per[1] - per_b[1]])
        assert e["ci"] is not None and e["ci"][0] <= e["value"] <= e["ci"][1]
    assert all(s["ci"] for s in rep["summary"])
    assert rep["conclusion"].startswith("Training on q>=0.6 instead of only on q<0.6")
    assert "paired bootstrap over" in rep["conclusion"] and rep["conclusion"] in stdout
    md = (out / "sweep.md").read_text()
    assert "## Paired differences" in md and "| q>=0.6 - q<0.6 (low only) |" in md
    assert "Error versus discard" in md and rep["edc"]["arm"] == "q>=0" and rep["edc"]["seed"] == 0
    assert (out / "edc.png").read_bytes()[:4] == b"\x89PNG" and (out / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    assert "q>=0.6 - q<0.6 (low only): " in stdout
    # a reused arm whose test predictions went missing is evaluated again (not retrained), same paired numbers
    gone = Path(rep["runs"][-1]["run"]) / "predictions_test.parquet"
    gone.unlink()
    code, stdout, err = run_cli(args, capsys)
    assert code == 0, err
    assert stdout.count("reused") == 6 and "training on" not in stdout and gone.exists()
    again = json.loads((out / "sweep.json").read_text())
    assert [(e["value"], e["ci"]) for e in again["paired"]] == [(e["value"], e["ci"]) for e in rep["paired"]]
