"""Sparse sampling of long clips seeks to the keyframe before each wanted frame (issue 17): frame-exact against a
sequential decode, on real FF++ clips and on a constructed long clip whose GOP is known, with the frames through the
decoder counted."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from dfkit.ingest.video import probe, read_frames, sample_indices
from tests.conftest import FFPP_REAL, need_realdata


def _frames(path: Path, idx, **kw):
    st: dict = {}
    out = list(read_frames(path, idx, stats=st, **kw))
    return [i for i, _, _ in out], [f for _, _, f in out], st


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    """1500 frames (60 s at 25 fps), a keyframe every 25 frames, B-frames on: every frame differs."""
    path = tmp_path_factory.mktemp("seek") / "long.mp4"
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25, options={"crf": "20", "preset": "fast", "threads": "1",
                                                      "x264-params": "keyint=25:min-keyint=25:scenecut=0:bframes=2"})
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for t in range(1500):
            f = np.roll(base, t, axis=1).copy()
            f[:8, :8] = t % 256  # a frame counter in the corner
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def test_long_clip_decodes_a_gop_per_sample_and_the_same_frames(long_clip):
    idx = sample_indices(probe(long_clip).n_frames, 8)
    got, frames, st = _frames(long_clip, idx)
    ref, ref_frames, ref_st = _frames(long_clip, idx, skip=False)  # decode every frame from the start
    assert got == ref == idx
    assert all(np.array_equal(a, b) for a, b in zip(frames, ref_frames))
    assert ref_st["decoded"] == 1500 and st["seeks"] >= 6
    assert st["decoded"] <= 8 * 25 + 8  # at most a GOP per wanted frame (+ the reordering delay)
    _, no_seek, ns = _frames(long_clip, idx, seek=False)
    assert all(np.array_equal(a, b) for a, b in zip(no_seek, ref_frames)) and ns["decoded"] > 3 * st["decoded"]


def test_dense_and_unsorted_requests_are_exact(long_clip):
    idx = [1499, 3, 4, 5, 26, 24, 25, 700, 701, 1000]
    got, frames, _ = _frames(long_clip, idx)
    ref, ref_frames, _ = _frames(long_clip, idx, skip=False)
    assert got == ref == sorted(set(idx)) and all(np.array_equal(a, b) for a, b in zip(frames, ref_frames))


@pytest.mark.realdata
def test_real_clips_frame_exact_with_seeking():
    need_realdata("ffpp_icpr2020dfdc")
    for p in sorted(FFPP_REAL.rglob("*.mp4")):
        idx = sample_indices(probe(p).n_frames, 8)
        got, frames, st = _frames(p, idx)
        ref, ref_frames, ref_st = _frames(p, idx, skip=False)
        assert got == ref == idx, p
        assert all(np.array_equal(a, b) for a, b in zip(frames, ref_frames)), p
        assert st["decoded"] < ref_st["decoded"], p
