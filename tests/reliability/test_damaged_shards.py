"""A damaged shard (issue 13): a crops, videos or quality Parquet file cut short on disk is named in one line with
how to recover; `dfkit info` still works and lists it (its commit left out of the counts); commands that need the
rows refuse naming it; a rerun of `dfkit ingest` moves the damaged commit to <corpus>/quarantine/ (saying so) and
ingests its videos again, ending with the rows of an undamaged corpus."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import dfkit.corpus
from dfkit.corpus.store import CorruptShardError, list_shards
from tests.conftest import astronaut_frames, write_video

DFKIT = [sys.executable, "-m", "dfkit.cli"]


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ffpp-dmg")
    for k in range(4):
        write_video(root / f"original_sequences/youtube/c23/videos/{k:03d}.mp4", astronaut_frames(8, shift=3))
    return root


def _ingest(tree: Path, out: Path):
    return subprocess.run(DFKIT + ["ingest", "ffpp", str(tree), "--corpus", str(out), "--frames", "3", "--size",
                                   "48", "--quiet", "--workers", "1"], capture_output=True, text=True,
                          env={**os.environ, "DFKIT_FLUSH_VIDEOS": "1"})


@pytest.fixture(scope="module")
def built(tree, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dmg") / "corpus"
    r = _ingest(tree, out)
    assert r.returncode == 0, r.stderr
    assert len(list_shards(out, "crops")) == 4
    return out


def _copy(built: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "corpus"
    shutil.copytree(built, dst)
    return dst


def _cut(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _rows(out: Path) -> list[tuple]:
    m = dfkit.corpus.open(out).metadata()
    return sorted((r[0], int(r[1])) for r in m[["sample_id", "frame_index"]].itertuples(index=False))


def _one_line(err: str, path: Path) -> None:
    assert "Traceback" not in err, err
    errs = [ln for ln in err.splitlines() if ln.startswith("dfkit: error:")]  # (after a progress bar)
    assert len(errs) == 1 and str(path) in errs[0] and err.strip().endswith(errs[0]), err


@pytest.mark.parametrize("table", ["crops", "videos"])
def test_a_truncated_shard_is_named_and_recovered_by_a_rerun(tree, built, tmp_path, table):
    whole = _rows(built)
    out = _copy(built, tmp_path)
    bad = list_shards(out, table)[1].path
    _cut(bad)
    # info works, leaves the damaged commit out and names it with the way to recover
    r = subprocess.run(DFKIT + ["info", "--corpus", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "DAMAGED" in r.stdout and str(bad) in r.stdout and "dfkit ingest" in r.stdout
    assert "total: 3 videos with crops" in r.stdout
    # a reader of the rows refuses, naming the file
    with pytest.raises(CorruptShardError, match=str(bad)):
        dfkit.corpus.open(out).metadata() if table == "crops" else dfkit.corpus.open(out).videos()
    r = subprocess.run(DFKIT + ["splits", "audit", "--corpus", str(out), "--per-video", "1"], capture_output=True,
                       text=True)
    assert r.returncode == 2
    _one_line(r.stderr, bad)
    # the rerun quarantines the commit (said, nothing deleted) and does its video again
    r = _ingest(tree, out)
    assert r.returncode == 0, r.stderr
    assert str(bad) in r.stderr and "quarantine" in r.stderr
    assert (out / "quarantine" / table / bad.name).exists()
    assert _rows(out) == whole
    assert "DAMAGED" not in subprocess.run(DFKIT + ["info", "--corpus", str(out)], capture_output=True,
                                           text=True).stdout


def test_a_truncated_quality_shard_is_named(built, tmp_path):
    out = _copy(built, tmp_path)
    crops = list_shards(out, "crops")[0]
    ids = pq.read_table(crops.path, columns=["sample_id"])["sample_id"]
    (out / "quality").mkdir()
    qp = out / "quality" / crops.path.name
    pq.write_table(pa.table({"sample_id": ids, "quality": np.full(len(ids), 0.5, np.float32)}), qp)
    _cut(qp)
    r = subprocess.run(DFKIT + ["info", "--corpus", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "DAMAGED" in r.stdout and str(qp) in r.stdout and "dfkit quality" in r.stdout
    assert "total: 4 videos with crops" in r.stdout  # a damaged quality shard hides only itself
    with pytest.raises(CorruptShardError, match=str(qp)):
        dfkit.corpus.open(out).metadata()
    r = subprocess.run(DFKIT + ["splits", "audit", "--corpus", str(out), "--per-video", "1"], capture_output=True,
                       text=True)
    assert r.returncode == 2
    _one_line(r.stderr, qp)


def test_damage_in_the_middle_of_a_shard_is_found_when_the_corpus_is_opened(tmp_path):
    """A file whose footer is intact but whose data pages are not: found by shard_problem (so dfkit info lists it and
    a rerun of ingest can quarantine it), not only when a command trips over it."""
    import shutil

    from dfkit.corpus.store import shard_problem

    src = Path(__file__).resolve().parents[1] / "data" / "corpus_v_before"
    dst = tmp_path / "corpus"
    shutil.copytree(src, dst)
    v = sorted((dst / "videos").glob("*.parquet"))[0]
    assert shard_problem(v) is None
    b = bytearray(v.read_bytes())
    b[200:2200] = b"\x55" * 2000
    v.write_bytes(bytes(b))
    assert shard_problem(v) is not None
    from dfkit.services import info

    text = info(dst)
    assert "DAMAGED: 1 shard(s)" in text and str(v) in text and "\\n" not in text


def test_quality_quarantines_a_damaged_quality_shard_and_recomputes_it(built, tmp_path):
    """`dfkit quality` moves a truncated quality shard into <corpus>/quarantine/ (nothing deleted) and computes it
    again: the values equal those of an undamaged run."""
    out = _copy(built, tmp_path)
    args = ["quality", "--corpus", str(out), "-q", "--workers", "1", "--no-fullref"]
    r = subprocess.run(DFKIT + args, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    cols = ["sample_id", "quality", "q_sharpness", "q_noise"]
    want = dfkit.corpus.open(out).metadata(cols).sort_values("sample_id").reset_index(drop=True)
    qp = sorted((out / "quality").glob("*.parquet"))[0]
    size = qp.stat().st_size
    _cut(qp)
    damaged_bytes = qp.read_bytes()
    r = subprocess.run(DFKIT + args, capture_output=True, text=True)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    kept = [p for p in (out / "quarantine").rglob("*") if p.is_file() and p.read_bytes() == damaged_bytes]
    assert len(kept) == 1  # the damaged file itself, kept
    assert qp.exists() and qp.stat().st_size > len(damaged_bytes) and abs(qp.stat().st_size - size) < size
    got = dfkit.corpus.open(out).metadata(cols).sort_values("sample_id").reset_index(drop=True)
    assert list(got["sample_id"]) == list(want["sample_id"])
    np.testing.assert_allclose(got[cols[1:]].to_numpy(float), want[cols[1:]].to_numpy(float), atol=1e-9)
