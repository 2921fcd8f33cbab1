"""The corpus on disk: shard naming, atomic writes, the single-writer lock, the manifest.

Shards are ``<table>/part-<seq:06d>-<token>.parquet``. A crops shard counts only once the videos shard with the
same ``<seq>-<token>`` exists (the writer renames crops first, videos second). Every file is written to a
temporary name in the same folder, flushed to disk and renamed into place, so a reader never sees half a file.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from dfkit import __version__
from dfkit.corpus.schema import SCHEMA_VERSION
from dfkit.errors import CorpusLockedError, DfkitError

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
    """Shards a reader may use: for ``crops``, only those whose ``videos`` shard exists."""
    shards = list_shards(root, table)
    if table == "crops":
        done = {s.key for s in list_shards(root, "videos")}
        shards = [s for s in shards if s.key in done]
    return shards


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".tmp-{path.name}-{secrets.token_hex(4)}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_table(table: pa.Table, path: Path, **kwargs: Any) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    pq.write_table(table, tmp, **kwargs)
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
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
