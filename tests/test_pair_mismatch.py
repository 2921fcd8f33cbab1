"""Pair mismatch (dfkit.quality.suspect, rule version 2): a fake paired with an original it was not made from.

Known answer on real FF++ c23 clips: each fake is listed twice in a CSV dataset, once paired with its own original and
once with another original of the same frame size. The crop outside the face changes little for a true pair and
almost everywhere for a wrong one; the rule must flag every wrong-pair crop it can check and no true-pair crop.
"""

from __future__ import annotations

import csv
import math
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dfkit.corpus.schema import (META_SUSPECT_VERSION, PAIR_MISMATCH_COLUMN, PAIR_MISMATCH_REASON_COLUMN,
                                 SUSPECT_COLUMN, SUSPECT_REASON_COLUMN)
from dfkit.quality.suspect import MAX_CHANGED_FACE, MAX_CHANGED_OUTSIDE, SUSPECT_VERSION, label_suspects
from tests.conftest import FFPP_REAL, need_realdata


def test_rule_on_constructed_values():
    nan = math.nan
    face = [0.30, 0.05, 0.97, 0.40, nan, MAX_CHANGED_FACE, 0.2]
    outside = [0.10, 0.02, 0.95, nan, nan, 0.0, MAX_CHANGED_OUTSIDE]
    t = label_suspects(pa.table({"sample_id": [str(i) for i in range(7)], "fr_change_face": face,
                                 "fr_change_outside": outside}))
    assert t[PAIR_MISMATCH_COLUMN].to_pylist() == [False, False, True, None, None, False, False]
    # a mismatched pair is not checked for suspect labels (its fr_* compare unrelated pictures)
    assert t[SUSPECT_COLUMN].to_pylist() == [False, True, None, False, None, False, False]
    reasons = t[PAIR_MISMATCH_REASON_COLUMN].to_pylist()
    assert reasons[2].startswith("95.0% of the crop outside the face differs") and reasons.count(None) == 6
    assert t[SUSPECT_REASON_COLUMN].to_pylist()[1].startswith("5.0% of the face changed")
    again = label_suspects(t)  # relabelling replaces the columns, never duplicates them
    assert again.column_names == t.column_names
    assert all(again[c].to_pylist() == t[c].to_pylist() for c in (SUSPECT_COLUMN, PAIR_MISMATCH_COLUMN))


ORIG = {k: f"original_sequences/youtube/c23/videos/{k}.mp4" for k in ("519", "634", "004")}
FAKE = {"519": "manipulated_sequences/Deepfakes/c23/videos/519_515.mp4",
        "634": "manipulated_sequences/FaceSwap/c23/videos/634_660.mp4",
        "004": "manipulated_sequences/NeuralTextures/c23/videos/004_982.mp4"}
WRONG = {"004": "634", "634": "004"}  # the same frame size (1280x720), different videos


@pytest.fixture(scope="module")
def paired_corpus(tmp_path_factory):
    from dfkit import services

    need_realdata("ffpp_icpr2020dfdc")
    root = tmp_path_factory.mktemp("pairs")
    data, corpus = root / "data", root / "corpus"
    data.mkdir()
    rows = []
    for k, rel in ORIG.items():
        shutil.copy(FFPP_REAL / rel, data / f"o{k}.mp4")
        rows.append(dict(path=f"o{k}.mp4", label="real", video_id=f"o{k}"))
    for k, rel in FAKE.items():
        shutil.copy(FFPP_REAL / rel, data / f"f{k}.mp4")
        rows.append(dict(path=f"f{k}.mp4", label="fake", method="true_pair", video_id=f"f{k}", pair=f"o{k}"))
        if k in WRONG:
            shutil.copy(FFPP_REAL / rel, data / f"w{k}.mp4")
            rows.append(dict(path=f"w{k}.mp4", label="fake", method="wrong_pair", video_id=f"w{k}",
                             pair=f"o{WRONG[k]}"))
    with open(data / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["path", "label", "method", "video_id", "pair"])
        w.writeheader()
        w.writerows(rows)
    services.ingest("csv", data, corpus, workers=2, progress=False, frames=8)
    services.quality(corpus, workers=2, progress=False)
    return corpus


@pytest.mark.realdata
def test_wrong_pairs_are_flagged_and_true_pairs_are_not(paired_corpus):
    import dfkit.corpus

    m = dfkit.corpus.open(paired_corpus).metadata()
    true, wrong = m[m["method"] == "true_pair"], m[m["method"] == "wrong_pair"]
    assert len(true) and len(wrong) and (wrong["box_source"] == "paired").all()  # the wrong pairs were cut paired
    assert not true[PAIR_MISMATCH_COLUMN].fillna(False).any()
    checkable = wrong["fr_change_outside"].notna()
    assert checkable.sum() >= len(wrong) // 2
    assert wrong.loc[checkable, PAIR_MISMATCH_COLUMN].all()  # every wrong-pair crop that can be checked
    assert wrong.loc[~checkable, PAIR_MISMATCH_COLUMN].isna().all()  # the face box fills the crop: not checked
    assert wrong.loc[wrong[PAIR_MISMATCH_COLUMN].fillna(False).astype(bool), SUSPECT_COLUMN].isna().all()
    # the margins the threshold sits between (module docstring): true <= 25 %, wrong >= 92 % on these clips
    assert true["fr_change_outside"].max() < MAX_CHANGED_OUTSIDE / 1.5
    assert wrong["fr_change_outside"].min() > 1.5 * MAX_CHANGED_OUTSIDE


@pytest.mark.realdata
def test_info_names_the_mismatched_videos_and_an_old_shard_is_relabelled(paired_corpus, tmp_path):
    import dfkit.corpus
    from dfkit import services

    text = services.info(paired_corpus)
    assert "fake crops (2 videos) differ from their paired original outside the face" in text
    corpus = tmp_path / "corpus"
    shutil.copytree(paired_corpus, corpus)
    for qp in sorted((corpus / "quality").glob("*.parquet")):  # a shard made by rule version 1: no mismatch columns
        t = pq.read_table(qp)
        t = t.drop_columns([c for c in (PAIR_MISMATCH_COLUMN, PAIR_MISMATCH_REASON_COLUMN) if c in t.column_names])
        pq.write_table(t.replace_schema_metadata({**t.schema.metadata, META_SUSPECT_VERSION: b"1"}), qp)
    assert PAIR_MISMATCH_COLUMN not in dfkit.corpus.open(corpus).metadata().columns
    s = services.quality(corpus, workers=1, progress=False)
    assert s.shards_relabelled >= 1 and s.shards_computed == 0  # from the stored fr_* values, no pixels
    after = dfkit.corpus.open(corpus).metadata()
    before = dfkit.corpus.open(paired_corpus).metadata()
    assert np.array_equal(after[PAIR_MISMATCH_COLUMN].fillna(-1).to_numpy(),
                          before[PAIR_MISMATCH_COLUMN].fillna(-1).to_numpy())
    assert int(pq.read_schema(sorted((corpus / "quality").glob("*.parquet"))[0]).metadata[META_SUSPECT_VERSION]) \
        == SUSPECT_VERSION
