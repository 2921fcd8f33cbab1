"""Signals (issue 13): SIGTERM of `dfkit ingest` is handled like Ctrl-C (what is done is committed, exit 130, a rerun
finishes the rest with the rows of an uninterrupted run), and neither SIGTERM nor SIGKILL of the main process leaves
worker processes behind (``prctl(PR_SET_PDEATHSIG)`` plus a watchdog on the parent pid, in every worker)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

import dfkit.corpus
from dfkit.corpus.store import list_shards
from tests.conftest import astronaut_frames, write_video

DFKIT = [sys.executable, "-m", "dfkit.cli"]
N = 10


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """An FF++-layout tree of N real H.264 originals (train)."""
    root = tmp_path_factory.mktemp("ffpp-sig")
    for k in range(N):
        write_video(root / f"original_sequences/youtube/c23/videos/{k:03d}.mp4", astronaut_frames(8 + k % 3, shift=3))
    return root


def _cmd(tree: Path, out: Path, workers: int = 2) -> list[str]:
    return DFKIT + ["ingest", "ffpp", str(tree), "--corpus", str(out), "--frames", "3", "--size", "48", "--quiet",
                    "--workers", str(workers)]


@pytest.fixture(scope="module")
def whole(tree, tmp_path_factory):
    out = tmp_path_factory.mktemp("whole") / "corpus"
    r = subprocess.run(_cmd(tree, out), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return _rows(out)


def _rows(out: Path):
    m = dfkit.corpus.open(out).metadata()
    cols = ["sample_id", "video_id", "frame_index", "crop_box"]
    return sorted((r[0], r[1], int(r[2]), tuple(np.round(r[3], 3))) for r in m[cols].itertuples(index=False))


def _gone(pids: list[int], within: float) -> list[int]:
    deadline = time.time() + within
    alive = pids
    while time.time() < deadline:
        alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        if not alive:
            return []
        time.sleep(0.1)
    return alive


def _start_and_wait(tree: Path, out: Path) -> tuple[subprocess.Popen, list[int]]:
    p = subprocess.Popen(_cmd(tree, out), env={**os.environ, "DFKIT_FLUSH_VIDEOS": "1"}, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    kids: list[int] = []
    while time.time() < deadline:
        if len(list_shards(out, "videos")) >= 2:
            kids = [c.pid for c in psutil.Process(p.pid).children(recursive=True)]
            if kids:
                break
        time.sleep(0.02)
    assert kids, "the ingest never started its workers"
    return p, kids


def test_sigterm_commits_what_is_done_and_leaves_no_workers(tree, whole, tmp_path):
    out = tmp_path / "corpus"
    p, kids = _start_and_wait(tree, out)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 143, err  # 128 + SIGTERM
    assert "Traceback" not in err and "rerun the same command to resume" in err
    assert not _gone(kids, 5), "worker processes outlived their parent"
    man = dfkit.corpus.open(out).manifest
    assert man["ingests"][-1]["interrupted"] is True  # the final commit ran
    committed = dfkit.corpus.open(out).videos()
    assert 2 <= len(committed) < N
    r = subprocess.run(_cmd(tree, out), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert f"{len(committed)} already in the corpus" in r.stdout
    assert _rows(out) == whole


def test_sigkill_leaves_no_workers(tree, whole, tmp_path):
    out = tmp_path / "corpus"
    p, kids = _start_and_wait(tree, out)
    p.kill()
    p.communicate(timeout=30)
    assert not _gone(kids, 5), "worker processes outlived their parent"
    r = subprocess.run(_cmd(tree, out), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert _rows(out) == whole


HELPER = textwrap.dedent("""
    import sys, time
    from dfkit.quality.run import _pool
    ex = _pool(1)
    f = ex.submit(time.sleep, 120)
    time.sleep(0.5)
    print(*[p.pid for p in ex._processes.values()], flush=True)
    time.sleep(120)
""")


def test_a_busy_quality_worker_dies_with_its_parent(tmp_path):
    """A quality worker in the middle of a long shard (~900 MB each) leaves when its parent is killed."""
    p = subprocess.Popen([sys.executable, "-c", HELPER], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         cwd=str(Path(__file__).resolve().parents[2]))
    line = p.stdout.readline()
    assert line.strip(), p.stderr.read()
    pids = [int(x) for x in line.split()]
    p.kill()
    p.communicate(timeout=30)
    assert not _gone(pids, 5), "a busy worker outlived its parent"
