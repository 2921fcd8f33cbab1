"""Exposure: how much of the face is under- or over-exposed (soft clipping fraction).

Per pixel of the face core's luma (the central 60 % of the detection box, so hair and background in
the box corners do not count) Y (0-255): dark = clip((64 - Y) / 64, 0, 1) (1 at black, falling linearly to 0 at
Y = 64), bright = clip((Y - 200) / 55, 0, 1) (0 up to Y = 200, 1 at white). raw = mean(dark + bright): the fraction
of the face that is under- or over-exposed, pixels counting by how far they are into the shadows / highlights. 0 =
every pixel well exposed, 1 = all black or all white. A well-lit face: 0.005-0.06 (pupils, nostrils, a beard); the
same face at half the brightness ~0.14, at 30 % ~0.45. Extras: ``dark`` and ``bright`` (the two parts).
Darkening a crop that is not over-exposed raises raw; brightening one that is not under-exposed raises it too.
"""

from __future__ import annotations

import numpy as np

from dfkit.quality.base import NAN, Metric, PowerDecay, register_metric

DARK, BRIGHT = 64, 200
_levels = np.arange(256, dtype=np.float64)
DARK_LUT = np.clip((DARK - _levels) / DARK, 0, 1)
BRIGHT_LUT = np.clip((_levels - BRIGHT) / (255 - BRIGHT), 0, 1)


def _parts(view) -> tuple[float, float]:
    """(dark, bright) of the face core, once per crop (the score and the extras both read it)."""
    return view.shared("exposure.parts", lambda: _dark_bright(view.core_u8))


def _dark_bright(f: np.ndarray) -> tuple[float, float]:
    if f.size == 0:
        return NAN, NAN
    hist = np.bincount(f.ravel(), minlength=256).astype(np.float64)
    n = hist.sum()
    return float(hist @ DARK_LUT / n), float(hist @ BRIGHT_LUT / n)


@register_metric
class Exposure(Metric):
    name = "exposure"
    description = "soft fraction of the face core that is under- (Y<64) or over-exposed (Y>200)."
    unit = "fraction of face"
    direction = "lower"
    score_map = PowerDecay(x_at=0.1, s_at=0.7)
    weight = 1.0
    order = 40
    extras = ("dark", "bright")

    def measure(self, view) -> float:
        d, b = _parts(view)
        return d + b

    def measure_extras(self, view) -> dict:
        d, b = _parts(view)
        return {"dark": d, "bright": b}
