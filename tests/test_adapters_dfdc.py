"""dfdc and dfdcp adapters on small trees built here."""

from __future__ import annotations

import json

import pytest

from dfkit.errors import LayoutError
from dfkit.ingest.base import create_adapter
from dfkit.taxonomy import canonical_method, method_family
from tests.conftest import touch


def recs_of(name, root, **opts):
    a = create_adapter(name, root, **opts)
    return a, {r.video_id: r for r in a.videos()}


# -- DFDC -----------------------------------------------------------------------------------------------------
@pytest.fixture()
def dfdc(tmp_path):
    root = tmp_path / "DFDC"
    p0 = root / "dfdc_train_part_0"
    touch(p0, "aagfhgtpmv.mp4", "vudstovrck.mp4", "ooafcxxfrs.mp4", "stray.mp4")
    (p0 / "metadata.json").write_text(json.dumps({
        "aagfhgtpmv.mp4": {"label": "FAKE", "split": "train", "original": "vudstovrck.mp4"},
        "vudstovrck.mp4": {"label": "REAL", "split": "train", "original": None},
        "ooafcxxfrs.mp4": {"label": "REAL", "split": "train"},  # no "original" key at all
        "awnfpubqmo.mp4": {"label": "FAKE", "split": "train", "original": "lnhkjhyhvw.mp4"},  # file absent
    }))
    p12 = root / "dfdc_train_part_12"
    touch(p12, "brtujopkby.mp4")
    (p12 / "metadata.json").write_text(json.dumps({
        "brtujopkby.mp4": {"label": "FAKE", "split": "train", "original": "gnmmhlbzge.mp4"}}))
    touch(root, "test/videos/aaqaifqrwn.mp4", "test/videos/aayfryxljh.mp4", "validation/abc.mp4")
    (root / "test" / "labels.csv").write_text("filename,label\naaqaifqrwn.mp4,0\naayfryxljh.mp4,1\nzzzz.mp4,1\n")
    (root / "validation" / "labels.csv").write_text("filename,label\nabc.mp4,1\n")
    touch(root, "sample_submission.csv")
    return root


def test_dfdc_labels_splits_groups(dfdc):
    a, recs = recs_of("dfdc", dfdc)
    assert len(recs) == 9
    fake = recs["train/aagfhgtpmv"]
    assert (fake.label, fake.method, fake.split) == ("fake", "unknown", "train")
    assert canonical_method("dfdc", fake.method, fake.label) == "unknown" and method_family("unknown") == "unknown"
    assert fake.group_id == recs["train/vudstovrck"].group_id == "dfdc:vudstovrck"
    assert fake.pair_video_id == "train/vudstovrck" and fake.source_video_id == "vudstovrck"
    assert fake.extra["part"] == 0 and recs["train/brtujopkby"].extra["part"] == 12
    real = recs["train/ooafcxxfrs"]
    assert (real.label, real.method, real.pair_video_id) == ("real", "original", None)
    assert real.group_id == "dfdc:ooafcxxfrs"
    assert recs["test/aaqaifqrwn"].label == "real" and recs["test/aayfryxljh"].label == "fake"
    assert recs["test/aaqaifqrwn"].split == "test" and recs["val/abc"].split == "val"
    assert recs["test/aaqaifqrwn"].rel_path == "test/videos/aaqaifqrwn.mp4"


def test_dfdc_missing_and_ignored(dfdc):
    a, recs = recs_of("dfdc", dfdc)
    assert recs["train/awnfpubqmo"].missing and not recs["train/aagfhgtpmv"].missing
    assert recs["test/zzzz"].missing
    assert a.missing_count == 2
    assert a.ignored_files == 2  # stray.mp4 (in no metadata) and sample_submission.csv


def test_dfdc_single_part_root_and_train_folder(tmp_path, dfdc):
    a, recs = recs_of("dfdc", dfdc / "dfdc_train_part_12")
    assert list(recs) == ["train/brtujopkby"] and recs["train/brtujopkby"].extra["part"] == 12
    # DeepfakeBench's arrangement: DFDC/train/dfdc_train_part_N
    root = tmp_path / "DB" / "DFDC"
    (root / "train").mkdir(parents=True)
    (dfdc / "dfdc_train_part_12").rename(root / "train" / "dfdc_train_part_12")
    _, recs = recs_of("dfdc", root)
    assert list(recs) == ["train/brtujopkby"]


def test_dfdc_layout_errors(tmp_path):
    root = tmp_path / "x"
    touch(root, "a.mp4", "b/c.mp4")
    with pytest.raises(LayoutError, match=r"dfdc: no dfdc_train_part_<N>/metadata.json.*\(found: a.mp4, b/\)"):
        list(create_adapter("dfdc", root).videos())
    touch(root, "dfdc_train_part_3/x.mp4")
    with pytest.raises(LayoutError, match=r"dfdc_train_part_3/ has no metadata.json"):
        list(create_adapter("dfdc", root).videos())
    # an unusable entry is a problem record (the corpus errors table), never fatal for the rest
    touch(root, "dfdc_train_part_3/y.mp4")
    (root / "dfdc_train_part_3" / "metadata.json").write_text(
        json.dumps({"x.mp4": {"label": "MAYBE"}, "y.mp4": {"label": "REAL"}}))
    recs = {r.video_id: r for r in create_adapter("dfdc", root).videos()}
    assert "expected 'REAL' or 'FAKE'" in recs["train/x"].problem and recs["train/x"].label == "unknown"
    assert recs["train/y"].problem is None and recs["train/y"].label == "real"
    # a part whose metadata.json is broken is one problem record; the other parts go on
    touch(root, "dfdc_train_part_4/z.mp4")
    (root / "dfdc_train_part_4" / "metadata.json").write_text("{not json")
    recs = {r.video_id: r for r in create_adapter("dfdc", root).videos()}
    assert "is not readable JSON" in recs["dfdc_train_part_4/metadata.json"].problem
    assert recs["train/y"].label == "real"
    r2 = tmp_path / "y"
    touch(r2, "test/a.mp4")
    (r2 / "test" / "labels.csv").write_text("name,is_fake\na.mp4,1\n")
    with pytest.raises(LayoutError, match="expected columns filename,label"):
        list(create_adapter("dfdc", r2).videos())


# -- DFDC preview ---------------------------------------------------------------------------------------------
@pytest.fixture()
def dfdcp(tmp_path):
    root = tmp_path / "dfdc_preview_set"
    keys = {
        "original_videos/643049/643049_A_001.mp4": {"label": "real", "set": "train", "target_id": 643049,
                                                    "swapped_id": 643049, "augmentations": []},
        "method_A/643049/643049_A/1255229_643049_A_001.mp4": {
            "label": "fake", "set": "train", "target_id": 643049, "swapped_id": 1255229, "augmentations": [],
            "source_video": "original_videos/643049/643049_A_001.mp4"},
        "method_B/1260311/1260311_C/1255229_1260311_C_001.mp4": {
            "label": "fake", "set": "test", "target_id": 1260311, "swapped_id": 1255229,
            "augmentations": ["blur", "noise"]},
        "method_B/1260311/1260311_C/1255229_1260311_C_002.mp4": {
            "label": "real", "set": "test", "target_id": 1260311, "swapped_id": 1255229, "augmentations": []},
        "method_A/999/999_A/1_999_A_001.mp4": {"label": "fake", "set": "train", "target_id": 999,
                                               "swapped_id": 1},  # file absent
    }
    for k in list(keys)[:4]:
        touch(root, k)
    touch(root, "method_A/643049/643049_A/extra.mp4", "README.txt")
    (root / "dataset.json").write_text(json.dumps(keys))
    return root


def test_dfdcp_methods_splits_identities(dfdcp):
    a, recs = recs_of("dfdcp", dfdcp)
    assert len(recs) == 5
    real = recs["original_videos/643049/643049_A_001"]
    assert (real.label, real.method, real.split) == ("real", "original_videos", "train")
    assert real.identity_ids == ["dfdcp:643049"] and real.group_id == "dfdcp:643049"
    fa = recs["method_A/643049/643049_A/1255229_643049_A_001"]
    assert (fa.label, fa.method) == ("fake", "method_A")
    assert canonical_method("dfdcp", "method_A", "fake") == "dfdcp_method_a"
    assert method_family("dfdcp_method_a") == "faceswap_unspecified"
    assert fa.identity_ids == ["dfdcp:643049", "dfdcp:1255229"] and fa.group_id == "dfdcp:643049"
    assert fa.pair_video_id == real.video_id and fa.extra["context"] == "A"
    fb = recs["method_B/1260311/1260311_C/1255229_1260311_C_001"]
    assert fb.split == "test" and fb.perturbation == "blur+noise" and fb.pair_video_id is None


def test_dfdcp_disagreement_missing_ignored(dfdcp):
    a, recs = recs_of("dfdcp", dfdcp)
    assert recs["method_B/1260311/1260311_C/1255229_1260311_C_002"].label == "fake"  # folder wins
    assert a.label_disagreements == 1
    assert recs["method_A/999/999_A/1_999_A_001"].missing and a.missing_count == 1
    assert a.ignored_files == 1  # extra.mp4 (README.txt at the root is not walked)


def test_dfdcp_layout_error(tmp_path):
    root = tmp_path / "dfdc_preview_set"
    touch(root, "method_A/1/1_A/x.mp4")
    with pytest.raises(LayoutError, match=r"dfdcp: no dataset.json under .*method folders are there.*"
                                          r"\(found: method_A/\)"):
        list(create_adapter("dfdcp", root).videos())
