"""Frame decoders side by side (issue 17): PyAV, OpenCV and TorchCodec (CPU) on the same clips and the same sampled
frames, with frame-exact equality against PyAV, and a long clip sampled sparsely to show that the seek keeps the
work per sample flat.

1. The FF++ c23 clips (``create_adapter("ffpp", ROOT)``), ``--frames`` sampled frames each
   (``video.sample_indices``): wall time of all clips in one process (median of ``--repeats``, the decoders
   alternating within each repeat), and with ``--workers`` processes; indices, timestamps and pixels against PyAV.
2. The same frames from a yuv420p re-encode of one clip (FF++ c23 is yuv444p: no chroma upsampling, so the
   RGB conversions cannot differ there; with 4:2:0 they may).
3. One clip looped (stream copy, no re-encode) into clips of 1x, ``--long-minutes``/2 and ``--long-minutes``
   minutes, ``--frames`` frames sampled from each: time and frames through the decoder per length.

    python bench/decode.py [ROOT] [--frames 32] [--repeats 3] [--workers 2] [--long-minutes 10]
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

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import av  # noqa: E402

from dfkit.ingest import decoders, video  # noqa: E402
from dfkit.ingest.base import create_adapter  # noqa: E402


def read(path: Path, frames: int, backend: str, **kw) -> tuple[list, dict]:
    st: dict = {}
    idx = video.sample_indices(video.probe(path).n_frames, frames)
    return list(video.read_frames(path, idx, stats=st, backend=backend, **kw)), st


def _count(args: tuple[str, int, str]) -> int:
    path, frames, backend = args
    return len(read(Path(path), frames, backend)[0])


def compare(ref: list, got: list) -> dict:
    """Indices equal; per frame the max abs pixel difference; timestamps' largest difference."""
    same_idx = [i for i, _, _ in ref] == [i for i, _, _ in got]
    diffs = [int(np.abs(a[2].astype(np.int16) - b[2]).max()) if a[2].shape == b[2].shape else 255
             for a, b in zip(ref, got)]
    return {"same_indices": same_idx and len(ref) == len(got), "max_diff": max(diffs, default=0),
            "exact_share": float(np.mean([d == 0 for d in diffs])) if diffs else 0.0,
            "mean_abs": float(np.mean([np.abs(a[2].astype(np.int16) - b[2]).mean() for a, b in zip(ref, got)])),
            "ts_diff": max((abs(a[1] - b[1]) for a, b in zip(ref, got)), default=0.0)}


def loop_clip(src: Path, dst: Path, times: int) -> Path:
    """``src`` repeated ``times`` times by stream copy (timestamps shifted per copy; every copy opens on an IDR)."""
    with av.open(str(src)) as inp:
        s = inp.streams.video[0]
        packets = [(p.pts, p.dts, p.is_keyframe, bytes(p)) for p in inp.demux(s) if p.size]
        pts = sorted(p[0] for p in packets)
        step = statistics.mode(np.diff(pts).tolist()) if len(pts) > 1 else 1  # one frame's duration
        span = pts[-1] - pts[0] + step
        with av.open(str(dst), "w") as out:
            o = out.add_stream_from_template(s)
            for t in range(times):
                for pts, dts, key, data in packets:
                    pk = av.Packet(data)
                    pk.pts, pk.dts, pk.is_keyframe = pts + t * span, dts + t * span, key
                    pk.time_base, pk.stream = s.time_base, o
                    out.mux(pk)
    return dst


def reencode_420(src: Path, dst: Path, n: int = 300) -> Path:
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        s = inp.streams.video[0]
        o = out.add_stream("libx264", rate=s.average_rate, options={"crf": "23", "preset": "fast"})
        o.width, o.height, o.pix_fmt = s.codec_context.width, s.codec_context.height, "yuv420p"
        for i, f in enumerate(inp.decode(s)):
            if i >= n:
                break
            for p in o.encode(f.reformat(format="yuv420p")):
                out.mux(p)
        for p in o.encode():
            out.mux(p)
    return dst


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", nargs="?", default=str(REPO.parent / "shared/realdata/ffpp_icpr2020dfdc"))
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2, help="processes for the parallel run (0: skip it)")
    ap.add_argument("--long-minutes", type=float, default=10.0, help="0: only the FF++ clips (section 1)")
    a = ap.parse_args()

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"machine: {cores} cores usable ({os.cpu_count()} reported); load average {os.getloadavg()[0]:.2f}")
    t0 = time.perf_counter()
    status = decoders.decoder_status()
    t_status = time.perf_counter() - t0
    names = [n for n in decoders.list_decoders() if status[n] is None]
    for n, why in status.items():
        print(f"  {n:10s} {'usable' if why is None else 'UNUSABLE: ' + why}")
    import cv2
    vers = {"pyav": av.__version__, "opencv": cv2.__version__}
    if "torchcodec" in names:
        import torchcodec

        vers["torchcodec"] = torchcodec.__version__
    print("  versions:", ", ".join(f"{k} {v}" for k, v in vers.items()))
    print(f"  availability check (imports torchcodec: torch + FFmpeg's libraries), once a process: {t_status:.2f} s")

    clips = [r.path for r in create_adapter("ffpp", a.root).videos() if r.kind == "video" and not r.missing]
    nframes = sum(len(video.sample_indices(video.probe(p).n_frames, a.frames)) for p in clips)
    print(f"\n1. {len(clips)} FF++ clips, {a.frames} sampled frames each ({nframes} frames)")
    ref = {p: read(p, a.frames, "pyav")[0] for p in clips}  # also warms the page cache
    for n in names:  # warm-up: first-call costs (imports, libraries) out of the timings
        read(clips[0], 2, n)
    times: dict[str, list[float]] = {n: [] for n in names}
    out: dict[str, dict] = {}
    for r in range(a.repeats):
        order = names[r % len(names):] + names[:r % len(names)]  # alternate who goes first
        for n in order:
            t0 = time.perf_counter()
            out[n] = {p: read(p, a.frames, n)[0] for p in clips}
            times[n].append(time.perf_counter() - t0)
    par: dict[str, float] = {}
    if a.workers > 1:
        with ProcessPoolExecutor(a.workers, mp_context=get_context("spawn")) as ex:
            for n in names:
                list(ex.map(_count, [(str(clips[0]), 2, n)] * a.workers))  # warm each worker
            for n in names:
                runs = []
                for _ in range(max(1, a.repeats - 1)):
                    t0 = time.perf_counter()
                    got = sum(ex.map(_count, [(str(p), a.frames, n) for p in clips]))
                    runs.append(time.perf_counter() - t0)
                assert got == nframes, (n, got)
                par[n] = statistics.median(runs)
    print(f"   {'decoder':10s} {'1 proc s':>9s} {'frames/s':>9s} "
          + (f"{str(a.workers) + ' procs s':>10s} " if par else "")
          + f"{'same idx':>8s} {'exact':>6s} {'max|d|':>6s} {'ts diff':>8s}")
    for n in names:
        t = statistics.median(times[n])
        cmp = [compare(ref[p], out[n][p]) for p in clips]
        exact = float(np.mean([c["exact_share"] for c in cmp]))
        print(f"   {n:10s} {t:9.2f} {nframes / t:9.0f} " + (f"{par[n]:10.2f} " if par else "")
              + f"{str(all(c['same_indices'] for c in cmp)):>8s} {exact:6.0%} "
              + f"{max(c['max_diff'] for c in cmp):6d} {max(c['ts_diff'] for c in cmp):8.1e}"
              + f"   (runs: {', '.join(f'{x:.2f}' for x in times[n])})")

    with tempfile.TemporaryDirectory() as tmp:
        src = max(clips, key=lambda p: video.probe(p).n_frames)
        p420 = reencode_420(src, Path(tmp) / "yuv420.mp4")
        r420 = read(p420, a.frames, "pyav")[0]
        print(f"\n2. yuv420p re-encode of {src.name} (300 frames), {a.frames} frames, against PyAV:")
        for n in names:
            c = compare(r420, read(p420, a.frames, n)[0])
            print(f"   {n:10s} same idx {c['same_indices']}, exact {c['exact_share']:.0%}, max|d| {c['max_diff']}, "
                  f"mean|d| {c['mean_abs']:.3f}, ts diff {c['ts_diff']:.1e}")

        if a.long_minutes <= 0:
            return 0
        base = video.probe(src)
        secs = base.n_frames / base.fps
        loops = sorted({1, max(2, int(a.long_minutes * 30 / secs)), max(3, int(a.long_minutes * 60 / secs))})
        keys = [k for k, _ in video._presentation_index(src).keys]
        gop = int(statistics.median(np.diff(keys))) if len(keys) > 1 else base.n_frames
        print(f"\n3. {src.name} ({secs:.0f} s, a keyframe every {gop} frames) looped by stream copy; "
              f"{a.frames} frames sampled")
        print(f"   {'length':>8s} {'frames':>7s} {'decoder':10s} {'s':>6s} {'decoded':>8s} {'seeks':>6s} "
              f"{'= pyav':>6s}")
        for k in loops:
            p = loop_clip(src, Path(tmp) / f"loop{k}.mp4", k)
            info = video.probe(p)
            lref, _ = read(p, a.frames, "pyav")
            for n in names + ["pyav, no seek"]:
                dec, kw = (n, {}) if n in names else ("pyav", {"seek": False})
                ts = []
                for _ in range(2):
                    t0 = time.perf_counter()
                    got, st = read(p, a.frames, dec, **kw)
                    ts.append(time.perf_counter() - t0)
                c = compare(lref, got)
                print(f"   {info.n_frames / info.fps / 60:7.1f}m {info.n_frames:7d} {n:10s} {min(ts):6.2f} "
                      f"{str(st.get('decoded')):>8s} {str(st.get('seeks')):>6s} "
                      f"{'yes' if c['same_indices'] and c['max_diff'] == 0 else 'NO':>6s}")
    print("\n(decoded: frames out of the decoder for pyav, grab() calls for opencv -- its seek decodes from the "
          "keyframe inside; TorchCodec does not report it)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
