"""The corpus: schema, atomic commits, resume after a kill, one writer at a time, the readers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import dfkit.corpus
from dfkit.corpus.schema import CROPS_SCHEMA, VIDEOS_SCHEMA
from dfkit.corpus.store import CorpusLock, list_shards
from dfkit.errors import CorpusLockedError
from tests.conftest import astronaut_frames, write_video

DFKIT = [sys.executable, "-m", "dfkit.cli"]


@pytest.fixture(scope="module")
def ffpp_tree(tmp_path_factory) -> Path:
    """A small FF++-layout tree of real H.264 videos: 6 originals, 2 fakes."""
    root = tmp_path_factory.mktemp("ffpp")
    ids = ["001", "002", "005", "006", "004", "000"]  # train x4, val, test
    for k, sid in enumerate(ids):
        write_video(root / f"original_sequences/youtube/c23/videos/{sid}.mp4", astronaut_frames(10 + k, shift=3))
    fake = [np.ascontiguousarray(f[:, ::-1]) for f in astronaut_frames(10, shift=3)]
    write_video(root / "manipulated_sequences/Deepfakes/c23/videos/001_002.mp4", fake)
    write_video(root / "manipulated_sequences/FaceSwap/c23/videos/004_023.mp4", astronaut_frames(14, shift=3))
    return root


def ingest(root, corpus, *extra, env=None, **kw):
    cmd = DFKIT + ["ingest", "ffpp", str(root), "--corpus", str(corpus), "--frames", "4", "--size", "64",
                   "--quiet", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, **kw)


@pytest.fixture(scope="module")
def corpus(ffpp_tree, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("c") / "corpus"
    r = ingest(ffpp_tree, out, "--workers", "2")
    assert r.returncode == 0, r.stderr
    return out


def test_schema_and_manifest(corpus):
    crops = [s.path for s in list_shards(corpus, "crops")]
    assert crops and all(pq.read_schema(p).equals(CROPS_SCHEMA, check_metadata=False) for p in crops)
    vids = [s.path for s in list_shards(corpus, "videos")]
    assert all(pq.read_schema(p).equals(VIDEOS_SCHEMA, check_metadata=False) for p in vids)
    c = dfkit.corpus.open(corpus)
    man = c.manifest
    assert man["schema_version"] == 1 and man["dfkit_version"]
    assert man["ingests"][-1]["params"]["frames"] == 4 and man["ingests"][-1]["params"]["compression"] == "c23"
    assert man["counts"]["ffpp"]["videos"] == 8 and man["counts"]["ffpp"]["crops"] == len(c.metadata())
    m = c.metadata()
    assert m["sample_id"].is_unique
    assert set(m["split"].dropna()) == {"train", "val", "test"}
    fake = m[m["video_id"] == "Deepfakes/c23/001_002"]
    assert (fake["pair_video_id"] == "original/c23/001").all() and (fake["box_source"] == "paired").all()
    orig = m[m["video_id"] == "original/c23/001"].set_index("frame_index")
    for r in fake.itertuples():  # same frames, same boxes as the original: pixel-aligned pairs
        assert list(r.crop_box) == list(orig.loc[r.frame_index, "crop_box"])
    # 004_023 is an official val pair; its target 004 is here, so it pairs with it too
    fs = m[m["method"] == "FaceSwap"]
    assert (fs["pair_video_id"] == "original/c23/004").all() and (fs["split"] == "val").all() and len(fs) == 4


def test_info_command(corpus):
    r = subprocess.run(DFKIT + ["info", "--corpus", str(corpus)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "Deepfakes" in r.stdout and "original" in r.stdout and "KB on disk" in r.stdout
    assert "total: 8 videos with crops, 32 crops" in r.stdout


def test_rerun_skips_everything_and_adds_nothing(ffpp_tree, corpus):
    before = len(dfkit.corpus.open(corpus).metadata())
    r = ingest(ffpp_tree, corpus)
    assert r.returncode == 0 and "8 already in the corpus, 0 processed" in r.stdout
    assert len(dfkit.corpus.open(corpus).metadata()) == before


def test_uncommitted_shards_are_invisible_and_cleaned(ffpp_tree, tmp_path):
    out = tmp_path / "corpus"
    assert ingest(ffpp_tree, out, "--limit", "2", "--workers", "1").returncode == 0
    n = len(dfkit.corpus.open(out).metadata())
    # a crash between the two renames leaves a crops shard with no videos shard, plus a temp file
    src = list_shards(out, "crops")[0].path
    orphan = src.with_name("part-000099-deadbeef.parquet")
    orphan.write_bytes(src.read_bytes())
    (out / "crops" / ".tmp-part-000100-0badf00d.parquet").write_bytes(b"half")
    assert len(dfkit.corpus.open(out).metadata()) == n  # readers ignore it
    assert ingest(ffpp_tree, out, "--limit", "1", "--workers", "1").returncode == 0
    assert not orphan.exists() and not list((out / "crops").glob(".tmp-*"))
    assert dfkit.corpus.open(out).metadata()["sample_id"].is_unique


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_resume_after_kill_loses_nothing_and_duplicates_nothing(ffpp_tree, tmp_path, sig):
    out = tmp_path / "corpus"
    cmd = DFKIT + ["ingest", "ffpp", str(ffpp_tree), "--corpus", str(out), "--frames", "4", "--size", "64",
                   "--quiet", "--workers", "1"]
    p = subprocess.Popen(cmd, env={**os.environ, "DFKIT_FLUSH_VIDEOS": "1"}, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and len(list_shards(out, "videos")) < 2:
        time.sleep(0.05)
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    if sig == signal.SIGINT:
        assert p.returncode == 130 and "rerun the same command to resume" in err
    committed = dfkit.corpus.open(out).videos()
    assert 2 <= len(committed) < 8, "killed mid-run: some but not all videos committed"
    r = ingest(ffpp_tree, out)
    assert r.returncode == 0, r.stderr
    assert f"{len(committed)} already in the corpus" in r.stdout
    c = dfkit.corpus.open(out)
    v = c.videos()
    assert len(v) == 8 and v["video_id"].is_unique
    m = c.metadata()
    assert m["sample_id"].is_unique and len(m) == 8 * 4


def test_second_writer_is_refused(ffpp_tree, tmp_path):
    out = tmp_path / "corpus"
    with CorpusLock(out):
        r = ingest(ffpp_tree, out)
        assert r.returncode == 2
        assert "being written by another dfkit process" in r.stderr and "Traceback" not in r.stderr
        with pytest.raises(CorpusLockedError):
            with CorpusLock(out):
                pass
    assert ingest(ffpp_tree, out, "--limit", "1").returncode == 0  # free again once released


def test_filters_crop_dataset_hf_and_duckdb(corpus):
    from dfkit.train.data import CropDataset

    c = dfkit.corpus.open(corpus)
    assert len(c.select(splits="train")) + len(c.select(splits=["val", "test"])) == len(c)
    assert len(c.select(splits="val", methods="FaceSwap")) == 4
    fakes = c.select(labels="fake")
    assert set(fakes.metadata()["label"]) == {"fake"} and len(fakes) == 8
    assert len(c.select(methods="deepfakes")) == 4  # canonical names work too
    with pytest.raises(Exception, match="run `dfkit quality` first"):
        c.select(min_quality=0.7).metadata()
    # the torch dataset over a view is the training one (crops read lazily from the shards)
    rows = fakes.metadata()
    ds = CropDataset(fakes.crop_files(), rows, img_size=64, labels=[1] * len(rows))
    item = ds[3]
    assert tuple(item["image"].shape) == (3, 64, 64) and item["label"] == 1
    # lazily read crops equal the ones iterated in shard order
    seq = {r["sample_id"]: img for r, img in fakes.crops()}
    assert np.array_equal(seq[rows.iloc[3]["sample_id"]], item["image"].permute(1, 2, 0).numpy())
    hf = fakes.to_hf()
    assert len(hf) == 8 and hf[0]["image"].size == (64, 64) and hf[0]["label"] == "fake"
    # the whole corpus: the originals' missing strings (no source/target video) stay null strings, ids stay text
    hf_all = c.to_hf()
    assert len(hf_all) == len(c) and hf_all.features["source_video_id"].dtype == "string"
    src = set(zip(hf_all["label"], hf_all["source_video_id"]))  # failed: "Could not convert '002' ... to double"
    assert src == {("real", None), ("fake", "002"), ("fake", "023")}
    import duckdb

    files = [str(p) for p in c.crop_files()]
    n = duckdb.sql(f"SELECT count(*) FROM read_parquet({files}) WHERE method = 'original'").fetchall()[0][0]
    assert n == 6 * 4
