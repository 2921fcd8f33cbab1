"""Ingest at scale: per-video cost with 1 and 2 workers, local processes against a Dask LocalCluster, the cost at
DFDC's resolution, and what ingesting DFDC would take on one 16-core box and on N workers.

Every figure is fitted from two run lengths on the same clips, so that start-up (spawning workers, loading the
face detector, the cluster's start, the final commit) and the per-video cost are reported separately:

    T(n videos) = start-up + n * per-video        (from runs of N and 2N videos: per-video = (T(2N) - T(N)) / N)

* FF++: the 7 real c23 clips (640x480 .. 1920x1080, originals before the fakes cut on their frames), listed
  ``--repeat`` times under distinct ids (N = 7 x repeat videos), 1 and 2 workers, local and Dask (``dfkit ingest
  --workers 1`` runs in-process, as measured here; 2 workers is a spawned process pool).
* DFDC resolution: the real DFDC sample clips under ``realdata/dfdc_*`` (300 frames each; 1920x1080, 1080x1920,
  720x1280), or, when none is at hand, a 1080p 300-frame clip made by upscaling a real FF++ clip.
* Projection for DFDC (119,154 ten-second clips, ``--frames`` sampled per video): the measured per-video cost at
  DFDC resolution in core-seconds -- the CPU fit (CPU seconds of the client and its reaped workers: what the work
  costs, whatever else runs on the box) and wall per-video x workers (with this box's contention and load) --
  spread over the box's 16 cores or the cluster's workers, plus the measured start-up. Target: < 1 day on one
  16-core box.

    .venv/bin/python bench/scale.py [--repeat N] [--dfdc-repeat N] [--trials K] [--frames 32] [--json out.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dfkit.ingest.base import Adapter, VideoRecord, create_adapter  # noqa: E402
from dfkit.ingest.engine import IngestParams, run_ingest  # noqa: E402

REALDATA = REPO.parent / "shared" / "realdata"
DFDC_VIDEOS = 119_154  # the DFDC training set (reference/DATASETS.md: "119,154 ten-second clips")
DAY = 86_400.0


class Repeated(Adapter):
    """The given records listed ``repeat`` times, each copy under its own ids (``<id>~k``; a fake's pair follows
    its copy), so a run does the same work ``repeat`` times."""

    name = "scale"
    title = "repeated clips"

    def __init__(self, records: list[VideoRecord], repeat: int):
        super().__init__("/")
        self.records, self.repeat = records, repeat

    def videos(self):
        for k in range(self.repeat):
            for r in self.records:
                yield dataclasses.replace(
                    r, dataset=self.name, video_id=f"{r.video_id}~{k}",
                    pair_video_id=f"{r.pair_video_id}~{k}" if r.pair_video_id else None)


def cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and of its finished descendants: worker processes are counted
    once they are reaped (the local pool joins its workers, a LocalCluster's nannies reap theirs on closing)."""
    return sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),
                                                  resource.getrusage(resource.RUSAGE_CHILDREN)))


def timed_ingest(records: list[VideoRecord], repeat: int, params: IngestParams, workers: int,
                 scheduler: str | None) -> tuple[float, float, int, dict[str, int]]:
    """Wall and CPU seconds of one ingest of ``records`` x ``repeat`` into a fresh corpus, its crops and
    statuses."""
    with tempfile.TemporaryDirectory() as d:
        t, c = time.perf_counter(), cpu_seconds()
        s = run_ingest(Repeated(records, repeat), Path(d) / "c", params, workers=workers, progress=False,
                       log=lambda m: None, scheduler=scheduler)
        return time.perf_counter() - t, cpu_seconds() - c, s.crops, s.status


def fit(records: list[VideoRecord], repeat: int, params: IngestParams, workers: int,
        scheduler: str | None, trials: int = 1) -> dict[str, float]:
    """Start-up and per-video seconds (wall and CPU) from runs of N and 2N videos (N = len(records) x repeat), each
    the fastest of ``trials`` runs."""
    n = len(records) * repeat
    short, long_ = [], []
    for _ in range(trials):  # alternated, so that other load on the box hits both lengths alike; the fastest kept
        short.append(timed_ingest(records, repeat, params, workers, scheduler))
        long_.append(timed_ingest(records, 2 * repeat, params, workers, scheduler))
    (t1, u1), (t2, u2) = ((min(r[0] for r in rs), min(r[1] for r in rs)) for rs in (short, long_))
    _, _, c1, st1 = short[0]
    _, _, c2, st2 = long_[0]
    per, cpu = (t2 - t1) / n, (u2 - u1) / n
    return {"workers": workers, "runner": scheduler or "local processes", "n": n, "t_n": round(t1, 2),
            "t_2n": round(t2, 2), "per_video_s": round(per, 3), "startup_s": round(t1 - per * n, 2),
            "core_s_per_video": round(per * workers, 3), "cpu_s_n": round(u1, 2), "cpu_s_2n": round(u2, 2),
            "cpu_s_per_video": round(cpu, 3), "cpu_startup_s": round(u1 - cpu * n, 2),
            "crops_n": c1, "crops_2n": c2,
            "status": {k: st1.get(k, 0) + st2.get(k, 0) for k in set(st1) | set(st2)}}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        kb = next(int(x.split()[1]) for x in Path("/proc/meminfo").read_text().splitlines()
                  if x.startswith("MemTotal"))
        ram = f"{kb / 2**20:.0f} GiB RAM"
    except (OSError, StopIteration):
        ram = "RAM unknown"
    return f"{cpu}, {os.cpu_count()} cores, {ram}, Python {platform.python_version()}, {platform.system()}"


def dfdc_clips(tmp: Path) -> tuple[list[VideoRecord], str]:
    """Real DFDC sample clips (300 frames each), or a made 1080p clip when none is at hand."""
    from dfkit.ingest import video

    paths = sorted(p for d in REALDATA.glob("dfdc_*") for p in d.rglob("*.mp4"))
    if not paths:
        paths = [make_1080p(tmp / "upscaled_1080p.mp4")]
    recs, sizes = [], []
    for p in paths:
        info = video.probe(p)
        sizes.append(f"{info.width}x{info.height}")
        recs.append(VideoRecord(dataset="scale", video_id=p.stem, path=p, rel_path=p.name, label="real",
                                method="original"))
    mix = ", ".join(f"{sizes.count(s)} x {s}" for s in sorted(set(sizes), key=sizes.index))
    return recs, f"{len(paths)} clips ({mix}, {info.n_frames} frames each)"


def make_1080p(path: Path) -> Path:
    """A 1920x1080, 300-frame H.264 clip: a real FF++ clip's frames upscaled."""
    import cv2

    from dfkit.ingest import video
    from dfkit.media import write_h264

    src = REALDATA / "ffpp_icpr2020dfdc/original_sequences/youtube/c23/videos/634.mp4"
    n = min(300, video.probe(src).n_frames)
    frames = [cv2.resize(rgb, (1920, 1080), interpolation=cv2.INTER_CUBIC)
              for _, _, rgb in video.read_frames(src, list(range(n)))]
    frames += frames[::-1][:300 - len(frames)]
    write_h264(path, frames, 23, fps=30, preset="veryfast")
    return path


def line(r: dict) -> str:
    return (f"per video {r['per_video_s']:.2f} s wall ({r['core_s_per_video']:.2f} core-s), {r['cpu_s_per_video']:.2f}"
            f" CPU-s; start-up {r['startup_s']:.1f} s wall, {r['cpu_startup_s']:.1f} CPU-s   (T(N) {r['t_n']:.1f} s, "
            f"T(2N) {r['t_2n']:.1f} s)")


def hours(s: float) -> str:
    return f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.1f} min"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=2, help="FF++ clip list repeats in the shorter run (N = 7 x it)")
    ap.add_argument("--dfdc-repeat", type=int, default=2, help="DFDC clip list repeats in the shorter run")
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--trials", type=int, default=2, help="Runs of each length; the fastest is kept")
    ap.add_argument("--json", type=Path, default=None, help="Write every figure here.")
    a = ap.parse_args()
    ffpp = REALDATA / "ffpp_icpr2020dfdc"
    if not ffpp.exists():
        sys.exit(f"no FF++ sample clips at {ffpp}")
    params = IngestParams(frames=a.frames)
    out: dict = {"machine": machine(), "frames": a.frames, "trials": a.trials,
                 "load_average_at_start": os.getloadavg()}
    print(f"machine: {out['machine']}; load average at start {os.getloadavg()[0]:.1f} (other processes share "
          "the cores: wall figures include their time, CPU figures do not)")
    records = [r for r in create_adapter("ffpp", ffpp).videos()]
    print(f"FF++: {len(records)} real c23 clips x {a.repeat} (N = {len(records) * a.repeat}) and x {2 * a.repeat}, "
          f"{a.frames} frames/video")
    runs = []
    for workers in (1, 2):
        for scheduler in (None, "local"):
            r = fit(records, a.repeat, params, workers, scheduler, a.trials)
            runs.append(r)
            kind = "Dask LocalCluster" if scheduler else "local processes" if workers > 1 else "local, in-process"
            print(f"  {kind:<17} {workers} worker"
                  f"{'s' if workers > 1 else ' '}: {line(r)}", flush=True)
    out["ffpp"] = runs
    by = {(r["workers"], r["runner"]): r for r in runs}
    lp, dk = "local processes", "local"
    for w in (1, 2):
        lo, da = by[(w, lp)], by[(w, dk)]
        print(f"  Dask/local, {w} worker{'s' if w > 1 else ''}: per video wall "
              f"x{da['per_video_s'] / lo['per_video_s']:.2f}, CPU x{da['cpu_s_per_video'] / lo['cpu_s_per_video']:.2f};"
              " start-up wall "
              f"{da['startup_s'] - lo['startup_s']:+.1f} s, CPU {da['cpu_startup_s'] - lo['cpu_startup_s']:+.1f} s")
    print(f"  2 workers vs 1: speed-up local x{by[(1, lp)]['per_video_s'] / by[(2, lp)]['per_video_s']:.2f}, "
          f"Dask x{by[(1, dk)]['per_video_s'] / by[(2, dk)]['per_video_s']:.2f} (ideal x2)")

    with tempfile.TemporaryDirectory() as tmp:
        dfdc, mix = dfdc_clips(Path(tmp))
        workers = min(2, os.cpu_count() or 1)
        print(f"DFDC resolution: {mix} x {a.dfdc_repeat} and x {2 * a.dfdc_repeat}, {workers} local workers")
        d = fit(dfdc, a.dfdc_repeat, params, workers, None, a.trials)
    print(f"  {line(d)}")
    out["dfdc_resolution"] = {**d, "clips": mix}

    # core-seconds per video two ways: the CPU fit (what the work costs; other processes on a shared box do not
    # count) and wall x workers (what it took here, with this box's contention and any other load)
    cpu, wall = d["cpu_s_per_video"], d["core_s_per_video"]
    print(f"DFDC projection: {DFDC_VIDEOS:,} videos x {a.frames} frames at {cpu:.2f} CPU-s/video "
          f"({wall:.2f} core-s/video by wall clock); the clips above stand for DFDC's mix (1080p H.264, "
          "resolution varies: reference/DATASETS.md)")
    proj = {"videos": DFDC_VIDEOS, "cpu_s_per_video": cpu, "wall_core_s_per_video": wall, "workers": {}}
    for name, c in (("CPU", cpu), ("wall", wall)):
        box = DFDC_VIDEOS * c / 16 + d["startup_s"]
        proj[f"box16_{name}_s"] = round(box)
        print(f"  one 16-core box (16 workers), from the {name} fit: {hours(box)} ({box / DAY:.2f} days; target < 1 "
              f"day: {'met' if box < DAY else 'NOT met'})")
    for n in (16, 32, 64, 128, 256):
        t = DFDC_VIDEOS * cpu / n + by[(2, dk)]["startup_s"]
        proj["workers"][n] = round(t)
        print(f"  Dask, {n:>3} single-core workers (CPU fit, + the measured cluster start-up): {hours(t)}")
    out["dfdc_projection"] = proj
    out["load_average_at_end"] = os.getloadavg()
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    if a.json:
        a.json.write_text(json.dumps(out, indent=2))
        print(f"figures: {a.json}")


if __name__ == "__main__":
    main()
