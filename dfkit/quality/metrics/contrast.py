"""Contrast: RMS contrast of the face region.

raw = standard deviation of the face region's luma scaled to [0, 1] (Peli's RMS contrast). Typical well-lit faces
are around 0.15-0.25; hazy, flat or heavily compressed faces fall under 0.08.
"""

from __future__ import annotations

import cv2

from dfkit.quality.base import NAN, LogLogistic, Metric, register_metric


@register_metric
class Contrast(Metric):
    name = "contrast"
    description = "RMS contrast: standard deviation of the face region's luma in [0, 1]."
    unit = "σ of luma / 255"
    direction = "higher"
    score_map = LogLogistic(x50=0.06, x90=0.14)
    weight = 0.5
    order = 50

    def measure(self, view) -> float:
        f = view.face_u8
        if f.size < 16:
            return NAN
        _, sd = cv2.meanStdDev(f)
        return float(sd[0, 0]) / 255.0
