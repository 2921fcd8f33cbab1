"""``dfkit predict``: video files scored by a trained run, cut by the ingest engine with the run's corpus parameters,
checked against ``dfkit eval``'s video-level predictions for the demo's test videos; bad files, bad arguments, the
JSON/CSV files, a real FF++ clip.

Why only the real test videos match eval to the last digit: the corpus cuts a fake whose original it holds on the
original's frames and boxes (``box_source == "paired"``, the engine's phase 2/5), and a standalone file has no
original, so ``dfkit predict`` cuts the fake on its own detections (the dominant track) -- other boxes, sometimes
other frames, other crops. A real is cut on its own detections both ways: byte-identical crops, identical numbers.
For the fakes the test checks what is true instead: the model half reproduces eval exactly on the corpus's own crops,
and the crops predict cuts lie on the same face (the engine's same-track overlap).
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import need_realdata, noise_frames, write_video
from tests.test_train_cli import demo_corpus, one_thread, run_cli  # noqa: F401 - fixtures

#: the tiny model that learns the demo methods in seconds (tests/test_train_cli.py's learning test): the central
#: 32 px of the 128 px crops, colour-cast augmentation
TRAIN_YAML = "crop: center\nsamples_per_epoch: 320\naugment: {blur: false, jpeg: false, channel_gain: true}\n"
TRAIN = ["--backbone", "tiny", "--img-size", "32", "--epochs", "10", "--lr", "3e-3", "--batch-size", "32",
         "--workers", "0", "--threads", "1", "-q"]


class _NoCapture:
    """capsys is per test: a module fixture's run_cli reads nothing back (pytest still captures the output)."""

    def readouterr(self):
        import types

        return types.SimpleNamespace(out="", err="")


@pytest.fixture(scope="module")
def demo_run(demo_corpus, tmp_path_factory):
    """A trained run on the demo corpus, ``dfkit eval`` of it on the test split, and the test split's videos."""
    import torch

    import dfkit.corpus

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("predict")
    (tmp / "train.yaml").write_text(TRAIN_YAML)
    try:
        code, _, _ = run_cli(["train", "--corpus", demo_corpus, "--config", tmp / "train.yaml", *TRAIN,
                              "--out", tmp / "run"], _NoCapture())
        assert code == 0
        code, _, _ = run_cli(["eval", tmp / "run", "--split", "test", "--out", tmp / "eval", "--n-boot", "0",
                              "--workers", "0"], _NoCapture())
        assert code == 0
    finally:
        torch.set_num_threads(n)
    c = dfkit.corpus.open(demo_corpus)
    root = Path(c.manifest["ingests"][0]["params"]["root"])  # the demo dataset the corpus was ingested from
    videos = c.videos()
    test = videos[videos["split"] == "test"].reset_index(drop=True)
    test["file"] = [str(root / p) for p in test["video_path"]]
    return {"run": tmp / "run", "eval": tmp / "eval", "corpus": demo_corpus, "test": test, "root": root}


def eval_video_level(demo_run) -> tuple[list[str], dict[str, np.ndarray]]:
    """``dfkit eval``'s video-level probabilities per video id: its per-crop predictions file aggregated with
    eval's own aggregation (:func:`dfkit.train.scores.video_level`)."""
    import dfkit.corpus
    from dfkit.train.evaluation import load_predictions
    from dfkit.train.scores import video_level

    pr = load_predictions(demo_run["eval"] / "predictions.parquet")
    meta = dfkit.corpus.open(demo_run["corpus"]).metadata().set_index("sample_id").loc[pr["sample_id"]]
    vids, _, _, pv = video_level(np.zeros(len(pr), np.int64), np.asarray(pr["probs"].tolist()), meta["video_id"])
    return pr.attrs["class_names"], dict(zip(vids, pv))


# ----------------------------------------------------------------------------------------------------------------------
# the video's answer, on constructed frame probabilities

def test_video_prediction_on_constructed_probabilities():
    from dfkit.train.predict import video_prediction

    names = ["real", "A", "B"]
    probs = np.array([[0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.5, 0.4], [0.1, 0.9, 0.0]])
    v = video_prediction(probs, names, [0, 10, 20, 30], [0.0, 0.4, 0.8, 1.2], top_k=2)
    # the mean over frames: real 0.25, A 0.6, B 0.15
    assert v["probs"] == pytest.approx({"real": 0.25, "A": 0.6, "B": 0.15})
    assert (v["pred"], v["n_frames"]) == ("A", 4) and v["confidence"] == pytest.approx(0.6)
    assert v["p_fake"] == pytest.approx(0.75)  # attribution with a real class: 1 - P(real)
    # the frames that weigh most in A: p 0.9 (frame 30), 0.7 (frame 0); shares of the sum 2.4
    assert [f["frame_index"] for f in v["top_frames"]] == [30, 0]
    assert [f["share"] for f in v["top_frames"]] == pytest.approx([0.9 / 2.4, 0.7 / 2.4])
    assert v["top_frames"][0]["timestamp_s"] == pytest.approx(1.2)
    # binary: P(fake) is the fake class; ties keep frame order
    b = video_prediction(np.array([[0.3, 0.7], [0.3, 0.7], [0.9, 0.1]]), ["real", "fake"], [4, 2, 9], top_k=5)
    assert b["pred"] == "real" and b["p_fake"] == pytest.approx(0.5) and b["confidence"] == pytest.approx(0.5)
    # argmax of [0.5, 0.5] is the first class; the real class's frames, largest first: 9, then 4 and 2 in order
    assert [f["frame_index"] for f in b["top_frames"]] == [9, 4, 2]
    # a run without a real class has no P(fake)
    assert video_prediction(np.array([[0.4, 0.6]]), ["A", "B"], [0])["p_fake"] is None
    with pytest.raises(ValueError):
        video_prediction(probs[:, :2], names, [0, 1, 2, 3])


def test_params_from_manifest_latest_ingest_and_notes():
    from dfkit.errors import DfkitError
    from dfkit.ingest.single import params_from_manifest

    base = {"root": "/data", "frames": 8, "size": 128, "margin": 1.3, "encoding": "png", "min_confidence": 0.5}
    man = {"ingests": [{"dataset": "ffpp", "params": {**base, "frames": 16}},
                       {"dataset": "demo", "params": {**base, "size": 64}},
                       {"dataset": "ffpp", "params": base, "finished": "T2"}]}
    p, notes = params_from_manifest(man, ["ffpp"])
    assert (p.frames, p.size) == (8, 128)  # the latest ffpp ingest; demo's size is not ffpp's
    assert len(notes) == 1 and "several values of frames" in notes[0] and "T2" in notes[0]
    p, notes = params_from_manifest(man)  # every dataset: the latest ingest of all
    assert (p.frames, p.size) == (8, 128) and "frames, size" in notes[0]
    old = {"ingests": [{"dataset": "ffpp", "params": {"frames": 4, "size": 96}}]}  # an older manifest
    p, notes = params_from_manifest(old)
    assert (p.frames, p.size, p.margin) == (4, 96, 1.3)
    assert "does not record margin, encoding, min_confidence" in notes[0]
    with pytest.raises(DfkitError, match="records no ingest of dataset"):
        params_from_manifest(man, ["celebdf"])


# ----------------------------------------------------------------------------------------------------------------------
# against dfkit eval

def test_predict_matches_eval_on_the_demo_test_videos(demo_run, tmp_path, capsys):
    import dfkit.corpus
    from dfkit.corpus.reader import CropReader
    from dfkit.ingest import faces
    from dfkit.ingest.engine import SAME_TRACK_IOU
    from dfkit.ingest.single import crop_file, params_from_manifest
    from dfkit.train.predict import load_run, predict_crops, video_prediction

    test = demo_run["test"]
    assert len(test) == 20 and (test["label"] == "real").sum() == 4
    code, out, err = run_cli(["predict", demo_run["run"], *test["file"], "--json", tmp_path / "p.json", "-q"],
                             capsys)
    assert code == 0, err
    doc = json.loads((tmp_path / "p.json").read_text())
    got = {r["path"]: r for r in doc["videos"]}
    assert len(got) == 20 and all(r["status"] == "ok" for r in got.values())
    names, ev = eval_video_level(demo_run)
    assert doc["class_names"] == names
    # the crop parameters are the corpus's (read from its manifest); the decoder is this machine's choice
    assert doc["params"] == {"frames": 8, "size": 128, "margin": 1.3, "encoding": "png", "min_confidence": 0.5,
                             "decoder": "auto"}

    c = dfkit.corpus.open(demo_run["corpus"])
    meta = c.metadata()
    reader = CropReader(c.crop_files())
    params, _ = params_from_manifest(c.manifest)
    model, _, cfg = load_run(demo_run["run"])
    assert cfg["crop"] == "center"
    # eval's per-crop open-set scores, by video: predict's open-set answer is their mean over the same crops
    scores = pd.read_parquet(demo_run["eval"] / "openset_scores.parquet").merge(meta[["sample_id", "video_id"]])
    os_eval = scores.groupby("video_id")[["msp", "energy", "prototype"]].mean()
    for _, v in test.iterrows():
        rows = meta[meta["video_id"] == v["video_id"]].sort_values("frame_index")
        p = got[v["file"]]
        mine = np.array([p["probs"][n] for n in names])
        # the model half is exact on the corpus's own crops of every test video (eval's loader, eval's aggregation)
        stored = [reader.raw(int(f), int(r)) for f, r in zip(rows["_file"], rows["_row"])]
        probs, _ = predict_crops(model, stored, crop=cfg["crop"])
        again = video_prediction(probs, names, rows["frame_index"].tolist())
        assert np.allclose([again["probs"][n] for n in names], ev[v["video_id"]], atol=1e-5), v["video_id"]
        assert again["pred"] == names[int(ev[v["video_id"]].argmax())]
        _, crops = crop_file(v["file"], params)
        if v["label"] == "real":
            # a real is cut on its own detections in the corpus too: the same frames, byte-identical crops, so the
            # same numbers as eval
            assert [c_["frame_index"] for c_ in crops] == rows["frame_index"].tolist()
            assert [c_["crop"] for c_ in crops] == stored
            assert p["pred"] == names[int(ev[v["video_id"]].argmax())], v["video_id"]
            assert np.allclose(mine, ev[v["video_id"]], atol=1e-4), v["video_id"]
            assert p["n_frames"] == len(rows)
            o = p["open_set"]
            assert o["scores"] == pytest.approx(os_eval.loc[v["video_id"]].to_dict(), abs=1e-4), v["video_id"]
            assert o["unknown"] == (o["scores"][o["primary"]] > o["thresholds"][o["primary"]])
        else:
            # the corpus cut this fake on its original's boxes; predict cuts it on its own face: the same face track
            # by the engine's criterion (mean crop-box overlap on the frames both have), other crops
            assert (rows["box_source"] == "paired").all()
            boxes = {c_["frame_index"]: np.asarray(c_["crop_box"]) for c_ in crops}
            iou = [faces.iou(boxes[fi], np.asarray(b)) for fi, b in zip(rows["frame_index"], rows["crop_box"])
                   if fi in boxes]
            assert iou and np.mean(iou) >= SAME_TRACK_IOU, v["video_id"]
            assert abs(sum(p["probs"].values()) - 1) < 1e-5 and p["pred"] in names


# ----------------------------------------------------------------------------------------------------------------------
# bad files, bad arguments

@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    (d / "broken.mp4").write_bytes(b"not a video at all" * 10)
    return {"broken": d / "broken.mp4", "no_face": write_video(d / "noise.mp4", noise_frames(12))}


def test_a_bad_file_among_good_ones(demo_run, bad_files, tmp_path, capsys):
    good = demo_run["test"].loc[demo_run["test"]["label"] == "real", "file"].tolist()[:2]
    args = ["predict", demo_run["run"], good[0], bad_files["broken"], bad_files["no_face"], good[1], "-q",
            "--csv", tmp_path / "p.csv"]
    code, out, err = run_cli(args, capsys)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 2 and "Traceback" not in err
    assert lines[0].startswith(f"{bad_files['broken']}: failed at open")
    assert lines[1].startswith(f"{bad_files['no_face']}: no_face at detect: no face found")
    assert "2 of 4 files scored" in out
    rows = list(csv.DictReader((tmp_path / "p.csv").open()))
    assert [r["path"] for r in rows] == [good[0], str(bad_files["broken"]), str(bad_files["no_face"]), good[1]]
    assert [r["status"] for r in rows] == ["ok", "failed", "no_face", "ok"]
    assert rows[0]["pred"] and not rows[1]["pred"] and not rows[2]["pred"] and rows[3]["pred"]


def test_bad_arguments_are_one_line_before_any_work(demo_run, bad_files, tmp_path, capsys):
    import torch

    run = demo_run["run"]
    good = demo_run["test"]["file"].iloc[0]
    cases = [
        (["predict", run, tmp_path / "nope.mp4"], "nope.mp4: no such file or folder"),
        (["predict", run, str(tmp_path / "*.mp4")], "*.mp4: no file matches"),
        (["predict", run, tmp_path], "no video files there"),
        (["predict", run, good, "--json", tmp_path / "missing" / "p.json"], "--json"),
        (["predict", run, good, "--csv", tmp_path], "is a folder"),
        (["predict", run, good, "--device", "tpu"], "--device must be cpu, cuda or cuda:N"),
        (["predict", tmp_path / "norun", good], "no run at"),
    ]
    if not torch.cuda.is_available():
        cases.append((["predict", run, good, "--device", "cuda:0"], "CUDA is not available"))
    for args, needle in cases:
        code, out, err = run_cli(args + ["-q"], capsys)
        assert code == 2, (args, err)
        assert len(err.strip().splitlines()) == 1 and needle in err and "Traceback" not in err, (args, err)
        assert out == "", args  # refused before any file was scored
    assert not (tmp_path / "missing").exists()
    # a run whose corpus is gone cuts the file with the copy of the corpus's ingests the run recorded, as before
    import dfkit.corpus
    from dfkit.train.runner import CORPUS_INGESTS_KEY

    cfg = json.loads((run / "config.json").read_text())
    assert cfg[CORPUS_INGESTS_KEY] == dfkit.corpus.open(cfg["corpus"]).manifest["ingests"]
    code, want, err = run_cli(["predict", run, good, "-q"], capsys)
    assert code == 0, err
    gone = tmp_path / "gone-run"
    shutil.copytree(run, gone)
    (gone / "config.json").write_text(json.dumps({**cfg, "corpus": str(tmp_path / "deleted-corpus")}))
    code, out, err = run_cli(["predict", gone, good, "-q"], capsys)
    assert code == 0, err
    assert out.splitlines()[:-1] == want.splitlines()[:-1]  # the same table (the last line names the run folder)
    # a run from before dfkit recorded them, whose corpus is gone: refused, naming what is missing
    old = {k: v for k, v in cfg.items() if k != CORPUS_INGESTS_KEY}
    (gone / "config.json").write_text(json.dumps({**old, "corpus": str(tmp_path / "deleted-corpus")}))
    code, out, err = run_cli(["predict", gone, good, "-q"], capsys)
    assert code == 2 and "deleted-corpus has no manifest.json" in err and "frames, size, margin" in err


def test_json_and_csv_contents(demo_run, bad_files, tmp_path, capsys):
    test = demo_run["test"]
    folder = demo_run["root"] / "original_sequences"  # a folder: its videos recursively (the reals, c23 and c40)
    code, out, err = run_cli(["predict", demo_run["run"], folder, bad_files["broken"], "--top-frames", "2",
                              "--json", tmp_path / "p.json", "--csv", tmp_path / "p.csv", "-q"], capsys)
    assert code == 1
    doc = json.loads((tmp_path / "p.json").read_text())
    names = doc["class_names"]
    assert names[0] == "real" and doc["task"] == "attribution"
    # the run's open-set scores: what they are, the validation thresholds, the score that decides "unknown?"
    assert doc["open_set"]["convention"].startswith("higher = more likely an unknown method")
    assert set(doc["open_set"]["thresholds"]) == {"msp", "energy", "prototype"}
    assert doc["open_set"]["primary"] == "prototype" and doc["open_set"]["target_rejection"] == 0.05
    reals = sorted(str(p) for p in folder.rglob("*.mp4"))
    assert len(reals) == 12 and [r["path"] for r in doc["videos"]] == reals + [str(bad_files["broken"])]
    for r in doc["videos"][:-1]:
        assert r["status"] == "ok" and set(r["open_set"]["scores"]) == {"msp", "energy", "prototype"}
        o = r["open_set"]
        assert o["exceeds"] == {n: o["scores"][n] > doc["open_set"]["thresholds"][n] for n in o["scores"]}
        assert o["unknown"] == o["exceeds"]["prototype"] and 0 <= o["scores"]["msp"] < 1
        assert set(r["probs"]) == set(names) and sum(r["probs"].values()) == pytest.approx(1, abs=1e-5)
        assert r["pred"] == max(r["probs"], key=r["probs"].get) and r["confidence"] == r["probs"][r["pred"]]
        assert r["p_fake"] == pytest.approx(1 - r["probs"]["real"])
        tf = r["top_frames"]
        assert len(tf) == 2 and tf[0]["p"] >= tf[1]["p"] and 0 < tf[0]["share"] <= 1
    bad = doc["videos"][-1]
    assert bad["status"] == "failed" and bad["pred"] is None and bad["reason"]
    rows = list(csv.DictReader((tmp_path / "p.csv").open()))
    assert list(rows[0]) == ["path", "status", "stage", "reason", "n_frames", "pred", "confidence", "p_fake"] + [
        f"p_{n}" for n in names] + ["open_set", "open_set_msp", "open_set_energy", "open_set_prototype", "top_frames"]
    for r, j in zip(rows, doc["videos"]):
        assert r["path"] == j["path"] and r["status"] == j["status"]
        if j["pred"] is not None:
            assert r["pred"] == j["pred"] and float(r["confidence"]) == pytest.approx(j["confidence"])
            assert [float(r[f"p_{n}"]) for n in names] == pytest.approx([j["probs"][n] for n in names])
            assert [int(t.split(":")[0]) for t in r["top_frames"].split(";")] == [
                t["frame_index"] for t in j["top_frames"]]
            assert r["open_set"] == ("yes" if j["open_set"]["unknown"] else "no")
            assert float(r["open_set_prototype"]) == pytest.approx(j["open_set"]["scores"]["prototype"])
    # the screen table: one line per file under a header, the class columns
    table = out.splitlines()
    assert table[0].startswith("file") and all(n in table[0] for n in names) and "unknown?" in table[0]
    assert sum(line.startswith(str(folder)) for line in table) == 12
    assert len(test) == 20  # the fixture's split is untouched


def test_an_old_run_without_prototypes_gets_msp_and_energy(demo_run, tmp_path, capsys):
    """A run trained before dfkit stored prototypes and thresholds: the two logit scores, no decision, a note."""
    old = tmp_path / "old-run"
    shutil.copytree(demo_run["run"], old)
    (old / "prototypes.safetensors").unlink()
    (old / "openset.json").unlink()
    good = demo_run["test"]["file"].iloc[0]
    code, out, err = run_cli(["predict", old, good, "--json", tmp_path / "p.json", "-q"], capsys)
    assert code == 0, err
    doc = json.loads((tmp_path / "p.json").read_text())
    o = doc["videos"][0]["open_set"]
    assert set(o["scores"]) == {"msp", "energy"} and o["unknown"] is None and o["thresholds"] == {}
    assert doc["open_set"]["primary"] is None and any("prototypes.safetensors" in n for n in doc["open_set"]["notes"])
    assert "no thresholds" in out.splitlines()[-2]
    # the same logit scores as the full run
    code, _, err = run_cli(["predict", demo_run["run"], good, "--json", tmp_path / "q.json", "-q"], capsys)
    full = json.loads((tmp_path / "q.json").read_text())["videos"][0]["open_set"]["scores"]
    assert o["scores"] == pytest.approx({k: full[k] for k in ("msp", "energy")})


def test_a_real_ffpp_clip_gets_a_prediction(demo_run, tmp_path, capsys):
    root = need_realdata("ffpp_icpr2020dfdc")
    clip = root / "original_sequences" / "youtube" / "c23" / "videos" / "004.mp4"
    if not clip.exists():
        pytest.skip(f"{clip} not present")
    code, out, err = run_cli(["predict", demo_run["run"], clip, "--json", tmp_path / "p.json", "-q"], capsys)
    assert code == 0, err
    (r,) = json.loads((tmp_path / "p.json").read_text())["videos"]
    assert r["path"] == str(clip) and r["status"] == "ok"
    assert r["n_frames"] >= 7  # 8 frames sampled (the demo corpus's --frames); nearly all show the face
    assert r["pred"] in r["probs"] and 0 < r["confidence"] <= 1 and len(r["top_frames"]) == 3
    assert pd.notna(r["p_fake"])
