"""df40 adapter on small DF40 trees built here (pre-cropped frames)."""

from __future__ import annotations


import pytest

from dfkit.errors import DfkitError, LayoutError
from dfkit.ingest.base import create_adapter
from dfkit.taxonomy import canonical_method, dataset_methods, method_family
from tests.conftest import touch


def recs_of(root, **opts):
    a = create_adapter("df40", root, **opts)
    return a, {r.video_id: r for r in a.videos()}


@pytest.fixture()
def tree(tmp_path):
    root = tmp_path / "DF40"
    touch(root,
          "simswap/ff/frames/000_003/000.png", "simswap/ff/frames/000_003/001.png",
          "simswap/cdf/frames/id0_id16_0000/000.png",
          "PixArt/ff/000_003.png", "PixArt/ff/001_870.png",
          "heygen/fake/clip1/000.png", "heygen/fake/clip1/001.png", "heygen/real/clip9/000.png",
          "MidJourney/fake/mj_0001.png", "MidJourney/real/ffhq_0001.png",
          "simswap/ff/frames/000_003/landmarks.npy", "simswap/readme.txt", "notes.txt", "unrelated/x.png")
    return root


def test_frames_images_methods(tree):
    a, recs = recs_of(tree)
    seq = recs["simswap/ff/frames/000_003"]
    assert (seq.kind, seq.label, seq.method, seq.split) == ("frames", "fake", "simswap", "test")
    assert seq.extra == {"precropped": True, "method_folder": "simswap", "domain": "ff"}
    assert seq.identity_ids == ["ffpp:000", "ffpp:003"] and seq.group_id == "ffpp:000"
    cdf = recs["simswap/cdf/frames/id0_id16_0000"]
    assert cdf.extra["domain"] == "cdf" and cdf.identity_ids == ["celebdf:id0", "celebdf:id16"]
    img = recs["PixArt/ff/000_003"]
    assert img.kind == "image" and img.method == "PixArt" and img.extra["precropped"]
    assert recs["heygen/fake/clip1"].kind == "frames" and recs["heygen/real/clip9"].label == "real"
    assert recs["heygen/real/clip9"].method == "real"
    mj = recs["MidJourney/fake/mj_0001"]
    assert mj.kind == "image" and mj.method == "MidJourney" and "domain" not in mj.extra
    assert recs["MidJourney/real/ffhq_0001"].label == "real"
    assert len(recs) == 8
    assert a.ignored_files == 4  # landmarks.npy, simswap/readme.txt, notes.txt, unrelated/


def test_canonical_mapping_covers_forty():
    methods = [m for m in dataset_methods("df40") if m != "real"]
    assert len(methods) >= 40
    assert canonical_method("df40", "inswap", "fake") == "inswapper"
    assert canonical_method("df40", "danet", "fake") == "dagan"
    assert method_family(canonical_method("df40", "StyleGAN2", "fake")) == "synthesis"
    assert method_family(canonical_method("df40", "styleclip", "fake")) == "editing"
    assert method_family(canonical_method("df40", "wav2lip", "fake")) == "lipsync"
    assert all(method_family(canonical_method("df40", m, "fake")) != "unknown" for m in methods)


def test_case_insensitive_method_names_and_aliases(tmp_path):
    root = tmp_path / "DF40_train"
    touch(root, "pixart/ff/a.png", "Collaborative_Diffusion/fake/b.png", "brandnew/ff/c/0.png",
          "simswap/ffpp/frames/001_870/000.png")
    a, recs = recs_of(root)
    assert recs["pixart/ff/a"].method == "PixArt"
    assert recs["Collaborative_Diffusion/fake/b"].method == "CollabDiff"
    assert recs["brandnew/ff/c"].method == "brandnew"
    assert recs["simswap/ffpp/frames/001_870"].extra["domain"] == "ff"
    assert {r.split for r in recs.values()} == {"train"}  # DF40_train


def test_options(tree):
    _, recs = recs_of(tree, images_as="image", split="none")
    assert recs["simswap/ff/frames/000_003/000"].kind == "image"
    assert {r.split for r in recs.values()} == {None}
    _, recs = recs_of(tree, images_as="frames")
    assert recs["PixArt/ff"].kind == "frames"
    with pytest.raises(DfkitError, match="images_as"):
        create_adapter("df40", tree, images_as="both")


def test_layout_errors(tmp_path):
    root = tmp_path / "DF40"
    touch(root, "simswap/frames/x/0.png", "other.zip")
    with pytest.raises(LayoutError, match=r"df40: no <method>/ff/, <method>/cdf/.*\(found: other.zip, simswap/\)"):
        list(create_adapter("df40", root).videos())
    (root / "simswap" / "ff").mkdir()
    with pytest.raises(LayoutError, match="hold no image files"):
        list(create_adapter("df40", root).videos())
