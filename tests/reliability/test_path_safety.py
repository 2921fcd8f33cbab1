"""Nothing is read from outside the dataset root (issue 13, "let in where it does not belong").

Metadata that names files with ``..`` or absolute paths (a DFDC ``metadata.json``, a CSV list) is refused per entry:
the entry is recorded as failed at stage ``list`` with the reason and never opened, the good entries of the same
dataset are ingested. A split scheme's name can never point outside ``<corpus>/splits/``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import dfkit.corpus
from dfkit.ingest.base import create_adapter
from dfkit.ingest.engine import IngestParams, run_ingest
from tests.conftest import astronaut_frames, write_video

PARAMS = IngestParams(frames=2, size=64)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("clip") / "clip.mp4", astronaut_frames(6))


def _statuses(corpus: Path) -> dict[str, tuple[str, str | None, str | None]]:
    v = dfkit.corpus.open(corpus).videos()
    return {r["video_id"]: (r["status"], r.get("stage"), r.get("reason")) for r in v.to_dict("records")}


def test_dfdc_metadata_naming_files_outside_the_root_is_refused(tmp_path, clip):
    root, outside = tmp_path / "dfdc", tmp_path / "elsewhere"
    part = root / "dfdc_train_part_0"
    part.mkdir(parents=True)
    outside.mkdir()
    (part / "good.mp4").write_bytes(clip.read_bytes())
    (outside / "climb.mp4").write_bytes(clip.read_bytes())
    (outside / "abs.mp4").write_bytes(clip.read_bytes())
    meta = {"good.mp4": {"label": "REAL", "split": "train"},
            "../../elsewhere/climb.mp4": {"label": "REAL", "split": "train"},
            str(outside / "abs.mp4"): {"label": "FAKE", "original": "good.mp4", "split": "train"}}
    (part / "metadata.json").write_text(json.dumps(meta))
    corpus = tmp_path / "corpus"
    s = run_ingest(create_adapter("dfdc", root), corpus, PARAMS, workers=1)
    st = _statuses(corpus)
    assert st["train/good"][0] == "ok", st
    for vid in ("train/climb", "train/abs"):
        status, stage, reason = st[vid]
        assert (status, stage) == ("failed", "list") and "leaves the dataset root" in reason, st[vid]
    assert s.crops == len(dfkit.corpus.open(corpus).metadata())  # only the good video's crops


def test_csv_paths_outside_the_root_need_allow_absolute(tmp_path, clip):
    root, outside = tmp_path / "data", tmp_path / "elsewhere"
    root.mkdir()
    outside.mkdir()
    (root / "in.mp4").write_bytes(clip.read_bytes())
    (outside / "up.mp4").write_bytes(clip.read_bytes())
    (outside / "abs.mp4").write_bytes(clip.read_bytes())
    (root / "list.csv").write_text(f"path,label\nin.mp4,real\n../elsewhere/up.mp4,fake\n{outside / 'abs.mp4'},fake\n")
    corpus = tmp_path / "corpus"
    run_ingest(create_adapter("csv", root), corpus, PARAMS, workers=1)
    st = _statuses(corpus)
    ok = [v for v, (s, _, _) in st.items() if s == "ok"]
    refused = {v: r for v, (s, stage, r) in st.items() if s == "failed" and stage == "list"}
    assert len(ok) == 1 and len(refused) == 2, st
    assert all("leaves the dataset root" in r and "allow_absolute=1" in r for r in refused.values())
    # opted in: the same list ingests all three
    corpus2 = tmp_path / "corpus2"
    run_ingest(create_adapter("csv", root, allow_absolute="1"), corpus2, PARAMS, workers=1)
    assert sorted(s for s, _, _ in _statuses(corpus2).values()) == ["ok", "ok", "ok"]
    from dfkit.errors import DfkitError

    with pytest.raises(DfkitError, match="allow_absolute must be 1 or 0"):
        create_adapter("csv", root, allow_absolute="maybe")


def test_a_symlinked_folder_inside_the_root_is_still_followed(tmp_path, clip):
    """The check is on the path the metadata names, not on where a user's symlink points."""
    root, store = tmp_path / "data", tmp_path / "store"
    root.mkdir()
    store.mkdir()
    (store / "v.mp4").write_bytes(clip.read_bytes())
    (root / "videos").symlink_to(store, target_is_directory=True)
    (root / "list.csv").write_text("path,label\nvideos/v.mp4,real\n")
    corpus = tmp_path / "corpus"
    run_ingest(create_adapter("csv", root), corpus, PARAMS, workers=1)
    assert [s for s, _, _ in _statuses(corpus).values()] == ["ok"]


@pytest.mark.parametrize("name", ["../..", "../escape", "/tmp/x", "a/b", ".hidden", "", "-x", "a..b"])
def test_a_split_scheme_name_cannot_leave_the_splits_folder(tmp_path, name):
    from dfkit.corpus.schema import has_split_scheme, split_path
    from dfkit.corpus.writer import write_split_scheme
    from dfkit.errors import SettingsError

    with pytest.raises(SettingsError, match="split scheme's name"):
        split_path(tmp_path, name)
    with pytest.raises(SettingsError):
        write_split_scheme(tmp_path, name, {("d", "v"): "train"})
    assert not has_split_scheme(tmp_path, name)
    assert list(tmp_path.iterdir()) == []  # nothing written
    assert split_path(tmp_path, "identity-2.v1").name == "identity-2.v1.parquet"


def test_symlink_loops_in_a_folder_tree_are_listed_once(tmp_path, clip):
    """A link to its own parent used to list one video 41 times, two such loops never finished."""
    import time

    root = tmp_path / "tree"
    for lab, name in (("real", "a.mp4"), ("fake", "b.mp4")):
        (root / lab).mkdir(parents=True)
        (root / lab / name).write_bytes(clip.read_bytes())
    (root / "real" / "loop").symlink_to(root / "real", target_is_directory=True)
    (root / "fake" / "l1").symlink_to(root / "fake", target_is_directory=True)
    (root / "fake" / "l2").symlink_to(root, target_is_directory=True)
    ad = create_adapter("folder", root)
    t0 = time.perf_counter()
    recs = list(ad.videos())
    assert time.perf_counter() - t0 < 5
    assert sorted(r.rel_path for r in recs) == ["fake/b.mp4", "real/a.mp4"]
    assert ad.repeated_folders  # the loops were seen and skipped


def test_csv_rows_that_disagree_about_one_file_are_refused(tmp_path, clip):
    """Duplicate rows with conflicting labels used to keep one silently (the same file, spelled ./x.mp4 and x.mp4,
    ingested twice with opposite labels); agreeing duplicates are still just counted."""
    root = tmp_path / "data"
    root.mkdir()
    for n in ("x.mp4", "y.mp4", "z.mp4"):
        (root / n).write_bytes(clip.read_bytes())
    (root / "list.csv").write_text("path,label,method\nx.mp4,real,\n./x.mp4,fake,FaceSwap\ny.mp4,fake,A\n"
                                   "y.mp4,fake,A\nz.mp4,fake,A\nsub/../z.mp4,fake,B\n")
    ad = create_adapter("csv", root)
    recs = {r.video_id: r for r in ad.videos()}
    assert set(recs) == {"x", "y", "z"} and ad.duplicate_rows == 1
    assert recs["y"].problem is None and recs["y"].method == "A"
    for vid, what in (("x", "label 'fake' (line 2: 'real')"), ("z", "method 'B' (line 6: 'A')")):
        assert recs[vid].problem and what in recs[vid].problem, recs[vid].problem


def test_one_dfdc_file_in_two_parts_is_one_video(tmp_path, clip):
    """Kaggle's train_sample_videos/ beside the dfdc_train_part_N it was copied from used to give duplicate crop
    rows (8 rows, 4 sample ids) that a rerun kept."""
    root = tmp_path / "dfdc"
    for part in ("dfdc_train_part_0", "train_sample_videos"):
        (root / part).mkdir(parents=True)
        (root / part / "same.mp4").write_bytes(clip.read_bytes())
        (root / part / "metadata.json").write_text(json.dumps({"same.mp4": {"label": "REAL", "split": "train"}}))
    (root / "train_sample_videos" / "other.mp4").write_bytes(clip.read_bytes())
    (root / "dfdc_train_part_0" / "other.mp4").write_bytes(clip.read_bytes())
    for part, label in (("train_sample_videos", "FAKE"), ("dfdc_train_part_0", "REAL")):
        m = json.loads((root / part / "metadata.json").read_text())
        m["other.mp4"] = {"label": label, "split": "train", **({"original": "same.mp4"} if label == "FAKE" else {})}
        (root / part / "metadata.json").write_text(json.dumps(m))
    corpus = tmp_path / "corpus"
    for _ in range(2):  # and a rerun adds nothing
        run_ingest(create_adapter("dfdc", root), corpus, PARAMS, workers=1)
    c = dfkit.corpus.open(corpus)
    v = c.videos()
    assert sorted(v["video_id"]) == ["train/other", "train/same"]
    st = _statuses(corpus)
    assert st["train/same"][0] == "ok" and "dfdc_train_part_0/same.mp4" in set(v["video_path"])
    assert st["train/other"][:2] == ("failed", "list") and "different facts" in st["train/other"][2]
    import duckdb

    n = duckdb.sql(f"SELECT count(*) FROM '{corpus}/crops/*.parquet'").fetchall()[0][0]
    assert n == len(c.metadata()) == len(set(c.metadata()["sample_id"]))


def test_malformed_dfdc_metadata_is_recorded_per_entry_or_per_part(tmp_path):
    """An ``original`` that is not a file name, a part's metadata nested 100 000 deep: problems recorded, no
    traceback."""
    root = tmp_path / "dfdc"
    (root / "dfdc_train_part_0").mkdir(parents=True)
    (root / "dfdc_train_part_1").mkdir(parents=True)
    (root / "dfdc_train_part_0" / "metadata.json").write_text(json.dumps(
        {"a.mp4": {"label": "FAKE", "original": 123}, "b.mp4": {"label": "FAKE", "original": ["x"]},
         "c.mp4": {"label": "REAL"}}))
    (root / "dfdc_train_part_1" / "metadata.json").write_text('{"a":' * 100_000 + "1" + "}" * 100_000)
    recs = {r.video_id: r for r in create_adapter("dfdc", root).videos()}
    assert "expected a file name" in recs["train/a"].problem and "expected a file name" in recs["train/b"].problem
    assert recs["train/c"].problem is None
    assert "nested too deeply" in recs["dfdc_train_part_1/metadata.json"].problem


def test_a_symlink_and_dotdot_in_metadata_cannot_climb_out(tmp_path, clip):
    """normpath cancels 'link/..' on paper while the OS would climb from the link's target: the path opened is the
    path checked."""
    root, outside = tmp_path / "data", tmp_path / "outside" / "a" / "b"
    outside.mkdir(parents=True)
    root.mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)
    (outside.parent / "secret.mp4").write_bytes(clip.read_bytes())  # where the OS would land
    (root / "list.csv").write_text("path,label\nlink/../secret.mp4,real\n")
    ad = create_adapter("csv", root)
    recs = [ad.confine(r) for r in ad.videos()]
    assert len(recs) == 1 and recs[0].problem is None
    assert recs[0].path == root / "secret.mp4" and not recs[0].path.exists()  # checked = opened, inside the root
