"""forgerynet adapter on small image/video lists built here."""

from __future__ import annotations


import pytest

from dfkit.errors import LayoutError
from dfkit.ingest.adapters.forgerynet import class_names, parse_line
from dfkit.ingest.base import create_adapter
from dfkit.taxonomy import canonical_method, method_family
from tests.conftest import touch


def recs_of(root, **opts):
    a = create_adapter("forgerynet", root, **opts)
    return a, {r.video_id: r for r in a.videos()}


def test_fifteen_methods_and_canonical_names():
    names = class_names()
    assert len(names) == 16 and names[0] == "Real" and names[3] == "DeepFakes" and names[15] == "DiscoFaceGAN"
    assert canonical_method("forgerynet", "DeepFakes", "fake") == "deepfakes"
    assert canonical_method("forgerynet", "FS-GAN", "fake") == "fsgan"
    assert canonical_method("forgerynet", "First Order Motion", "fake") == "fomm"
    assert method_family(canonical_method("forgerynet", "StarGAN2", "fake")) == "editing"
    assert method_family(canonical_method("forgerynet", "DeepFakes-StarGAN-Stack", "fake")) == "stacked"
    assert all(method_family(canonical_method("forgerynet", n, "fake")) != "unknown" for n in names.values()
               if n != "Real")


def test_parse_line_formats():
    assert parse_line("train_release/1/a/b.jpg 1 1 3\n") == {
        "kind": "image", "name": "train_release/1/a/b.jpg", "binary": 1, "triple": 1, "cls": 3, "segments": None}
    v = parse_line("2 train_video_release/7/x.mp4 0 40 real 40 60 fake 1 2 10")
    assert v["kind"] == "video" and v["cls"] == 10 and v["binary"] == 1
    assert v["segments"] == [{"start": 0, "count": 40, "label": "real"}, {"start": 40, "count": 60, "label": "fake"}]
    assert parse_line("   ") is None
    with pytest.raises(ValueError):
        parse_line("a.jpg 1 x")


@pytest.fixture()
def tree(tmp_path):
    root = tmp_path / "ForgeryNet"
    touch(root, "Training/image/train_release/1/a/0.jpg", "Training/image/train_release/3/b/0.jpg",
          "Training/image/train_release/5/d/0.jpg",
          "Training/video/train_video_release/7/x.mp4", "Validation/video/val_video_release/0/y.mp4")
    (root / "Training" / "image").mkdir(parents=True, exist_ok=True)
    (root / "Training" / "image" / "image_list.txt").write_text(
        "train_release/1/a/0.jpg 0 0 0\n"
        "train_release/3/b/0.jpg 1 1 3\n"
        "train_release/9/c/0.jpg 1 2 13\n"      # absent file
        "train_release/5/d/0.jpg 1 1 0\n")      # binary fake, 16-class real: disagreement
    (root / "Training" / "video").mkdir(parents=True, exist_ok=True)
    (root / "Training" / "video" / "video_list.txt").write_text(
        "1 train_video_release/7/x.mp4 0 100 fake 1 2 10\n")
    (root / "Validation" / "video" / "video_list.txt").write_text("1 val_video_release/0/y.mp4 0 80 real 0 0 0\n")
    return root


def test_lists_labels_methods_splits(tree):
    a, recs = recs_of(tree)
    assert len(recs) == 6 and len(a.lists_used) == 3
    real = recs["train/train_release/1/a/0"]
    assert (real.label, real.method, real.split, real.kind) == ("real", "Real", "train", "image")
    df = recs["train/train_release/3/b/0"]
    assert (df.label, df.method) == ("fake", "DeepFakes") and df.extra["triple"] == "identity_replaced"
    assert recs["train/train_release/9/c/0"].missing and recs["train/train_release/9/c/0"].method == "StarGAN2"
    assert a.missing_count == 1
    odd = recs["train/train_release/5/d/0"]
    assert odd.label == "fake" and odd.method == "unknown" and a.label_disagreements == 1
    vid = recs["train-video_list/train_video_release/7/x"]
    assert (vid.kind, vid.method, vid.split) == ("video", "First Order Motion", "train")
    assert vid.extra["segments"] == [{"start": 0, "count": 100, "label": "fake"}]
    assert recs["val/val_video_release/0/y"].split == "val"


def test_list_and_split_options(tree):
    a, recs = recs_of(tree, list="Validation/video/video_list.txt", split="test")
    assert list(recs) == ["test/val_video_release/0/y"] and recs["test/val_video_release/0/y"].split == "test"


def test_media_root_option_and_unresolvable_names(tree, tmp_path):
    lst = tmp_path / "lists" / "val_image_list.txt"
    lst.parent.mkdir()
    lst.write_text("train_release/1/a/0.jpg 0 0 0\n")
    with pytest.raises(LayoutError, match="none of the first 1 names in val_image_list.txt"):
        list(create_adapter("forgerynet", tmp_path / "lists").videos())
    _, recs = recs_of(tmp_path / "lists", media_root=str(tree / "Training" / "image"))
    assert not recs["val/train_release/1/a/0"].missing


def test_layout_errors(tmp_path):
    root = tmp_path / "fn"
    touch(root, "Training.tar")
    with pytest.raises(LayoutError, match=r"forgerynet: no \*list\*.txt under .*\(found: Training.tar\)"):
        list(create_adapter("forgerynet", root).videos())
    (root / "image_list.txt").write_text("a.jpg 1\n")
    (recs,) = list(create_adapter("forgerynet", root).videos())
    assert "image_list.txt:1: neither" in recs.problem  # recorded in the errors table, not fatal
