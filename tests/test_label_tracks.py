"""Which face a fake's crops follow (issue 12, manipulated-face selection): constructed cases with known answers
(:mod:`dfkit.demo.label_noise`) through the real engine, and a single-face FF++ clip cut as before."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import dfkit.corpus
from dfkit.corpus.reader import CropReader, shard_rows
from dfkit.demo.label_noise import make_label_noise_cases
from dfkit.ingest.base import create_adapter
from dfkit.ingest.engine import TRACK_SELECTION_ENV, IngestParams, run_ingest
from dfkit.quality.fullref import compute_fullref

P = IngestParams(frames=8, size=128)
FFPP = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "ffpp_icpr2020dfdc"


def _ingest(root: Path, corpus: Path, params: IngestParams = P) -> dfkit.corpus.Corpus:
    s = run_ingest(create_adapter("ffpp", root), corpus, params, workers=1, progress=False, log=lambda m: None)
    assert s.status == {"ok": s.processed}, s.errors
    return dfkit.corpus.open(corpus)


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    d = tmp_path_factory.mktemp("label_noise")
    expected = make_label_noise_cases(d / "ds")
    return expected, _ingest(d / "ds", d / "corpus")


@pytest.fixture(scope="module")
def unselected(cases, tmp_path_factory):
    """The same dataset ingested with the track choice switched off (every video on its dominant face)."""
    expected, _ = cases
    old = os.environ.get(TRACK_SELECTION_ENV)
    os.environ[TRACK_SELECTION_ENV] = "0"
    try:
        return _ingest(Path(expected["root"]), tmp_path_factory.mktemp("unselected") / "corpus")
    finally:
        if old is None:
            del os.environ[TRACK_SELECTION_ENV]
        else:
            os.environ[TRACK_SELECTION_ENV] = old


def _inside(crop_box, box) -> bool:
    cx, cy = (crop_box[0] + crop_box[2]) / 2, (crop_box[1] + crop_box[3]) / 2
    return box[0] <= cx <= box[2] and box[1] <= cy <= box[3]


def _rows(c: dfkit.corpus.Corpus, video_id: str):
    m = c.metadata()
    return m[m["video_id"] == video_id].sort_values("frame_index")


def _fullref(c: dfkit.corpus.Corpus, video_id: str) -> dict[int, float]:
    """``frame_index -> fr_change_face`` of a fake against its original (compute_fullref, on="pair")."""
    m = c.metadata()
    fake = pa.concat_tables(shard_rows(c.crop_files(), m[m["video_id"] == video_id]))
    pair = m.loc[m["video_id"] == video_id, "pair_video_id"].iloc[0]
    ref = pa.concat_tables(shard_rows(c.crop_files(), m[m["video_id"] == pair]))
    fr = compute_fullref(fake, ref, on="pair", metrics=("psnr",)).to_pydict()
    frames = dict(zip(fake["sample_id"].to_pylist(), fake["frame_index"].to_pylist()))
    assert all(e is None for e in fr["fr_errors"]), fr["fr_errors"]
    return {frames[s]: v for s, v in zip(fr["sample_id"], fr["fr_change_face"])}


@pytest.mark.parametrize("name, choice", [("bystander", "manipulated"), ("mask", "mask")])
def test_two_person_fake_is_cut_on_the_swapped_face(cases, name, choice):
    expected, c = cases
    case = expected["cases"][name]
    rows = _rows(c, case["video_id"])
    assert len(rows) == 8
    for r in rows.itertuples():
        assert _inside(r.crop_box, case["swapped_box"][r.frame_index]), (r.frame_index, r.crop_box)
        assert not _inside(r.crop_box, case["other_box"][r.frame_index])
    assert set(rows["face_tracks"]) == {2} and set(rows["track_choice"]) == {choice}


def test_the_originals_dominant_face_is_the_bystander(cases):
    """What made the case: the original (and so a fake cut on its boxes) follows the untouched, larger face."""
    expected, c = cases
    case = expected["cases"]["bystander"]
    rows = _rows(c, case["pair_video_id"])
    assert len(rows) == 8 and set(rows["track_choice"]) == {"dominant"} and set(rows["face_tracks"]) == {2}
    assert all(_inside(r.crop_box, case["other_box"][r.frame_index]) for r in rows.itertuples())


@pytest.mark.parametrize("name", ["bystander", "mask"])
def test_swapped_face_crops_carry_their_reference_and_change_a_lot(cases, name):
    expected, c = cases
    case = expected["cases"][name]
    rows = _rows(c, case["video_id"])
    assert rows["ref_crop_format"].eq("png").all()  # cut on another face than the original's crop: own reference
    change = _fullref(c, case["video_id"])
    assert len(change) == 8 and min(change.values()) > 0.3, change


def test_mask_fraction_is_recorded(cases):
    expected, c = cases
    rows = _rows(c, expected["cases"]["mask"]["video_id"])
    assert (rows["mask_fraction"] > 0.1).all() and (rows["mask_fraction"] < 1).all()
    assert _rows(c, expected["cases"]["bystander"]["video_id"])["mask_fraction"].isna().all()


def test_half_manipulated_fake_keeps_its_originals_boxes(cases):
    """One face: the fake is cut on its original's boxes (as before the choice); the change shows on the
    manipulated frames only."""
    expected, c = cases
    case = expected["cases"]["half"]
    rows = _rows(c, case["video_id"])
    orig = _rows(c, case["pair_video_id"])
    assert rows["frame_index"].tolist() == orig["frame_index"].tolist()
    assert [list(b) for b in rows["crop_box"]] == [list(b) for b in orig["crop_box"]]
    assert set(rows["box_source"]) == {"paired"} and set(rows["track_choice"]) == {"manipulated"}
    assert set(rows["face_tracks"]) == {1} and rows["ref_crop_format"].isna().all()
    change = _fullref(c, case["video_id"])
    hit = [f for f in change if f in case["manipulated_frames"]]
    miss = [f for f in change if f in case["untouched_frames"]]
    assert hit and miss
    assert min(change[f] for f in hit) > 0.3 and max(change[f] for f in miss) < 0.05, change


def test_an_undecodable_mask_is_a_note_not_a_failure(tmp_path):
    expected = make_label_noise_cases(tmp_path / "ds")
    case = expected["cases"]["mask"]
    (tmp_path / "ds" / case["mask"]).write_bytes(b"not a video" * 100)
    c = _ingest(tmp_path / "ds", tmp_path / "corpus")
    v = c.videos().set_index("video_id").loc[case["video_id"]]
    assert v["status"] == "ok" and "mask" in v["reason"] and "not used" in v["reason"], v["reason"]
    rows = _rows(c, case["video_id"])  # without the mask, the comparison with the original finds the swapped face
    assert set(rows["track_choice"]) == {"manipulated"} and rows["mask_fraction"].isna().all()
    assert all(_inside(r.crop_box, case["swapped_box"][r.frame_index]) for r in rows.itertuples())


def test_without_the_choice_the_fake_is_cut_on_the_bystander(cases, unselected):
    """The failure the choice fixes (and proof that the tests above can fail)."""
    expected, _ = cases
    case = expected["cases"]["bystander"]
    rows = _rows(unselected, case["video_id"])
    assert all(_inside(r.crop_box, case["other_box"][r.frame_index]) for r in rows.itertuples())
    assert rows["track_choice"].isna().all() and rows["face_tracks"].isna().all()


# -- a real FF++ clip: one face, cut exactly as before --------------------------------------------------------------
@pytest.fixture(scope="module")
def ffpp_pair(tmp_path_factory):
    """An FF++ root holding original 004 and NeuralTextures 004_982 (links to the sample clips, never copies)."""
    orig = FFPP / "original_sequences/youtube/c23/videos/004.mp4"
    fake = FFPP / "manipulated_sequences/NeuralTextures/c23/videos/004_982.mp4"
    if not (orig.is_file() and fake.is_file()):
        pytest.skip(f"FF++ sample clips not at {FFPP}")
    root = tmp_path_factory.mktemp("ffpp")
    for src in (orig, fake):
        dst = root / src.relative_to(FFPP)
        dst.parent.mkdir(parents=True)
        dst.symlink_to(src)
    return root


@pytest.mark.parametrize("video_id, choice", [("original/c23/004", "dominant"),
                                              ("NeuralTextures/c23/004_982", "manipulated")])
def test_single_face_ffpp_clip_is_cut_as_before(ffpp_pair, tmp_path, monkeypatch, video_id, choice):
    params = IngestParams(frames=6, size=128)
    new = _rows(_ingest(ffpp_pair, tmp_path / "new", params), video_id)
    monkeypatch.setenv(TRACK_SELECTION_ENV, "0")
    old = _rows(_ingest(ffpp_pair, tmp_path / "old", params), video_id)
    assert len(new) == 6
    assert new["frame_index"].tolist() == old["frame_index"].tolist()
    assert np.array_equal(np.stack(new["crop_box"]), np.stack(old["crop_box"]))
    assert new["box_source"].tolist() == old["box_source"].tolist()
    assert set(new["face_tracks"]) == {1} and set(new["track_choice"]) == {choice}
    assert new["ref_crop_format"].isna().all() and new["mask_fraction"].isna().all()
    crops = [[CropReader(c.crop_files()).raw(f, r) for f, r in zip(rows["_file"], rows["_row"])]
             for c, rows in ((dfkit.corpus.open(tmp_path / "new"), new), (dfkit.corpus.open(tmp_path / "old"), old))]
    assert crops[0] == crops[1]  # the same pixels, byte for byte


# -- the pieces ------------------------------------------------------------------------------------------------------
def _det(x: float, side: float = 40.0, score: float = 0.9):
    from dfkit.ingest.faces import Detection

    return Detection(np.array([x, 10, x + side, 10 + side], np.float32), score, None)


@pytest.mark.parametrize("frames_with_second, n_tracks", [(0, 1), (1, 1), (2, 2), (8, 2)])
def test_face_tracks_keep_a_second_face_seen_on_a_quarter_of_the_frames(frames_with_second, n_tracks):
    from dfkit.ingest.faces import dominant_track, face_tracks

    dets = [[_det(10 + t, 60)] + ([_det(200 - t)] if t < frames_with_second else []) for t in range(8)]
    tracks = face_tracks(dets)
    assert len(tracks) == n_tracks
    assert all(d is not None and d.box[0] < 100 for d in tracks[0])  # the larger face is the dominant one
    assert dominant_track(dets) == tracks[0]
    assert face_tracks([[], []]) == [] and dominant_track([[], []]) == [None, None]


def test_mask_share_counts_the_box_outside_the_frame_as_unmarked():
    from dfkit.ingest.faces import mask_pixels, mask_share

    rgb = np.zeros((100, 100, 3), np.uint8)
    rgb[:, :50] = 255
    marked = mask_pixels(rgb)
    assert mask_share(marked, np.array([0, 0, 50, 50])) == 1.0
    assert mask_share(marked, np.array([25, 0, 75, 50])) == pytest.approx(0.5)
    assert mask_share(marked, np.array([-50, 0, 50, 100])) == pytest.approx(0.5)
    assert mask_share(marked, np.array([10, 10, 10, 20])) is None
