"""Media the engine must read as a player shows it (issue 13): a phone's portrait clip (display matrix) comes out
upright, and a variable-frame-rate MKV without a frame count in its header is counted, not estimated."""

from __future__ import annotations

import struct
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from tests.conftest import FFPP_REAL, astronaut_frames, need_realdata, write_video

#: the tkhd display matrix (a, b, c, d) that FFmpeg reads as each rotation (degrees counter-clockwise, its sign)
MATRIX = {270: (0, 1, -1, 0), 180: (-1, 0, 0, -1), 90: (0, -1, 1, 0)}


def with_display_matrix(src: Path, dst: Path, rotation: int) -> Path:
    """``src`` (an MP4) with its track header's display matrix set, as a phone writes a portrait clip."""
    data = bytearray(src.read_bytes())
    i = data.find(b"tkhd")
    off = i + 4 + 4 + (20 if data[i + 4] == 0 else 32) + 8 + 8  # full-box header, times/ids/duration, reserved
    fx = lambda x: struct.pack(">i", int(x * 65536))  # noqa: E731 - 16.16 fixed point
    a, b, c, d = MATRIX[rotation]
    data[off:off + 36] = fx(a) + fx(b) + bytes(4) + fx(c) + fx(d) + bytes(12) + struct.pack(">i", 0x40000000)
    dst.write_bytes(bytes(data))
    return dst


def _stored(frames: list[np.ndarray], rotation: int) -> list[np.ndarray]:
    """Frames as a camera stores them when turning them by ``rotation`` shows them upright."""
    return [np.ascontiguousarray(np.rot90(f, -(rotation // 90))) for f in frames]


@pytest.fixture(scope="module")
def upright_frames() -> list[np.ndarray]:
    from dfkit.ingest.video import read_frames

    clip = need_realdata("ffpp_icpr2020dfdc") and FFPP_REAL / "original_sequences/youtube/c23/videos/519.mp4"
    return [f for _, _, f in read_frames(clip, list(range(12)))]


@pytest.mark.realdata
@pytest.mark.parametrize("rotation", [270, 180, 90])
def test_portrait_clip_is_read_upright(upright_frames, tmp_path, rotation):
    from dfkit.ingest.video import probe, read_frames

    up = write_video(tmp_path / "up.mp4", upright_frames, crf=8)
    stored = write_video(tmp_path / "stored.mp4", _stored(upright_frames, rotation), crf=8)
    rot = with_display_matrix(stored, tmp_path / "rot.mp4", rotation)
    h, w = upright_frames[0].shape[:2]
    assert (probe(stored).width, probe(stored).height) == ((h, w) if rotation != 180 else (w, h))
    info = probe(rot)
    assert (info.width, info.height, info.rotation) == (w, h, rotation)
    got = [f for _, _, f in read_frames(rot, [0, 5, 11])]
    want = [f for _, _, f in read_frames(up, [0, 5, 11])]
    for g, t in zip(got, want):
        assert g.shape == t.shape == (h, w, 3)
        assert np.abs(g.astype(int) - t).mean() < 3.0  # the same picture (two lossless-ish encodes)
    assert probe(up).rotation == 0


@pytest.mark.realdata
def test_portrait_clip_ingests_like_the_upright_clip(upright_frames, tmp_path):
    """The sideways-stored clip gives the upright clip's crops (same boxes, same faces), not no_face / sideways."""
    import dfkit.corpus
    from dfkit.ingest.base import create_adapter
    from dfkit.ingest.engine import IngestParams, run_ingest

    root = tmp_path / "root" / "real"
    root.mkdir(parents=True)
    write_video(root / "up.mp4", upright_frames, crf=8)
    stored = write_video(tmp_path / "stored.mp4", _stored(upright_frames, 270), crf=8)
    with_display_matrix(stored, root / "portrait.mp4", 270)
    run_ingest(create_adapter("folder", tmp_path / "root"), tmp_path / "corpus", IngestParams(frames=6, size=128),
               workers=1, progress=False, log=lambda m: None)
    c = dfkit.corpus.open(tmp_path / "corpus")
    v = c.videos().set_index("video_path")
    assert v.loc["real/portrait.mp4", "status"] == "ok" and v.loc["real/up.mp4", "status"] == "ok"
    assert (v.loc["real/portrait.mp4", "width"], v.loc["real/portrait.mp4", "height"]) == (
        upright_frames[0].shape[1], upright_frames[0].shape[0])
    meta = c.metadata()
    by = {p: g.sort_values("frame_index") for p, g in meta.groupby("video_path")}
    a, b = by["real/up.mp4"], by["real/portrait.mp4"]
    assert list(a["frame_index"]) == list(b["frame_index"])
    box = lambda g: np.stack(g["bbox"].to_numpy()).astype(float)  # noqa: E731 - x0, y0, x1, y1
    side = (box(a)[:, 2] - box(a)[:, 0]).mean()
    assert np.abs(box(a) - box(b)).max() <= 0.05 * side
    crops = {row["video_path"]: img for row, img in c.crops(meta[meta["frame_index"] == a["frame_index"].iloc[0]])}
    assert np.abs(crops["real/up.mp4"].astype(int) - crops["real/portrait.mp4"]).mean() < 6.0  # the same face


def test_vfr_mkv_without_a_frame_count_is_counted(tmp_path):
    """60 frames, every third shown for 100 ms and the others for 20 ms, in MKV (no frame count in the header): probe counts 60 exactly and a
    32-frame ingest samples inside the video (no 'truncated?' note, every sampled frame read)."""
    from dfkit.ingest.video import probe, read_frames, sample_indices

    frames = astronaut_frames(60, size=(192, 144), shift=1)
    path = tmp_path / "vfr.mkv"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 192, 144, "yuv420p"
        s.time_base = Fraction(1, 1000)
        s.codec_context.time_base = Fraction(1, 1000)
        t = 0
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24").reformat(format="yuv420p")
            vf.pts, vf.time_base = t, Fraction(1, 1000)
            t += 20 if i % 3 else 100
            for p in s.encode(vf):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    with av.open(str(path)) as c:
        st = c.streams.video[0]
        assert not st.frames  # the header has no count: the old estimate came from duration x average rate
        dur = float(c.duration / 1_000_000) if c.duration else float(st.duration * st.time_base)
        estimate = int(round(dur * float(st.average_rate or st.guessed_rate or 25)))
    assert estimate != 60  # the case is one the estimate gets wrong
    info = probe(path)
    assert (info.n_frames, info.frames_exact) == (60, True)
    want = sample_indices(info.n_frames, 32)
    got = [i for i, _, _ in read_frames(path, want)]
    assert got == want
