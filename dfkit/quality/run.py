"""``dfkit quality``: compute the metrics for a corpus, shard by shard, resumably and in parallel.

For each committed crops shard ``crops/part-N-T.parquet`` there is one quality shard ``quality/part-N-T.parquet``
(same name) keyed by ``sample_id``: the no-reference metrics and scores, ``quality``, ``video_quality``, and the
full-reference columns -- ``fr_*`` for a fake against its paired original (same frame, same box), and ``c0_*``
for a compressed crop against the same content at the lossless level, where the corpus has both. A crops shard
holds whole videos, so per-video metrics (jitter, video quality) see all of a video's crops.

What is done is derived from the shards: a crops shard without its quality shard is computed; one whose quality
shard was made by another metric version is recomputed; one whose full-reference references were missing and are
now in the corpus is recomputed. New weights (``--weights``) only redo the composite (no pixels are read).
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dfkit.corpus.schema import META_QUALITY_FR_PENDING as META_PENDING
from dfkit.corpus.schema import META_SUSPECT_VERSION
from dfkit.corpus.schema import META_QUALITY_VERSION as META_VERSION
from dfkit.corpus.schema import META_QUALITY_WEIGHTS as META_WEIGHTS
from dfkit.corpus.schema import sample_id
from dfkit.corpus.store import committed_shards, list_shards
from dfkit.corpus.writer import QualityWriter
from dfkit.quality.suspect import SUSPECT_VERSION, label_suspects


@dataclass
class QualitySummary:
    shards_total: int = 0
    shards_computed: int = 0
    shards_recomposed: int = 0
    shards_relabelled: int = 0
    crops: int = 0
    fullref_pairs: int = 0
    c0_pairs: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)


def stored_weights(root: Path) -> dict[str, float] | None:
    """The composite weights the corpus's quality shards were made with (None before `dfkit quality`). A
    :class:`~dfkit.errors.DfkitError` when a shard was made by another quality version (its scores would not be
    comparable with fresh ones)."""
    from dfkit.errors import DfkitError
    from dfkit.quality.compute import QUALITY_VERSION

    weights = None
    from dfkit.corpus.store import corrupt_shard_error

    for sh in list_shards(root, "quality"):
        try:
            md = pq.read_schema(sh.path).metadata or {}
        except (pa.ArrowException, OSError) as e:
            raise corrupt_shard_error(sh.path, e) from None
        if int(md.get(META_VERSION, b"0")) != QUALITY_VERSION:
            raise DfkitError(f"{sh.path} was made by quality version {int(md.get(META_VERSION, b'0'))}, this dfkit "
                             f"scores with version {QUALITY_VERSION}: run `dfkit quality --corpus {root}` first")
        if weights is None and META_WEIGHTS in md:
            weights = json.loads(md[META_WEIGHTS])
    return weights


def _index(files: list[Path]) -> pa.Table:
    """The corpus's crop index (no pixels): what is where, for finding references."""
    cols = ["sample_id", "dataset", "video_id", "content_id", "compression", "frame_index", "pair_video_id"]
    parts = []
    for i, f in enumerate(files):
        t = pq.read_table(f, columns=cols)
        parts.append(t.append_column("_file", pa.array(np.full(len(t), i, dtype=np.int32))))
    return pa.concat_tables(parts) if parts else pa.table({c: [] for c in cols + ["_file"]})


def _read_rows(files: list[Path], index: pa.Table, ids: set[str]) -> pa.Table | None:
    """Full rows (with crops) of the given sample_ids, reading each shard that holds some of them once."""
    if not ids:
        return None
    hit = index.filter(pc.is_in(index["sample_id"], pa.array(sorted(ids))))
    parts = []
    for fi in sorted(set(hit["_file"].to_pylist())):
        t = pq.read_table(files[fi])
        parts.append(t.filter(pc.is_in(t["sample_id"], hit["sample_id"])))
    return pa.concat_tables(parts) if parts else None


def _references(shard: pa.Table, index: pa.Table) -> tuple[set[str], set[str], set[str]]:
    """Reference sample_ids this shard's rows need: (pair refs, c0 refs, refs not in the corpus)."""
    present = set(index["sample_id"].to_pylist())
    pair, c0, missing = set(), set(), set()
    rows = shard.select(["dataset", "pair_video_id", "frame_index", "content_id", "compression"]).to_pylist()
    c0_keys: dict[tuple, str] = {}
    lossless = index.filter(pc.equal(index["compression"], "c0"))
    for r in lossless.select(["dataset", "content_id", "frame_index", "sample_id"]).to_pylist():
        c0_keys[(r["dataset"], r["content_id"], r["frame_index"])] = r["sample_id"]
    for r in rows:
        if r["pair_video_id"]:
            rid = sample_id(r["dataset"], r["pair_video_id"], r["frame_index"])
            (pair if rid in present else missing).add(rid)
        if r["compression"] not in (None, "c0"):
            rid = c0_keys.get((r["dataset"], r["content_id"], r["frame_index"]))
            if rid:
                c0.add(rid)
    return pair, c0, missing


def _fr_columns(fr: pa.Table, prefix: str) -> pa.Table:
    """Keep the metric columns of a compute_fullref result, renamed with ``prefix``; drop rows with no ref."""
    keep = [n for n in fr.column_names if n.startswith("fr_") or n == "ref_sample_id"]
    t = fr.select(["sample_id"] + keep)
    t = t.filter(pc.is_valid(t["ref_sample_id"]))
    return t.rename_columns(["sample_id"] + [prefix + n.removeprefix("fr_") if n.startswith("fr_")
                                             else f"{prefix}ref_sample_id" for n in keep])


def compute_shard(shard_path: str, files: list[str], weights: dict[str, float], fullref: bool,
                  fullref_frames: int | None) -> tuple[pa.Table, dict[str, int], list[str]]:
    """Quality table for one crops shard (runs in a worker process)."""
    import cv2

    from dfkit.corpus.codec import DecodedCrops
    from dfkit.quality import compute_quality
    from dfkit.quality.fullref import compute_fullref

    cv2.setNumThreads(1)
    shard = pq.read_table(shard_path)
    decoded = DecodedCrops()  # each crop decoded once for the quality pass and both full-reference passes
    q = compute_quality(shard, weights=weights, decoded=decoded)
    stats = {"crops": shard.num_rows, "fr": 0, "c0": 0}
    missing: set[str] = set()
    if fullref:
        paths = [Path(f) for f in files]
        index = _index(paths)
        pair_ids, c0_ids, missing = _references(shard, index)
        rows = shard
        if fullref_frames:  # a subset of frames per video (evenly spread) keeps the demo fast
            keep = _frame_subset(shard, fullref_frames)
            rows = shard.take(pa.array(keep))
        extra = []
        refs = _read_rows(paths, index, pair_ids)
        if refs is not None:
            fake = rows.filter(pc.is_valid(rows["pair_video_id"]))
            if fake.num_rows:
                t = _fr_columns(compute_fullref(fake, refs, on="pair", decoded=decoded), "fr_")
                stats["fr"] = t.num_rows
                extra.append(t)
        refs = _read_rows(paths, index, c0_ids)
        if refs is not None:
            comp = rows.filter(pc.not_equal(rows["compression"], "c0"))
            if comp.num_rows:
                t = _fr_columns(compute_fullref(comp, refs, on="content", decoded=decoded), "c0_")
                stats["c0"] = t.num_rows
                extra.append(t)
        for t in extra:
            q = _left_join(q, t)
    q = label_suspects(q)
    meta = dict(q.schema.metadata or {})
    meta[META_WEIGHTS] = json.dumps(weights, sort_keys=True).encode()
    meta[META_PENDING] = json.dumps(sorted(missing)).encode()
    meta[META_SUSPECT_VERSION] = str(SUSPECT_VERSION).encode()
    return q.replace_schema_metadata(meta), stats, sorted(missing)


def _frame_subset(shard: pa.Table, n: int) -> list[int]:
    vids = shard["video_id"].to_pylist()
    frames = shard["frame_index"].to_pylist()
    by: dict[str, list[tuple[int, int]]] = {}
    for i, (v, f) in enumerate(zip(vids, frames)):
        by.setdefault(v, []).append((f, i))
    keep = []
    for items in by.values():
        items.sort()
        pos = np.unique(np.linspace(0, len(items) - 1, min(n, len(items))).round().astype(int))
        keep += [items[p][1] for p in pos]
    return sorted(keep)


def _left_join(q: pa.Table, t: pa.Table) -> pa.Table:
    """Add ``t``'s columns to ``q`` by sample_id, keeping q's row order (nulls where t has no row)."""
    pos = {s: i for i, s in enumerate(t["sample_id"].to_pylist())}
    take = pa.array([pos.get(s) for s in q["sample_id"].to_pylist()], type=pa.int64())
    for name in t.column_names[1:]:
        q = q.append_column(name, t[name].take(take))
    return q


def _stored(path: Path) -> tuple[dict[bytes, bytes], set[str]]:
    md = pq.read_schema(path).metadata or {}
    pending = set(json.loads(md.get(META_PENDING, b"[]")))
    return md, pending


def _pool(workers: int) -> ProcessPoolExecutor:
    """The worker pool of ``dfkit quality``: workers (~900 MB each) die with this process, even on kill -9, and
    leave Ctrl-C/SIGTERM to it (see :mod:`dfkit.procs`)."""
    from dfkit.procs import init_worker

    return ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=init_worker,
                               initargs=(os.getpid(),))


def _dask_shard(shard_path: str, files: list[str], weights: dict[str, float], fullref: bool,
                fullref_frames: int | None) -> tuple[pa.Table, dict[str, int], list[str]]:
    """:func:`compute_shard` on a Dask worker. A shard the client listed that this worker cannot open means the
    corpus is not visible here at the same path: a :class:`~dfkit.errors.DfkitError` naming the worker and the
    path (the run stops; a shard error would be recorded for every shard)."""
    for f in [shard_path] + (files if fullref else []):
        try:
            with open(f, "rb"):
                pass
        except OSError as e:
            from distributed import get_worker

            from dfkit.errors import DfkitError

            try:
                where = get_worker().address
            except ValueError:  # not on a worker (called directly)
                where = "?"
            root = Path(f).parent.parent
            raise DfkitError(f"Dask worker {where} cannot read {f} ({e.strerror or e}): the corpus {root} must be "
                             "readable at the same path on every worker") from None
    return compute_shard(shard_path, files, weights, fullref, fullref_frames)


@contextmanager
def _dask_client(scheduler: str, workers: int):
    """A Dask client of ``scheduler`` (an address), or of a LocalCluster of ``workers`` single-threaded processes
    on 127.0.0.1 (``local``), closed on leaving (as ``dfkit ingest --scheduler``; a stage may not import another)."""
    from distributed import Client, LocalCluster

    from dfkit.errors import DfkitError

    cluster = None
    if scheduler == "local":  # the cluster's own logs only when critical: dfkit reports each failure in one line
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address=None, silence_logs=50)
        client = Client(cluster)
    else:
        try:
            client = Client(scheduler, timeout=30)
        except (OSError, TimeoutError, ValueError) as e:
            raise DfkitError(f"cannot reach the Dask scheduler at {scheduler}: {e}") from None
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _run_dask(todo: list, args: tuple, scheduler: str, workers: int, commit: Callable, guard, s: QualitySummary
              ) -> None:
    """Every shard of ``todo`` as one Dask task (:func:`compute_shard`, as the local pool runs it); this process
    commits each result once, through the same writer, as it arrives. A worker that dies has its shards rescheduled
    by Dask; a shard whose workers died repeatedly (``KilledWorker``) or that raised is a shard error, as locally; a
    worker that cannot read the corpus, or a lost cluster, stops the run with one line (the shards written stay,
    a rerun computes the rest)."""
    from distributed import as_completed

    from dfkit.errors import DfkitError

    with _dask_client(scheduler, workers) as client:
        futs = {client.submit(_dask_shard, str(c.path), *args, pure=False): c for c in todo}
        for f in as_completed(list(futs)):
            c = futs.pop(f)  # dropping the future frees its result on the worker
            with guard.critical():
                if f.status == "error":
                    e = f.exception()
                    if isinstance(e, DfkitError):
                        raise e
                    s.errors.append(f"{c.path.name}: {type(e).__name__}: {e}")
                    continue
                try:
                    res = f.result()
                except Exception as e:  # noqa: BLE001 - cancelled: the scheduler is gone
                    raise DfkitError(f"lost the Dask cluster at {scheduler} ({type(e).__name__}: {e}): the quality "
                                     "shards written stay; rerun the same command to compute the rest") from None
                try:
                    commit(c, res)
                except Exception as e:  # noqa: BLE001 - one bad shard must not lose the others
                    s.errors.append(f"{c.path.name}: {type(e).__name__}: {e}")


def run_quality(corpus: str | Path, weights: dict[str, float] | None = None, workers: int | None = None,
                fullref: bool = True, fullref_frames: int | None = None, recompute: bool = False,
                progress: bool = True, log: Callable[[str], None] = print, scheduler: str | None = None
                ) -> QualitySummary:
    """Compute the quality shards a corpus lacks (see the module's docstring), in ``workers`` local processes or,
    with ``scheduler`` (an address, or ``local``), as one Dask task per crops shard; either way this process alone
    writes the quality shards, so the values are the same."""
    from tqdm import tqdm

    from dfkit.quality import QUALITY_VERSION, recompose, resolve_weights

    root = Path(corpus).expanduser()
    w = resolve_weights(weights)
    workers = max(1, workers or os.cpu_count() or 1)
    s = QualitySummary()
    t0 = time.perf_counter()
    with QualityWriter(root) as qw:
        crops = committed_shards(root, "crops")
        files = [str(c.path) for c in crops]
        qw.remove_orphans(crops)  # quality of crops that are gone
        done = qw.shards()
        present: set[str] | None = None
        todo, recomp = [], []
        for c in crops:
            qp = done.get(c.key)
            if qp is None or recompute:
                todo.append(c)
                continue
            md, pending = _stored(qp)
            if int(md.get(META_VERSION, b"0")) != QUALITY_VERSION:
                todo.append(c)
                continue
            if fullref and pending:
                if present is None:
                    present = set(_index([Path(f) for f in files])["sample_id"].to_pylist())
                if pending & present:
                    todo.append(c)
                    continue
            reweight = json.loads(md.get(META_WEIGHTS, b"{}")) != w
            relabel = int(md.get(META_SUSPECT_VERSION, b"0")) != SUSPECT_VERSION
            if reweight or relabel:
                recomp.append((c, qp, reweight, relabel))
        s.shards_total = len(crops)
        for c, qp, reweight, relabel in recomp:  # from the stored values only: no pixels read
            t = pq.read_table(qp)
            if reweight:  # new weights: redo the composite (recompose stores the weights)
                t = recompose(t, w)
                s.shards_recomposed += 1
            md = dict(t.schema.metadata or {})
            if relabel:  # another suspect rule (or a shard from before suspect labels): from the stored fr_*
                t = label_suspects(t)
                md[META_SUSPECT_VERSION] = str(SUSPECT_VERSION).encode()
                s.shards_relabelled += 1
            qw.write(c, t.replace_schema_metadata(md))
        if s.shards_recomposed:
            log(f"re-weighted {s.shards_recomposed} quality shards (composite only, no pixels read)")
        if s.shards_relabelled:
            log(f"suspect labels (re)made for {s.shards_relabelled} quality shards from their stored "
                "full-reference values (no pixels read)")
        if not todo:
            s.seconds = time.perf_counter() - t0
            return s
        n_rows = sum(pq.read_metadata(c.path).num_rows for c in todo)
        bar = tqdm(total=n_rows, unit="crop", desc="quality", disable=not progress, dynamic_ncols=True)

        def commit(c, res) -> None:
            table, stats, _ = res
            qw.write(c, table)
            s.shards_computed += 1
            s.crops += stats["crops"]
            s.fullref_pairs += stats["fr"]
            s.c0_pairs += stats["c0"]
            bar.update(stats["crops"])

        from dfkit.procs import InterruptGuard, kill_workers

        guard = InterruptGuard()  # SIGTERM like Ctrl-C: the shards written stay, a shard is never cut in half
        try:
            with guard.installed():
                if scheduler:
                    _run_dask(todo, (files, w, fullref, fullref_frames), scheduler, workers, commit, guard, s)
                elif workers == 1 or len(todo) == 1:
                    for c in todo:
                        res = compute_shard(str(c.path), files, w, fullref, fullref_frames)
                        with guard.critical():
                            commit(c, res)
                else:
                    ex = _pool(workers)
                    try:
                        futs = {ex.submit(compute_shard, str(c.path), files, w, fullref, fullref_frames): c
                                for c in todo}
                        for f in as_completed(futs):
                            c = futs[f]
                            with guard.critical():
                                try:
                                    commit(c, f.result())
                                except Exception as e:  # noqa: BLE001 - one bad shard must not lose the others
                                    s.errors.append(f"{c.path.name}: {type(e).__name__}: {e}")
                    except BaseException:  # Ctrl-C / SIGTERM: the workers' shards in flight are not waited for
                        kill_workers(ex)
                        ex.shutdown(wait=False, cancel_futures=True)
                        raise
                    ex.shutdown(wait=True)
        finally:
            bar.close()
    s.seconds = time.perf_counter() - t0
    return s
