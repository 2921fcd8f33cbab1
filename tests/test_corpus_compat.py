"""Existing corpora open unchanged: ``tests/data/corpus_v_before`` was written (ingest, ``dfkit quality``, ``dfkit
splits resplit --name identity``) by the code *before* issue 11 moved the on-disk conventions into ``dfkit.corpus``,
and ``corpus_v_before.expected.json`` holds what that code read from it. This reads it with today's code.

How it was made (synthetic demo videos only): ``make_demo_dataset(n_identities=6, n_frames=4, frame_size=(128, 96),
compressions=("c0", "c23"))``, ingested per compression with ``IngestParams(frames=2, size=16)`` and
``DFKIT_FLUSH_VIDEOS=100`` (one shard per ingest), then ``dfkit quality --workers 1`` and ``dfkit splits resplit``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import dfkit.corpus

DATA = Path(__file__).parent / "data"
ROOT = DATA / "corpus_v_before"
EXPECTED = json.loads((DATA / "corpus_v_before.expected.json").read_text())


@pytest.fixture()
def corpus(tmp_path) -> Path:
    """A copy, so that nothing a test does can change the committed corpus."""
    out = tmp_path / "corpus"
    shutil.copytree(ROOT, out)
    return out


def test_metadata_and_videos_read_as_before(corpus):
    c = dfkit.corpus.open(corpus)
    m = c.metadata()
    assert len(m) == EXPECTED["n_crops"]
    # columns added to the crop schema since then (LATE_CROP_COLUMNS) read as nulls; every column it had is there
    from dfkit.corpus.schema import CROP_META_COLUMNS, LATE_CROP_COLUMNS

    late = [c for c in LATE_CROP_COLUMNS if c in CROP_META_COLUMNS]
    assert sorted(set(m.columns) - set(late)) == EXPECTED["columns"]
    assert late and all(m[c].isna().all() for c in late)
    assert hashlib.sha256("\n".join(sorted(m["sample_id"])).encode()).hexdigest() == EXPECTED["sample_ids_sha256"]
    assert c.manifest["counts"] == EXPECTED["manifest_counts"]
    assert {k: int(n) for k, n in c.videos()["status"].value_counts().items()} == EXPECTED["video_status"]
    assert {k: int(n) for k, n in m["split"].value_counts().items()} == EXPECTED["official_splits"]


def test_crops_decode_to_the_same_pixels(corpus):
    c = dfkit.corpus.open(corpus)
    h = hashlib.sha256()
    for rec, img in c.crops():
        assert img.dtype == np.uint8 and list(img.shape) == EXPECTED["crop_shape"]
        h.update(rec["sample_id"].encode())
        h.update(img.tobytes())
    assert h.hexdigest() == EXPECTED["crops_sha256"]


def test_raw_crop_bytes_decode_with_the_corpus_codec(corpus):
    from dfkit.corpus.codec import decode_crop
    from dfkit.corpus.reader import CropReader

    c = dfkit.corpus.open(corpus)
    m = c.metadata()
    reader = CropReader(c.crop_files())
    for r in m.head(5).to_dict("records"):
        img = decode_crop(reader.raw(r["_file"], r["_row"]))
        assert np.array_equal(img, reader.get(r["_file"], r["_row"])) and img.shape == (16, 16, 3)


def test_quality_columns_read_as_before(corpus):
    from dfkit.corpus.schema import quality_column, raw_column, score_metric, usable

    m = dfkit.corpus.open(corpus).metadata()
    scores = sorted(n for c in m.columns if (n := score_metric(c, m.columns)))
    assert scores and all(quality_column(n) in EXPECTED["q_sums"] and raw_column(n) in m.columns for n in scores)
    assert len(usable(dfkit.corpus.open(corpus).videos())) == EXPECTED["video_status"]["ok"]
    assert float(np.nansum(m["quality"].to_numpy(float))) == pytest.approx(EXPECTED["quality_sum"], rel=1e-9)
    for col, total in EXPECTED["q_sums"].items():
        assert float(np.nansum(m[col].to_numpy(float))) == pytest.approx(total, rel=1e-9, abs=1e-12), col
    assert int(m["fr_ssim"].notna().sum()) == EXPECTED["fr_ssim_notna"]
    assert int(m["c0_ssim"].notna().sum()) == EXPECTED["c0_ssim_notna"]


def test_split_scheme_reads_as_before(corpus):
    s = dfkit.corpus.open(corpus).select(split_scheme="identity").metadata()
    assert {k: int(n) for k, n in s["split"].value_counts().items()} == EXPECTED["identity_splits"]
    assert {k: int(n) for k, n in s["split_official"].value_counts().items()} == EXPECTED["identity_split_official"]


def test_training_selection_reads_as_before(corpus):
    from dfkit.train.data import select_data

    for split, want in EXPECTED["select_data_binary"].items():
        sel = select_data(corpus, task="binary", split=split)
        got = {k: {"frames": v["frames"], "videos": v["videos"]} for k, v in sel.counts().items()}
        assert got == want, split
