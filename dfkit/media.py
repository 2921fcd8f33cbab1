"""Writing media: the one H.264 writer (:func:`write_h264`) the demo, the quality degradations, the constructed
label-noise cases and the tests encode with (a base module: every stage may use it)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

#: RGB -> yuv420p on one thread: the conversion the encoder would otherwise make itself (FFmpeg's swscale, threaded)
#: gave different pixels from run to run on a loaded 2-core machine (2 of 40 encodes of the same 48 demo frames
#: differed, by up to 49 grey levels; x264 itself was repeatable when given yuv420p frames). The demo, the H.264
#: degradations and the tests must give the same bytes on every run.
CONVERT_THREADS = 1
#: x264 settings of the repeatable mode (``threads`` set): one thread, and no macroblock tree. x264's mbtree (its
#: assembly) gave different bitstreams for the same yuv420p frames within one process (3 of 10 encodes of 48 frames
#: differed on the 2-core machine, with or without load; 1 of 10 with ``mbtree=0`` or ``asm=0``, also under load,
#: at the veryfast, medium and ultrafast presets). Without mbtree a CRF encode is a little larger at equal quality.
REPEATABLE_X264 = "mbtree=0"


def write_h264(target, frames, crf: float, fps: int = 25, preset: str = "medium", container: str | None = None,
               threads: int | None = 1) -> None:
    """Encode RGB uint8 frames (equal sizes, even sides) as H.264 (libx264, yuv420p) at constant rate factor ``crf``
    into ``target`` (a path, or a binary file object with ``container`` naming the format, e.g. ``"mp4"``).
    With ``threads`` set (1, the default) repeatable: the same frames and settings give the same bytes (one x264
    thread, :data:`REPEATABLE_X264`). ``threads=None`` lets x264 choose (frame threads and mbtree, as FFmpeg's
    command line does): faster, but not bit-repeatable (20 encodes of the same 48 frames gave 4 different files on
    the loaded 2-core machine)."""
    frames = list(frames)
    h, w = frames[0].shape[:2]
    if h % 2 or w % 2:
        raise ValueError(f"H.264 4:2:0 needs even frame sides, got {w}x{h}")
    if isinstance(target, (str, os.PathLike)):
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        target = str(target)
    import av

    with av.open(target, "w", format=container) as c:
        opts = {"crf": str(int(round(crf))), "preset": preset}
        if threads is not None:
            opts["threads"] = str(int(threads))
            opts["x264-params"] = REPEATABLE_X264
        s = c.add_stream("libx264", rate=fps, options=opts)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for f in frames:
            yuv = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24").reformat(
                format="yuv420p", threads=CONVERT_THREADS)
            for pkt in s.encode(yuv):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
