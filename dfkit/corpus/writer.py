"""Writing a corpus, always under its lock and by temporary name + rename: ingest results (:class:`CorpusWriter`:
buffered, committed shard by shard, resumable), quality shards (:class:`QualityWriter`) and split schemes
(:func:`write_split_scheme`)."""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dfkit.corpus.schema import CROPS_SCHEMA, SPLIT_SCHEME_COLUMNS, VIDEOS_SCHEMA, split_path
from dfkit.corpus.store import (CorpusLock, CorruptShardError, Shard, atomic_write_table, clean_uncommitted, committed_shards,
                                damaged_shards, list_shards, next_shard, quarantine, read_manifest, read_shards,
                                recovery_hint, write_manifest)
from dfkit.procs import fault_point

#: crops are written in small row groups so a training loader can read a few crops without reading a shard
CROPS_ROW_GROUP = 16
_CROPS_COMPRESSION = {name: ("NONE" if name == "crop" else "ZSTD") for name in CROPS_SCHEMA.names}


def done_videos(root: Path, retry_statuses: tuple[str, ...] = ()) -> set[tuple[str, str]]:
    """(dataset, video_id) of videos already in the corpus -- from the committed videos shards themselves.
    Videos whose latest status is in ``retry_statuses`` are left out (so they are tried again)."""
    shards = committed_shards(root, "videos")
    if not shards:
        return set()
    t = read_shards([s.path for s in shards], columns=["dataset", "video_id", "status"])
    latest: dict[tuple[str, str], str] = {}
    for d, v, s in zip(t["dataset"].to_pylist(), t["video_id"].to_pylist(), t["status"].to_pylist()):
        latest[(d, v)] = s  # shards are read in commit order: the last row wins
    return {k for k, s in latest.items() if s not in retry_statuses}


def video_crop_boxes(root: Path, dataset: str, video_ids: set[str]
                     ) -> tuple[dict[str, dict[int, list[float]]], dict[str, tuple[int, int]]]:
    """For videos already in the corpus (to pair new fakes with them): ``video_id -> {frame_index: crop_box}``
    and ``video_id -> (width, height)``."""
    shards = committed_shards(root, "crops")
    if not shards or not video_ids:
        return {}, {}
    t = read_shards([s.path for s in shards], columns=["dataset", "video_id", "frame_index", "crop_box", "width",
                                                      "height"])
    mask = pc.and_(pc.equal(t["dataset"], dataset), pc.is_in(t["video_id"], pa.array(sorted(video_ids))))
    t = t.filter(mask)
    boxes: dict[str, dict[int, list[float]]] = {}
    sizes: dict[str, tuple[int, int]] = {}
    for v, f, b, w, h in zip(*(t[c].to_pylist() for c in ("video_id", "frame_index", "crop_box", "width",
                                                            "height"))):
        boxes.setdefault(v, {})[f] = b
        sizes[v] = (w, h)
    return boxes, sizes


class CorpusWriter:
    """Holds the corpus lock; ``add()`` buffers one video's result; ``flush()`` commits a shard pair.

    A shard is committed every ``flush_videos`` videos or ``flush_seconds`` seconds, and on ``close()`` (also
    after Ctrl-C), so an interrupted ingest keeps every video it committed and a rerun skips them.
    """

    def __init__(self, root: str | Path, flush_videos: int | None = None, flush_seconds: float = 20.0,
                 log=None):
        self.root = Path(root)
        self.log = log or _warn
        #: files of damaged shards moved into ``<corpus>/quarantine/`` on entering (their videos are done again)
        self.quarantined: list[Path] = []
        self.flush_videos = flush_videos or int(os.environ.get("DFKIT_FLUSH_VIDEOS", "8"))
        self.flush_seconds = flush_seconds
        self._lock = CorpusLock(self.root, "ingest")
        self._crops: list[dict[str, Any]] = []
        self._videos: list[dict[str, Any]] = []
        self._last_flush = time.monotonic()
        self.committed_videos = 0
        self.committed_crops = 0

    def __enter__(self) -> "CorpusWriter":
        self._lock.__enter__()
        try:
            for t in ("crops", "videos"):
                (self.root / t).mkdir(parents=True, exist_ok=True)
            clean_uncommitted(self.root)
            # a damaged crops/videos shard: its whole commit (crops, videos, quality) goes to quarantine/, so its
            # videos count as not ingested and this run does them again
            bad = {sh.key: (sh, why) for sh, why in damaged_shards(self.root) if sh.path.parent.name != "quality"}
            if bad:
                self.quarantined = quarantine(self.root, set(bad))
                for sh, why in bad.values():
                    self.log(f"warning: damaged shard {sh.path} ({why}): moved with the rest of its commit to "
                             f"{self.root / 'quarantine'}/; its videos are ingested again")
        except BaseException:
            self._lock.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self.flush()
        finally:
            self._lock.__exit__(*exc)

    def add(self, video_row: dict[str, Any], crop_rows: list[dict[str, Any]]) -> None:
        self._videos.append(video_row)
        self._crops.extend(crop_rows)
        if (len(self._videos) >= self.flush_videos
                or time.monotonic() - self._last_flush >= self.flush_seconds):
            self.flush()

    def flush(self) -> None:
        if not self._videos:
            return
        seq, token = next_shard(self.root)
        name = f"part-{seq:06d}-{token}.parquet"
        crops = pa.Table.from_pylist(self._crops, schema=CROPS_SCHEMA)
        videos = pa.Table.from_pylist(self._videos, schema=VIDEOS_SCHEMA)
        # crops first, videos second: the videos shard is the commit record
        atomic_write_table(crops, self.root / "crops" / name, row_group_size=CROPS_ROW_GROUP,
                           compression=_CROPS_COMPRESSION)
        fault_point("crops-renamed")
        atomic_write_table(videos, self.root / "videos" / name, compression="zstd")
        fault_point("videos-renamed")
        self.committed_videos += len(self._videos)
        self.committed_crops += len(self._crops)
        self._crops, self._videos = [], []
        self._last_flush = time.monotonic()

    def record_ingest(self, dataset: str, params: dict[str, Any], summary: dict[str, Any]) -> None:
        """Add this run to the manifest and refresh per-dataset counts from the shards."""
        self.flush()
        manifest = read_manifest(self.root)
        runs = manifest.get("ingests", [])
        runs.append({"dataset": dataset, "params": params, **summary})
        manifest["ingests"] = runs
        manifest["counts"] = count_by_dataset(self.root)
        manifest.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%S"))
        manifest["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        write_manifest(self.root, {k: v for k, v in manifest.items()
                                   if k not in ("schema_version", "dfkit_version")})


def _warn(msg: str) -> None:
    import sys

    from dfkit.errors import one_line

    print(one_line(msg), file=sys.stderr)


def count_by_dataset(root: Path) -> dict[str, Any]:
    """Per-dataset counts of videos (by status) and crops, from the committed shards."""
    out: dict[str, Any] = {}
    vs = committed_shards(root, "videos")
    if vs:
        t = read_shards([s.path for s in vs], columns=["dataset", "video_id", "status"])
        latest: dict[tuple[str, str], str] = {}
        for d, v, s in zip(t["dataset"].to_pylist(), t["video_id"].to_pylist(), t["status"].to_pylist()):
            latest[(d, v)] = s
        for (d, _), s in latest.items():
            e = out.setdefault(d, {"videos": 0, "crops": 0, "status": Counter()})
            e["videos"] += 1
            e["status"][s] += 1
    cs = committed_shards(root, "crops")
    if cs:
        t = read_shards([s.path for s in cs], columns=["dataset"])
        for d, n in Counter(t["dataset"].to_pylist()).items():
            out.setdefault(d, {"videos": 0, "crops": 0, "status": Counter()})["crops"] = n
    for e in out.values():
        e["status"] = dict(e["status"])
    return out


class QualityWriter:
    """Holds the corpus lock while ``dfkit quality`` writes: one quality shard per crops shard, with the crops
    shard's name (``quality/part-N-T.parquet``), each written to a temporary name and renamed into place (as
    :class:`CorpusWriter` does), so a reader sees a shard's old version or its new one, never half a file.

    Entering removes the temporary files an interrupted run left in ``quality/``."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._lock = CorpusLock(self.root, "quality")

    @property
    def dir(self) -> Path:
        return self.root / "quality"

    def __enter__(self) -> "QualityWriter":
        self._lock.__enter__()
        try:
            self.dir.mkdir(exist_ok=True)
            for p in self.dir.glob(".tmp-*"):
                p.unlink()
            self.quarantined: list[Path] = []
            damaged = damaged_shards(self.root)
            for sh, why in damaged:  # crops/videos need the ingest: refuse before any work
                if sh.path.parent.name != "quality":
                    raise CorruptShardError(f"damaged corpus shard {sh.path} ({why}): "
                                            f"{recovery_hint(self.root, sh.path.parent.name)}")
            for sh, why in damaged:  # a quality shard is computed again
                self.quarantined += quarantine(self.root, {sh.key}, ("quality",))
                _warn(f"warning: damaged quality shard {sh.path} ({why}): moved to {self.root / 'quarantine'}/; "
                      "computed again")
        except BaseException:
            self._lock.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self._lock.__exit__(*exc)

    def shards(self) -> dict[str, Path]:
        """The quality shards there are, by shard key (``<seq>-<token>``, the key of their crops shard)."""
        return {s.key: s.path for s in list_shards(self.root, "quality")}

    def path_for(self, crops: Shard) -> Path:
        return self.dir / crops.path.name

    def write(self, crops: Shard, table: pa.Table) -> Path:
        """Store (or replace) the quality shard of the crops shard ``crops``."""
        path = self.path_for(crops)
        atomic_write_table(table, path, compression="zstd")
        return path

    def remove_orphans(self, crops: list[Shard]) -> list[Path]:
        """Delete the quality shards whose crops shard is gone; returns their paths."""
        keep = {c.key for c in crops}
        gone = [p for k, p in self.shards().items() if k not in keep]
        for p in gone:
            p.unlink()
        return gone


def write_split_scheme(root: str | Path, name: str, assign: dict[tuple[str, str], str]) -> Path:
    """Store a corpus-level re-split ``(dataset, video_id) -> split`` as ``<corpus>/splits/<name>.parquet`` (temporary
    name, then renamed into place), under the corpus lock; readers use it with ``Corpus.select(split_scheme=name)``."""
    path = split_path(root, name)
    keys = sorted(assign)
    cols = dict(zip(SPLIT_SCHEME_COLUMNS, ([k[0] for k in keys], [k[1] for k in keys], [assign[k] for k in keys])))
    with CorpusLock(Path(root), "resplit"):
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_table(pa.table(cols), path)
    return path
