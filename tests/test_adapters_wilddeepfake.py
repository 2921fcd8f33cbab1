"""wilddeepfake adapter on small deepfake_in_the_wild trees built here (folder names with spaces)."""

from __future__ import annotations


import pytest

from dfkit.errors import LayoutError
from dfkit.ingest.base import create_adapter
from dfkit.taxonomy import canonical_method
from tests.conftest import touch


def recs_of(root, **opts):
    a = create_adapter("wilddeepfake", root, **opts)
    return a, {r.video_id: r for r in a.videos()}


def test_extracted_sequences(tmp_path):
    root = tmp_path / "deepfake_in_the_wild"
    touch(root, "real train/1/real/0/12.png", "real train/1/real/0/13.png", "real train/1/real/1/40.png",
          "fake train/7/fake/3/100.png", "fake test/9/fake/0/5.png", "real test/2/real/0/1.png",
          "fake train/7.tar.gz", "fake train/7/fake/3/Thumbs.db", "README.md")
    a, recs = recs_of(root)
    assert set(recs) == {"real train/1/real/0", "real train/1/real/1", "fake train/7/fake/3",
                         "fake test/9/fake/0", "real test/2/real/0"}
    r = recs["real train/1/real/0"]
    assert (r.label, r.method, r.split, r.kind) == ("real", "real", "train", "frames")
    assert r.group_id == "wilddeepfake:real train/1" == recs["real train/1/real/1"].group_id
    assert r.extra["n_images"] == 2 and r.path == root / "real train/1/real/0"
    f = recs["fake test/9/fake/0"]
    assert (f.label, f.method, f.split) == ("fake", "unknown", "test")
    assert canonical_method("wilddeepfake", "unknown", "fake") == "unknown"
    assert a.archives == 1 and a.ignored_files == 3  # the tar, Thumbs.db, README.md


def test_other_spellings(tmp_path):
    root = tmp_path / "wdf"
    touch(root, "fake_train/1/0/1.png", "train/real/1/0/1.png")
    _, recs = recs_of(root)
    assert recs["fake_train/1/0"].label == "fake" and recs["train/real/1/0"].split == "train"


def test_only_archives_says_extract(tmp_path):
    root = tmp_path / "deepfake_in_the_wild"
    touch(root, "real train/1.tar.gz", "real train/2.tar.gz", "fake test/1.tar.gz")
    with pytest.raises(LayoutError, match=r"3 .tar/.tar.gz archive\(s\) but no extracted face-sequence folders;"
                                          r" dfkit does not read archives: extract them"):
        list(create_adapter("wilddeepfake", root).videos())


def test_layout_error(tmp_path):
    root = tmp_path / "x"
    touch(root, "videos/a.mp4")
    with pytest.raises(LayoutError, match=r"wilddeepfake: no 'real train', 'real test', 'fake train' or 'fake test'"
                                          r" folder under .*\(found: videos/\)"):
        list(create_adapter("wilddeepfake", root).videos())
