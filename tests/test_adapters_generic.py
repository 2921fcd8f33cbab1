"""The generic `folder` and `csv` adapters, on small trees built here."""

from __future__ import annotations


import pytest

from dfkit.errors import DfkitError, LayoutError
from dfkit.ingest.base import create_adapter
from dfkit.taxonomy import canonical_method
from tests.conftest import touch


def recs_of(name, root, **opts):
    a = create_adapter(name, root, **opts)
    return a, {r.video_id: r for r in a.videos()}


# -- folder ---------------------------------------------------------------------------------------------------
def test_folder_default_levels(tmp_path):
    root = tmp_path / "mydata"
    touch(root, "real/a.mp4", "real/youtube/b.mp4", "fake/FSGAN/c.mp4", "fake/FSGAN/sub/d.avi", "fake/e.mp4",
          "Fake/Deepfakes/f.png", "fake/FSGAN/notes.txt", "misc/x.mp4", "README.md")
    a, recs = recs_of("folder", root)
    assert (recs["real/a"].label, recs["real/a"].method) == ("real", "real")
    assert recs["real/youtube/b"].method == "youtube" and recs["real/youtube/b"].label == "real"
    assert (recs["fake/FSGAN/c"].label, recs["fake/FSGAN/c"].method) == ("fake", "FSGAN")
    assert recs["fake/FSGAN/sub/d"].method == "FSGAN"
    assert recs["fake/e"].method == "unknown"
    assert recs["Fake/Deepfakes/f"].kind == "image"
    assert canonical_method("folder", "Deepfakes", "fake") == "deepfakes"  # user names fall back to lower-case
    assert canonical_method("folder", "unknown", "fake") == "unknown"
    assert {r.split for r in recs.values()} == {None} and all(r.dataset == "folder" for r in recs.values())
    assert a.ignored_files == 3 and a.unrecognized_folders == ["misc"]


def test_folder_levels_split_frames_dataset(tmp_path):
    root = tmp_path / "d"
    touch(root, "train/fake/simswap/p01/v1/0.png", "train/fake/simswap/p01/v1/1.png",
          "test/original/none/p02/v2/0.png", "holdout/fake/x/p/v/0.png")
    a, recs = recs_of("folder", root, levels="split/label/method/identity", kind="frames",
                      real_names="original", dataset="mine")
    r = recs["train/fake/simswap/p01/v1"]
    assert (r.kind, r.split, r.method, r.dataset) == ("frames", "train", "simswap", "mine")
    assert r.identity_ids == ["mine:p01"] and r.group_id == "mine:p01"
    assert recs["test/original/none/p02/v2"].label == "real"
    assert a.unrecognized_folders == ["holdout"] and len(recs) == 2


def test_folder_errors(tmp_path):
    root = tmp_path / "d"
    touch(root, "yes/a.mp4", "no/b.mp4")
    with pytest.raises(LayoutError, match=r"folder: no <label>/<method> folders under .*\(found: no/, yes/\); "
                                          r"label folders are named"):
        list(create_adapter("folder", root).videos())
    _, recs = recs_of("folder", root, real_names="no", fake_names="yes")
    assert recs["yes/a"].label == "fake"
    with pytest.raises(DfkitError, match="levels must name label"):
        create_adapter("folder", root, levels="method/split")
    with pytest.raises(DfkitError, match="kind must be one of"):
        create_adapter("folder", root, kind="audio")
    touch(root, "real/notes.txt")
    with pytest.raises(LayoutError, match="hold no video or image files"):
        list(create_adapter("folder", root, real_names="real", fake_names="fake").videos())


# -- csv ------------------------------------------------------------------------------------------------------
@pytest.fixture()
def csvtree(tmp_path):
    root = tmp_path / "own"
    touch(root, "vids/r1.mp4", "vids/f1.mp4", "imgs/f2.jpg", "seqs/s1/0001.png")
    (root / "labels.csv").write_text(
        "path,label,method,split,identity,pair\n"
        "vids/r1.mp4,REAL,,train,p1,\n"
        "vids/f1.mp4,FAKE,SimSwap,train,p1;p2,vids/r1.mp4\n"
        "imgs/f2.jpg,1,StyleGAN2,validation,,\n"
        "seqs/s1,0,,test,p3,\n"
        "vids/gone.mp4,1,SimSwap,test,,\n"
        "vids/f1.mp4,FAKE,SimSwap,train,p1;p2,vids/r1.mp4\n")
    return root


def test_csv_columns_labels_kinds(csvtree):
    a, recs = recs_of("csv", csvtree)
    assert len(recs) == 5 and a.duplicate_rows == 1
    r1 = recs["vids/r1"]
    assert (r1.label, r1.method, r1.split, r1.kind) == ("real", "real", "train", "video")
    assert r1.identity_ids == ["csv:p1"] and r1.group_id == "csv:p1"
    f1 = recs["vids/f1"]
    assert (f1.label, f1.method) == ("fake", "SimSwap") and f1.identity_ids == ["csv:p1", "csv:p2"]
    assert f1.pair_video_id == "vids/r1"
    assert canonical_method("csv", "SimSwap", "fake") == "simswap"
    assert recs["imgs/f2"].kind == "image" and recs["imgs/f2"].split == "val"
    assert recs["seqs/s1"].kind == "frames" and recs["seqs/s1"].label == "real"
    assert recs["vids/gone"].missing and a.missing_count == 1


def test_csv_custom_columns(tmp_path):
    root = tmp_path / "own"
    touch(root, "a.mp4", "b.mp4")
    (root / "meta.tsv").write_text("clip\tis_fake\tgen\tperson\na.mp4\tno\t\tx\nb.mp4\tyes\tdf\ty\n")
    a, recs = recs_of("csv", root, file="meta.tsv", path_col="clip", label_col="is_fake", method_col="gen",
                      identity_col="person", real_values="no", fake_values="yes", split="test", dataset="mine")
    assert recs["a"].label == "real" and recs["b"].method == "df" and recs["b"].identity_ids == ["mine:y"]
    assert {r.split for r in recs.values()} == {"test"} and recs["a"].dataset == "mine"


def test_csv_errors(tmp_path, csvtree):
    with pytest.raises(LayoutError, match=r"csv: no \*.csv file"):
        list(create_adapter("csv", tmp_path / "own" / "vids").videos())
    (csvtree / "other.csv").write_text("x\n")
    with pytest.raises(LayoutError, match=r"csv: 2 \*.csv files .*--opt file=NAME.csv"):
        list(create_adapter("csv", csvtree).videos())
    with pytest.raises(LayoutError, match=r"other.csv has no column 'path' \(columns: x\); name it with --opt path_col"):
        list(create_adapter("csv", csvtree, file="other.csv").videos())
    (csvtree / "other.csv").write_text("path,label\na.mp4,maybe\n")
    with pytest.raises(DfkitError, match=r"label value\(s\) 'maybe' \(line 2\) are neither real"):
        list(create_adapter("csv", csvtree, file="other.csv").videos())
    with pytest.raises(LayoutError, match="has no column 'grp'"):
        list(create_adapter("csv", csvtree, file="labels.csv", group_col="grp").videos())
