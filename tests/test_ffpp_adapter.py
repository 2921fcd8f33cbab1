"""The FF++ adapter on trees built here with the dataset's real names (adapters never decode, so files are
stand-ins)."""

from __future__ import annotations

import pytest

from dfkit.errors import DfkitError, LayoutError
from dfkit.ingest.adapters.ffpp import official_splits, youtube_ids
from dfkit.ingest.base import create_adapter, list_adapters

FILES = [
    "original_sequences/youtube/{c}/videos/519.mp4",
    "original_sequences/youtube/{c}/videos/515.mp4",
    "original_sequences/youtube/{c}/videos/004.mp4",
    "original_sequences/actors/{c}/videos/01__walking_outside_cafe_disgusted.mp4",
    "manipulated_sequences/Deepfakes/{c}/videos/519_515.mp4",
    "manipulated_sequences/Deepfakes/{c}/videos/515_519.mp4",
    "manipulated_sequences/NeuralTextures/{c}/videos/004_982.mp4",
    "manipulated_sequences/FaceShifter/{c}/videos/519_515.mp4",
    "manipulated_sequences/DeepFakeDetection/{c}/videos/01_02__exit_phone_room__YVGY8LOK.mp4",
    "manipulated_sequences/Deepfakes/masks/videos/519_515.mp4",
]


def make_tree(root, levels=("c23",)):
    for c in levels:
        for f in FILES:
            p = root / f.format(c=c)
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"x")
    return root


def records(root, **opts):
    return {r.video_id: r for r in create_adapter("ffpp", root, **opts).videos()}


def test_registry_finds_ffpp():
    assert "ffpp" in list_adapters()
    with pytest.raises(DfkitError, match="unknown dataset 'nope'"):
        create_adapter("nope", "/tmp")


def test_official_split_files_are_complete_and_disjoint():
    s = official_splits()
    assert len(s) == 1000
    assert sum(v == "train" for v in s.values()) == 720
    assert sum(v == "val" for v in s.values()) == 140
    assert sum(v == "test" for v in s.values()) == 140
    assert youtube_ids()["000"] == "--b1Ua-kWJE"


def test_names_labels_pairs_and_splits(tmp_path):
    recs = records(make_tree(tmp_path))
    assert len(recs) == 9  # the mask video is not a sample
    r = recs["Deepfakes/c23/519_515"]
    assert (r.label, r.method, r.target_video_id, r.source_video_id) == ("fake", "Deepfakes", "519", "515")
    assert r.pair_video_id == "original/c23/519"
    assert r.split == official_splits()["519"] == "train"
    assert r.content_id == "Deepfakes/519_515"
    assert r.group_id == youtube_ids()["519"]
    assert r.identity_ids == ["ffpp:519", "ffpp:515"]
    assert recs["Deepfakes/c23/515_519"].target_video_id == "515"
    assert recs["NeuralTextures/c23/004_982"].split == "val"
    o = recs["original/c23/519"]
    assert (o.label, o.method, o.pair_video_id) == ("real", "original", None)
    # masks are not samples, but a fake's mask video is discoverable
    assert r.extra["mask_path"] == "manipulated_sequences/Deepfakes/masks/videos/519_515.mp4"
    assert "mask_path" not in recs["Deepfakes/c23/515_519"].extra
    fsh = recs["FaceShifter/c23/519_515"]
    assert fsh.method == "FaceShifter" and fsh.split == "train"


def test_dfd_names(tmp_path):
    recs = records(make_tree(tmp_path))
    f = recs["DeepFakeDetection/c23/01_02__exit_phone_room__YVGY8LOK"]
    assert (f.target_video_id, f.source_video_id) == ("01", "02")
    assert f.extra == {"scene": "exit_phone_room", "experiment_id": "YVGY8LOK"}
    assert f.split is None and f.pair_video_id is None
    a = recs["actors/c23/01__walking_outside_cafe_disgusted"]
    assert a.label == "real" and a.method == "DeepFakeDetection_original" and a.group_id == "dfd_actor:01"


@pytest.mark.parametrize("folder", ["raw", "c0"])
def test_lossless_level_accepts_raw_and_c0(tmp_path, folder):
    make_tree(tmp_path, levels=(folder, "c40"))
    recs = records(tmp_path, compression="c0")
    assert len(recs) == 9 and all(r.compression == "c0" for r in recs.values())
    assert all(f"/{folder}/videos/" in r.rel_path for r in recs.values())
    recs40 = records(tmp_path, compression="c40")
    assert all(r.compression == "c40" and r.video_id.split("/")[1] == "c40" for r in recs40.values())
    # one content across levels
    assert {r.content_id for r in recs.values()} == {r.content_id for r in recs40.values()}


def test_missing_level_and_method_folders(tmp_path):
    make_tree(tmp_path, levels=("c40",))
    with pytest.raises(LayoutError, match=r"no videos at compression c23 .*levels present: c40"):
        records(tmp_path)
    # a subset of methods is fine
    (tmp_path / "x").mkdir()
    p = tmp_path / "y/original_sequences/youtube/c23/videos/000.mp4"
    p.parent.mkdir(parents=True)
    p.write_bytes(b"x")
    assert list(records(tmp_path / "y")) == ["original/c23/000"]


def test_layout_error_names_expected_and_found(tmp_path):
    (tmp_path / "Celeb-real").mkdir()
    with pytest.raises(LayoutError, match=r"no original_sequences/ or manipulated_sequences/ .*found: Celeb-real"):
        records(tmp_path)


def test_unrelated_files_are_counted_not_ingested(tmp_path):
    make_tree(tmp_path)
    (tmp_path / "original_sequences/youtube/c23/videos/notes.txt").write_text("hi")
    a = create_adapter("ffpp", tmp_path)
    assert len(list(a.videos())) == 9
    assert a.ignored_files == 1


def test_cross_split_pair_has_no_split(tmp_path):
    s = official_splits()
    tr = next(k for k, v in s.items() if v == "train")
    te = next(k for k, v in s.items() if v == "test")
    p = tmp_path / f"manipulated_sequences/Deepfakes/c23/videos/{tr}_{te}.mp4"
    p.parent.mkdir(parents=True)
    p.write_bytes(b"x")
    (r,) = records(tmp_path).values()
    assert r.split is None


def test_unknown_compression_is_a_clear_error(tmp_path):
    with pytest.raises(LayoutError, match="unknown compression 'c99'"):
        create_adapter("ffpp", tmp_path, compression="c99")
