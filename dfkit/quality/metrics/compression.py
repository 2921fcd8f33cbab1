"""Compression level: the dataset's own compression label as a number (a per-video metric).

raw = the quantiser the label names: FF++'s ``c23`` / ``c40`` are H.264 constant-quantiser levels 23 / 40, ``c0`` and
``raw`` are lossless (0); other labels ``<letters><number>`` (e.g. ``crf28``, ``q35``) give their number; no label or an
unparseable one -> NaN. The score falls with the quantiser (logistic: 0.9 at 23, 0.5 at 35): c0 ≈ 1.0, c23 0.90,
c40 0.29. A label, not a measurement; not in the default composite (weight 0), so that quality vs compression can be
studied.
"""

from __future__ import annotations

import math
import re

from dfkit.quality.base import NAN, Logistic, Metric, register_metric

LOSSLESS = {"c0", "raw", "lossless", "none"}


def compression_level(label) -> float:
    if label is None:
        return NAN
    s = str(label).strip().lower()
    if s in LOSSLESS:
        return 0.0
    m = re.fullmatch(r"[a-z_-]*?(\d+(?:\.\d+)?)", s)
    return float(m.group(1)) if m else NAN


@register_metric
class Compression(Metric):
    name = "compression"
    description = "the compression label as a quantiser level (c0/raw = 0, c23 = 23, c40 = 40)."
    unit = "quantiser"
    direction = "lower"
    level = "video"
    needs_pixels = False
    score_map = Logistic(x50=35.0, x90=23.0)
    weight = 0.0
    order = 140

    def measure_video(self, rows) -> float:
        r = rows[0] if rows else {}
        v = compression_level(r.get("compression"))
        return v if not math.isnan(v) else NAN
