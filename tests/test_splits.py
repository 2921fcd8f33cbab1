"""Split audit and identity re-splits, on adapter records of real dataset layouts and on a real corpus."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd

from dfkit.ingest.adapters.ffpp import official_splits
from dfkit.ingest.base import create_adapter
from dfkit.splits import audit, dhash, identity_split, near_duplicates

STRADDLERS = {"nUNnFudF2pA", "pGmDKODT6V4", "tR7z_H1qPMc", "wERnQNuwQbM", "xG9J__APvnY", "yvf0HOswcPk",
              "zPdvu-SUnbg"}


def frame(records) -> pd.DataFrame:
    return pd.DataFrame([{"dataset": r.dataset, "video_id": r.video_id, "split": r.split,
                          "identity_ids": r.identity_ids, "group_id": r.group_id} for r in records])


def test_finds_the_seven_youtube_videos_that_straddle_ffpp_splits(tmp_path):
    d = tmp_path / "original_sequences/youtube/c23/videos"
    d.mkdir(parents=True)
    for sid in official_splits():
        (d / f"{sid}.mp4").write_bytes(b"x")
    rep = audit(frame(create_adapter("ffpp", tmp_path).videos()))
    g = rep["datasets"]["ffpp"]["group"]
    assert g["count"] == 7
    assert {e["key"] for e in g["examples"]} == STRADDLERS
    ex = {e["key"]: e for e in g["examples"]}
    assert ex["nUNnFudF2pA"]["splits"] == ["train", "val"] and ex["nUNnFudF2pA"]["videos"] == [
        "original/c23/605", "original/c23/606"]
    assert rep["datasets"]["ffpp"]["identity"]["count"] == 0  # sequences themselves are disjoint


def test_celebdf_identity_overlap_and_identity_resplit(tmp_path):
    root = tmp_path / "Celeb-DF-v2"
    from dfkit.paths import manifests_dir

    lst = [ln.split()[1] for ln in open(manifests_dir() / "celebdf/List_of_testing_videos.txt") if ln.strip()]
    names = set(lst[:60]) | {"Celeb-real/id0_0001.mp4", "Celeb-real/id1_0001.mp4", "Celeb-real/id2_0003.mp4",
                              "Celeb-synthesis/id0_id1_0001.mp4", "Celeb-synthesis/id2_id0_0003.mp4"}
    for n in names:
        p = root / n
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    videos = frame(create_adapter("celebdf", root).videos())
    rep = audit(videos)
    ident = rep["datasets"]["celebdf"]["identity"]
    assert ident["count"] >= 1
    assert all(set(e["splits"]) == {"test", "train"} for e in ident["examples"])
    assign = identity_split(videos, seed=3)
    re = videos.assign(split=[assign[(d, v)] for d, v in zip(videos["dataset"], videos["video_id"])])
    rep2 = audit(re)
    assert rep2["datasets"]["celebdf"]["identity"]["count"] == 0
    assert identity_split(videos, seed=3) == assign  # stable


def test_cross_dataset_identity_leak():
    v = pd.DataFrame([
        {"dataset": "ffpp", "video_id": "original/c23/004", "split": "train", "identity_ids": ["ffpp:004"],
         "group_id": "yt1"},
        {"dataset": "deeperforensics", "video_id": "end_to_end/004_M101", "split": "test",
         "identity_ids": ["ffpp:004", "dfo:M101"], "group_id": None},
    ])
    rep = audit(v)
    x = rep["cross_dataset"]["identity"]
    assert x["count"] == 1 and x["examples"][0]["key"] == "ffpp:004"


def test_dhash_finds_reencoded_copies_not_different_faces():
    import cv2
    from skimage.data import astronaut, chelsea

    a = cv2.resize(astronaut()[0:300, 100:400], (128, 128))
    ok, buf = cv2.imencode(".jpg", a, [cv2.IMWRITE_JPEG_QUALITY, 40])
    a2 = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    c = cv2.resize(chelsea(), (128, 128))
    h = {"a": dhash(a), "a_jpeg": dhash(a2), "cat": dhash(c), "a_flip": dhash(np.ascontiguousarray(a[:, ::-1]))}
    pairs = {(x, y) for x, y, _ in near_duplicates(h, 6)}
    assert ("a", "a_jpeg") in pairs
    assert not any("cat" in p for p in pairs) and not any("a_flip" in p for p in pairs)


def test_cli_audit_and_resplit_on_a_real_corpus(tmp_path):
    from tests.test_corpus import ingest
    from tests.conftest import astronaut_frames, write_video

    root = tmp_path / "ffpp"
    for sid in ("605", "606", "001"):  # 605/606: one YouTube video in train and val
        write_video(root / f"original_sequences/youtube/c23/videos/{sid}.mp4", astronaut_frames(6))
    c = tmp_path / "corpus"
    assert ingest(root, c).returncode == 0
    dfkit = [sys.executable, "-m", "dfkit.cli"]
    r = subprocess.run(dfkit + ["splits", "audit", "--corpus", str(c), "--out", str(tmp_path / "a.json")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "source groups (e.g. FF++ YouTube ids) in more than one split: 1" in r.stdout
    assert "nUNnFudF2pA: train / val" in r.stdout
    # identical frames in different videos of different splits: near-duplicates found
    assert "near-duplicate crops across splits" in r.stdout and ": 0\n" not in r.stdout.split("near-dup")[1]
    r = subprocess.run(dfkit + ["splits", "resplit", "--corpus", str(c), "--seed", "1"], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(dfkit + ["splits", "audit", "--corpus", str(c), "--scheme", "identity", "--no-hashes"],
                       capture_output=True, text=True)
    assert "source groups (e.g. FF++ YouTube ids) in more than one split: 0" in r.stdout
    import dfkit.corpus

    m = dfkit.corpus.open(c).select(split_scheme="identity").metadata()
    assert m.groupby("group_id")["split"].nunique().max() == 1 and "split_official" in m
