"""Open-set attribution (:mod:`dfkit.train.openset`): the scores and metrics on constructed logits and embeddings
with hand-computed values; a real leave-methods-out run on the demo corpus (``dfkit train --holdout-methods``, then
``dfkit eval``) whose prototype distance tells the held-out method from the known classes; bad ``--holdout-methods``.

Measured on the demo corpus (tiny backbone, 32 px centre crops, 10 epochs, demo_checkerboard held out; 4 unseen vs
16 known test videos), video-level AUROC unseen vs known, seeds 0 / 1 / 2: prototype distance 0.844 / 0.656 / 0.781,
MSP 0.344 / 0.406 / 0.391, energy 0.312 / 0.359 / 0.422 -- the classifier puts the unseen checkerboard fakes
confidently into a known class, so only the prototype distance is asserted above chance.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from tests.test_train_cli import demo_corpus, one_thread, run_cli  # noqa: F401 - fixtures

#: the fast demo recipe of tests/test_predict.py (learns the demo methods in seconds)
TRAIN_YAML = "crop: center\nsamples_per_epoch: 320\naugment: {blur: false, jpeg: false, channel_gain: true}\n"
TRAIN = ["--backbone", "tiny", "--img-size", "32", "--epochs", "10", "--lr", "3e-3", "--batch-size", "32",
         "--workers", "0", "--threads", "1", "-q"]


# ----------------------------------------------------------------------------------------------------------------------
# constructed cases

def test_crop_scores_by_hand():
    from dfkit.train.openset import class_prototypes, crop_scores

    logits = np.array([[0.0, 0.0], [math.log(3.0), 0.0]])
    emb = np.array([[2.0, 0.0], [1.0, 1.0]])
    protos = np.array([[1.0, 0.0], [0.0, 1.0]])
    s = crop_scores(logits, emb, protos)
    # softmax [0.5, 0.5] and [0.75, 0.25]; logsumexp log 2 and log 4; cosine to the nearest prototype 1 and 1/sqrt 2
    assert s["msp"] == pytest.approx([0.5, 0.25])
    assert s["energy"] == pytest.approx([-math.log(2.0), -math.log(4.0)])
    assert s["prototype"] == pytest.approx([0.0, 1 - 1 / math.sqrt(2)])
    assert set(crop_scores(logits)) == {"msp", "energy"}  # no embeddings (an old run): no prototype distance
    # a higher score means "more likely unknown": the flatter softmax scores higher on msp and energy
    assert s["msp"][0] > s["msp"][1] and s["energy"][0] > s["energy"][1]
    # prototypes: the mean of the L2-normalised embeddings, normalised; a class without crops: a zero row
    p, n = class_prototypes(np.array([[2.0, 0.0], [0.0, 3.0], [0.0, 5.0]]), [0, 0, 2], 3)
    assert p[0] == pytest.approx([1 / math.sqrt(2), 1 / math.sqrt(2)]) and p[2] == pytest.approx([0.0, 1.0])
    assert p[1] == pytest.approx([0.0, 0.0]) and n.tolist() == [2, 0, 1]


def test_video_scores_and_thresholds_by_hand():
    from dfkit.train.openset import choose_thresholds, video_scores

    videos, vs = video_scores({"msp": np.array([0.1, 0.3, 0.8, 0.5])}, ["b", "b", "a", "b"])
    assert videos.tolist() == ["a", "b"] and vs["msp"] == pytest.approx([0.8, 0.3])
    # 5% of 101 evenly spaced known validation scores exceed the 95% quantile
    t = choose_thresholds({"energy": np.arange(101.0)}, rate=0.05)
    assert t == {"energy": pytest.approx(95.0)}
    assert (np.arange(101.0) > t["energy"]).sum() == 5


def test_open_set_metrics_by_hand():
    from dfkit.train.openset import open_set_metrics

    # videos: 2 unseen (0.9, 0.4), 3 known (0.5 wrong, 0.1 right, 0.2 right)
    s = {"msp": np.array([0.9, 0.4, 0.5, 0.1, 0.2])}
    unseen = np.array([True, True, False, False, False])
    correct = np.array([False, False, False, True, True])
    r = open_set_metrics(s, unseen, correct, thresholds={"msp": 0.45}, n_boot=0)
    # AUROC: 0.9 beats the 3 known, 0.4 beats 2 of them -> 5 / 6
    assert r["auroc"]["msp"]["value"] == pytest.approx(5 / 6) and r["auroc"]["msp"]["ci"] is None
    assert (r["n_known"], r["n_unseen"]) == (3, 2)
    assert r["known_accuracy"]["value"] == pytest.approx(2 / 3)
    t = r["at_threshold"]["msp"]
    # rejected (> 0.45): 0.9 (unseen), 0.5 (the known video classified wrong) -> kept known videos are all right
    assert t["known_accuracy"]["value"] == pytest.approx(1.0)
    assert t["known_rejected"]["value"] == pytest.approx(1 / 3) and t["unseen_rejected"]["value"] == 0.5
    assert r["clustering"] is None
    # bootstrap over videos: the CI holds the point estimate
    rb = open_set_metrics(s, unseen, correct, thresholds={"msp": 0.45}, n_boot=300, seed=1)
    lo, hi = rb["auroc"]["msp"]["ci"]
    assert lo <= 5 / 6 <= hi and hi <= 1.0
    # a perfect separation and an inverted one
    assert open_set_metrics({"e": np.array([3.0, 2, 1, 0])}, np.array([1, 1, 0, 0], bool), np.ones(4, bool),
                            n_boot=0)["auroc"]["e"]["value"] == 1.0
    assert open_set_metrics({"e": np.array([0.0, 1, 2, 3])}, np.array([1, 1, 0, 0], bool), np.ones(4, bool),
                            n_boot=0)["auroc"]["e"]["value"] == 0.0


def test_clustering_of_unseen_methods_by_hand():
    from dfkit.train.openset import cluster_scores, open_set_metrics

    # two tight groups that are the two methods: NMI = ARI = 1
    emb = np.array([[1.0, 0.0], [0.98, 0.05], [0.99, 0.02], [0.0, 1.0], [0.03, 0.97], [0.05, 1.0]])
    c = cluster_scores(emb, ["a", "a", "a", "b", "b", "b"])
    assert c["k"] == 2 and c["nmi"] == pytest.approx(1.0) and c["ari"] == pytest.approx(1.0)
    # groups {0, 2} and {1, 3} against methods a, a, b, b: independent -> NMI 0; ARI by hand: sum C(n_ij, 2) = 0,
    # expected (2 * 2) / C(4, 2) = 2/3, max (2 + 2) / 2 = 2 -> (0 - 2/3) / (2 - 2/3) = -0.5
    c = cluster_scores(np.array([[1.0, 0.0], [0.0, 1.0], [0.99, 0.01], [0.01, 0.99]]), ["a", "a", "b", "b"])
    assert c["nmi"] == pytest.approx(0.0, abs=1e-12) and c["ari"] == pytest.approx(-0.5)
    # in the metrics only the unseen videos are clustered (the known one, far away, is not)
    r = open_set_metrics({"msp": np.arange(7.0)}, np.array([1, 1, 1, 1, 1, 1, 0], bool), np.ones(7, bool),
                         methods=["a", "a", "a", "b", "b", "b", "real"], embeddings=np.vstack([emb, [[-1.0, -1.0]]]),
                         n_boot=0)
    assert r["clustering"]["k"] == 2 and r["clustering"]["n_videos"] == 6 and r["clustering"]["ari"] == 1.0
    with pytest.raises(ValueError):
        cluster_scores(emb[:2], ["a", "b"])


def test_evaluate_open_set_of_an_old_run(tmp_path):
    """A run without prototypes.safetensors / openset.json: MSP and energy, no prototype distance, no threshold,
    each said in a note."""
    from dfkit.train.openset import RunOpenSet, evaluate_open_set

    ros = RunOpenSet(tmp_path)  # an empty folder: an old run
    # 2 known videos (real, A) of 2 crops, one unseen (C); the unseen one has the flattest logits
    logits = np.array([[4.0, 0], [3, 0], [0, 4], [0, 3], [0.1, 0], [0, 0.1]])
    methods = ["real", "real", "A", "A", "C", "C"]
    vids = ["v1", "v1", "v2", "v2", "v3", "v3"]
    sec, cs = evaluate_open_set(methods, vids, logits, np.ones((6, 4)), ["real", "A"], ros, n_boot=0)
    assert set(cs) == {"msp", "energy"} and sec["unseen_methods"] == ["C"]
    assert sec["overall"]["auroc"]["msp"]["value"] == 1.0 and sec["overall"]["at_threshold"] == {}
    assert sec["overall"]["known_accuracy"]["value"] == 1.0
    assert any("prototypes.safetensors" in n for n in sec["notes"])
    assert any("no validation thresholds" in n for n in sec["notes"])
    assert ros.video(logits[:2], None)["unknown"] is None


# ----------------------------------------------------------------------------------------------------------------------
# a real leave-methods-out run

@pytest.fixture(scope="module")
def holdout_run(demo_corpus, tmp_path_factory):
    import torch

    from tests.test_predict import _NoCapture

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("openset")
    (tmp / "train.yaml").write_text(TRAIN_YAML)
    try:
        code, out, err = run_cli(["train", "--corpus", demo_corpus, "--config", tmp / "train.yaml", *TRAIN,
                                  "--holdout-methods", "Checkerboard", "--out", tmp / "run"], _NoCapture())
        assert code == 0
    finally:
        torch.set_num_threads(n)
    return tmp / "run"


def test_holdout_run_records_and_excludes_the_method(holdout_run):
    from safetensors.numpy import load_file

    data = json.loads((holdout_run / "data.json").read_text())
    assert data["holdout_methods"] == ["demo_checkerboard"]
    assert data["class_names"] == ["real", "demo_landmark_warp", "demo_poisson_swap", "demo_texture_render"]
    for split in ("train", "val"):
        assert "demo_checkerboard" not in data["counts"][split]["per_class"]
    assert data["counts"]["test"]["per_class"]["demo_checkerboard"]["videos"] > 0  # stays in test (unseen)
    assert json.loads((holdout_run / "config.json").read_text())["holdout_methods"] == ["Checkerboard"]
    st = load_file(str(holdout_run / "prototypes.safetensors"))
    assert st["prototypes"].shape == (4, 128)  # the tiny backbone's 128-d embedding, one row per class
    assert np.allclose(np.linalg.norm(st["prototypes"], axis=1), 1, atol=1e-5)
    assert st["counts"].tolist() == [32, 32, 32, 32]  # every training crop (fewer than the cap of 200 per class)
    rec = json.loads((holdout_run / "openset.json").read_text())
    assert set(rec["thresholds"]) == {"msp", "energy", "prototype"} and rec["target_rejection"] == 0.05
    assert rec["holdout_methods"] == ["demo_checkerboard"] and rec["n_val_videos"] > 0


def test_eval_reports_the_held_out_method_as_unseen_and_detects_it(holdout_run, demo_corpus, tmp_path, capsys):
    import dfkit.corpus

    ev = tmp_path / "eval"
    code, out, err = run_cli(["eval", holdout_run, "--split", "test", "--out", ev, "--n-boot", "200",
                              "--workers", "0"], capsys)
    assert code == 0, err
    rep = json.loads((ev / "eval.json").read_text())
    assert rep["overall"]["unseen_methods"] == ["demo_checkerboard"]
    os_ = rep["open_set"]
    assert os_["unseen_methods"] == ["demo_checkerboard"] and os_["holdout_methods"] == ["demo_checkerboard"]
    meta = dfkit.corpus.open(demo_corpus).select(splits="test").metadata()
    n_unseen = meta[meta["method"] == "Checkerboard"]["video_id"].nunique()
    assert os_["overall"]["n_unseen"] == n_unseen and os_["overall"]["n_known"] == meta["video_id"].nunique() - n_unseen
    auroc = os_["overall"]["auroc"]
    assert set(auroc) == {"msp", "energy", "prototype"}
    # the real assertion: the prototype distance separates the held-out method from the known classes (measured
    # 0.84 / 0.66 / 0.78 over seeds 0-2; MSP and energy stay below chance on this demo, see the module docstring)
    p = auroc["prototype"]
    assert p["value"] > 0.5, auroc
    assert p["ci"] is not None and p["ci"][0] <= p["value"] <= p["ci"][1]
    t = os_["overall"]["at_threshold"]["prototype"]
    assert 0 <= t["known_rejected"]["value"] <= 1 and t["known_accuracy"]["value"] is not None
    assert "open set (" in out and "AUROC msp" in out and "at the prototype threshold known accuracy" in out
    assert "Open set" in (ev / "eval.md").read_text() and "Open set" in (ev / "eval.html").read_text()
    # the per-crop scores beside the predictions, one row per crop, consistent with the saved logits
    sc = pd.read_parquet(ev / "openset_scores.parquet")
    pr = pd.read_parquet(ev / "predictions.parquet")
    assert list(sc.columns) == ["sample_id", "msp", "energy", "prototype"]
    assert (sc["sample_id"] == pr["sample_id"]).all()
    logits = np.array(pr["logits"].tolist())
    z = logits - logits.max(1, keepdims=True)
    p_max = 1 / np.exp(z).sum(1)
    assert np.allclose(sc["msp"], 1 - p_max, atol=1e-5)
    assert np.allclose(sc["energy"], -(logits.max(1) + np.log(np.exp(z).sum(1))), atol=1e-5)
    assert ((sc["prototype"] >= -1e-6) & (sc["prototype"] <= 2 + 1e-6)).all()


# ----------------------------------------------------------------------------------------------------------------------
# bad --holdout-methods

@pytest.mark.parametrize("value, says", [
    ("Nope", "--holdout-methods: unknown method(s) Nope"),
    ("Checkerboard,PoissonSwap,demo_landmark_warp,TextureRender", "leaves only the class real"),
    ("real", "real is not a fake method"),
])
def test_bad_holdout_methods_are_refused(demo_corpus, tmp_path, capsys, value, says):
    out = tmp_path / "run"
    code, _, err = run_cli(["train", "--corpus", demo_corpus, *TRAIN, "--holdout-methods", value, "--out", out],
                           capsys)
    assert code == 2 and says in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()  # refused before anything is written


def test_holdout_and_methods_overlap_is_refused(demo_corpus, tmp_path, capsys):
    out = tmp_path / "run"
    # the same method by its dataset name in one option and its canonical name in the other
    code, _, err = run_cli(["train", "--corpus", demo_corpus, *TRAIN, "--methods", "Checkerboard,PoissonSwap",
                            "--holdout-methods", "demo_checkerboard", "--out", out], capsys)
    assert code == 2 and "demo_checkerboard: also in --methods" in err and not out.exists()
    # binary: holding out every fake method leaves the real class alone
    code, _, err = run_cli(["train", "--corpus", demo_corpus, *TRAIN, "--task", "binary", "--holdout-methods",
                            "Checkerboard,PoissonSwap,LandmarkWarp,TextureRender", "--out", out], capsys)
    assert code == 2 and "leaves only the class real" in err and not out.exists()
