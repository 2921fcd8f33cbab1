"""``dfkit export`` (hf, webdataset, folder) and ``Corpus.to_hf`` on the demo corpus: every format gives back the
corpus's pixels, labels and quality columns; the selection is ``dfkit train``'s; refusals write nothing; the DuckDB
SQL of the README runs on the corpus as documented."""

from __future__ import annotations

import glob
import json
import secrets
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import dfkit.corpus
from dfkit.corpus.codec import decode_crop, encode_crop
from tests.test_train_cli import demo_corpus, one_thread, quality_corpus, run_cli  # noqa: F401 - fixtures

# The DuckDB examples of the README's export section, run here on the demo corpus (`dfkit-corpus` -> its path).
SQL_JOIN = """\
SELECT c.sample_id, c.dataset, c.method_canonical, c.split, q.quality, q.suspect_label
FROM read_parquet('dfkit-corpus/crops/*.parquet') AS c
LEFT JOIN read_parquet('dfkit-corpus/quality/*.parquet', union_by_name = true) AS q USING (sample_id)"""

SQL_PER_METHOD = """\
SELECT c.split, c.method_canonical, count(*) AS crops, round(avg(q.quality), 3) AS mean_quality,
       count_if(q.suspect_label) AS suspect
FROM read_parquet('dfkit-corpus/crops/*.parquet') AS c
JOIN read_parquet('dfkit-corpus/quality/*.parquet', union_by_name = true) AS q USING (sample_id)
GROUP BY ALL ORDER BY ALL"""

SQL_CROPS = """\
SELECT c.sample_id, c.crop, c.crop_format
FROM read_parquet('dfkit-corpus/crops/*.parquet') AS c
JOIN read_parquet('dfkit-corpus/quality/*.parquet', union_by_name = true) AS q USING (sample_id)
WHERE c.split = 'train' AND q.quality >= 0.7"""


@pytest.fixture(scope="module")
def suspect_corpus(demo_corpus, tmp_path_factory) -> Path:  # noqa: F811
    """A copy of the demo corpus with a quality shard shaped as ``dfkit quality`` writes one: the keys (``sample_id``,
    ``dataset``, ``video_id``), a metric (``q_sharpness_raw``, ``q_sharpness``), ``quality``, ``video_quality`` and
    ``suspect_label`` (true on the fakes of every third frame, false on the other fakes, null on reals)."""
    root = tmp_path_factory.mktemp("export") / "corpus"
    shutil.copytree(demo_corpus, root)
    meta = dfkit.corpus.open(root).metadata()
    rng = np.random.default_rng(1)
    fake = (meta["label"] == "fake").to_numpy()
    suspect = [bool(f % 3 == 0) if k else None for f, k in zip(meta["frame_index"], fake)]
    t = pa.table({
        "sample_id": meta["sample_id"].astype(str).tolist(), "dataset": meta["dataset"].astype(str).tolist(),
        "video_id": meta["video_id"].astype(str).tolist(),
        "q_sharpness_raw": rng.uniform(10, 500, len(meta)), "q_sharpness": rng.uniform(0, 1, len(meta)),
        "quality": rng.uniform(0.3, 0.95, len(meta)).astype(np.float32),
        "video_quality": np.full(len(meta), 0.5, np.float32),
        "suspect_label": pa.array(suspect, pa.bool_()),
        "suspect_reason": pa.array(["no change" if s else None for s in suspect], pa.string()),
    })
    (root / "quality").mkdir()
    pq.write_table(t, root / "quality" / f"part-000001-{secrets.token_hex(4)}.parquet")
    return root


def _pixels(corpus: Path) -> dict[str, np.ndarray]:
    return {r["sample_id"]: img for r, img in dfkit.corpus.open(corpus).crops()}


@pytest.fixture(scope="module")
def exports(suspect_corpus, tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    from dfkit import services

    base = tmp_path_factory.mktemp("exports")
    out = {}
    for fmt in ("hf", "webdataset", "folder"):
        m = services.export(suspect_corpus, fmt=fmt, out=base / fmt, progress=False)
        out[fmt] = (base / fmt, m)
    return out


def _all_train_sees(corpus: Path, **kw) -> pd.DataFrame:
    from dfkit.train.data import select_data

    sel = select_data(corpus, **kw)
    return pd.concat([sel.train, sel.val, sel.test], ignore_index=True)


# ----------------------------------------------------------------------------------------------------------------------
# Corpus.to_hf

def test_to_hf_keeps_missing_strings_null_with_and_without_quality(demo_corpus, suspect_corpus):  # noqa: F811
    import datasets

    plain = dfkit.corpus.open(demo_corpus)
    meta = plain.metadata()
    # the demo corpus has missing strings: reals have no source/pair video, nothing has a perturbation
    assert meta["source_video_id"].isna().sum() == (meta["label"] == "real").sum() > 0
    assert meta["perturbation"].isna().all()
    hf = plain.to_hf()  # failed before: "Could not convert '002' with type str: tried to convert to double"
    assert len(hf) == len(meta) > 0  # every crop of the fixture
    assert isinstance(hf.features["image"], datasets.Image)
    for c in ("source_video_id", "pair_video_id", "perturbation", "target_video_id"):
        assert hf.features[c] == datasets.Value("string"), c
    assert hf.features["face_tracks"] == datasets.Value("int32") and hf.features["bbox"].feature.dtype == "float32"
    rows = hf.select_columns(["sample_id", "label", "source_video_id", "perturbation"]).to_pandas()
    real = rows["label"] == "real"
    assert rows.loc[real, "source_video_id"].isna().all() and rows.loc[~real, "source_video_id"].notna().all()
    assert rows["perturbation"].isna().all()
    assert not any(c.startswith("q_") or c == "quality" for c in hf.column_names)  # no quality shards: none
    pixels = _pixels(demo_corpus)
    for i in (0, 200, len(hf) - 1):
        assert np.array_equal(np.asarray(hf[i]["image"]), pixels[hf[i]["sample_id"]])
    # with quality shards: their columns joined (the keys they repeat are the crops' own), typed as stored
    hq = dfkit.corpus.open(suspect_corpus).select(labels="fake").to_hf(decode=False)
    assert hq.features["suspect_label"] == datasets.Value("bool") and hq.features["quality"] == datasets.Value(
        "float32")
    assert {"q_sharpness", "q_sharpness_raw", "video_quality", "suspect_reason"} <= set(hq.column_names)
    fakes = dfkit.corpus.open(suspect_corpus).select(labels="fake").metadata()
    assert hq.column_names.count("dataset") == 1 and len(hq) == len(fakes) > 0
    assert hq[0]["image"]["bytes"][:4] == b"\x89PNG"


# ----------------------------------------------------------------------------------------------------------------------
# the three formats

def test_hf_export_loads_with_images_labels_and_quality(exports, suspect_corpus, tmp_path):
    import datasets

    out, m = exports["hf"]
    d = datasets.load_dataset("parquet", data_dir=str(out), cache_dir=str(tmp_path / "hf-cache"))
    assert set(d) == {"train", "val", "test"}
    assert {s: len(d[s]) for s in d} == {s: c["crops"] for s, c in m["counts"]["per_split"].items()}
    assert sum(len(d[s]) for s in d) == m["counts"]["crops"] == len(_all_train_sees(suspect_corpus))
    assert isinstance(d["train"].features["image"], datasets.Image)
    assert d["val"].features["source_video_id"] == datasets.Value("string")
    meta = dfkit.corpus.open(suspect_corpus).metadata().set_index("sample_id")
    pixels = _pixels(suspect_corpus)
    for s in d:
        assert set(d[s]["split"]) == {s}
        for row in d[s]:
            assert np.array_equal(np.asarray(row["image"].convert("RGB")), pixels[row["sample_id"]])
            want = meta.loc[row["sample_id"]]
            assert row["label"] == want["label"] and row["method_canonical"] == want["method_canonical"]
            assert row["quality"] == pytest.approx(float(want["quality"]))
            assert row["suspect_label"] == (None if pd.isna(want["suspect_label"]) else bool(want["suspect_label"]))
    # the folder is self-describing; the dataset card's YAML names the split of each file
    assert "load_dataset" in m["load"] and (out / "README.md").read_text().startswith("---\nconfigs:")
    assert json.loads((out / "export.json").read_text())["counts"] == m["counts"]


def test_webdataset_export_iterates_every_crop(exports, suspect_corpus):
    import webdataset as wds

    out, m = exports["webdataset"]
    pixels = _pixels(suspect_corpus)
    seen = {}
    for s, c in m["counts"]["per_split"].items():
        urls = sorted(glob.glob(f"{out}/{s}/shard-*.tar"))
        assert [f"{s}/{Path(u).name}" for u in urls] == m["files"][s]
        n = 0
        for sample in wds.WebDataset(urls, shardshuffle=False).decode("rgb8"):
            rec = sample["json"]
            assert sample["__key__"] == rec["sample_id"] and rec["split"] == s
            assert np.array_equal(sample["png"], pixels[rec["sample_id"]])
            assert {"label", "method", "method_canonical", "quality", "suspect_label", "dataset"} <= set(rec)
            seen[rec["sample_id"]] = rec
            n += 1
        assert n == c["crops"]
    assert len(seen) == len(pixels) == m["counts"]["crops"]
    real = next(r for r in seen.values() if r["label"] == "real")
    assert real["source_video_id"] is None and real["suspect_label"] is None  # nulls, not NaN


def test_folder_export_has_every_png_where_the_csv_says(exports, suspect_corpus):
    out, m = exports["folder"]
    pixels = _pixels(suspect_corpus)
    csv = pd.read_csv(out / "index.csv", keep_default_na=False)
    typed = pd.read_parquet(out / "index.parquet")
    assert len(csv) == len(typed) == len(pixels) == m["counts"]["crops"]
    assert list(csv["path"]) == list(typed["path"]) and list(csv["sample_id"]) == list(typed["sample_id"])
    for rel, sid, split, label, method in typed[["path", "sample_id", "split", "label", "method_canonical"]].itertuples(
            index=False):
        assert rel == f"{split}/{label}/{method}/{sid}.png"  # the demo's ids need no escaping
        assert np.array_equal(decode_crop((out / rel).read_bytes()), pixels[sid])
    assert len(list(out.rglob("*.png"))) == len(typed)
    # the typed index keeps what a CSV reader would guess wrong: a missing string is null, "002" stays a string
    assert typed["source_video_id"].isna().sum() == (typed["label"] == "real").sum()
    assert pd.api.types.is_string_dtype(typed["target_video_id"]) and typed["quality"].notna().all()


def test_png_members_of_non_png_crops_hold_the_same_pixels():
    from dfkit.corpus.export import _png, crop_key, safe_part

    rgb = np.random.default_rng(0).integers(0, 255, (24, 24, 3), dtype=np.uint8)
    webp, fmt = encode_crop(rgb, "webp")  # lossless WebP
    png = _png(webp, fmt)
    assert png[:4] == b"\x89PNG" and np.array_equal(decode_crop(png), rgb)
    assert _png(png, "png") is png  # a PNG crop is copied as stored
    assert crop_key("ds/../v 1/000003") == "ds/__/v_1/000003" and safe_part("") == "_"
    assert crop_key("ds/v/0.5") == "ds/v/0_5"  # no dot in the base name (WebDataset keys end at the first one)


# ----------------------------------------------------------------------------------------------------------------------
# the selection is train's

def _hf_rows(out: Path) -> pd.DataFrame:
    return pd.concat([pq.read_table(p).to_pandas() for p in sorted((out / "data").glob("*.parquet"))],
                     ignore_index=True).set_index("sample_id").sort_index()


def test_export_selects_what_train_sees_with_the_same_options(suspect_corpus, tmp_path, capsys):
    opts = dict(datasets=["demo"], methods=["demo_checkerboard", "LandmarkWarp"], min_quality=0.6,
                drop_suspect=True, task="attribution")
    want = _all_train_sees(suspect_corpus, **opts).set_index("sample_id").sort_index()
    out = tmp_path / "sel"
    code, stdout, err = run_cli(["export", "--corpus", suspect_corpus, "--format", "hf", "--out", out, "--quiet",
                                 "--datasets", "demo", "--methods", "demo_checkerboard,LandmarkWarp",
                                 "--min-quality", "0.6", "--drop-suspect"], capsys)
    assert code == 0, err
    got = _hf_rows(out)
    assert list(got.index) == list(want.index) and (got["split"] == want["split"]).all()
    # known outcomes of those options: the quality filter and the methods apply to training only, suspects are
    # left out of training and validation but not test
    train, val, test = (got[got["split"] == s] for s in ("train", "val", "test"))
    assert (train["quality"] >= 0.6).all() and (val["quality"] < 0.6).any() and (test["quality"] < 0.6).any()
    assert set(train["method_canonical"]) == {"real", "demo_checkerboard", "demo_landmark_warp"}
    assert len(set(val["method_canonical"])) == 3  # validation crops of classes the model lacks are left out
    assert len(set(test["method_canonical"])) == 5  # test keeps them (they are 'unseen' in eval)
    assert not train["suspect_label"].fillna(False).any() and not val["suspect_label"].fillna(False).any()
    assert test["suspect_label"].fillna(False).any()
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["filters"]["min_quality"] == 0.6 and manifest["filters"]["drop_suspect"] is True
    assert f"exported {len(want)} crops" in stdout and "quality filter kept" in stdout
    # a computed identity split, as train computes it (the seed chosen so that it differs from the official one)
    code, _, err = run_cli(["export", "--corpus", suspect_corpus, "--format", "hf", "--out", tmp_path / "id",
                            "--quiet", "--split", "identity", "--split-seed", "1"], capsys)
    assert code == 0, err
    got = _hf_rows(tmp_path / "id")
    want = _all_train_sees(suspect_corpus, split="identity", seed=1).set_index("sample_id").sort_index()
    assert list(got.index) == list(want.index) and (got["split"] == want["split"]).all()
    assert (got["split"] != got["split_official"]).any()
    # --splits narrows to those splits, the same rows
    code, _, err = run_cli(["export", "--corpus", suspect_corpus, "--format", "folder", "--out", tmp_path / "v",
                            "--quiet", "--splits", "val", "--min-quality", "0.6"], capsys)
    assert code == 0, err
    idx = pd.read_parquet(tmp_path / "v" / "index.parquet")
    want_val = _all_train_sees(suspect_corpus, min_quality=0.6).query("split == 'val'")
    assert sorted(idx["sample_id"]) == sorted(want_val["sample_id"]) and set(idx["split"]) == {"val"}


# ----------------------------------------------------------------------------------------------------------------------
# refusals and atomicity

@pytest.mark.parametrize("args, says", [
    (["--format", "zip"], "--format 'zip'"),
    ([], "--format is required"),
    (["--format", "hf", "--splits", "train,holdout"], "--splits holdout"),
    (["--format", "hf", "--min-quality", "1.5"], "--min-quality must lie in [0, 1]"),
    (["--format", "hf", "--datasets", "ffpp"], "unknown dataset(s) ffpp"),
    (["--format", "hf", "--methods", "NoSuchMethod"], "unknown method(s) NoSuchMethod"),
    (["--format", "hf", "--split", "mine"], "unknown split 'mine'"),
    (["--format", "hf", "--task", "regression"], "unknown task 'regression'"),
    (["--format", "webdataset", "--drop-suspect"], "no suspect_label column"),
])
def test_bad_options_exit_2_in_one_line_and_write_nothing(quality_corpus, tmp_path, capsys, args, says):  # noqa: F811
    out = tmp_path / "out"
    code, _, err = run_cli(["export", "--corpus", quality_corpus, "--out", out, "--quiet", *args], capsys)
    assert code == 2 and says in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # not the export, not a temporary folder beside it


def test_min_quality_needs_quality_scores(demo_corpus, tmp_path, capsys):  # noqa: F811
    code, _, err = run_cli(["export", "--corpus", demo_corpus, "--format", "hf", "--out", tmp_path / "o",
                            "--min-quality", "0.5"], capsys)
    assert code == 2 and "run `dfkit quality` first" in err and list(tmp_path.iterdir()) == []


def test_existing_out_is_refused_unless_overwrite(quality_corpus, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    base = ["export", "--corpus", quality_corpus, "--format", "folder", "--out", out, "--quiet"]
    code, _, err = run_cli(base, capsys)
    assert code == 2 and "exists and is not empty: pass --overwrite" in err and len(err.strip().splitlines()) == 1
    assert [p.name for p in out.iterdir()] == ["mine.txt"] and sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    code, _, err = run_cli(["export", "--corpus", quality_corpus, "--format", "hf", "--out", quality_corpus], capsys)
    assert code == 2 and "cannot be the corpus" in err
    code, _, err = run_cli(base + ["--overwrite", "--splits", "test"], capsys)
    assert code == 0, err
    assert not (out / "mine.txt").exists() and (out / "index.csv").exists() and set(
        p.name for p in out.iterdir()) == {"README.md", "export.json", "index.csv", "index.parquet", "test"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # the old folder and the temporary one are gone
    (tmp_path / "empty").mkdir()  # an empty folder is fine without --overwrite
    code, _, err = run_cli(["export", "--corpus", quality_corpus, "--format", "hf", "--out", tmp_path / "empty",
                            "--quiet", "--splits", "val"], capsys)
    assert code == 0 and (tmp_path / "empty" / "data").is_dir(), err


def test_a_failed_export_leaves_nothing_under_its_name(quality_corpus, tmp_path, monkeypatch):  # noqa: F811
    from dfkit.corpus import export as ex

    calls = {"n": 0}
    real = ex._png

    def failing(raw, fmt):
        calls["n"] += 1
        if calls["n"] > 50:
            raise OSError("disk full")
        return real(raw, fmt)

    monkeypatch.setattr(ex, "_png", failing)
    with pytest.raises(OSError, match="disk full"):
        ex.export_view(dfkit.corpus.open(quality_corpus), "webdataset", tmp_path / "out", progress=False,
                       shard_crops=20)
    assert calls["n"] == 51 and list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------------------------------------------------
# DuckDB: the README's SQL on the corpus itself

def test_readme_duckdb_sql_joins_crops_and_quality(suspect_corpus):
    import duckdb

    def run(sql: str) -> pd.DataFrame:
        return duckdb.sql(sql.replace("dfkit-corpus", str(suspect_corpus))).df()

    meta = dfkit.corpus.open(suspect_corpus).metadata()
    j = run(SQL_JOIN)
    assert len(j) == len(meta) and j["sample_id"].is_unique
    both = j.set_index("sample_id").join(meta.set_index("sample_id")[["quality", "suspect_label"]], rsuffix="_c")
    assert np.allclose(both["quality"], both["quality_c"])
    per = run(SQL_PER_METHOD)
    assert per["crops"].sum() == len(meta) and per["suspect"].sum() == int(meta["suspect_label"].fillna(False).sum())
    crops = run(SQL_CROPS)
    want = meta[(meta["split"] == "train") & (meta["quality"] >= 0.7)]
    assert sorted(crops["sample_id"]) == sorted(want["sample_id"])
    pixels = _pixels(suspect_corpus)
    r = crops.iloc[0]
    assert np.array_equal(decode_crop(bytes(r["crop"])), pixels[r["sample_id"]])
