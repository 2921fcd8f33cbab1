"""Suspect labels (dfkit.quality.suspect): the rule on constructed values, the relabel path of `dfkit quality`
(no pixels read), and, on the real FF++ clips, half-untouched fakes whose untouched half must be found."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dfkit.corpus.schema import META_SUSPECT_VERSION, SUSPECT_COLUMN, SUSPECT_REASON_COLUMN, suspect_mask
from dfkit.quality.suspect import MAX_CHANGED_FACE, SUSPECT_VERSION, label_suspects, summarize
from tests.conftest import FFPP_REAL, need_realdata


def test_rule_on_known_values():
    change = [0.0, 0.05, MAX_CHANGED_FACE - 1e-6, MAX_CHANGED_FACE, 0.5, None, math.nan]
    q = pa.table({"sample_id": [f"d/v/{i:06d}" for i in range(len(change))],
                  "fr_change_face": pa.array(change, type=pa.float32())},
                 metadata={b"k": b"v"})
    out = label_suspects(q)
    assert out[SUSPECT_COLUMN].to_pylist() == [True, True, True, False, False, None, None]
    reasons = out[SUSPECT_REASON_COLUMN].to_pylist()
    assert [r is not None for r in reasons] == [True, True, True, False, False, False, False]
    assert reasons[1].startswith("5.0% of the face changed")
    assert out.schema.metadata == {b"k": b"v"}
    # recomputing replaces the columns (a new rule), never duplicates them
    again = label_suspects(out, max_changed=0.01)
    assert again.column_names.count(SUSPECT_COLUMN) == 1
    assert again[SUSPECT_COLUMN].to_pylist() == [True, False, False, False, False, None, None]
    # no full-reference column at all (fullref off): nothing is checked
    assert label_suspects(pa.table({"sample_id": ["a"]}))[SUSPECT_COLUMN].to_pylist() == [None]


def test_suspect_mask_and_summary():
    import pandas as pd

    meta = pd.DataFrame({"dataset": ["d"] * 5, "method_canonical": ["m", "m", "m", "n", "real"],
                         "label": ["fake", "fake", "fake", "fake", "real"],
                         "pair_video_id": ["o", "o", "o", None, None],
                         SUSPECT_COLUMN: [True, False, None, None, None]})
    assert suspect_mask(meta).tolist() == [True, False, False, False, False]
    assert not suspect_mask(meta.drop(columns=[SUSPECT_COLUMN])).any()
    s = summarize(meta).set_index("method_canonical")
    assert s.loc["m", ["crops", "checked", "suspect", "unpaired"]].tolist() == [3, 2, 1, 0]
    assert s.loc["m", "suspect_rate"] == 0.5
    assert s.loc["n", ["crops", "checked", "unpaired"]].tolist() == [1, 0, 1] and np.isnan(s.loc["n", "suspect_rate"])
    assert "real" not in s.index


@pytest.fixture(scope="module")
def ffpp_corpus(tmp_path_factory):
    """The real FF++ clips as they are (16 frames per video), with quality."""
    from dfkit.ingest.base import create_adapter
    from dfkit.ingest.engine import IngestParams, run_ingest
    from dfkit.quality.run import run_quality

    root = need_realdata("ffpp_icpr2020dfdc")
    out = tmp_path_factory.mktemp("suspect") / "corpus"
    run_ingest(create_adapter("ffpp", root), out, IngestParams(frames=16), workers=1, progress=False)
    run_quality(out, workers=1, progress=False, log=lambda m: None)
    return out


@pytest.mark.realdata
def test_every_real_paired_fake_crop_changed(ffpp_corpus):
    """On the real FF++ fakes (all manipulated on every frame), no paired crop is suspect; a fake whose original
    is not in the sample (Face2Face 750_743) is unchecked, and counted as such."""
    import dfkit.corpus

    m = dfkit.corpus.open(ffpp_corpus).metadata()
    fakes = m[m["label"] == "fake"]
    paired = fakes[fakes["pair_video_id"].notna()]
    assert len(paired) >= 32 and paired[SUSPECT_COLUMN].notna().all()
    assert (paired["fr_change_face"] > MAX_CHANGED_FACE).all() and not paired[SUSPECT_COLUMN].any()
    s = summarize(m).set_index("method_canonical")
    print(s.to_string())
    assert s.loc["face2face", "checked"] == 0 and s.loc["face2face", "unpaired"] == s.loc["face2face", "crops"]
    assert m[m["label"] == "real"][SUSPECT_COLUMN].isna().all()


@pytest.mark.realdata
def test_relabel_from_stored_values_reads_no_pixels(ffpp_corpus, monkeypatch):
    """A quality shard from before suspect labels (no columns, no version key) is relabelled by `dfkit quality`
    from its stored fr_* values: no shard is computed again, the labels are the same."""
    import dfkit.corpus
    from dfkit.corpus.store import atomic_write_table, committed_shards
    from dfkit.quality import run as qrun

    before = dfkit.corpus.open(ffpp_corpus).metadata().set_index("sample_id")[SUSPECT_COLUMN]
    for sh in committed_shards(ffpp_corpus, "quality"):
        t = pq.read_table(sh.path)
        md = {k: v for k, v in (t.schema.metadata or {}).items() if k != META_SUSPECT_VERSION}
        atomic_write_table(t.drop_columns([SUSPECT_COLUMN, SUSPECT_REASON_COLUMN]).replace_schema_metadata(md),
                           sh.path)
    assert SUSPECT_COLUMN not in dfkit.corpus.open(ffpp_corpus).metadata().columns

    def no_pixels(*a, **k):
        raise AssertionError("compute_shard called: pixels would be read")

    monkeypatch.setattr(qrun, "compute_shard", no_pixels)
    s = qrun.run_quality(ffpp_corpus, workers=1, progress=False, log=lambda m: None)
    assert s.shards_relabelled >= 1 and s.shards_computed == 0
    after = dfkit.corpus.open(ffpp_corpus).metadata().set_index("sample_id")[SUSPECT_COLUMN]
    assert after.reindex(before.index).equals(before)
    for sh in committed_shards(ffpp_corpus, "quality"):
        assert int(pq.read_schema(sh.path).metadata[META_SUSPECT_VERSION]) == SUSPECT_VERSION


@pytest.fixture(scope="module")
def half_untouched(tmp_path_factory):
    """Known answer: each real FF++ fake with its original present, its first half replaced by the original's
    frames, encoded at CRF 23 (dfkit.demo.suspect_check), ingested and scored."""
    from dfkit.demo.suspect_check import build_half_untouched, score

    need_realdata("ffpp_icpr2020dfdc")
    base = tmp_path_factory.mktemp("half")
    truth = build_half_untouched(FFPP_REAL, base / "ds", crf=23, compression="c23", max_frames=100)
    r = score(base / "ds", base / "corpus", frames=12)
    print(r)
    return truth, r, base / "corpus"


@pytest.mark.realdata
def test_half_untouched_real_fakes_c23(half_untouched):
    """The untouched half must be flagged, the manipulated half not."""
    truth, r, _ = half_untouched
    assert len(truth["fakes"]) >= 3
    assert r.crops >= 30 and 0.3 < r.untouched / r.crops < 0.7
    assert r.precision >= 0.95 and r.recall >= 0.95
    assert r.change_untouched_max < MAX_CHANGED_FACE < r.change_manipulated_min


@pytest.mark.realdata
def test_info_and_audit_show_suspects(half_untouched, tmp_path):
    import dfkit.corpus
    from dfkit.quality.audit import build_report
    from dfkit.report import corpus_info_text

    _, r, corpus = half_untouched
    text = corpus_info_text(corpus)
    assert "suspect labels (fake crops on which < 10% of the face changed" in text
    m = dfkit.corpus.open(corpus).metadata()
    block = text[text.index("suspect labels"):].splitlines()
    for method, n in m[m[SUSPECT_COLUMN].fillna(False).astype(bool)].groupby("method_canonical").size().items():
        line = next(ln for ln in block if f" {method} " in ln)
        assert f" {n} " in line, line
    assert sum(int(ln.split()[4]) for ln in block[2:] if ln.split()[0] == "ffpp") == r.flagged
    path = build_report(dfkit.corpus.open(corpus), tmp_path / "audit")
    page = path.read_text()
    assert "Suspect labels: fakes that may not be fake" in page
    assert (tmp_path / "audit" / "suspect_labels.png").stat().st_size > 10_000
    assert 'data-file="suspect_labels.png"' in page


def test_constructed_demo_cases(tmp_path):
    """The demo's label-noise cases (dfkit.demo.label_noise): the half-swapped fake's untouched half is flagged and
    its swapped half is not; the two-person fakes, whose bystander was swapped, are cut on the swapped face (the
    manipulated-face selection), so none of their crops is suspect."""
    from dfkit.demo.label_noise import N_FRAMES
    from dfkit.demo.suspect_check import score_label_noise_cases

    r, per = score_label_noise_cases(tmp_path / "ds", tmp_path / "corpus")
    print(r, per)
    assert per["half"] == {"crops": N_FRAMES, "untouched": N_FRAMES // 2, "flagged": N_FRAMES // 2,
                           "track_choice": ["manipulated"]}
    for name, choice in (("bystander", "manipulated"), ("mask", "mask")):
        assert per[name]["crops"] == N_FRAMES and per[name]["flagged"] == 0, (name, per[name])
        assert per[name]["track_choice"] == [choice]
    assert r.precision == 1.0 and r.recall == 1.0
