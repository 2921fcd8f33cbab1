"""Decoding faults keep what was read (issue 13): a decoder error mid-stream keeps the frames decoded before it (the
video is partial with their crops, not failed with none), and a frame folder is read in time order whatever the
width of its numbers (``frame_60`` before ``frame_600``), so a frame index means the same frame for a fake and its
original."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from dfkit.ingest import video
from dfkit.ingest.base import VideoRecord
from dfkit.ingest.engine import IngestParams, VideoTask, process_video
from tests.conftest import face_video  # noqa: F401 - fixture

P = IngestParams(frames=6, size=64)


def _rec(path: Path) -> VideoRecord:
    return VideoRecord(dataset="t", video_id="v", path=path, rel_path=path.name, label="real", method="original")


def test_a_decoder_error_mid_stream_keeps_the_frames_before_it(face_video, monkeypatch):
    whole = process_video(VideoTask(_rec(face_video)), P)
    assert whole.video_row["status"] == "ok" and len(whole.crop_rows) == 6
    real_read = video.read_frames

    def broken(path, indices, skip=True, **kw):
        for n, fr in enumerate(real_read(path, indices, skip, **kw)):
            if n == 3:
                raise video.MediaError("decode", "corrupt slice at packet 812")
            yield fr

    monkeypatch.setattr(video, "read_frames", broken)
    res = process_video(VideoTask(_rec(face_video)), P)
    v = res.video_row
    assert v["status"] == "partial" and v["n_decoded"] == 3 and len(res.crop_rows) == 3, v
    assert "corrupt slice" in v["reason"]
    assert [r["frame_index"] for r in res.crop_rows] == [r["frame_index"] for r in whole.crop_rows[:3]]


def test_frame_folders_are_read_in_time_order(tmp_path):
    names = ["frame_600.png", "frame_6.png", "frame_60.png", "frame_7.png", "frame_61.png", "frame_0600b.png"]
    for i, n in enumerate(names):
        cv2.imwrite(str(tmp_path / n), np.full((4, 4, 3), i, np.uint8))
    got = [p.name for p in video.list_frame_files(tmp_path)]
    assert got == ["frame_6.png", "frame_7.png", "frame_60.png", "frame_61.png", "frame_600.png", "frame_0600b.png"]
    # plain numbers too, and text order among non-numbered names
    d = tmp_path / "n"
    d.mkdir()
    for n in ["10.jpg", "9.jpg", "100.jpg", "b.jpg", "a.jpg"]:
        cv2.imwrite(str(d / n), np.zeros((4, 4, 3), np.uint8))
    assert [p.name for p in video.list_frame_files(d)] == ["9.jpg", "10.jpg", "100.jpg", "a.jpg", "b.jpg"]
