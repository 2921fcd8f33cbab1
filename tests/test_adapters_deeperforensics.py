"""deeperforensics adapter on small DeeperForensics-1.0 trees built here."""

from __future__ import annotations

import json

import pytest

from dfkit.errors import DfkitError, LayoutError
from dfkit.ingest.adapters.deeperforensics import VARIANTS
from dfkit.ingest.base import create_adapter
from dfkit.taxonomy import canonical_method, dataset_manifest, method_family
from tests.conftest import touch


def recs_of(root, **opts):
    a = create_adapter("deeperforensics", root, **opts)
    return a, {r.video_id: r for r in a.videos()}


@pytest.fixture()
def tree(tmp_path):
    root = tmp_path / "DeeperForensics-1.0"
    touch(root, "manipulated_videos/end_to_end/000_M101.mp4", "manipulated_videos/end_to_end/001_W102.mp4",
          "manipulated_videos/end_to_end/002_M003.mp4",
          "manipulated_videos/end_to_end_level_3/000_M101.mp4",
          "manipulated_videos/end_to_end_mix_2_distortions/001_W102.mp4",
          "manipulated_videos/end_to_end/Thumbs.db", "manipulated_videos/not_a_variant/x.mp4",
          "source_videos/M101/BlendShape/camera_front/M101_BlendShape_camera_front.mp4", "README.md")
    (root / "lists" / "splits").mkdir(parents=True)
    (root / "lists" / "splits" / "train.txt").write_text("000_M101.mp4\n")
    (root / "lists" / "splits" / "test.txt").write_text("001_W102.mp4\n002_M003.mp4")
    meta = root / "lists" / "manipulated_videos_distortions_meta"
    meta.mkdir(parents=True)
    (meta / "manipulated_videos_end_to_end_mix_2_distortions_meta.txt").write_text(
        "end_to_end_mix_2_distortions/001_W102.mp4 CS:3 GB:2\n")
    return root


def test_fakes_method_perturbation_splits_identities(tree):
    a, recs = recs_of(tree)
    assert len(recs) == 5 and all(r.label == "fake" and r.method == "DF-VAE" for r in recs.values())
    assert canonical_method("deeperforensics", "DF-VAE", "fake") == "df_vae" and method_family("df_vae") == "vae_swap"
    r = recs["end_to_end/000_M101"]
    assert r.perturbation == "end_to_end" and r.split == "train" and r.content_id == "000_M101"
    assert recs["end_to_end_level_3/000_M101"].content_id == r.content_id
    assert r.identity_ids == ["ffpp:000", "deeperforensics:M101"]
    assert r.group_id == "--b1Ua-kWJE"  # FF++ 000's YouTube id, as the ffpp adapter groups it
    assert r.target_video_id == "000" and r.pair_video_id is None  # no reals without ffpp_root
    assert r.extra["actor_gender"] == "male" and r.extra["actor_asian"] is True
    assert recs["end_to_end/001_W102"].split == "test" and recs["end_to_end/001_W102"].extra["actor_gender"] == "female"
    assert recs["end_to_end_mix_2_distortions/001_W102"].extra["distortions"] == ["CS:3", "GB:2"]
    assert a.ignored_files == 3  # README.md, Thumbs.db, not_a_variant/x.mp4 (source_videos is not counted)


def test_all_eleven_variants_known():
    assert len(VARIANTS) == 11
    assert dataset_manifest("deeperforensics")["perturbations"] == list(VARIANTS)


def test_ffpp_root_yields_c23_targets_as_reals(tree, tmp_path):
    ffpp = tmp_path / "FaceForensics++"
    touch(ffpp, "original_sequences/youtube/c23/videos/000.mp4", "original_sequences/youtube/c23/videos/001.mp4")
    a, recs = recs_of(tree, ffpp_root=str(ffpp))
    reals = {k: r for k, r in recs.items() if r.label == "real"}
    assert set(reals) == {"original/c23/000", "original/c23/001", "original/c23/002"}
    r0 = reals["original/c23/000"]
    assert r0.dataset == "deeperforensics" and r0.method == "original" and r0.compression == "c23"
    assert r0.path == ffpp / "original_sequences/youtube/c23/videos/000.mp4" and not r0.missing
    assert r0.split == "train" and r0.identity_ids == ["ffpp:000"]
    assert reals["original/c23/002"].missing and a.missing_count == 1
    assert recs["end_to_end/000_M101"].pair_video_id == "original/c23/000"
    assert recs["end_to_end_level_3/000_M101"].pair_video_id == "original/c23/000"
    assert canonical_method("deeperforensics", "original", "real") == "real"


def test_variants_option(tree):
    a, recs = recs_of(tree, variants="end_to_end")
    assert {r.perturbation for r in recs.values()} == {"end_to_end"} and len(recs) == 3
    with pytest.raises(DfkitError, match="unknown variant"):
        create_adapter("deeperforensics", tree, variants="end_to_end_level_9")


def test_challenge_test_data(tmp_path):
    d = tmp_path / "test-data"
    touch(d, "000000.mp4", "000001.mp4", "deeperforensicis_runtime_eval_video_list.txt")
    (d / "local_test_groundtruth.json").write_text(json.dumps({"000000.mp4": 0, "000001.mp4": 1,
                                                               "000002.mp4": 1}))
    a, recs = recs_of(d)
    assert (recs["challenge/000000"].label, recs["challenge/000000"].method) == ("real", "real")
    assert (recs["challenge/000001"].label, recs["challenge/000001"].method) == ("fake", "unknown")
    assert all(r.split == "test" for r in recs.values())
    assert recs["challenge/000002"].missing and a.ignored_files == 1


def test_layout_errors(tmp_path):
    root = tmp_path / "DF"
    touch(root, "source_videos/M101/x.mp4", "lists/splits/train.txt")
    with pytest.raises(LayoutError, match=r"deeperforensics: no manipulated_videos/ under .*"
                                          r"\(found: lists/, source_videos/\)"):
        list(create_adapter("deeperforensics", root).videos())
    (root / "manipulated_videos" / "end_to_end").mkdir(parents=True)
    with pytest.raises(LayoutError, match=r"no videos in manipulated_videos/.*variant folders present: end_to_end"):
        list(create_adapter("deeperforensics", root).videos())
    with pytest.raises(DfkitError, match="ffpp_root .* is not a directory"):
        create_adapter("deeperforensics", root, ffpp_root=str(tmp_path / "nope"))
