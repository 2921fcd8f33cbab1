"""Ingest speed against a decode-only baseline, measured side by side in one run.

Baseline: the same videos, the same library (PyAV, same decoder threading) and the same number of worker
processes; every frame passes through the decoder and only the sampled ones are converted to RGB -- the least
work any ingest must do. dfkit's ingest adds detection, tracking, cropping, PNG encoding and Parquet writes.
Target: ingest / baseline <= 1.25.

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
from dfkit.ingest.engine import IngestParams, run_ingest  # noqa: E402


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


def ingest(root: Path, frames: int, workers: int) -> tuple[float, int]:
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
    base, ing = [], []
    for _ in range(a.repeats):  # alternate, so background load hits both alike
        base.append(baseline(paths, a.frames, a.workers))
        t, crops = ingest(root, a.frames, a.workers)
        ing.append(t)
    b, i = statistics.median(base), statistics.median(ing)
    print(f"videos: {len(paths)}, frames/video: {a.frames}, workers: {a.workers}, crops: {crops}")
    print(f"decode-only baseline: {b:.2f} s   (runs: {', '.join(f'{x:.2f}' for x in base)})")
    print(f"dfkit ingest:         {i:.2f} s   (runs: {', '.join(f'{x:.2f}' for x in ing)})")
    print(f"ratio ingest/baseline: {i / b:.2f}  (target <= 1.25)")


if __name__ == "__main__":
    main()
