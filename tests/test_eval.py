"""``dfkit eval``: metrics of a fixed prediction set against hand-computed values, unseen-method handling end to
end, predictions for FiftyOne (``predict_corpus``)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from tests.test_train_cli import demo_corpus, one_thread, run_cli  # noqa: F401 - fixtures
from tests.test_train_metrics import CLASSES
from tests.test_train_metrics import PROBS as KNOWN_PROBS

# the hand-computed set of tests/test_train_metrics.py (5 videos x 2 frames), plus 2 videos of a method the model
# lacks: v6 C (unseen): frames -> real, A; video [0.4, 0.45, 0.15] -> A;  v7 C (unseen): -> B, B
PROBS = np.vstack([KNOWN_PROBS, [[0.6, 0.3, 0.1], [0.2, 0.6, 0.2], [0.1, 0.1, 0.8], [0.2, 0.2, 0.6]]])
METHOD = ["real"] * 4 + ["A"] * 4 + ["B"] * 2 + ["C"] * 4


def fixed_set():
    vids = [f"v{i // 2 + 1}" for i in range(14)]
    meta = pd.DataFrame({
        "sample_id": [f"ds/{v}/{i:06d}" for i, v in enumerate(vids)], "dataset": "ds", "video_id": vids,
        "label": ["real" if m == "real" else "fake" for m in METHOD],
        "method_canonical": ["real" if m == "real" else m for m in METHOD]})
    preds = pd.DataFrame({"sample_id": meta["sample_id"], "probs": [list(p) for p in PROBS]})
    return meta, preds


def test_eval_rows_against_hand_computed_values():
    from dfkit.train.evaluation import eval_rows

    meta, preds = fixed_set()
    res = eval_rows(meta, preds, CLASSES, n_boot=0)["overall"]
    assert (res["n_frames"], res["n_known_frames"], res["n_unseen_frames"]) == (14, 10, 4)
    k = res["known"]
    # frame level: confusion real 3,1,0 | A 0,1,3 | B 1,0,1 -> accuracy 5/10, recalls 3/4, 1/4, 1/2
    assert k["frame"]["confusion_matrix"] == [[3, 1, 0], [0, 1, 3], [1, 0, 1]]
    assert k["frame"]["accuracy"]["value"] == pytest.approx(0.5)
    assert k["frame"]["balanced_accuracy"]["value"] == pytest.approx(0.5)
    assert k["frame"]["macro_f1"]["value"] == pytest.approx((6 / 8 + 2 / 6 + 2 / 6) / 3)
    assert k["frame"]["per_class_auc"]["real"]["value"] == pytest.approx(23 / 24)
    # video level (mean of frame probabilities per dataset/video): real, real, A, B, B vs real, real, A, A, B
    assert k["video"]["confusion_matrix"] == [[2, 0, 0], [0, 1, 1], [0, 0, 1]]
    assert k["video"]["accuracy"]["value"] == pytest.approx(0.8)
    assert k["video"]["balanced_accuracy"]["value"] == pytest.approx((1 + 0.5 + 1) / 3)
    # the unseen method: not counted wrong, its predictions reported
    assert res["unseen_methods"] == ["C"]
    c = res["unseen"]["C"]
    assert (c["n_frames"], c["n_videos"]) == (4, 2)
    assert c["frame_predicted_as"] == pytest.approx({"real": 0.25, "A": 0.25, "B": 0.5})
    assert c["video_predicted_as"] == pytest.approx({"real": 0.0, "A": 0.5, "B": 0.5})
    assert c["frame_detected_as_fake"] == pytest.approx(0.75)
    # bootstrap CIs over videos contain the point estimates
    r2 = eval_rows(meta, preds, CLASSES, n_boot=200)["overall"]["known"]
    for lv in ("frame", "video"):
        lo, hi = r2[lv]["accuracy"]["ci"]
        assert lo <= r2[lv]["accuracy"]["value"] <= hi
    # misaligned predictions are refused
    with pytest.raises(ValueError):
        eval_rows(meta, preds.iloc[::-1].reset_index(drop=True), CLASSES, n_boot=0)


def test_eval_end_to_end_with_an_unseen_method(demo_corpus, tmp_path, capsys):
    import dfkit.corpus
    from dfkit.train.predict import predict_corpus

    run = tmp_path / "run"
    code, out, err = run_cli(["train", "--corpus", demo_corpus, "--backbone", "tiny", "--img-size", "32",
                              "--epochs", "2", "--batch-size", "16", "--workers", "0", "--threads", "1",
                              "--methods", "PoissonSwap,demo_landmark_warp,TextureRender", "--out", run, "-q"], capsys)
    assert code == 0, err
    assert json.loads((run / "config.json").read_text())["class_names"] == [
        "real", "demo_landmark_warp", "demo_poisson_swap", "demo_texture_render"]
    ev = tmp_path / "eval"
    code, out, err = run_cli(["eval", run, "--datasets", "demo", "--split", "test", "--out", ev, "--n-boot", "100",
                              "--workers", "1"], capsys)
    assert code == 0, err
    rep = json.loads((ev / "eval.json").read_text())
    meta = dfkit.corpus.open(demo_corpus).select(splits="test").metadata()
    n_cb = int((meta["method"] == "Checkerboard").sum())
    res = rep["overall"]
    assert res["unseen_methods"] == ["demo_checkerboard"]
    assert res["n_unseen_frames"] == n_cb and res["n_known_frames"] == len(meta) - n_cb
    assert res["known"]["n_frames"] == len(meta) - n_cb
    shares = res["unseen"]["demo_checkerboard"]["frame_predicted_as"]
    assert set(shares) == set(rep["class_names"]) and sum(shares.values()) == pytest.approx(1.0)
    assert res["known"]["video"]["balanced_accuracy"]["ci"] is not None
    assert "unseen methods (not scored): demo_checkerboard" in out
    # a method left out by --methods is unseen too: the open-set section scores it (no --holdout-methods recorded)
    os_ = rep["open_set"]
    assert os_["unseen_methods"] == ["demo_checkerboard"] and os_["holdout_methods"] == []
    assert os_["overall"]["n_unseen"] == meta[meta["method"] == "Checkerboard"]["video_id"].nunique()
    assert set(os_["overall"]["auroc"]) == {"msp", "energy", "prototype"} and "open set (" in out
    assert len(pd.read_parquet(ev / "openset_scores.parquet")) == len(meta)
    md = (ev / "eval.md").read_text()
    assert "Unseen methods" in md and "demo_checkerboard" in md
    assert "<table>" in (ev / "eval.html").read_text()
    for f in ("confusion_frame.png", "confusion_video.png"):
        assert (ev / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # predictions.parquet: one row per evaluated crop, the FiftyOne-facing columns
    pr = pd.read_parquet(ev / "predictions.parquet")
    assert list(pr.columns) == ["sample_id", "pred", "confidence", "probs", "logits"]
    assert len(pr) == len(meta) and set(pr["sample_id"]) == set(meta["sample_id"])
    # and the same through the Python API
    view = dfkit.corpus.open(demo_corpus).select(splits="test", methods=["Checkerboard"])
    df = predict_corpus(run, view, batch_size=64, workers=0)
    names = df.attrs["class_names"]
    assert names == rep["class_names"] and len(df) == n_cb
    probs = np.array(df["probs"].tolist())
    logits = np.array(df["logits"].tolist())
    assert probs.shape == (n_cb, 4) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert np.allclose(torch.softmax(torch.tensor(logits), 1).numpy(), probs, atol=1e-5)
    assert (df["pred"] == [names[i] for i in probs.argmax(1)]).all()
    assert np.allclose(df["confidence"], probs.max(1))
    same = pr.set_index("sample_id").loc[df["sample_id"]]
    assert np.allclose(np.array(same["probs"].tolist()), probs, atol=1e-5)


def test_eval_binary_has_eer_and_errors(demo_corpus, tmp_path, capsys):
    run = tmp_path / "bin"
    code, out, err = run_cli(["train", "--corpus", demo_corpus, "--task", "binary", "--backbone", "tiny",
                              "--img-size", "32", "--epochs", "1", "--workers", "0", "--out", run, "-q"], capsys)
    assert code == 0, err
    code, out, err = run_cli(["eval", run, "--n-boot", "50", "--workers", "0"], capsys)
    assert code == 0, err
    rep = json.loads((run / "eval_all_test" / "eval.json").read_text())
    k = rep["overall"]["known"]
    assert k["class_names"] == ["real", "fake"] and "eer" in k["video"] and rep["overall"]["unseen_methods"] == []
    # a binary model has no unseen method (every fake is "fake"): per-crop scores, no open-set line
    assert rep["open_set"]["unseen_methods"] == [] and "open set (" not in out
    assert (run / "eval_all_test" / "openset_scores.parquet").exists()
    code, out, err = run_cli(["eval", run, "--datasets", "ffpp"], capsys)
    assert code == 2 and "unknown dataset(s) ffpp" in err and "Traceback" not in err
    code, out, err = run_cli(["eval", run, "--split", "holdout"], capsys)
    assert code == 2 and "--split" in err
