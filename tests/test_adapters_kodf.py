"""kodf adapter on a small KoDF tree with the Korean metadata CSVs built here."""

from __future__ import annotations

import unicodedata

import pytest

from dfkit.errors import DfkitError, LayoutError
from dfkit.ingest.base import create_adapter
from dfkit.taxonomy import canonical_method, method_family
from tests.conftest import touch


def recs_of(root, **opts):
    a = create_adapter("kodf", root, **opts)
    return a, {r.video_id: r for r in a.videos()}


@pytest.fixture()
def tree(tmp_path):
    root = tmp_path / "KoDF"
    touch(root, "원본영상/01/200715_23d3dsdfsdf34_1.mp4", "원본영상/02/200801_aaaa_2.mp4",
          "변조영상/dfl/200715_23d3dsdfsdf34_1_dfl_0001.mp4", "변조영상/fo/x_fo.mp4",
          "변조영상/audio/ad_1.mp4", "extra/unlisted.mp4", "readme.pdf")
    (root / "원본영상_training_메타데이터.csv").write_text(
        "영상ID,참가자ID,감정\n200715_23d3dsdfsdf34_1.mp4,P001,neutral\n", encoding="utf-8-sig")
    (root / "원본영상_validation_메타데이터.csv").write_text(
        "영상ID,참가자ID\n200801_aaaa_2.mp4,P002\n", encoding="cp949")
    (root / "변조영상_training_메타데이터.csv").write_text(
        "영상ID,타겟영상,변조모델,참가자ID\n"
        "200715_23d3dsdfsdf34_1_dfl_0001.mp4,200715_23d3dsdfsdf34_1.mp4,dfl,P001\n"
        "x_fo,200715_23d3dsdfsdf34_1,fo,P001\n"
        "gone.mp4,200715_23d3dsdfsdf34_1.mp4,fsgan,P001\n", encoding="utf-8")
    (root / "변조영상_validation_메타데이터.csv").write_text(
        "영상ID,타겟영상,변조모델,참가자ID\nad_1.mp4,200801_aaaa_2.mp4,audio-driven,P002\n", encoding="utf-8")
    return root


def test_labels_methods_splits_groups(tree):
    a, recs = recs_of(tree)
    assert len(recs) == 6 and len(a.csvs_used) == 4
    real = recs["200715_23d3dsdfsdf34_1"]
    assert (real.label, real.method, real.split) == ("real", "original", "train")
    assert real.group_id == "kodf:200715_23d3dsdfsdf34_1" and not real.missing
    dfl = recs["200715_23d3dsdfsdf34_1_dfl_0001"]
    assert (dfl.label, dfl.method, dfl.split) == ("fake", "dfl", "train")
    assert dfl.target_video_id == "200715_23d3dsdfsdf34_1" and dfl.group_id == real.group_id
    assert dfl.pair_video_id is None and dfl.rel_path == "변조영상/dfl/200715_23d3dsdfsdf34_1_dfl_0001.mp4"
    assert recs["x_fo"].method == "fo" and canonical_method("kodf", "fo", "fake") == "fomm"
    assert canonical_method("kodf", "dfl", "fake") == "deepfacelab"
    assert method_family(canonical_method("kodf", "audio-driven", "fake")) == "lipsync"
    ad = recs["ad_1"]
    assert ad.split == "val" and ad.method == "audio-driven" and recs["200801_aaaa_2"].split == "val"
    assert recs["gone"].missing and a.missing_count == 1
    assert a.ignored_files == 2  # extra/unlisted.mp4, readme.pdf


def test_identity_col_and_pair(tree):
    _, recs = recs_of(tree, identity_col="참가자ID", pair="yes")
    assert recs["x_fo"].identity_ids == ["kodf:P001"] and recs["200801_aaaa_2"].identity_ids == ["kodf:P002"]
    assert recs["x_fo"].pair_video_id == "200715_23d3dsdfsdf34_1"
    with pytest.raises(DfkitError, match="identity_col 'person' is not a column"):
        list(create_adapter("kodf", tree, identity_col="person").videos())


def test_decomposed_korean_file_names(tmp_path):
    root = tmp_path / "KoDF"
    touch(root, "a.mp4")
    nfd = unicodedata.normalize("NFD", "원본영상_training_메타데이터.csv")
    (root / nfd).write_text("영상ID\na.mp4\n", encoding="utf-8")
    _, recs = recs_of(root)
    assert recs["a"].label == "real"


def test_layout_errors(tmp_path):
    root = tmp_path / "KoDF"
    touch(root, "train_metadata.csv", "videos/a.mp4")
    with pytest.raises(LayoutError, match=r"kodf: no 원본영상_\*_메타데이터.csv .*\(found: train_metadata.csv, videos/\)"):
        list(create_adapter("kodf", root).videos())
    (root / "변조영상_training_메타데이터.csv").write_text("vid,ori_vid\na,b\n", encoding="utf-8")
    with pytest.raises(LayoutError, match="expected column\\(s\\) 영상ID, 타겟영상, 변조모델"):
        list(create_adapter("kodf", root).videos())
