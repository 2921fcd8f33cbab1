"""The ingest engine: sampling, tracking, cropping, and every kind of bad file, on real encoded videos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import dfkit.corpus
from dfkit.corpus import codec, geometry
from dfkit.ingest import faces, video
from dfkit.ingest.base import Adapter, VideoRecord
from dfkit.ingest.engine import IngestParams, VideoTask, process_video, run_ingest
from tests.conftest import astronaut_frames, noise_frames, write_video

P = IngestParams(frames=6, size=96)


def rec(path: Path, video_id: str | None = None, label="real", **kw) -> VideoRecord:
    return VideoRecord(dataset="t", video_id=video_id or path.stem, path=path, rel_path=path.name, label=label,
                       method="original" if label == "real" else "M", **kw)


class ListAdapter(Adapter):
    name = "t"
    title = "test list"

    def __init__(self, recs):
        super().__init__("/")
        self.recs = recs

    def videos(self):
        return iter(self.recs)


# -- sampling ----------------------------------------------------------------------------------------------------
def test_sample_indices_are_even_and_bounded():
    assert video.sample_indices(300, 4) == [0, 100, 199, 299]
    idx = video.sample_indices(751, 32)
    assert len(idx) == 32 and idx[0] == 0 and idx[-1] == 750
    gaps = np.diff(idx)
    assert gaps.max() - gaps.min() <= 1
    assert video.sample_indices(5, 32) == [0, 1, 2, 3, 4]
    assert video.sample_indices(0, 8) == []


def test_read_frames_returns_exactly_the_wanted_frames(face_video):
    info = video.probe(face_video)
    assert (info.width, info.height, info.n_frames, info.codec) == (320, 240, 12, "h264")
    got = list(video.read_frames(face_video, [0, 5, 11]))
    assert [g[0] for g in got] == [0, 5, 11]
    assert got[1][1] == pytest.approx(5 / 25)
    ref = astronaut_frames()
    # the decoded frame is the one encoded at that index (panning face: compare with neighbours)
    errs = [np.abs(got[1][2].astype(int) - ref[k].astype(int)).mean() for k in range(12)]
    assert int(np.argmin(errs)) == 5


# -- tracking ----------------------------------------------------------------------------------------------------
def D(x0, y0, x1, y1, s=0.9):
    return faces.Detection(np.array([x0, y0, x1, y1], np.float32), s, None)


def test_dominant_track_follows_one_face_not_the_largest_box_per_frame():
    a = [D(10, 10, 60, 60), D(14, 10, 64, 60), D(18, 10, 68, 60), D(22, 10, 72, 60)]  # steady, mid-size
    # a big box that appears on a single frame, elsewhere each time (a false positive / passer-by)
    frames = [[a[0]], [a[1], D(200, 0, 320, 120, 0.6)], [a[2]], [a[3]]]
    tr = faces.dominant_track(frames)
    assert all(t is not None for t in tr)
    assert [float(t.box[0]) for t in tr] == [10, 14, 18, 22]


def test_track_gaps_are_interpolated_inside_the_span_only():
    tr = faces.dominant_track([[], [D(0, 0, 10, 10)], [], [D(4, 0, 14, 10)], []])
    filled = faces.fill_track(tr)
    assert filled[0] is None and filled[4] is None
    assert filled[1][1] == "detected" and filled[2][1] == "interpolated"
    assert filled[2][0][0] == pytest.approx(2.0)


def test_square_crop_with_margin_and_padding():
    box = geometry.square_crop_box(np.array([10, 20, 50, 100], np.float32), 1.3)
    assert box[2] - box[0] == pytest.approx(104) and box[3] - box[1] == pytest.approx(104)
    assert (box[0] + box[2]) / 2 == pytest.approx(30)
    frame = np.full((100, 100, 3), 200, np.uint8)
    crop = geometry.crop_square(frame, np.array([-50, -50, 50, 50], np.float32), 64)
    assert crop.shape == (64, 64, 3)
    assert crop[:20, :20].max() == 0 and crop[-10:, -10:].min() == 200  # outside the frame is zero


def test_crops_are_lossless_by_default():
    img = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    for enc in ("png", "webp"):
        data, fmt = codec.encode_crop(img, enc)
        assert np.array_equal(codec.decode_crop(data), img), enc
    data, fmt = codec.encode_crop(img, "jpeg:50")
    assert fmt == "jpeg" and not np.array_equal(codec.decode_crop(data), img)
    with pytest.raises(ValueError, match="unknown crop encoding"):
        codec.encode_crop(img, "gif")


# -- one video -----------------------------------------------------------------------------------------------------
def test_face_video_gives_a_crop_per_sampled_frame(face_video):
    res = process_video(VideoTask(rec(face_video)), P)
    v = res.video_row
    assert v["status"] == "ok", v
    assert v["n_sampled"] == 6 and v["n_crops"] == 6 and v["n_no_face"] == 0
    row = res.crop_rows[0]
    x0, y0, x1, y1 = row["bbox"]
    assert 10 <= x0 < x1 <= 200 and 0 <= y0 < y1 <= 240  # the face is in the left part of the frame
    assert len(row["landmarks"]) == 12 and 0.5 < row["det_score"] <= 1
    assert codec.decode_crop(row["crop"]).shape == (96, 96, 3)
    assert row["sample_id"] == "t/face/000000"
    # the face moves right by 4 px a frame: the boxes follow it
    xs = [r["bbox"][0] for r in res.crop_rows]
    assert xs == sorted(xs) and xs[-1] - xs[0] > 20


def test_paired_fake_uses_the_originals_frames_and_boxes(face_video, tmp_path):
    orig = process_video(VideoTask(rec(face_video)), P)
    boxes = {r["frame_index"]: r["crop_box"] for r in orig.crop_rows}
    frec = rec(face_video, "f", label="fake", pair_video_id="face")
    fake = process_video(VideoTask(frec, boxes, (320, 240)), P)
    assert [r["frame_index"] for r in fake.crop_rows] == sorted(boxes)
    assert all(r["crop_box"] == boxes[r["frame_index"]] for r in fake.crop_rows)
    assert {r["box_source"] for r in fake.crop_rows} == {"paired"}
    assert fake.video_row["pair_video_id"] == "face"
    # an original of another frame size is not frame-aligned: the fake is cropped on its own track
    other = process_video(VideoTask(frec, boxes, (640, 480)), P)
    assert {r["box_source"] for r in other.crop_rows} == {"detected"}
    assert other.video_row["pair_video_id"] is None and "differs from the original" in other.video_row["reason"]


def _bad_files(tmp: Path, face_video: Path) -> dict[str, Path]:
    empty = tmp / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    garbage = tmp / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(1).integers(0, 255, 5000, dtype=np.uint8).tobytes())
    long = write_video(tmp / "long_src.mp4", astronaut_frames(60, shift=1))
    trunc = tmp / "truncated.mp4"
    data = long.read_bytes()
    trunc.write_bytes(data[: len(data) // 3])
    noface = write_video(tmp / "noface.mp4", noise_frames())
    unreadable = tmp / "dir.mp4"
    unreadable.mkdir()
    return {"empty": empty, "text": text, "garbage": garbage, "truncated": trunc, "noface": noface,
            "unreadable": unreadable, "missing": tmp / "absent.mp4"}


def test_each_bad_file_is_recorded_with_stage_and_reason(tmp_path, face_video):
    bad = _bad_files(tmp_path, face_video)
    out = {k: process_video(VideoTask(rec(p)), P).video_row for k, p in bad.items()}
    assert out["empty"]["status"] == "failed" and out["empty"]["reason"] == "empty file (0 bytes)"
    assert out["text"]["status"] == "failed" and out["text"]["stage"] == "open"
    assert "not a readable video" in out["text"]["reason"]
    assert out["garbage"]["status"] == "failed"
    assert out["noface"]["status"] == "no_face" and "no face" in out["noface"]["reason"]
    assert out["unreadable"]["status"] == "failed"
    assert out["missing"]["status"] == "failed" and "does not exist" in out["missing"]["reason"]
    t = out["truncated"]
    # a truncated MP4 either loses its index (cannot open) or its tail (partial): never a crash, never "ok"
    assert t["status"] in ("failed", "partial"), t
    assert t["reason"]


def test_bad_files_never_take_good_data_down(tmp_path, face_video):
    bad = _bad_files(tmp_path, face_video)
    recs = [rec(p) for p in bad.values()] + [rec(face_video, "good")]
    recs.append(VideoRecord(dataset="t", video_id="listed", path=tmp_path / "nope.mp4", rel_path="nope.mp4",
                            label="fake", method="M", missing=True))
    recs.append(ListAdapter([]).problem_record("meta:3", tmp_path / "meta.json", "meta.json:3: label 'MAYBE'"))
    s = run_ingest(ListAdapter(recs), tmp_path / "corpus", P, workers=2, progress=False, log=lambda m: None)
    assert s.processed == len(recs)
    c = dfkit.corpus.open(tmp_path / "corpus")
    assert set(c.metadata()["video_id"]) == {"good"}
    err = c.errors().set_index("video_id")
    assert len(err) == len(recs) - 1
    assert err.loc["listed", "status"] == "missing"
    assert (err.loc["meta:3", "stage"], err.loc["meta:3", "reason"]) == ("list", "t: meta.json:3: label 'MAYBE'")
    assert err.loc["noface", "status"] == "no_face"
    assert err.loc["empty", "reason"] == "empty file (0 bytes)"
    assert (err["reason"].str.len() > 0).all()


def test_skipping_decode_gives_the_same_frames_as_sequential_decode(face_video):
    idx = [1, 4, 7, 11]
    a = list(video.read_frames(face_video, idx, skip=False))
    b = list(video.read_frames(face_video, idx))
    assert [x[0] for x in a] == [x[0] for x in b] == idx
    assert all(np.array_equal(x[2], y[2]) for x, y in zip(a, b))


def test_skipping_decode_on_real_ffpp_clips():
    from tests.conftest import need_realdata

    root = need_realdata("ffpp_icpr2020dfdc")
    for p in sorted(root.rglob("*.mp4"))[:3]:
        info = video.probe(p)
        idx = video.sample_indices(info.n_frames, 16)
        a = list(video.read_frames(p, idx, skip=False))
        b = list(video.read_frames(p, idx))
        assert [x[0] for x in b] == idx
        assert all(np.array_equal(x[2], y[2]) for x, y in zip(a, b)), p.name


def test_dask_local_cluster_gives_the_same_corpus(tmp_path, face_video):
    """Scale-out path: the same videos through a Dask LocalCluster on 127.0.0.1 give the same rows."""
    bad = tmp_path / "empty.mp4"
    bad.write_bytes(b"")
    recs = [rec(face_video, "a"), rec(face_video, "b", label="fake", pair_video_id="a"), rec(bad)]
    local = run_ingest(ListAdapter(recs), tmp_path / "c1", P, workers=1, progress=False, log=lambda m: None)
    dask = run_ingest(ListAdapter(recs), tmp_path / "c2", P, workers=2, progress=False, log=lambda m: None,
                      scheduler="local")
    assert local.status == dask.status == {"ok": 2, "failed": 1}
    m1 = dfkit.corpus.open(tmp_path / "c1").metadata().set_index("sample_id").sort_index()
    m2 = dfkit.corpus.open(tmp_path / "c2").metadata().set_index("sample_id").sort_index()
    assert list(m1.index) == list(m2.index)
    assert (m2.loc[m2["video_id"] == "b", "box_source"] == "paired").all()
    assert [list(b) for b in m1["crop_box"]] == [list(b) for b in m2["crop_box"]]
