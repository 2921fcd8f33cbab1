"""Ingest speed against a decode-only baseline, and the cost of choosing the face track, measured side by side in
one run.

Baseline: the same videos, the same library (PyAV, same decoder threading) and the same number of worker
processes; every frame passes through the decoder and only the sampled ones are converted to RGB -- the least
work any ingest must do. dfkit's ingest adds detection, tracking, cropping, PNG encoding and Parquet writes.
Target: ingest / baseline <= 1.25.

Track choice: the same ingest with the choice of phase 5 switched off (``DFKIT_TRACK_SELECTION=0``: every video on
its dominant face, as before the choice) against it on. Target: with / without <= 1.15.

    python bench/ingest.py [ROOT] [--frames 32] [--workers 2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dfkit.ingest import video  # noqa: E402
from dfkit.ingest.base import create_adapter  # noqa: E402
from dfkit.ingest.engine import TRACK_SELECTION_ENV, IngestParams, run_ingest  # noqa: E402


def decode_only(path: str, frames: int) -> int:
    info = video.probe(Path(path))
    idx = video.sample_indices(info.n_frames, frames)
    return sum(1 for _ in video.read_frames(Path(path), idx, skip=False))  # grab every frame


def baseline(paths: list[str], frames: int, workers: int) -> float:
    t = time.perf_counter()
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as ex:
        n = sum(ex.map(decode_only, paths, [frames] * len(paths)))
    assert n > 0
    return time.perf_counter() - t


def ingest(root: Path, frames: int, workers: int, select: bool = True) -> tuple[float, int]:
    """Seconds of one ingest into a fresh corpus, and its crops; ``select``: the track choice on (the workers
    inherit the switch)."""
    os.environ[TRACK_SELECTION_ENV] = "1" if select else "0"
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        s = run_ingest(create_adapter("ffpp", root), Path(d) / "c", IngestParams(frames=frames), workers=workers,
                       progress=False, log=lambda m: None)
        return time.perf_counter() - t, s.crops


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("root", nargs="?", default=str(REPO.parent / "shared/realdata/ffpp_icpr2020dfdc"))
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    root = Path(a.root)
    if not root.exists():
        sys.exit(f"no FF++ sample clips at {root}: pass an FF++ root")
    paths = [str(r.path) for r in create_adapter("ffpp", root).videos()]
    base, ing, off = [], [], []
    for _ in range(a.repeats):  # alternate, so background load hits all alike
        base.append(baseline(paths, a.frames, a.workers))
        t, crops_off = ingest(root, a.frames, a.workers, select=False)
        off.append(t)
        t, crops = ingest(root, a.frames, a.workers)
        ing.append(t)
    b, i, o = statistics.median(base), statistics.median(ing), statistics.median(off)

    def runs(xs: list[float]) -> str:
        return ", ".join(f"{x:.2f}" for x in xs)

    print(f"videos: {len(paths)}, frames/video: {a.frames}, workers: {a.workers}, crops: {crops} "
          f"({crops_off} without the track choice)")
    print(f"decode-only baseline:       {b:.2f} s   (runs: {runs(base)})")
    print(f"ingest, no track choice:    {o:.2f} s   (runs: {runs(off)})")
    print(f"dfkit ingest:               {i:.2f} s   (runs: {runs(ing)})")
    print(f"ratio ingest/baseline: {i / b:.2f}  (target <= 1.25)")
    print(f"ratio track choice (with/without): {i / o:.2f}  (target <= 1.15; best runs: {min(ing) / min(off):.2f}, "
          f"less sensitive to other load on the machine)")


if __name__ == "__main__":
    main()
