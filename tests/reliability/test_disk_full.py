"""Disk full during ingest (issue 13): a corpus on a small tmpfs that fills up mid-run. The command ends with one
line naming the problem (exit 1, no traceback), what was committed stays readable, and once there is room the same
command finishes to the rows of an uninterrupted run. Needs root to mount a tmpfs; skipped otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import dfkit.corpus
from tests.conftest import astronaut_frames, write_video

DFKIT = [sys.executable, "-m", "dfkit.cli"]
N = 8
pytestmark = pytest.mark.slow


def _mount(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "disk"
    if not _mount(mnt, "1m"):
        pytest.skip("mounting a tmpfs needs root (and mount)")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _ingest(tree: Path, corpus: Path):
    env = {**os.environ, "DFKIT_FLUSH_VIDEOS": "1"}
    return subprocess.run(DFKIT + ["ingest", "ffpp", str(tree), "--corpus", str(corpus), "--frames", "6", "--size",
                                   "192", "-q", "--workers", "1"], capture_output=True, text=True, env=env)


def _rows(corpus: Path):
    c = dfkit.corpus.open(corpus)
    m = c.metadata()
    assert not m["sample_id"].duplicated().any()
    return {row["sample_id"]: np.ascontiguousarray(img).tobytes() for row, img in c.crops(m)}


def test_disk_full_is_one_line_keeps_the_committed_and_resumes(small_disk, tmp_path):
    tree = tmp_path / "tree"
    rng = np.random.default_rng(0)
    for k in range(N):  # noisy frames: crops that do not compress, so 1 MB fills after a few videos
        frames = [np.clip(f.astype(int) + rng.integers(-40, 40, f.shape), 0, 255).astype(np.uint8)
                  for f in astronaut_frames(6, shift=3 + k)]
        write_video(tree / f"original_sequences/youtube/c23/videos/{k:03d}.mp4", frames, crf=10)
    whole = tmp_path / "whole"
    assert _ingest(tree, whole).returncode == 0
    want = _rows(whole)
    corpus = small_disk / "corpus"
    r = _ingest(tree, corpus)
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert "Traceback" not in r.stderr and len(lines) == 1 and "No space left on device" in lines[0], r.stderr
    seen = _rows(corpus)  # what was committed before the disk filled is readable and right
    assert set(seen) < set(want) and all(seen[k] == want[k] for k in seen)
    info = subprocess.run(DFKIT + ["info", "--corpus", str(corpus)], capture_output=True, text=True)
    assert info.returncode == 0 and "Traceback" not in info.stderr
    assert subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)]).returncode == 0
    r = _ingest(tree, corpus)
    assert r.returncode == 0, r.stderr
    assert _rows(corpus) == want
