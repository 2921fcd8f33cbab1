"""fakeavceleb adapter on a small FakeAVCeleb_v1.2 tree with a shifted-header meta_data.csv built here."""

from __future__ import annotations


import pytest

from dfkit.errors import LayoutError
from dfkit.ingest.base import create_adapter
from dfkit.taxonomy import canonical_method, method_family
from tests.conftest import touch


HEADER = "source,target1,target2,method,category,type,race,gender,path,"
ROWS = [
    "id00076,-,-,real,A,RealVideo-RealAudio,African,men,00109.mp4,FakeAVCeleb/RealVideo-RealAudio/African/men/id00076",
    "id00076,-,-,rtvc,B,RealVideo-FakeAudio,African,men,00109_fake.mp4,FakeAVCeleb/RealVideo-FakeAudio/African/men/id00076",
    "id00076,id00166,-,faceswap,C,FakeVideo-RealAudio,African,men,00109_2_id00166_faceswap.mp4,FakeAVCeleb/FakeVideo-RealAudio/African/men/id00076",
    "id00076,id00166,-,fsgan-wav2lip,D,FakeVideo-FakeAudio,African,men,00109_2_id00166_wavtolip.mp4,FakeAVCeleb/FakeVideo-FakeAudio/African/men/id00076",
    # the same file again with another method (a known quirk of the file) and once more identical
    "id00076,id00166,-,wav2lip,D,FakeVideo-FakeAudio,African,men,00109_2_id00166_wavtolip.mp4,FakeAVCeleb/FakeVideo-FakeAudio/African/men/id00076",
    "id00076,id00166,-,fsgan-wav2lip,D,FakeVideo-FakeAudio,African,men,00109_2_id00166_wavtolip.mp4,FakeAVCeleb/FakeVideo-FakeAudio/African/men/id00076",
    # listed, absent on disk
    "id01000,-,-,real,A,RealVideo-RealAudio,Asian (East),women,00001.mp4,FakeAVCeleb/RealVideo-RealAudio/Asian (East)/women/id01000",
]


@pytest.fixture()
def tree(tmp_path):
    root = tmp_path / "FakeAVCeleb_v1.2"
    for row in ROWS[:4]:
        vals = row.split(",")
        touch(root, vals[9].split("/", 1)[1] + "/" + vals[8])
    touch(root, "RealVideo-RealAudio/African/men/id00076/00110.mp4", "README.txt")
    (root / "meta_data.csv").write_text("\n".join([HEADER] + ROWS) + "\n")
    return root


def recs_of(root, **opts):
    a = create_adapter("fakeavceleb", root, **opts)
    return a, {r.video_id: r for r in a.videos()}


def test_read_by_position_labels_methods(tree):
    a, recs = recs_of(tree)
    assert len(recs) == 5
    real = recs["RealVideo-RealAudio/African/men/id00076/00109"]
    assert (real.label, real.method, real.split) == ("real", "real", None)
    assert real.rel_path == "RealVideo-RealAudio/African/men/id00076/00109.mp4" and not real.missing
    assert real.extra["race"] == "African" and real.extra["gender"] == "men" and real.extra["category"] == "A"
    rtvc = recs["RealVideo-FakeAudio/African/men/id00076/00109_fake"]
    assert (rtvc.label, rtvc.method) == ("real", "rtvc") and rtvc.extra["audio_label"] == "fake"
    assert canonical_method("fakeavceleb", "rtvc", "real") == "real"
    fs = recs["FakeVideo-RealAudio/African/men/id00076/00109_2_id00166_faceswap"]
    assert (fs.label, fs.method) == ("fake", "faceswap") and fs.extra["audio_label"] == "real"
    assert canonical_method("fakeavceleb", "faceswap", "fake") == "fakeavceleb_faceswap"
    assert fs.identity_ids == ["voxceleb2:id00076", "voxceleb2:id00166"] and fs.group_id == "voxceleb2:id00076"
    assert fs.pair_video_id is None and fs.extra["base_video"] == "00109"
    assert method_family(canonical_method("fakeavceleb", "fsgan-wav2lip", "fake")) == "stacked"
    assert canonical_method("fakeavceleb", "wav2lip", "fake") == "wav2lip"


def test_duplicates_missing_ignored(tree):
    a, recs = recs_of(tree)
    dup = recs["FakeVideo-FakeAudio/African/men/id00076/00109_2_id00166_wavtolip"]
    assert dup.method == "fsgan-wav2lip" and dup.extra["alt_methods"] == ["wav2lip"]
    assert a.duplicate_rows == 2 and a.conflicting_duplicates == 1
    miss = recs["RealVideo-RealAudio/Asian (East)/women/id01000/00001"]
    assert miss.missing and a.missing_count == 1
    assert a.ignored_files == 2  # 00110.mp4 (not in the CSV) and README.txt
    assert a.label_disagreements == 0


def test_category_disagreeing_with_folder(tmp_path):
    root = tmp_path / "FakeAVCeleb_v1.2"
    touch(root, "FakeVideo-RealAudio/Asian/men/id1/x.mp4")
    (root / "meta_data.csv").write_text(
        HEADER + "\nid1,id2,-,fsgan,A,FakeVideo-RealAudio,Asian,men,x.mp4,FakeAVCeleb/FakeVideo-RealAudio/Asian/men/id1\n")
    a, recs = recs_of(root)
    assert recs["FakeVideo-RealAudio/Asian/men/id1/x"].label == "fake" and a.label_disagreements == 1


def test_leading_index_column(tmp_path):
    root = tmp_path / "FakeAVCeleb_v1.2"
    touch(root, "RealVideo-RealAudio/African/men/id00076/00109.mp4")
    (root / "meta_data.csv").write_text(",source,target1,target2,method,category,type,race,gender,path,\n"
                                        "0," + ROWS[0] + "\n")
    _, recs = recs_of(root)
    assert recs["RealVideo-RealAudio/African/men/id00076/00109"].label == "real"


def test_layout_errors(tmp_path):
    root = tmp_path / "FakeAVCeleb_v1.2"
    touch(root, "RealVideo-RealAudio/African/men/id00076/00109.mp4")
    with pytest.raises(LayoutError, match=r"fakeavceleb: no meta_data.csv at .*\(found: RealVideo-RealAudio/\)"):
        list(create_adapter("fakeavceleb", root).videos())
    (root / "meta_data.csv").write_text(HEADER + "\nid00076,-,-,real,A\n")
    with pytest.raises(LayoutError, match="meta_data.csv:2: expected 10 values"):
        list(create_adapter("fakeavceleb", root).videos())
    (root / "meta_data.csv").write_text("a,b,c\n1,2,3\n")
    with pytest.raises(LayoutError, match="expected a header starting 'source,target1"):
        list(create_adapter("fakeavceleb", root).videos())
