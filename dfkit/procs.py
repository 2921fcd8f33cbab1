"""Worker processes that die with their parent, and SIGTERM handled like Ctrl-C.

``dfkit ingest`` and ``dfkit quality`` run their work in pools of worker processes. :func:`init_worker` (call it
first in a pool's initializer, with the parent's pid) makes a worker leave when its parent goes, however it goes:

- on Linux the kernel sends the worker SIGKILL when the parent dies (``prctl(PR_SET_PDEATHSIG)``, via ctypes);
- everywhere, a daemon thread checks once a second that the parent is still its parent and exits otherwise (the
  fallback where ``prctl`` is missing, and the guard for a parent that died before ``prctl`` took effect).

Workers ignore SIGINT (Ctrl-C goes to the whole process group: the parent handles it, stops them and commits what is
done). :class:`InterruptGuard` makes SIGTERM in the parent raise :class:`TerminatedError`, a ``KeyboardInterrupt``,
so the same path commits what is done (and the CLI exits 143, 130 after Ctrl-C), and holds the signal back while a
result is being committed; :func:`final_commit` ignores a second signal during the last commit.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Iterator

PR_SET_PDEATHSIG = 1


class TerminatedError(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would raise ``KeyboardInterrupt`` (so every Ctrl-C path handles it)."""


def _set_pdeathsig(sig: int = signal.SIGKILL) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watchdog(parent: int, interval: float) -> None:
    ev = threading.Event()
    while not ev.wait(interval):
        if os.getppid() != parent:
            os._exit(1)  # the parent is gone: nothing will read our results


def init_worker(parent: int, interval: float = 1.0) -> None:
    """In a worker process: die with ``parent`` (see the module docstring) and leave Ctrl-C to it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _set_pdeathsig(signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)
    threading.Thread(target=_watchdog, args=(parent, interval), name="dfkit-parent-watchdog", daemon=True).start()


def kill_workers(pool) -> None:
    """Terminate a ``ProcessPoolExecutor``'s worker processes now (they hold no result worth waiting for)."""
    for p in list((getattr(pool, "_processes", None) or {}).values()):
        with contextlib.suppress(Exception):
            p.terminate()
    for p in list((getattr(pool, "_processes", None) or {}).values()):
        with contextlib.suppress(Exception):
            p.join(5)
            if p.is_alive():
                p.kill()


class InterruptGuard:
    """SIGTERM and Ctrl-C in the parent of a pool, as one exception at a safe point.

    Inside :meth:`installed`, SIGINT raises ``KeyboardInterrupt`` and SIGTERM :class:`TerminatedError`, except inside
    :meth:`critical` (a result being handed to the writer, a shard being committed): there the signal waits and is
    raised when the section ends, so a commit is never cut in half. Outside the main thread both do nothing."""

    def __init__(self) -> None:
        self._depth = 0
        self._pending: int | None = None
        self.signal: int | None = None  # the signal that interrupted the run (None: not interrupted by one)

    def _raise(self, signum: int) -> None:
        global _LAST_SIGNAL
        self.signal = _LAST_SIGNAL = signum
        if signum == signal.SIGTERM:
            raise TerminatedError("terminated (SIGTERM)")
        raise KeyboardInterrupt

    def _handler(self, signum, frame) -> None:
        if self._depth:
            self._pending = self._pending or signum
        else:
            self._raise(signum)

    @contextlib.contextmanager
    def installed(self) -> Iterator["InterruptGuard"]:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        old = {s: signal.signal(s, self._handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    @contextlib.contextmanager
    def critical(self) -> Iterator[None]:
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if not self._depth and self._pending is not None:
                signum, self._pending = self._pending, None
                self._raise(signum)

    @property
    def terminated(self) -> bool:
        return self.signal == signal.SIGTERM


_LAST_SIGNAL: int | None = None


def last_signal() -> int | None:
    """The signal an :class:`InterruptGuard` of this process last turned into an interrupt (None: none): the CLI
    exits 143 after SIGTERM, 130 after Ctrl-C, even where a command's framework already turned the interrupt into
    exit 130."""
    return _LAST_SIGNAL


class SignalHold:
    """From :meth:`hold` until the :func:`final_commit` block ends, SIGINT and SIGTERM are ignored (main thread only):
    the last commit of an interrupted run is not itself interrupted by a second signal."""

    def __init__(self) -> None:
        self._old: dict | None = None

    def hold(self) -> None:
        if self._old is None and threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}


@contextlib.contextmanager
def final_commit() -> Iterator[SignalHold]:
    h = SignalHold()
    try:
        yield h
    finally:
        for s, old in (h._old or {}).items():
            signal.signal(s, old)


# -- fault injection (tests/reliability/test_commit_faults.py) ---------------------------------------------------------
#: the named points of the commit protocols where a test may kill the process (``DFKIT_FAULT=<point>``, at its
#: ``DFKIT_FAULT_AT``-th pass, default 1, with ``DFKIT_FAULT_SIGNAL``, default KILL): what a crash there leaves must be
#: resumed with nothing lost or duplicated
FAULT_POINTS = {
    "crops-renamed": "an ingest shard's crops are in place, its videos shard (the commit record) is not",
    "videos-renamed": "an ingest shard was just committed (its videos shard renamed into place)",
    "table-tmp-written": "a shard (crops, videos, quality, split scheme) is written under its temporary name, "
                         "not yet renamed",
    "checkpoint-tmp-written": "a checkpoint file is written under its temporary name, not yet renamed",
}
_fault_hits: dict[str, int] = {}


def fault_point(name: str) -> None:
    """Kill this process here when ``DFKIT_FAULT`` names this point (a no-op otherwise: one dict lookup)."""
    want = os.environ.get("DFKIT_FAULT")
    if want is None or want != name:
        return
    _fault_hits[name] = _fault_hits.get(name, 0) + 1
    if _fault_hits[name] == int(os.environ.get("DFKIT_FAULT_AT", "1")):
        sig = getattr(signal, "SIG" + os.environ.get("DFKIT_FAULT_SIGNAL", "KILL").upper().removeprefix("SIG"))
        os.kill(os.getpid(), sig)
