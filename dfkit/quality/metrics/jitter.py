"""Jitter: temporal instability of the crop box within one video (a per-video metric, broadcast to its crops).

The crop boxes of a video (``crop_box``, i.e. what was actually cut; ``bbox`` when there is none), ordered by
``frame_index``: for every interior sample t, the box [cx, cy, side] is predicted by linear interpolation between its
neighbours t-1 and t+1 (weighted by their frame distance, so uneven sampling is fine), and the residual is
measured relative to the box side:

    r_t = ‖(cx, cy, side)_t - interp_t‖ / side_t,    raw = mean_t r_t

Smooth head motion is (locally) linear and leaves ~0; a detector that wobbles, or a track that jumps to another
face, leaves large residuals. 0.02 = the box wobbles by 2 % of its size. Needs ≥ 3 boxes, else NaN. It depends on
the frame sampling: with frames far apart, real motion between samples is not linear and counts as jitter.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from dfkit.quality.base import NAN, LogLogistic, Metric, register_metric
from dfkit.quality.view import _box, _num


def box_jitter(frames: Sequence[float], boxes: Sequence[Sequence[float]]) -> float:
    """Mean normalised second-order residual of boxes ``[x0, y0, x1, y1]`` at frame indices ``frames``."""
    f = np.asarray(frames, dtype=np.float64)
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    ok = np.isfinite(b).all(axis=1) & np.isfinite(f)
    f, b = f[ok], b[ok]
    if len(f) < 3:
        return NAN
    order = np.argsort(f, kind="stable")
    f, b = f[order], b[order]
    keep = np.concatenate([[True], np.diff(f) > 0])  # one box per frame
    f, b = f[keep], b[keep]
    if len(f) < 3:
        return NAN
    side = np.sqrt(np.maximum((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), 1e-6))
    s = np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, side], axis=1)
    w = ((f[1:-1] - f[:-2]) / (f[2:] - f[:-2]))[:, None]
    pred = s[:-2] + w * (s[2:] - s[:-2])
    r = np.linalg.norm(s[1:-1] - pred, axis=1) / side[1:-1]
    return float(r.mean())


@register_metric
class Jitter(Metric):
    name = "jitter"
    description = "mean deviation of each crop box from the interpolation of its neighbours, / box side (per video)."
    unit = "fraction of box side"
    direction = "lower"
    level = "video"
    needs_pixels = False
    score_map = LogLogistic(x50=0.25, x90=0.08)
    weight = 0.5
    order = 100

    def measure_video(self, rows) -> float:
        frames, boxes = [], []
        for r in rows:
            b = _box(r.get("crop_box")) or _box(r.get("bbox"))
            fi = _num(r.get("frame_index"))
            if b is not None and fi is not None:
                frames.append(fi)
                boxes.append(b)
        return box_jitter(frames, boxes)
