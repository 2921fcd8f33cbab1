"""celebdf adapter on small Celeb-DF trees built here (names exactly as the dataset spells them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dfkit.errors import DfkitError, LayoutError
from dfkit.ingest.base import create_adapter
from dfkit.taxonomy import canonical_method, method_family
from tests.conftest import touch


def write_list(root: Path, lines: list[str], name: str = "List_of_testing_videos.txt") -> None:
    (root / name).write_text("\n".join(lines))  # like the real file: no trailing newline


FILES = [
    "Celeb-real/id0_0000.mp4", "Celeb-real/id1_0007.mp4", "Celeb-real/id2_0003.mp4",
    "YouTube-real/00170.mp4", "YouTube-real/00208.mp4",
    "Celeb-synthesis/id1_id0_0007.mp4", "Celeb-synthesis/id1_id3_0007.mp4", "Celeb-synthesis/id0_id2_0000.mp4",
]
LIST = [
    "1 YouTube-real/00170.mp4",
    "1 Celeb-real/id1_0007.mp4",
    "0 Celeb-synthesis/id1_id0_0007.mp4",
    "0 Celeb-synthesis/id1_id3_0007.mp4",
]


def records(root, **opts):
    a = create_adapter("celebdf", root, **opts)
    return a, {r.video_id: r for r in a.videos()}


@pytest.fixture()
def tree(tmp_path):
    root = tmp_path / "Celeb-DF-v2"
    touch(root, *FILES)
    write_list(root, LIST)
    return root


def test_labels_methods_canonical(tree):
    a, recs = records(tree)
    assert len(recs) == 8 and a.version == "v2"
    assert recs["v2/Celeb-real/id0_0000"].label == "real"
    assert recs["v2/YouTube-real/00208"].method == "YouTube-real"
    fake = recs["v2/Celeb-synthesis/id0_id2_0000"]
    assert fake.label == "fake" and fake.method == "Celeb-synthesis"
    assert canonical_method("celebdf", fake.method, fake.label) == "celebdf_synthesis"
    assert method_family("celebdf_synthesis") == "faceswap_autoencoder"
    assert canonical_method("celebdf", "YouTube-real", "real") == "real"


def test_inverted_list_labels_give_test_split(tree):
    a, recs = records(tree)
    # 1 = real, 0 = fake: the list agrees with the folders here
    assert recs["v2/YouTube-real/00170"].extra["list_label"] == "real"
    assert recs["v2/Celeb-synthesis/id1_id0_0007"].extra["list_label"] == "fake"
    assert a.label_disagreements == 0
    splits = {vid: r.split for vid, r in recs.items()}
    assert {v for v, s in splits.items() if s == "test"} == {
        "v2/YouTube-real/00170", "v2/Celeb-real/id1_0007", "v2/Celeb-synthesis/id1_id0_0007",
        "v2/Celeb-synthesis/id1_id3_0007"}
    assert splits["v2/Celeb-real/id0_0000"] == "train" and splits["v2/Celeb-synthesis/id0_id2_0000"] == "train"
    assert "list_label" not in recs["v2/Celeb-real/id0_0000"].extra


def test_list_disagreeing_with_folder_is_counted_and_folder_wins(tmp_path):
    root = tmp_path / "cdf"
    touch(root, "Celeb-real/id1_0007.mp4", "Celeb-synthesis/id1_id0_0007.mp4")
    # a "usual convention" list (1 = fake) by mistake: both lines disagree with the folders
    write_list(root, ["0 Celeb-real/id1_0007.mp4", "1 Celeb-synthesis/id1_id0_0007.mp4"])
    a, recs = records(root)
    assert a.label_disagreements == 2
    assert recs["v2/Celeb-real/id1_0007"].label == "real"
    assert recs["v2/Celeb-real/id1_0007"].extra["list_label"] == "fake"
    assert recs["v2/Celeb-synthesis/id1_id0_0007"].label == "fake"


def test_identities_and_pairing(tree):
    _, recs = records(tree)
    fake = recs["v2/Celeb-synthesis/id1_id3_0007"]
    assert fake.identity_ids == ["celebdf:id1", "celebdf:id3"]
    assert fake.group_id == "celebdf:id1"
    assert fake.target_video_id == "id1_0007"
    assert fake.pair_video_id == "v2/Celeb-real/id1_0007" and fake.pair_video_id in recs
    real = recs["v2/Celeb-real/id2_0003"]
    assert real.identity_ids == ["celebdf:id2"] and real.group_id == "celebdf:id2" and real.pair_video_id is None
    yt = recs["v2/YouTube-real/00170"]
    assert yt.identity_ids == [] and yt.group_id == "celebdf:youtube:00170"


def test_videos_level_and_ignored_files(tmp_path):
    root = tmp_path / "Celeb-DF-v2"
    touch(root, *[f.replace("/", "/videos/", 1) for f in FILES])
    write_list(root, LIST)
    touch(root, "Celeb-real/videos/notes.txt", "Celeb-real/videos/.DS_Store", "README.md")
    (root / "Celeb-synthesis" / "frames").mkdir()
    a, recs = records(root)
    assert len(recs) == 8
    assert recs["v2/Celeb-real/id1_0007"].rel_path == "Celeb-real/videos/id1_0007.mp4"
    assert a.ignored_files == 4  # notes.txt, .DS_Store, README.md, Celeb-synthesis/frames


def test_listed_but_absent_videos_are_missing(tmp_path):
    root = tmp_path / "Celeb-DF-v2"
    touch(root, "Celeb-real/id1_0007.mp4")
    write_list(root, ["1 Celeb-real/id1_0007.mp4", "0 Celeb-synthesis/id1_id0_0007.mp4"])
    a, recs = records(root)
    miss = recs["v2/Celeb-synthesis/id1_id0_0007"]
    assert miss.missing and miss.label == "fake" and miss.split == "test"
    assert miss.rel_path == "Celeb-synthesis/id1_id0_0007.mp4"
    assert a.missing_count == 1
    a, recs = records(root, report_missing="no")
    assert list(recs) == ["v2/Celeb-real/id1_0007"] and a.missing_count == 1


def test_shipped_list_is_the_fallback_v2(tmp_path):
    root = tmp_path / "Celeb-DF-v2"
    touch(root, "Celeb-real/id1_0007.mp4", "Celeb-real/id0_0000.mp4", "Celeb-synthesis/id1_id0_0007.mp4")
    a, recs = records(root, report_missing="no")
    assert a.test_list_used.endswith("manifests/celebdf/List_of_testing_videos.txt")
    assert recs["v2/Celeb-real/id1_0007"].split == "test"
    assert recs["v2/Celeb-synthesis/id1_id0_0007"].split == "test"
    assert recs["v2/Celeb-real/id0_0000"].split == "train"
    a, recs = records(root)  # dfkit's shipped list: absent entries are counted, not recorded as missing
    assert a.missing_count == 516 and not any(r.missing for r in recs.values())
    a, recs = records(root, report_missing="yes")  # asked for: the 518-line list minus the 2 present
    assert a.missing_count == 516 and sum(r.missing for r in recs.values()) == 516


def test_version_v1_uses_the_v1_list(tmp_path):
    root = tmp_path / "Celeb-DF"
    touch(root, "YouTube-real/00170.mp4", "Celeb-synthesis/id1_id0_0007.mp4", "Celeb-real/id9_0001.mp4")
    a, recs = records(root, version="v1", report_missing="no")
    assert a.version == "v1" and a.test_list_used.endswith("List_of_testing_videos_v1.txt")
    assert recs["v1/YouTube-real/00170"].split == "test"
    assert recs["v1/Celeb-synthesis/id1_id0_0007"].split == "test"
    assert recs["v1/Celeb-real/id9_0001"].split == "train"
    # auto-detection from a root list of 100 lines
    lines = (Path(a.test_list_used)).read_text().splitlines()
    write_list(root, lines)
    a, _ = records(root, report_missing="no")
    assert a.version == "v1"


def test_test_list_option(tmp_path, tree):
    other = tmp_path / "mylist.txt"
    other.write_text("1 Celeb-real/id0_0000.mp4\n")
    _, recs = records(tree, test_list=str(other))
    assert recs["v2/Celeb-real/id0_0000"].split == "test"
    assert recs["v2/Celeb-real/id1_0007"].split == "train"


def test_layout_errors(tmp_path):
    root = tmp_path / "wrong"
    touch(root, "real/a.mp4", "fake/b.mp4")
    with pytest.raises(LayoutError, match=r"celebdf: no Celeb-real/, YouTube-real/ or Celeb-synthesis/ under .*"
                                          r"\(found: fake/, real/\)"):
        list(create_adapter("celebdf", root).videos())
    touch(tmp_path, "dl/Celeb-DF-v2/Celeb-real/id0_0000.mp4")
    with pytest.raises(LayoutError, match=r"did you mean .*dl/Celeb-DF-v2\?"):
        list(create_adapter("celebdf", tmp_path / "dl").videos())
    empty = tmp_path / "empty"
    (empty / "Celeb-real").mkdir(parents=True)
    with pytest.raises(LayoutError, match="no videos in Celeb-real/"):
        list(create_adapter("celebdf", empty).videos())
    bad = tmp_path / "badlist"
    touch(bad, "Celeb-real/id1_0007.mp4")
    write_list(bad, ["Celeb-real/id1_0007.mp4 1"])
    with pytest.raises(LayoutError, match=r"expected '<1\|0> <folder>/<file>.mp4'"):
        list(create_adapter("celebdf", bad).videos())
    with pytest.raises(DfkitError, match="unknown version"):
        create_adapter("celebdf", bad, version="v3")
    with pytest.raises(DfkitError, match="does not exist"):
        list(create_adapter("celebdf", tmp_path / "nope").videos())
