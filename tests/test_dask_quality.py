"""`dfkit quality --scheduler`: every crops shard as one Dask task (the local pool's compute function), committed by
the client through the same writer -- the same values, column for column, as a local run."""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from dfkit.corpus.store import list_shards
from dfkit.demo.synth import make_demo_dataset
from dfkit.ingest.base import create_adapter
from dfkit.ingest.engine import IngestParams, run_ingest
from dfkit.quality.run import run_quality
from tests.test_train_cli import run_cli


@pytest.fixture(scope="module")
def two_corpora(tmp_path_factory) -> tuple[Path, Path]:
    """One demo corpus (c0 + c23, so both kinds of full-reference apply) in several shards, and a copy of it."""
    root = tmp_path_factory.mktemp("dq")
    make_demo_dataset(root / "data", n_identities=6, n_frames=10, compressions=("c0", "c23"), progress=False)
    out = root / "local"
    mp = pytest.MonkeyPatch()
    mp.setenv("DFKIT_FLUSH_VIDEOS", "2")  # several crops shards: several tasks
    try:
        for c in ("c0", "c23"):
            run_ingest(create_adapter("demo", root / "data", compression=c), out, IngestParams(frames=3, size=64),
                       workers=1, progress=False, log=lambda m: None)
    finally:
        mp.undo()
    other = root / "dask"
    shutil.copytree(out, other)
    return out, other


def _values(col) -> list:
    """A column's values, NaN as a marker (NaN != NaN, yet two NaNs are the same result)."""
    return ["NaN" if isinstance(v, float) and math.isnan(v) else v for v in col.to_pylist()]


@pytest.mark.slow
def test_quality_on_a_local_cluster_gives_the_same_values_as_local(two_corpora, capsys):
    local, dask = two_corpora
    s = run_quality(local, workers=1, progress=False, log=lambda m: None)
    n = len(list_shards(local, "crops"))
    assert n >= 4 and s.shards_computed == n and not s.errors
    assert s.fullref_pairs > 0 and s.c0_pairs > 0
    # through the CLI, as a user runs it: a LocalCluster of 2 worker processes on 127.0.0.1
    code, out, err = run_cli(["quality", "--corpus", dask, "--scheduler", "local", "--workers", "2", "--quiet"],
                             capsys)
    assert code == 0, err
    assert re.search(rf"quality: {n} of {n} shards computed \({s.crops} crops, {s.fullref_pairs} fake/original "
                     rf"pairs, {s.c0_pairs} crops vs c0\)", out), out
    a = {sh.path.name: sh.path for sh in list_shards(local, "quality")}
    b = {sh.path.name: sh.path for sh in list_shards(dask, "quality")}
    assert sorted(a) == sorted(b) and len(a) == n
    cols = 0
    for name in a:
        ta, tb = pq.read_table(a[name]), pq.read_table(b[name])
        assert ta.schema.names == tb.schema.names, name
        for col in ta.column_names:  # every quality column, value for value (floats bit for bit)
            assert _values(ta[col]) == _values(tb[col]), (name, col)
        assert ta.schema.metadata == tb.schema.metadata, name  # weights, pending refs, suspect version
        cols = len(ta.column_names)
    assert cols > 30  # the no-reference metrics, the composite, fr_* and c0_* columns
    # nothing left to do: a rerun on the cluster computes nothing
    again = run_quality(dask, scheduler="local", workers=2, progress=False, log=lambda m: None)
    assert again.shards_computed == 0 and again.shards_total == n


def test_a_worker_that_cannot_read_the_corpus_names_itself_and_the_path(tmp_path):
    from distributed import Client, LocalCluster

    from dfkit.errors import DfkitError
    from dfkit.quality.run import _dask_shard

    gone = tmp_path / "corpus" / "crops" / "part-000001-abc.parquet"
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp://", host="127.0.0.1",
                      dashboard_address=None, silence_logs=40) as cluster, Client(cluster) as client:
        fut = client.submit(_dask_shard, str(gone), [str(gone)], {}, True, None, pure=False)
        with pytest.raises(DfkitError) as e:
            fut.result()
        worker = next(iter(client.nthreads()))
    msg = str(e.value)
    assert msg.startswith(f"Dask worker {worker} cannot read {gone} (No such file or directory)"), msg
    assert f"the corpus {tmp_path / 'corpus'} must be readable at the same path on every worker" in msg
    assert "\n" not in msg
