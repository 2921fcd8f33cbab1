"""Faults on a Dask cluster: a worker killed (SIGKILL, by its process id) mid-ingest and mid-quality loses and
duplicates nothing -- the corpus has exactly the rows of an uninterrupted local run -- and a worker that cannot read
ROOT stops the run with one line naming the worker and the path."""

from __future__ import annotations

import math
import os
import shutil
import signal
import threading
import time
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pyarrow.parquet as pq
import pytest

from dfkit.corpus.store import committed_shards, list_shards, read_shards
from dfkit.errors import DfkitError
from dfkit.ingest.base import create_adapter
from dfkit.ingest.engine import IngestParams, VideoResult, VideoTask, _dask_on_error, _drive, run_ingest
from dfkit.quality.run import run_quality
from tests.conftest import need_realdata
from tests.test_engine import ListAdapter, rec

P = IngestParams(frames=8, size=128)
QUIET = {"progress": False, "log": lambda m: None}


@pytest.fixture(scope="module")
def cluster():
    """A LocalCluster of 2 single-threaded worker processes on 127.0.0.1 (their nannies restart a killed one)."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
                      silence_logs=40) as lc, Client(lc) as client:
        yield lc.scheduler_address, client


class Killer(threading.Thread):
    """Once ``ready()`` holds (the first results are committed), SIGKILL one worker process that is running a task
    (its pid from ``client.run(os.getpid)``)."""

    def __init__(self, client, ready):
        super().__init__(daemon=True)
        self.client, self.ready, self.killed, self.stop = client, ready, None, False

    def run(self) -> None:
        while not self.stop and not self.ready():
            time.sleep(0.01)
        pids = self.client.run(os.getpid)
        while not self.stop:
            busy = [w for w, keys in self.client.processing().items() if keys and w in pids]
            if busy:
                os.kill(pids[busy[0]], signal.SIGKILL)
                self.killed = (busy[0], pids[busy[0]])
                return
            time.sleep(0.005)


def _kill_during(client, ready, run):
    """``run()`` while a worker is killed; a run that fails is rerun once (it resumes). Returns who was killed."""
    k = Killer(client, ready)
    k.start()
    try:
        try:
            run()
        except DfkitError as e:
            print(f"first run stopped ({e}); rerun")
            run()
    finally:
        k.stop = True
        k.join(5)
    return k.killed


def _rows(root: Path) -> tuple[dict[str, bytes], list[tuple[str, str]]]:
    crops = read_shards([s.path for s in committed_shards(root, "crops")], columns=["sample_id", "crop"])
    ids = crops["sample_id"].to_pylist()
    assert len(ids) == len(set(ids)), "a crop row was committed twice"
    videos = read_shards([s.path for s in committed_shards(root, "videos")], columns=["video_id", "status"])
    return dict(zip(ids, crops["crop"].to_pylist())), sorted(zip(videos["video_id"].to_pylist(),
                                                                 videos["status"].to_pylist()))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The 7 real FF++ clips, ingested without interruption by local processes, one video per shard (and its
    quality computed locally)."""
    root = need_realdata("ffpp_icpr2020dfdc")
    out = tmp_path_factory.mktemp("ref") / "c"
    mp = pytest.MonkeyPatch()
    mp.setenv("DFKIT_FLUSH_VIDEOS", "1")
    try:
        s = run_ingest(create_adapter("ffpp", root), out, P, workers=2, **QUIET)
    finally:
        mp.undo()
    assert s.status == {"ok": 7}
    return root, out


def test_a_worker_killed_mid_ingest_loses_and_duplicates_nothing(reference, cluster, tmp_path, monkeypatch):
    root, ref = reference
    address, client = cluster
    out = tmp_path / "c"
    monkeypatch.setenv("DFKIT_FLUSH_VIDEOS", "1")  # every result is committed as it arrives
    killed = _kill_during(client, lambda: bool(committed_shards(out, "videos")) if out.exists() else False,
                          lambda: run_ingest(create_adapter("ffpp", root), out, P, scheduler=address, **QUIET))
    assert killed is not None, "no worker was running a task after the first result: nothing was tested"
    crops, videos = _rows(out)
    ref_crops, ref_videos = _rows(ref)
    assert videos == ref_videos and len(videos) == 7  # each video once, each ok
    assert sorted(crops) == sorted(ref_crops) and len(crops) == 7 * 8
    assert all(crops[k] == ref_crops[k] for k in crops)  # the same pixels, byte for byte


def test_a_worker_killed_mid_quality_loses_and_duplicates_nothing(reference, cluster, tmp_path):
    _, ref = reference
    address, client = cluster
    out = tmp_path / "c"
    shutil.copytree(ref, out, ignore=shutil.ignore_patterns("quality"))
    if not list_shards(ref, "quality"):
        run_quality(ref, workers=1, **QUIET)
    killed = _kill_during(client, lambda: bool(list_shards(out, "quality")) if (out / "quality").exists() else False,
                          lambda: run_quality(out, scheduler=address, **QUIET))
    assert killed is not None, "no worker was running a task after the first shard: nothing was tested"
    a = {s.path.name: s.path for s in list_shards(ref, "quality")}
    b = {s.path.name: s.path for s in list_shards(out, "quality")}
    assert sorted(a) == sorted(b) and len(a) == 7
    for name in a:
        ta, tb = pq.read_table(a[name]), pq.read_table(b[name])
        assert ta.num_rows == tb.num_rows == 8 and ta.column_names == tb.column_names
        for col in ta.column_names:
            va, vb = ([None if isinstance(v, float) and math.isnan(v) else v for v in t[col].to_pylist()]
                      for t in (ta, tb))
            assert va == vb, (name, col)


def test_a_worker_that_cannot_read_root_stops_the_run_naming_worker_and_path(cluster, tmp_path, face_video):
    """The client lists a file that is gone when the worker opens it (as on a worker where ROOT is not mounted):
    one line, naming the worker and the file, and no video recorded as failed for it."""
    address, client = cluster
    gone = tmp_path / "data" / "gone.mp4"
    gone.parent.mkdir()
    shutil.copy(face_video, gone)

    class Vanishing(ListAdapter):
        def videos(self):
            yield from self.recs
            gone.unlink()  # after the listing, before any worker opens it

    with pytest.raises(DfkitError) as e:
        run_ingest(Vanishing([rec(gone, "g")]), tmp_path / "c", P, scheduler=address, **QUIET)
    msg = str(e.value)
    assert "\n" not in msg
    workers = set(client.nthreads())
    assert any(msg.startswith(f"Dask worker {w} cannot read {gone} (No such file or directory)") for w in workers), msg
    assert f"ROOT {gone.parent} must be readable at the same path on every worker" in msg
    assert not committed_shards(tmp_path / "c", "videos")  # nothing recorded as failed


def test_dask_errors_a_lost_worker_fails_the_video_a_lost_cluster_stops_the_run():
    """Constructed cases of :func:`_dask_on_error`, and :func:`_drive` handing over the results that arrived with
    the error that stops the run (each once)."""
    from distributed import KilledWorker

    task = VideoTask(rec(Path("/nowhere/v.mp4"), "v"))
    on_error = _dask_on_error("tcp://10.0.0.1:8786")
    res = on_error(task, KilledWorker("k", SimpleNamespace(address="tcp://10.0.0.2:1"), 3))
    assert res.video_row["status"] == "failed" and res.video_row["stage"] == "worker"
    with pytest.raises(DfkitError, match=r"^lost the Dask cluster at tcp://10\.0\.0\.1:8786 \(CancelledError"):
        on_error(task, CancelledError())
    with pytest.raises(DfkitError, match="^worker x cannot read"):
        on_error(task, DfkitError("worker x cannot read y"))

    got: list[str] = []
    tasks = [VideoTask(rec(Path(f"/nowhere/{i}.mp4"), str(i))) for i in range(4)]

    def submit(t: VideoTask) -> Future:
        f: Future = Future()
        if t.record.video_id == "2":
            f.set_exception(CancelledError())
        else:
            f.set_result(VideoResult({"video_id": t.record.video_id}))
        return f

    def on_result(t, r):
        got.append(r.video_row["video_id"])
        return []

    with pytest.raises(DfkitError, match="lost the Dask cluster"):
        _drive(submit, list(tasks), on_result, 4, {}, on_error=on_error)
    assert sorted(got) == ["0", "1", "3"]  # all that arrived with the error, each once
    with ThreadPoolExecutor(2) as ex:  # a task that raises without on_error still propagates
        with pytest.raises(ZeroDivisionError):
            _drive(lambda t: ex.submit(lambda: 1 / 0), list(tasks[:1]), on_result, 2, {})
