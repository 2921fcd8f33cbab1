"""Real face crops for the tests and benchmarks, cut exactly as the corpus cuts them (test fixture code, not part of
the package).

Sources: frames of the real clips under ``../shared/realdata`` (decoded with PyAV), or ``skimage.data.astronaut()``
when that folder is absent. Rows come from :func:`dfkit.ingest.frames.frame_row` (re-exported here with
:func:`~dfkit.corpus.schema.rows_to_table`): the same columns as corpus crop rows (bbox, det_score, landmarks,
crop_box, crop bytes, video facts).

Tests import it as ``import quality_samples`` (pytest puts ``tests/`` on ``sys.path``, as for ``from conftest import``);
``bench/quality.py`` puts ``tests/`` on the path first.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Iterator

import numpy as np

from dfkit.corpus.schema import sample_id
from dfkit.corpus.schema import rows_to_table
from dfkit.ingest.frames import frame_row

__all__ = ["REALDATA_CANDIDATES", "realdata_root", "ffpp_videos", "frame_row", "rows_to_table", "astronaut_rows",
           "video_frames", "ffpp_meta", "realdata_rows", "sample_rows", "paired_rows"]

REALDATA_CANDIDATES = (
    os.environ.get("DFKIT_REALDATA", ""),
    str(Path(__file__).resolve().parents[1] / ".." / "shared" / "realdata"),
    "/work/shared/realdata",
)


def realdata_root() -> Path | None:
    """The shared real-data folder (``$DFKIT_REALDATA``, ``../shared/realdata``), or None when it is absent or
    ``DFKIT_REALDATA=none``."""
    if os.environ.get("DFKIT_REALDATA", "").lower() == "none":
        return None
    for c in REALDATA_CANDIDATES:
        if c and Path(c).is_dir():
            return Path(c).resolve()
    return None


def ffpp_videos(root: Path | None = None) -> list[Path]:
    root = root or realdata_root()
    if root is None:
        return []
    return sorted(Path(p) for p in glob.glob(str(root / "ffpp_icpr2020dfdc" / "**" / "*.mp4"), recursive=True))


def astronaut_rows(crop_size: int = 256) -> list[dict]:
    """One crop row of the astronaut's face (skimage.data.astronaut(), 512x512)."""
    import skimage.data

    row = frame_row(skimage.data.astronaut(), {"sample_id": "astronaut/000000", "video_id": "astronaut",
                                               "dataset": "skimage"}, crop_size=crop_size)
    return [row] if row else []


def video_frames(path: Path, n: int = 4, stride: int | None = None) -> Iterator[tuple[int, np.ndarray, dict]]:
    """``n`` frames of a video spread over its length (or every ``stride``-th frame): ``(index, rgb, facts)``."""
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        total = int(s.frames or 0) or 300
        fps = float(s.average_rate or 25)
        facts = {"width": s.codec_context.width, "height": s.codec_context.height, "fps": fps,
                 "bitrate": int(s.bit_rate or c.bit_rate or 0) or None, "codec": s.codec_context.name}
        if stride:
            want = set(range(0, total, stride)[:n])
        else:
            want = {int(round(x)) for x in np.linspace(0, total - 1, n)} if n > 1 else {0}
        last = max(want)
        for i, fr in enumerate(c.decode(s)):
            if i in want:
                yield i, fr.to_ndarray(format="rgb24"), facts
            if i >= last:
                break


def ffpp_meta(path: Path) -> dict:
    """Corpus-like labels of an FF++ clip from its path."""
    parts = path.parts
    comp = parts[-3]
    if "original_sequences" in parts:
        vid = f"original/{comp}/{path.stem}"
        return {"dataset": "ffpp", "video_id": vid, "content_id": f"original/{path.stem}", "label": "real",
                "method": "original", "method_canonical": "original", "compression": comp, "pair_video_id": None}
    method = parts[-4]
    target = path.stem.split("_")[0]
    return {"dataset": "ffpp", "video_id": f"{method}/{comp}/{path.stem}", "content_id": f"{method}/{path.stem}",
            "label": "fake", "method": method, "method_canonical": method, "compression": comp,
            "pair_video_id": f"original/{comp}/{target}"}


def realdata_rows(n_per_video: int = 4, max_videos: int | None = None, crop_size: int = 256,
                  stride: int | None = None) -> list[dict]:
    """Crop rows from the FF++ clips of the shared real data (empty when the folder is absent)."""
    rows = []
    for p in ffpp_videos()[:max_videos]:
        meta = ffpp_meta(p)
        for fi, rgb, facts in video_frames(p, n_per_video, stride):
            r = frame_row(rgb, {**facts, **meta, "frame_index": fi,
                                "sample_id": sample_id(meta["dataset"], meta["video_id"], fi)}, crop_size=crop_size)
            if r is not None:
                rows.append(r)
    return rows


def sample_rows(n: int = 64, crop_size: int = 256) -> list[dict]:
    """About ``n`` real crop rows: FF++ frames when the shared real data is present, else the astronaut."""
    vids = ffpp_videos()
    if vids:
        per = max(1, -(-n // len(vids)))
        return realdata_rows(per, crop_size=crop_size)[:n]
    rows = astronaut_rows(crop_size)
    return (rows * n)[:n]


def paired_rows(n_per_pair: int = 3, crop_size: int = 256) -> tuple[list[dict], list[dict]]:
    """``(fake_rows, original_rows)`` from the FF++ clips whose original is present: the same frames of fake and
    original, both cut with the original's crop box (as the ingest cuts paired fakes). Empty without real data."""
    vids = ffpp_videos()
    by_id = {ffpp_meta(p)["video_id"]: p for p in vids}
    fakes, refs = [], []
    for p in vids:
        meta = ffpp_meta(p)
        orig = by_id.get(meta["pair_video_id"] or "")
        if meta["label"] != "fake" or orig is None:
            continue
        ometa = ffpp_meta(orig)
        for (fi, frgb, ffacts), (_, orgb, ofacts) in zip(video_frames(p, n_per_pair), video_frames(orig, n_per_pair)):
            o = frame_row(orgb, {**ofacts, **ometa, "frame_index": fi,
                                 "sample_id": sample_id("ffpp", ometa["video_id"], fi)}, crop_size=crop_size)
            if o is None:
                continue
            f = frame_row(frgb, {**ffacts, **meta, "frame_index": fi,
                                 "sample_id": sample_id("ffpp", meta["video_id"], fi)},
                          crop_size=crop_size, box=o["crop_box"])
            f["box_source"] = "paired"
            fakes.append(f)
            refs.append(o)
    return fakes, refs
