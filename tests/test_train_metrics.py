"""Evaluation metrics against hand-computed values on a fixed prediction set."""

import json

import numpy as np
import pytest

from dfkit.train.scores import (
    cross_dataset_attribution,
    eer,
    evaluate,
    roc_auc,
    save_confusion_png,
    to_markdown,
)

CLASSES = ["real", "A", "B"]
# 5 videos x 2 frames. Frame arg-max predictions: 0,1 | 0,0 | 1,2 | 2,2 | 2,0
PROBS = np.array([
    [0.7, 0.2, 0.1], [0.4, 0.5, 0.1],   # v1 real -> video mean [0.55, 0.35, 0.10] -> real
    [0.6, 0.3, 0.1], [0.8, 0.1, 0.1],   # v2 real -> [0.70, 0.20, 0.10] -> real
    [0.2, 0.7, 0.1], [0.3, 0.3, 0.4],   # v3 A    -> [0.25, 0.50, 0.25] -> A
    [0.1, 0.2, 0.7], [0.2, 0.3, 0.5],   # v4 A    -> [0.15, 0.25, 0.60] -> B
    [0.1, 0.1, 0.8], [0.5, 0.2, 0.3],   # v5 B    -> [0.30, 0.15, 0.55] -> B
])
Y = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2]
VIDS = ["ds/v1", "ds/v1", "ds/v2", "ds/v2", "ds/v3", "ds/v3", "ds/v4", "ds/v4", "ds/v5", "ds/v5"]


def val(res, level, key):
    return res[level][key]["value"]


def test_frame_level_by_hand():
    r = evaluate(Y, PROBS, VIDS, CLASSES, n_boot=0)
    f = r["frame"]
    # confusion (rows true, cols predicted): real 3,1,0 | A 0,1,3 | B 1,0,1
    assert f["confusion_matrix"] == [[3, 1, 0], [0, 1, 3], [1, 0, 1]]
    assert val(r, "frame", "accuracy") == pytest.approx(0.5)          # (3+1+1)/10
    # recalls 3/4, 1/4, 1/2 -> balanced accuracy 0.5
    assert [f["per_class_recall"][c]["value"] for c in CLASSES] == pytest.approx([0.75, 0.25, 0.5])
    assert val(r, "frame", "balanced_accuracy") == pytest.approx(0.5)
    # F1 = 2tp/(2tp+fp+fn): real 6/8, A 2/6, B 2/6 -> macro 0.472222
    assert val(r, "frame", "macro_f1") == pytest.approx(0.472222, abs=1e-6)
    # one-vs-rest AUC by counting (positive, negative) pairs, ties 1/2:
    #   real: 23/24 (0.4 loses only to the 0.5 of v5); A: 18/24; B: 13/16  -> mean 0.840278
    assert [f["per_class_auc"][c]["value"] for c in CLASSES] == pytest.approx([23 / 24, 0.75, 0.8125])
    assert val(r, "frame", "auc") == pytest.approx(0.840278, abs=1e-6)
    assert f["support"] == {"real": 4, "A": 4, "B": 2}
    assert "eer" not in f and r["n_frames"] == 10 and r["n_videos"] == 5
    assert all(v["ci"] is None for k, v in f.items() if isinstance(v, dict) and "ci" in v)


def test_video_level_by_hand():
    r = evaluate(Y, PROBS, VIDS, CLASSES, n_boot=0)
    v = r["video"]
    # video predictions real, real, A, B, B against real, real, A, A, B
    assert v["confusion_matrix"] == [[2, 0, 0], [0, 1, 1], [0, 0, 1]]
    assert val(r, "video", "accuracy") == pytest.approx(0.8)
    assert val(r, "video", "balanced_accuracy") == pytest.approx(0.833333, abs=1e-6)  # (1 + 1/2 + 1)/3
    assert val(r, "video", "macro_f1") == pytest.approx(0.777778, abs=1e-6)          # (1 + 2/3 + 2/3)/3
    # AUC on video means: real 6/6; A: 0.5 beats all 3, 0.25 beats 0.2 and 0.15 -> 5/6; B: 0.55 beats 3 of 4 -> 3/4
    assert [v["per_class_auc"][c]["value"] for c in CLASSES] == pytest.approx([1.0, 5 / 6, 0.75])
    assert val(r, "video", "auc") == pytest.approx(0.861111, abs=1e-6)
    assert v["support"] == {"real": 2, "A": 2, "B": 1} and v["n"] == 5


def test_eer_known_cases():
    # descending scores P P N P N N: (FPR, FNR) reaches (1/3, 1/3) at threshold 0.7 -> EER 1/3
    assert eer([1, 1, 0, 1, 0, 0], [0.9, 0.8, 0.7, 0.4, 0.3, 0.2]) == pytest.approx(1 / 3)
    # P N P P N: FNR - FPR changes sign on the segment (1/2, 2/3) -> (1/2, 1/3): EER 1/2 by interpolation
    assert eer([1, 0, 1, 1, 0], [0.9, 0.6, 0.5, 0.4, 0.3]) == pytest.approx(0.5)
    assert eer([1, 1, 0, 0], [0.9, 0.8, 0.2, 0.1]) == 0.0          # separable
    assert eer([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 1.0          # inverted
    assert eer([1, 0], [0.5, 0.5]) == pytest.approx(0.5)           # a tie: chance
    assert np.isnan(eer([1, 1], [0.2, 0.3]))
    assert roc_auc([1, 1, 0, 1, 0, 0], [0.9, 0.8, 0.7, 0.4, 0.3, 0.2]) == pytest.approx(8 / 9)


def test_binary_evaluate_by_hand():
    # one frame per video; p(fake) for fakes 0.9, 0.8, 0.4 and for reals 0.7, 0.3, 0.2
    pf = np.array([0.9, 0.8, 0.4, 0.7, 0.3, 0.2])
    probs = np.stack([1 - pf, pf], 1)
    y = [1, 1, 1, 0, 0, 0]
    r = evaluate(y, probs, [f"v{i}" for i in range(6)], ["real", "fake"], n_boot=0)
    for level in ("frame", "video"):
        assert val(r, level, "eer") == pytest.approx(1 / 3)
        assert val(r, level, "auc") == pytest.approx(8 / 9)           # 3 + 3 + 2 winning pairs of 9
        assert val(r, level, "accuracy") == pytest.approx(4 / 6)      # 0.4 and 0.7 fall on the wrong side
        assert val(r, level, "balanced_accuracy") == pytest.approx(2 / 3)


def test_bootstrap_resamples_videos_and_contains_point():
    r = evaluate(Y, PROBS, VIDS, CLASSES, n_boot=300, seed=1)
    for level in ("frame", "video"):
        for k in ("accuracy", "balanced_accuracy", "macro_f1", "auc"):
            lo, hi = r[level][k]["ci"]
            assert lo <= r[level][k]["value"] <= hi, (level, k)
    assert r["bootstrap"] == {"n_boot": 300, "seed": 1, "ci_level": 0.95, "unit": "video", "method": "percentile"}
    # seeded: the same seed gives the same intervals, another seed others
    assert evaluate(Y, PROBS, VIDS, CLASSES, n_boot=300, seed=1) == r
    assert evaluate(Y, PROBS, VIDS, CLASSES, n_boot=300, seed=2)["frame"]["accuracy"]["ci"] != \
        r["frame"]["accuracy"]["ci"]

    # two videos of 50 frames, one all right, one all wrong: resampling videos gives accuracies 0, 1/2 or 1 only,
    # so the 95% interval is [0, 1]; resampling frames would give a narrow interval around 1/2
    y = [0] * 50 + [1] * 50
    probs = np.array([[0.9, 0.1]] * 50 + [[0.8, 0.2]] * 50)
    vids = ["a"] * 50 + ["b"] * 50
    r2 = evaluate(y, probs, vids, ["real", "fake"], n_boot=500, seed=0)
    assert r2["frame"]["accuracy"]["value"] == 0.5
    assert r2["frame"]["accuracy"]["ci"] == [0.0, 1.0]


def test_absent_class_and_errors():
    # no "B" sample: its AUC is skipped and said so; balanced accuracy averages real and A only
    sel = np.array(Y) < 2
    r = evaluate(np.array(Y)[sel], PROBS[sel], np.array(VIDS)[sel], CLASSES, n_boot=50)
    assert r["frame"]["per_class_auc"]["B"]["value"] is None
    assert r["frame"]["auc_skipped"] == ["B"]
    assert any("absent from y_true: B" in n for n in r["notes"])
    # frame recalls real 3/4, A 1/4 -> 0.5
    assert val(r, "frame", "balanced_accuracy") == pytest.approx(0.5)
    json.dumps(r, allow_nan=False)  # JSON-serialisable, no NaN
    with pytest.raises(ValueError, match="different labels"):
        evaluate([0, 1], np.array([[0.5, 0.5], [0.5, 0.5]]), ["v", "v"], ["real", "fake"], n_boot=0)
    with pytest.raises(ValueError):
        evaluate([0, 3], np.array([[0.5, 0.5], [0.5, 0.5]]), ["v", "w"], ["real", "fake"], n_boot=0)


def test_unseen_methods_reported_separately():
    names = ["real", "deepfakes", "faceswap"]
    methods = ["real", "real", "deepfakes", "deepfakes", "neuraltextures", "neuraltextures", "neuraltextures"]
    probs = np.array([
        [0.8, 0.1, 0.1],  # real v1 -> real
        [0.6, 0.3, 0.1],  # real v2 -> real
        [0.2, 0.7, 0.1],  # deepfakes v3 -> deepfakes
        [0.1, 0.3, 0.6],  # deepfakes v4 -> faceswap (wrong)
        [0.7, 0.2, 0.1],  # neuraltextures v5 frame 1 -> real
        [0.1, 0.2, 0.7],  # neuraltextures v5 frame 2 -> faceswap; v5 mean [0.4, 0.2, 0.4] -> real (tie, lower index)
        [0.1, 0.6, 0.3],  # neuraltextures v6 -> deepfakes
    ])
    vids = ["v1", "v2", "v3", "v4", "v5", "v5", "v6"]
    r = cross_dataset_attribution(names, methods, probs, vids, n_boot=0)
    assert (r["n_frames"], r["n_known_frames"], r["n_unseen_frames"]) == (7, 4, 3)
    assert r["unseen_methods"] == ["neuraltextures"]
    # the known part is scored alone: 3 of 4 right (the unseen fakes are not counted wrong)
    assert r["known"]["frame"]["accuracy"]["value"] == pytest.approx(0.75)
    assert r["known"]["n_frames"] == 4
    nt = r["unseen"]["neuraltextures"]
    assert (nt["n_frames"], nt["n_videos"]) == (3, 2)
    assert nt["frame_predicted_as"] == pytest.approx({"real": 1 / 3, "deepfakes": 1 / 3, "faceswap": 1 / 3})
    assert nt["video_predicted_as"] == pytest.approx({"real": 0.5, "deepfakes": 0.5, "faceswap": 0.0})
    assert nt["mean_prob"] == pytest.approx({"real": 0.3, "deepfakes": 1 / 3, "faceswap": 1.1 / 3})
    assert nt["frame_detected_as_fake"] == pytest.approx(2 / 3)
    assert nt["video_detected_as_fake"] == pytest.approx(0.5)
    assert any("neuraltextures" in n for n in r["notes"])
    md = to_markdown(r, title="ffpp -> ffpp")
    assert "neuraltextures" in md and "Known methods" in md
    json.dumps(r, allow_nan=False)

    # a binary model: every fake method maps to "fake", nothing is unseen
    rb = cross_dataset_attribution(["real", "fake"], ["real", "deepfakes", "neuraltextures"],
                                   np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]), ["a", "b", "c"], n_boot=0)
    assert rb["n_unseen_frames"] == 0 and rb["known"]["frame"]["accuracy"]["value"] == pytest.approx(2 / 3)


def test_markdown_and_png(tmp_path):
    r = evaluate(Y, PROBS, VIDS, CLASSES, n_boot=100)
    md = to_markdown(r, title="demo")
    assert "| balanced accuracy | 0.500 [" in md
    assert "| metric | frame | video |" in md and "| A | 4/2 |" in md
    png = save_confusion_png(r["frame"]["confusion_matrix"], CLASSES, tmp_path / "cm" / "frame.png", title="frames")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000
