"""Suspect labels everywhere a user looks (issue 12): ``dfkit train --drop-suspect`` / ``dfkit eval --drop-suspect``
leave exactly the crops :func:`dfkit.corpus.schema.suspect_mask` flags out (training and validation; evaluation),
say how many per split and class (``data.json``, ``eval.json``), refuse a corpus without the column in one line
(exit 2, nothing written), and the quality sweep's ``--suspect-arm`` compares training without them against all
crops, paired. (The FiftyOne side is in tests/test_browse.py.)

The suspect labels are written here, not by ``dfkit quality``: a quality shard with ``suspect_label`` set on a known
set of crops, committed like every writer does (corpus lock, temporary name, rename), so each test knows its answer.
"""

from __future__ import annotations

import json
import shutil
import types
from pathlib import Path

import pandas as pd
import pytest

import dfkit.corpus
from dfkit.corpus.schema import SUSPECT_COLUMN, SUSPECT_REASON_COLUMN
from tests.test_train_cli import demo_corpus, one_thread, quality_corpus, run_cli  # noqa: F401 - fixtures

REASON = "test: no change against the paired original"
TINY = ["--backbone", "tiny", "--img-size", "32", "--epochs", "1", "--batch-size", "32", "--workers", "0",
        "--threads", "1"]


def write_suspect(corpus: Path, labels: dict[str, bool | None], reason: str = REASON,
                  extra: dict[str, list] | None = None) -> Path:
    """Commit a quality shard that sets ``suspect_label`` (and ``suspect_reason``, plus ``extra`` columns) on the
    crops of ``labels``. Each row repeats the crop's latest quality values (the latest shard's row of a crop wins),
    so quality scores stay as they were. Written as ``dfkit quality`` does: under the corpus lock, to a temporary
    name, then renamed into place."""
    import pyarrow as pa

    from dfkit.corpus.store import CorpusLock, atomic_write_table, committed_shards, next_shard, read_shards

    ids = list(labels)
    shards = [s.path for s in committed_shards(corpus, "quality")]
    if shards:
        old = read_shards(shards)
        schema = old.schema
        df = old.to_pandas().drop_duplicates("sample_id", keep="last").set_index("sample_id")
        missing = [i for i in ids if i not in df.index]
        assert not missing, f"crops without quality rows: {missing[:3]}"
        df = df.loc[ids].reset_index()
    else:
        schema = pa.schema([pa.field("sample_id", pa.string())])
        df = pd.DataFrame({"sample_id": ids})
    df[SUSPECT_COLUMN] = [labels[i] for i in ids]
    df[SUSPECT_REASON_COLUMN] = [reason if labels[i] else None for i in ids]
    cols = {SUSPECT_COLUMN: pa.bool_(), SUSPECT_REASON_COLUMN: pa.string()}
    for name, values in (extra or {}).items():
        df[name] = values
        cols[name] = pa.array(values).type
    for name, typ in cols.items():
        if name not in schema.names:
            schema = schema.append(pa.field(name, typ))
    table = pa.Table.from_pandas(df[schema.names], schema=schema, preserve_index=False)
    with CorpusLock(corpus, "test: suspect labels"):
        (corpus / "quality").mkdir(exist_ok=True)
        seq, tok = next_shard(corpus)
        path = corpus / "quality" / f"part-{seq:06d}-{tok}.parquet"
        atomic_write_table(table, path)
    return path


def choose_suspects(meta: pd.DataFrame) -> set[str]:
    """The known suspect set: in every split, all crops of the first demo_checkerboard video and every other crop of
    the first demo_poisson_swap video (by sample id)."""
    marked: set[str] = set()
    for split in ("train", "val", "test"):
        m = meta[meta["split"] == split]
        for method, step in (("demo_checkerboard", 1), ("demo_poisson_swap", 2)):
            g = m[m["method_canonical"] == method]
            if g.empty:
                continue
            first = sorted(g["video_id"].unique())[0]
            marked |= set(sorted(g.loc[g["video_id"] == first, "sample_id"])[::step])
    return marked


def labels_for(meta: pd.DataFrame, marked: set[str]) -> dict[str, bool | None]:
    """What quality would write: true on the marked fakes, false on the other fakes, null (not checked) on reals."""
    return {s: (None if lab == "real" else s in marked) for s, lab in zip(meta["sample_id"], meta["label"])}


def counts(df: pd.DataFrame, task: str = "attribution") -> dict:
    """Frames and videos, in all and per class, counted here by hand (not by dfkit's helper)."""
    cls = df["method_canonical"].where(df["label"] != "real", "real") if task == "attribution" else \
        df["label"].where(df["label"] == "real", "fake")
    per = {}
    for c in sorted(set(cls)):
        g = df[cls == c]
        per[c] = {"frames": len(g), "videos": g[["dataset", "video_id"]].drop_duplicates().shape[0]}
    return {"frames": len(df), "videos": df[["dataset", "video_id"]].drop_duplicates().shape[0], "per_class": per}


@pytest.fixture(scope="module")
def suspect_corpus(quality_corpus, tmp_path_factory):
    """A copy of the quality corpus with the known set of suspect crops."""
    path = tmp_path_factory.mktemp("suspect") / "corpus"
    shutil.copytree(quality_corpus, path)
    meta = dfkit.corpus.open(path).metadata()
    marked = choose_suspects(meta)
    write_suspect(path, labels_for(meta, marked))
    return path, marked


@pytest.fixture(scope="module")
def suspect_run(suspect_corpus, tmp_path_factory):
    """`dfkit train --drop-suspect` on the suspect corpus (tiny model, one epoch)."""
    corpus, _marked = suspect_corpus
    run = tmp_path_factory.mktemp("suspect-run") / "run"
    code, _out, _err = run_cli(["train", "--corpus", corpus, *TINY, "--drop-suspect", "--out", run, "-q"],
                               _NoCapture())
    assert code == 0
    return run


class _NoCapture:
    """capsys is per test: a module fixture's run_cli reads nothing back (pytest still captures the output)."""

    def readouterr(self):
        return types.SimpleNamespace(out="", err="")


# -- the labels as the corpus shows them -------------------------------------------------------------------------------
def test_the_corpus_shows_the_known_labels(suspect_corpus):
    from dfkit.corpus.schema import suspect_mask

    corpus, marked = suspect_corpus
    meta = dfkit.corpus.open(corpus).metadata()
    assert set(meta.loc[suspect_mask(meta).to_numpy(), "sample_id"]) == marked
    assert len(marked) >= 9 and meta["quality"].notna().all()  # the quality scores survived the extra shard
    reals = meta["label"] == "real"
    assert meta.loc[reals, SUSPECT_COLUMN].isna().all()
    assert set(meta.loc[meta["sample_id"].isin(marked), SUSPECT_REASON_COLUMN]) == {REASON}


# -- selection ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("task", ["attribution", "binary"])
def test_select_data_drops_exactly_the_suspect_crops(suspect_corpus, task):
    from dfkit.train.data import select_data

    corpus, marked = suspect_corpus
    meta = dfkit.corpus.open(corpus).metadata()
    full = select_data(corpus, task=task)
    sel = select_data(corpus, task=task, drop_suspect=True)
    for split in ("train", "val"):
        before = set(getattr(full, split)["sample_id"])
        after = set(getattr(sel, split)["sample_id"])
        assert before & marked, split  # the known set has crops in this split ...
        assert after == before - marked, split  # ... and exactly those are left out
    assert set(sel.test["sample_id"]) == set(full.test["sample_id"])  # test is never filtered
    assert set(sel.test["sample_id"]) & marked
    dropped = sel.suspect["dropped"]
    assert sel.suspect["enabled"] is True
    for split in ("train", "val"):
        rows = meta[(meta["split"] == split) & meta["sample_id"].isin(marked)]
        assert dropped[split] == counts(rows, task), split
    if task == "attribution":
        assert set(dropped["train"]["per_class"]) == {"demo_checkerboard", "demo_poisson_swap"}
    else:
        assert set(dropped["train"]["per_class"]) == {"fake"}
    tr = dropped["train"]["per_class"]
    if task == "attribution":  # the note names the counts per class too
        said = (f"--drop-suspect left out {dropped['train']['frames']} (demo_checkerboard "
                f"{tr['demo_checkerboard']['frames']}, demo_poisson_swap {tr['demo_poisson_swap']['frames']}) "
                "suspect training crops")
        assert any(n.startswith(said) for n in sel.notes), sel.notes
    assert any("--drop-suspect left out" in n for n in sel.notes)
    # off (the default): nothing is dropped, the suspect crops kept are counted
    assert full.suspect["enabled"] is False and full.suspect["kept"] == dropped
    assert any("--drop-suspect leaves them out" in n for n in full.notes)


def test_select_data_without_the_column(demo_corpus):
    from dfkit.errors import DfkitError
    from dfkit.train.data import select_data

    sel = select_data(demo_corpus, task="attribution")
    assert sel.suspect == {"enabled": False}
    with pytest.raises(DfkitError, match="no suspect_label column yet: run `dfkit quality` first"):
        select_data(demo_corpus, task="attribution", drop_suspect=True)


def test_settings_and_config_file(suspect_corpus, tmp_path):
    import yaml

    from dfkit import services
    from dfkit.errors import SettingsError
    from dfkit.train.settings import TrainSettings

    assert TrainSettings().drop_suspect is False
    with pytest.raises(SettingsError, match="--drop-suspect must be true or false"):
        TrainSettings(backbone="tiny", drop_suspect="sometimes")
    cfg = tmp_path / "train.yaml"
    cfg.write_text(yaml.safe_dump({"backbone": "tiny", "drop-suspect": True}))
    assert services.resolve_settings(cfg).drop_suspect is True
    assert services.resolve_settings(cfg, {"drop_suspect": False}).drop_suspect is False  # the command line wins
    assert services.resolve_settings(cfg, {"drop_suspect": None}).drop_suspect is True  # not given


# -- dfkit train -------------------------------------------------------------------------------------------------------
def test_train_drop_suspect_names_the_counts_in_data_json(suspect_corpus, suspect_run):
    corpus, marked = suspect_corpus
    run = suspect_run
    meta = dfkit.corpus.open(corpus).metadata()
    data = json.loads((run / "data.json").read_text())
    conf = json.loads((run / "config.json").read_text())
    assert conf["drop_suspect"] is True
    ds = data["drop_suspect"]
    assert ds["enabled"] is True
    for split in ("train", "val"):
        rows = meta[(meta["split"] == split) & meta["sample_id"].isin(marked)]
        assert ds["dropped"][split] == counts(rows), split
    train = meta[meta["split"] == "train"]
    assert data["counts"]["train"]["frames"] == len(train) - int(train["sample_id"].isin(marked).sum())
    cb = data["counts"]["train"]["per_class"]["demo_checkerboard"]["frames"]
    assert cb == int(((train["method_canonical"] == "demo_checkerboard") & ~train["sample_id"].isin(marked)).sum())
    val = meta[meta["split"] == "val"]
    assert data["counts"]["val"]["frames"] == len(val) - int(val["sample_id"].isin(marked).sum())
    assert any("--drop-suspect left out" in n for n in data["notes"])


def test_train_without_the_flag_keeps_them(suspect_corpus, tmp_path, capsys):
    corpus, marked = suspect_corpus
    run = tmp_path / "run"
    code, out, err = run_cli(["train", "--corpus", corpus, *TINY, "--out", run, "-q"], capsys)
    assert code == 0, err
    data = json.loads((run / "data.json").read_text())
    meta = dfkit.corpus.open(corpus).metadata()
    assert data["drop_suspect"]["enabled"] is False
    assert data["counts"]["train"]["frames"] == int((meta["split"] == "train").sum())
    n = int(((meta["split"] == "train") & meta["sample_id"].isin(marked)).sum())
    assert data["drop_suspect"]["kept"]["train"]["frames"] == n
    assert f"note: {n} training crops are suspect" in out


def test_train_drop_suspect_without_the_column_is_one_line_exit_2(demo_corpus, tmp_path, capsys):
    run = tmp_path / "r"
    code, out, err = run_cli(["train", "--corpus", demo_corpus, *TINY, "--drop-suspect", "--out", run, "-q"], capsys)
    assert code == 2
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("dfkit: error: --drop-suspect:"), err
    assert "run `dfkit quality` first" in lines[0] and "Traceback" not in err + out
    assert not run.exists()  # refused before anything was written
    # the same through a --config key
    cfg = tmp_path / "c.yaml"
    cfg.write_text("drop_suspect: true\n")
    code, out, err = run_cli(["train", "--corpus", demo_corpus, *TINY, "--config", cfg, "--out", run, "-q"], capsys)
    assert code == 2 and "--drop-suspect:" in err and not run.exists()


# -- dfkit eval --------------------------------------------------------------------------------------------------------
def test_eval_drop_suspect(suspect_corpus, suspect_run, tmp_path, capsys):
    import pyarrow.parquet as pq

    corpus, marked = suspect_corpus
    run = suspect_run
    meta = dfkit.corpus.open(corpus).metadata()
    test = meta[meta["split"] == "test"]
    out = tmp_path / "ev"
    code, stdout, err = run_cli(["eval", run, "--corpus", corpus, "--n-boot", "20", "--workers", "0", "--threads",
                                 "1", "--drop-suspect", "--out", out], capsys)
    assert code == 0, err
    rep = json.loads((out / "eval.json").read_text())
    ids = set(pq.read_table(out / "predictions.parquet", columns=["sample_id"]).column(0).to_pylist())
    assert ids == set(test["sample_id"]) - marked and test["sample_id"].isin(marked).any()
    assert rep["n_frames"] == len(ids)
    assert rep["drop_suspect"] == {"enabled": True, "dropped": counts(test[test["sample_id"].isin(marked)])}
    n = int(test["sample_id"].isin(marked).sum())
    assert f"{n} suspect crops dropped" in (out / "eval.md").read_text() and f"({n} suspect crops dropped)" in stdout
    # without the flag every test crop is scored, and the suspect ones are counted as kept
    out2 = tmp_path / "ev2"
    code, stdout, err = run_cli(["eval", run, "--corpus", corpus, "--n-boot", "0", "--workers", "0", "--threads",
                                 "1", "--out", out2], capsys)
    assert code == 0, err
    rep2 = json.loads((out2 / "eval.json").read_text())
    assert rep2["n_frames"] == len(test) and rep2["drop_suspect"]["enabled"] is False
    assert rep2["drop_suspect"]["kept"] == rep["drop_suspect"]["dropped"]


def test_eval_drop_suspect_without_the_column_is_one_line_exit_2(demo_corpus, suspect_run, tmp_path, capsys):
    run = suspect_run
    out = tmp_path / "ev"
    code, stdout, err = run_cli(["eval", run, "--corpus", demo_corpus, "--n-boot", "0", "--workers", "0",
                                 "--drop-suspect", "--out", out], capsys)
    assert code == 2
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "--drop-suspect: this corpus has no suspect_label column yet" in lines[0], err
    assert "Traceback" not in err and not out.exists()


# -- the quality sweep's arm -------------------------------------------------------------------------------------------
def test_quality_sweep_suspect_arm(suspect_corpus, tmp_path, monkeypatch, capsys):
    """Arms q>=0 and "drop suspect labels": the second's pool is every training crop but the marked ones, the runs
    train on none of them, both arms have the same size, and the pair is reported in the table."""
    import dfkit.train.experiments as ex

    corpus, marked = suspect_corpus
    trained: dict[str, set[str]] = {}
    real_train_run = ex.train_run

    def spy(s, **kw):
        trained[Path(s.out).parent.name] = set(kw["train_rows"]["sample_id"])
        return real_train_run(s, **kw)

    monkeypatch.setattr(ex, "train_run", spy)
    out = tmp_path / "sweep"
    args = ["experiment", "quality-sweep", "--corpus", corpus, *TINY, "--thresholds", "0", "--no-low-arm",
            "--suspect-arm", "--seeds", "0", "--n-boot", "30", "--out", out]
    code, stdout, err = run_cli(args, capsys)
    assert code == 0, err
    rep = json.loads((out / "sweep.json").read_text())
    assert [a["name"] for a in rep["arms"]] == ["q>=0", ex.SUSPECT_ARM] and rep["suspect_arm"] is True
    meta = dfkit.corpus.open(corpus).metadata()
    train = meta[meta["split"] == "train"]
    arm = rep["arms"][1]
    assert arm["pool_frames"] == len(train) - int(train["sample_id"].isin(marked).sum())
    assert arm["suspect_dropped"] == counts(train[train["sample_id"].isin(marked)])
    assert trained["arm1"] and not trained["arm1"] & marked  # the arm never trains on a suspect crop
    assert len(trained["arm0"]) == len(trained["arm1"]) == rep["train_frames_per_arm"]  # equal size
    pair = [p for p in rep["paired"] if p["kind"] == "suspect_vs_all"]
    assert len(pair) == 1 and (pair[0]["a"], pair[0]["b"]) == (ex.SUSPECT_ARM, "q>=0")
    assert rep["suspect_conclusion"].startswith("Leaving the suspect crops out of training")
    md = (out / "sweep.md").read_text()
    assert f"| {ex.SUSPECT_ARM} |" in md and f"{ex.SUSPECT_ARM} - q>=0" in md
    assert ex.SUSPECT_ARM in stdout and "Leaving the suspect crops out" in stdout
    data = json.loads((out / "arm1" / "seed0" / "data.json").read_text())
    assert data["drop_suspect"]["enabled"] is True
    assert data["drop_suspect"]["dropped"]["train"] == arm["suspect_dropped"]
    assert json.loads((out / "arm1" / "seed0" / "config.json").read_text())["drop_suspect"] is True


@pytest.mark.parametrize("extra,needle", [
    (["--thresholds", "0.5"], "include 0 in --thresholds"),
    (["--thresholds", "0"], "--suspect-arm: this corpus has no suspect_label column yet"),
])
def test_quality_sweep_suspect_arm_errors(quality_corpus, tmp_path, capsys, extra, needle):
    out = tmp_path / "sweep"
    code, stdout, err = run_cli(["experiment", "quality-sweep", "--corpus", quality_corpus, *TINY, "--suspect-arm",
                                 "--seeds", "0", "--out", out, *extra], capsys)
    assert code == 2
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0], err
    assert not out.exists()
