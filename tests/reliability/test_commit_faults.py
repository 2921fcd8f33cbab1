"""Fault injection at the named points of the commit protocols (issue 13; ``dfkit.procs.FAULT_POINTS``): a real
SIGKILL of the running command between the crops and videos renames, right after a commit, and with a shard (an
ingest shard, a quality shard) written under its temporary name; then the same command again. Before the resume a
reader sees only committed rows; after it the corpus equals an uninterrupted run's: the same rows once each, the same
crop bytes, the same quality values, and nothing uncommitted left for a bare glob (DuckDB) to count."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import dfkit.corpus
from dfkit.procs import FAULT_POINTS
from tests.conftest import astronaut_frames, write_video
from tests.test_train_cli import demo_corpus  # noqa: F401 - fixture

DFKIT = [sys.executable, "-m", "dfkit.cli"]
N = 6
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("faults")
    for k in range(N):
        write_video(root / f"original_sequences/youtube/c23/videos/{k:03d}.mp4", astronaut_frames(6 + k % 3, shift=3))
    return root


def _run(args: list[str], fault: str | None = None, at: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "DFKIT_FLUSH_VIDEOS": "2"}  # three ingest shards of two videos
    for k in ("DFKIT_FAULT", "DFKIT_FAULT_AT"):
        env.pop(k, None)
    if fault:
        env.update(DFKIT_FAULT=fault, DFKIT_FAULT_AT=str(at))
    return subprocess.run(DFKIT + [str(a) for a in args], capture_output=True, text=True, env=env)


def _ingest(tree: Path, corpus: Path, fault: str | None = None, at: int = 2):
    return _run(["ingest", "ffpp", tree, "--corpus", corpus, "--frames", "3", "--size", "48", "-q", "--workers", "1"],
                fault, at)


def _crops(corpus: Path) -> dict[str, bytes]:
    """sample_id -> the crop's pixels, through the reader (committed shards only); no sample_id twice."""
    c = dfkit.corpus.open(corpus)
    m = c.metadata()
    assert not m["sample_id"].duplicated().any()
    return {row["sample_id"]: np.ascontiguousarray(img).tobytes() for row, img in c.crops(m)}


def _glob_rows(corpus: Path, table: str) -> int:
    """What a bare glob of the table's shards counts (DuckDB on ``<table>/*.parquet``)."""
    return sum(pq.read_metadata(p).num_rows for p in (corpus / table).glob("*.parquet"))


@pytest.fixture(scope="module")
def whole(tree, tmp_path_factory):
    out = tmp_path_factory.mktemp("whole") / "corpus"
    assert _ingest(tree, out).returncode == 0
    r = _run(["quality", "--corpus", out, "-q", "--workers", "1", "--no-fullref"])
    assert r.returncode == 0, r.stderr
    return out


def test_every_fault_point_is_named_and_documented():
    assert set(FAULT_POINTS) == {"crops-renamed", "videos-renamed", "table-tmp-written", "checkpoint-tmp-written"}
    src = {p: Path(p).read_text() for p in ("dfkit/corpus/writer.py", "dfkit/corpus/store.py",
                                             "dfkit/train/checkpoint.py")}
    for name in FAULT_POINTS:  # each point is placed in the code it names (a point nobody reaches is a dead test)
        assert sum(f'fault_point("{name}")' in s for s in src.values()) == 1, name


# the second shard's point (the first shard is committed): its crops/videos renames, its crops table (the 3rd table
# written) and its videos table (the 4th) under their temporary names
@pytest.mark.parametrize("point, at", [("crops-renamed", 2), ("videos-renamed", 2), ("table-tmp-written", 3),
                                       ("table-tmp-written", 4)])
def test_ingest_killed_at_a_commit_point_resumes_to_the_uninterrupted_corpus(tree, whole, tmp_path, point, at):
    corpus = tmp_path / "corpus"
    r = _ingest(tree, corpus, fault=point, at=at)
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr)
    want = _crops(whole)
    seen = _crops(corpus)  # a reader before the resume: committed rows only, each once, all of them right
    assert seen and set(seen) < set(want) and all(seen[k] == want[k] for k in seen)
    r = _ingest(tree, corpus)
    assert r.returncode == 0, r.stderr
    got = _crops(corpus)
    assert got == want  # the same rows, once each, with the same crop bytes
    assert _glob_rows(corpus, "crops") == len(want) and _glob_rows(corpus, "videos") == N
    assert not list((corpus / "crops").glob(".tmp-*")) and not list((corpus / "videos").glob(".tmp-*"))


def test_quality_killed_inside_a_shard_resumes_to_the_uninterrupted_values(whole, tmp_path):
    import shutil

    corpus = tmp_path / "corpus"
    shutil.copytree(whole, corpus, ignore=shutil.ignore_patterns("quality"))
    args = ["quality", "--corpus", corpus, "-q", "--workers", "1", "--no-fullref"]
    r = _run(args, fault="table-tmp-written", at=2)
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr)
    # one shard in place, the second written under its temporary name: a bare glob (DuckDB) reads the first only
    import duckdb

    shards = list((corpus / "quality").glob("*.parquet"))
    assert len(shards) == 1 and list((corpus / "quality").glob(".tmp-*"))
    n = duckdb.sql(f"SELECT count(*) FROM read_parquet('{corpus}/quality/*.parquet')").fetchall()[0][0]
    assert n == pq.read_metadata(shards[0]).num_rows
    r = _run(args)
    assert r.returncode == 0, r.stderr
    cols = ["sample_id", "quality", "q_sharpness", "q_noise", "q_blockiness"]
    a = dfkit.corpus.open(whole).metadata(cols).sort_values("sample_id").reset_index(drop=True)
    b = dfkit.corpus.open(corpus).metadata(cols).sort_values("sample_id").reset_index(drop=True)
    assert list(a["sample_id"]) == list(b["sample_id"])
    np.testing.assert_allclose(a[cols[1:]].to_numpy(float), b[cols[1:]].to_numpy(float), rtol=0, atol=1e-9)
    assert _glob_rows(corpus, "quality") == len(a)


TRAIN = ["--backbone", "tiny", "--img-size", "32", "--batch-size", "32", "--workers", "0", "--threads", "1", "-q",
         "--task", "attribution", "--epochs", "3"]


def test_training_killed_inside_a_checkpoint_write_resumes_to_the_uninterrupted_weights(demo_corpus, tmp_path):
    """SIGKILL with a checkpoint written under its temporary name: the run keeps its previous checkpoint intact,
    ``--resume`` continues from it, and the final weights equal an uninterrupted run's."""
    from safetensors.torch import load_file

    from dfkit.train.checkpoint import verify_checkpoint

    whole, cut = tmp_path / "whole", tmp_path / "cut"
    r = _run(["train", "--corpus", demo_corpus, "--out", whole, *TRAIN])
    assert r.returncode == 0, r.stderr
    r = _run(["train", "--corpus", demo_corpus, "--out", cut, *TRAIN], fault="checkpoint-tmp-written", at=3)
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr)
    for st in cut.glob("*.safetensors"):  # what is in place is whole (the half-written one has its temporary name)
        verify_checkpoint(st.with_suffix(""))
    r = _run(["train", "--out", cut, "--resume", *TRAIN])
    assert r.returncode == 0, r.stderr
    a, b = load_file(whole / "last.safetensors"), load_file(cut / "last.safetensors")
    assert a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)
    assert not [p for p in cut.iterdir() if p.name.endswith(".tmp")]
