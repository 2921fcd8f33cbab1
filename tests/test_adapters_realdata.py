"""Adapters on the real sample media in ../shared/realdata (skipped when absent). Nothing is copied into the repo:
Celeb-DF trees are assembled from symlinks in tmp_path. Only the last test decodes (the real engine, 4 frames)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dfkit.ingest.base import create_adapter
from dfkit.paths import manifests_dir
from tests.conftest import REALDATA

pytestmark = pytest.mark.realdata


def need(*rels: str) -> Path:
    for rel in rels:
        if not (REALDATA / rel).exists():
            pytest.skip(f"{REALDATA / rel} is not present (shared realdata samples not installed)")
    return REALDATA / rels[0]


def by_id(adapter):
    return {r.video_id: r for r in adapter.videos()}


# -- DFDC -----------------------------------------------------------------------------------------------------
def test_dfdc_icpr_parts_with_absent_files():
    root = need("dfdc_icpr2020dfdc/dfdc_train_part_0/metadata.json")
    root = root.parents[1]
    a = create_adapter("dfdc", root)
    recs = by_id(a)
    assert set(recs) == {"train/awnfpubqmo", "train/brtujopkby", "train/vtfpbtmgfh", "train/zvqinhzeah",
                         "train/widuwuoiur", "train/yhffcuhhjy"}
    assert all(r.label == "fake" and r.method == "unknown" and r.split == "train" for r in recs.values())
    # metadata naming files the snapshot dropped (>= 4 MiB) -> missing records, never a failure
    assert {v for v, r in recs.items() if r.missing} == {"train/awnfpubqmo", "train/vtfpbtmgfh",
                                                         "train/zvqinhzeah"}
    assert a.missing_count == 3
    assert recs["train/brtujopkby"].pair_video_id == "train/gnmmhlbzge"
    assert recs["train/brtujopkby"].group_id == "dfdc:gnmmhlbzge"
    assert recs["train/widuwuoiur"].extra["part"] == 10 and recs["train/vtfpbtmgfh"].extra["part"] == 1
    assert a.ignored_files == 3  # notebook_samples/: not a DFDC part


def test_dfdc_kaggle_train_sample_videos():
    root = need("dfdc_aaronchong888/train_sample_videos/metadata.json").parent
    a = create_adapter("dfdc", root)
    recs = by_id(a)
    assert len(recs) == 5
    assert recs["train/abarnvbtwb"].label == "real" and recs["train/abarnvbtwb"].missing
    assert recs["train/abofeumbvv"].label == "fake" and not recs["train/abofeumbvv"].missing
    assert recs["train/abofeumbvv"].path.stat().st_size > 1_000_000
    assert sum(r.missing for r in recs.values()) == 3 and a.ignored_files == 0
    assert recs["train/abofeumbvv"].extra["part"] is None
    # the same from the parent folder (Kaggle's download keeps train_sample_videos/ as a subfolder)
    a = create_adapter("dfdc", root.parent)
    assert set(by_id(a)) == set(recs) and a.ignored_files == 23  # LICENSE.repo.txt + 22 prepared_dataset/ crops


# -- DeeperForensics ------------------------------------------------------------------------------------------
def test_deeperforensics_challenge_samples():
    root = need("deeperforensics_challenge_local_test/test-data/local_test_groundtruth.json").parents[1]
    a = create_adapter("deeperforensics", root)
    recs = by_id(a)
    assert {v: r.label for v, r in recs.items()} == {
        "challenge/000000": "real", "challenge/000001": "fake", "challenge/000002": "fake", "challenge/000003": "real"}
    assert all(r.split == "test" and not r.missing for r in recs.values())
    assert a.ignored_files == 1  # deeperforensicis_runtime_eval_video_list.txt


def test_deeperforensics_tree_from_the_official_example(tmp_path):
    """The official repo's example clip placed as a DF-VAE output (its label is unverified: adapter-only test)."""
    src = need("deeperforensics_perturbation_example/input.mp4")
    root = tmp_path / "DeeperForensics-1.0"
    (root / "manipulated_videos" / "end_to_end").mkdir(parents=True)
    (root / "manipulated_videos" / "end_to_end" / "000_M101.mp4").symlink_to(src)
    ffpp = need("ffpp_icpr2020dfdc/original_sequences/youtube/c23/videos/004.mp4").parents[4]
    (root / "manipulated_videos" / "end_to_end_level_2").mkdir()
    (root / "manipulated_videos" / "end_to_end_level_2" / "004_W010.mp4").symlink_to(src)
    recs = by_id(create_adapter("deeperforensics", root, ffpp_root=str(ffpp)))
    assert recs["end_to_end/000_M101"].method == "DF-VAE" and recs["end_to_end/000_M101"].perturbation == "end_to_end"
    assert recs["original/c23/004"].label == "real" and not recs["original/c23/004"].missing
    assert recs["original/c23/000"].missing  # FF++ 000 is not among the samples
    assert recs["end_to_end_level_2/004_W010"].pair_video_id == "original/c23/004"


# -- Celeb-DF v2 assembled from the segment clips -------------------------------------------------------------
SEGMENTS = "celebdf_v2_matheusprv_segments"


def celebdf_tree(tmp_path: Path) -> Path:
    src = need(f"{SEGMENTS}/real", f"{SEGMENTS}/fake")
    src = src.parent
    root = tmp_path / "Celeb-DF-v2"
    for clip in sorted(src.glob("*/*_segment_1.mp4")):
        name = clip.name.replace("_segment_1", "")
        stem = name[:-4]
        folder = ("Celeb-synthesis" if clip.parent.name == "fake"
                  else "YouTube-real" if stem.isdigit() else "Celeb-real")
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / name).symlink_to(clip)
    return root


def test_celebdf_segments_adapter_only(tmp_path):
    root = celebdf_tree(tmp_path)
    a = create_adapter("celebdf", root)
    recs = by_id(a)
    present = {v: r for v, r in recs.items() if not r.missing}
    assert len(present) == 14 and a.version == "v2"
    assert a.test_list_used.endswith("manifests/celebdf/List_of_testing_videos.txt")  # root has no list
    assert all((r.label == "fake") == (v.split("/")[1] == "Celeb-synthesis") for v, r in present.items())
    assert sum(r.label == "fake" for r in present.values()) == 7
    # every one of these clips is in the official test list, with the inverted labels agreeing with the folders
    assert all(r.split == "test" for r in present.values()) and a.label_disagreements == 0
    assert present["v2/YouTube-real/00279"].extra["list_label"] == "real"
    assert present["v2/Celeb-synthesis/id35_id16_0007"].extra["list_label"] == "fake"
    assert present["v2/Celeb-synthesis/id35_id16_0007"].identity_ids == ["celebdf:id35", "celebdf:id16"]
    assert present["v2/Celeb-synthesis/id35_id16_0007"].pair_video_id == "v2/Celeb-real/id35_0007"
    assert a.missing_count == 518 - 14 and len(recs) == 14  # shipped list: absent entries counted only


def test_celebdf_segments_end_to_end_engine(tmp_path):
    """The real engine (decode, detect, crop, write) on the assembled Celeb-DF tree, 4 frames per clip."""
    import dfkit.corpus
    from dfkit.ingest.engine import IngestParams, run_ingest

    root = celebdf_tree(tmp_path)
    shipped = (manifests_dir() / "celebdf" / "List_of_testing_videos.txt").read_text().splitlines()
    keep = ("Celeb-real/id21_0009", "YouTube-real/00279", "Celeb-synthesis/id0_id1_0005",
            "Celeb-synthesis/id4_id0_0004", "Celeb-real/id4_0004")  # the last one is absent: a missing record
    lines = [ln for ln in shipped if any(f" {k}.mp4" == ln[1:] for k in keep)]
    assert len(lines) == 5
    (root / "List_of_testing_videos.txt").write_text("\n".join(lines))
    adapter = create_adapter("celebdf", root)
    summary = run_ingest(adapter, tmp_path / "corpus", IngestParams(frames=4, size=64), workers=1, progress=False,
                         log=lambda s: None)
    assert summary.listed == 15 and summary.processed == 15

    c = dfkit.corpus.open(tmp_path / "corpus")
    videos = c.videos().set_index("video_id")
    assert len(videos) == 15
    assert videos.loc["v2/Celeb-real/id4_0004", "status"] == "missing"
    errors = c.errors()
    assert "v2/Celeb-real/id4_0004" in set(errors["video_id"])
    expect_split = {f"v2/{k}": "test" for k in keep}
    for vid, row in videos.iterrows():
        folder = vid.split("/")[1]
        assert row["label"] == ("fake" if folder == "Celeb-synthesis" else "real"), vid
        assert row["split"] == expect_split.get(vid, "train"), vid
    meta = c.metadata()
    assert len(meta) > 0 and set(meta["crop_size"]) == {64}
    per_video = meta.groupby("video_id").agg(label=("label", "first"), split=("split", "first"),
                                             canon=("method_canonical", "first"), n=("sample_id", "size"))
    assert (per_video["n"] <= 4).all()
    for vid, row in per_video.iterrows():
        folder = vid.split("/")[1]
        assert row["label"] == ("fake" if folder == "Celeb-synthesis" else "real")
        assert row["canon"] == ("celebdf_synthesis" if folder == "Celeb-synthesis" else "real")
        assert row["split"] == expect_split.get(vid, "train")
    assert {"train", "test"} <= set(per_video["split"])
    assert {"real", "fake"} <= set(per_video["label"])
