"""The corpus on disk: shard naming, atomic writes, the single-writer lock, the manifest.

Shards are ``<table>/part-<seq:06d>-<token>.parquet``. A crops shard counts only once the videos shard with the
same ``<seq>-<token>`` exists (the writer renames crops first, videos second). Every file is written to a
temporary name in the same folder, flushed to disk and renamed into place, so a reader never sees half a file.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import fcntl
import json
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from dfkit import __version__
from dfkit.corpus.schema import SCHEMA_VERSION
from dfkit.errors import CorpusLockedError, DfkitError
from dfkit.procs import fault_point

TABLES = ("crops", "videos", "quality")
_SHARD_RE = re.compile(r"^part-(\d{6})-([0-9a-f]{8})\.parquet$")
MANIFEST = "manifest.json"
LOCK = ".lock"


@dataclass(frozen=True, order=True)
class Shard:
    seq: int
    token: str
    path: Path

    @property
    def key(self) -> str:
        return f"{self.seq:06d}-{self.token}"


def list_shards(root: Path, table: str) -> list[Shard]:
    d = Path(root) / table
    if not d.is_dir():
        return []
    out = []
    for p in d.iterdir():
        m = _SHARD_RE.match(p.name)
        if m:
            out.append(Shard(int(m.group(1)), m.group(2), p))
    return sorted(out)


def committed_shards(root: Path, table: str) -> list[Shard]:
    """Shards a reader may use: for ``crops``, only those whose ``videos`` shard exists. Inside
    :func:`skipping_damaged`, shards whose key has a damaged file are left out too."""
    shards = list_shards(root, table)
    if table == "crops":
        done = {s.key for s in list_shards(root, "videos")}
        shards = [s for s in shards if s.key in done]
    if _SKIP_DAMAGED.get():  # a damaged crops/videos shard hides its whole commit, a damaged quality shard itself
        bad = {sh.key for sh, _ in damaged_shards(root) if table == "quality" or _table_of(sh.path) != "quality"}
        shards = [s for s in shards if s.key not in bad]
    return shards


# -- damaged shards -----------------------------------------------------------------------------------------------
# A shard is written by temporary name + rename, so a crash never leaves half of one; a disk fault, a copy cut short
# or a hand edit can. Such a shard is named in one line wherever it is read (CorruptShardError). Recovery:
#
# - `dfkit info` still works: it leaves the damaged shards' keys out (crops, videos and quality of that commit) and
#   lists them;
# - `dfkit ingest` (a rerun of the ingest that made it) moves every file of a damaged crops/videos shard's commit into
#   <corpus>/quarantine/ (said on stderr; nothing is deleted) and ingests those videos again;
# - `dfkit quality` moves a damaged quality shard into <corpus>/quarantine/ and computes it again.
#
# Every other command refuses with the file's name and these steps: no command drops rows without saying so.
QUARANTINE = "quarantine"
_SKIP_DAMAGED: contextvars.ContextVar[bool] = contextvars.ContextVar("dfkit_skip_damaged", default=False)


class CorruptShardError(DfkitError):
    """A corpus shard that cannot be read (truncated, overwritten): names the file and how to recover."""


def recovery_hint(root: Path, table: str) -> str:
    if table == "quality":
        return f"rerun `dfkit quality --corpus {root}` to move it to {Path(root) / QUARANTINE}/ and compute it again"
    return (f"rerun the `dfkit ingest` that made it (same dataset, --corpus {root}) to move it to "
            f"{Path(root) / QUARANTINE}/ and ingest its videos again")


#: columns too large to read whenever the corpus is opened; damage inside them surfaces when a crop is decoded
_HEAVY_COLUMNS = ("crop",)


def shard_problem(path: Path) -> str | None:
    """Why ``path`` is not a readable Parquet file, or None. The footer, the schema and every column's data are read
    (all but the crop images: a damaged image page is caught when that crop is decoded), so damage in the middle of
    a file is found here, where ``dfkit info`` lists it and a rerun of ``dfkit ingest`` quarantines it."""
    try:
        md = pq.read_metadata(path)
        cols = [n for n in md.schema.to_arrow_schema().names if n not in _HEAVY_COLUMNS]
        pq.read_table(path, columns=cols)
        return None
    except FileNotFoundError:
        return None  # gone meanwhile (a writer replaced it): not damage
    except (pa.ArrowException, OSError, ValueError) as e:
        return _reason(e)


def damaged_shards(root: Path) -> list[tuple[Shard, str]]:
    """Every shard of the corpus whose file is not readable Parquet, with the reason."""
    out = []
    for table in TABLES:
        for sh in list_shards(root, table):
            why = shard_problem(sh.path)
            if why:
                out.append((sh, why))
    return out


def _reason(e: BaseException) -> str:
    """The first line of an Arrow error, without the file name it repeats."""
    why = (str(e).splitlines() or [type(e).__name__])[0]
    return re.sub(r"^Could not open Parquet input source '.*?': ", "", why)


def _table_of(path: Path) -> str:
    return Path(path).parent.name


def corrupt_shard_error(path: Path, e: BaseException) -> CorruptShardError:
    root = Path(path).parent.parent
    why = _reason(e)
    return CorruptShardError(f"damaged corpus shard {path} ({why}): {recovery_hint(root, _table_of(path))}")


def read_shard(path: Path, columns: list[str] | None = None) -> pa.Table:
    """``pq.read_table(path, columns=...)``; a damaged file raises :class:`CorruptShardError` naming it."""
    try:
        return pq.read_table(path, columns=columns)
    except FileNotFoundError:
        raise
    except (pa.ArrowException, OSError) as e:
        raise corrupt_shard_error(path, e) from None


def read_shards(paths: list[Path], columns: list[str] | None = None) -> pa.Table:
    """The shards one after the other (as ``pq.ParquetDataset(paths).read(columns)``), each read by
    :func:`read_shard`."""
    return pa.concat_tables([read_shard(p, columns) for p in paths], promote_options="default")


@contextlib.contextmanager
def skipping_damaged() -> Iterator[None]:
    """Readers inside leave out the shards of damaged commits (for read-only reports that list them)."""
    tok = _SKIP_DAMAGED.set(True)
    try:
        yield
    finally:
        _SKIP_DAMAGED.reset(tok)


def quarantine(root: Path, keys: set[str], tables: tuple[str, ...] = TABLES) -> list[Path]:
    """Move every file of the shards with these keys (in ``tables``) into ``<root>/quarantine/<table>/``; returns
    the new paths. Only call while holding the lock."""
    moved = []
    for table in tables:
        for sh in list_shards(root, table):
            if sh.key in keys:
                dst = Path(root) / QUARANTINE / table / sh.path.name
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.replace(sh.path, dst)
                moved.append(dst)
    return moved


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".tmp-{path.name}-{secrets.token_hex(4)}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_table(table: pa.Table, path: Path, **kwargs: Any) -> None:
    tmp = path.with_name(f".tmp-{path.name}.partial")  # not *.parquet: a bare glob (DuckDB) must not read it
    pq.write_table(table, tmp, **kwargs)
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    fault_point("table-tmp-written")
    os.replace(tmp, path)


def read_manifest(root: Path) -> dict[str, Any]:
    p = Path(root) / MANIFEST
    if not p.exists():
        return {}
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise DfkitError(f"{p}: corrupt corpus manifest ({e})") from None


def write_manifest(root: Path, manifest: dict[str, Any]) -> None:
    manifest = {"schema_version": SCHEMA_VERSION, "dfkit_version": __version__, **manifest}
    atomic_write_bytes(Path(root) / MANIFEST, (json.dumps(manifest, indent=2, sort_keys=False) + "\n").encode())


class CorpusLock:
    """An exclusive ``flock`` on ``corpus/.lock`` for as long as a writer runs. The kernel drops it when the
    process dies, so a crash never leaves a stale lock; a second writer is refused with who holds it."""

    def __init__(self, root: Path, what: str = "write"):
        self.root = Path(root)
        self.what = what
        self._fd: int | None = None

    def __enter__(self) -> "CorpusLock":
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / LOCK
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = ""
            try:
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
            except OSError:
                pass
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise CorpusLockedError(
                    f"corpus {self.root} is being written by another dfkit process ({holder or 'unknown'}); "
                    f"wait for it to finish or stop it, then rerun") from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, {self.what} since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def clean_uncommitted(root: Path) -> int:
    """Remove temp files and crops shards without their videos shard (left by a crash between the two
    renames). Only call while holding the lock. Returns how many files went."""
    n = 0
    for table in TABLES:
        d = Path(root) / table
        if not d.is_dir():
            continue
        for p in d.iterdir():
            if p.name.startswith(".tmp-"):
                p.unlink(missing_ok=True)
                n += 1
    done = {s.key for s in list_shards(root, "videos")}
    for s in list_shards(root, "crops"):
        if s.key not in done:
            s.path.unlink(missing_ok=True)
            n += 1
    return n


def next_shard(root: Path) -> tuple[int, str]:
    seqs = [s.seq for t in TABLES for s in list_shards(root, t)]
    return (max(seqs) + 1 if seqs else 1), secrets.token_hex(4)
