"""Cut-off: how much of the face lies outside the frame (a box at or over the frame edge).

raw = fraction of the area of the face box enlarged by 10 % on each side (so 1.2× its width and height) that lies
outside the frame [0, width) × [0, height). A face well inside the frame has 0; a detection box that touches the
frame edge (detectors often clip their boxes to the frame) has about 0.08 per touched side; a face half out of the
frame 0.5. Extras: ``pad`` = fraction of the crop that is zero padding (crop_box outside the frame),
``touch`` = 1.0 when the detection box is within 1 source pixel of a frame edge, else 0.0.
"""

from __future__ import annotations

from dfkit.quality.base import NAN, Metric, PowerDecay, register_metric
from dfkit.quality.view import _box, _num

ENLARGE = 0.10


def _outside_fraction(b, w: float, h: float) -> float:
    x0, y0, x1, y1 = b
    area = max(x1 - x0, 0.0) * max(y1 - y0, 0.0)
    if area <= 0:
        return NAN
    ix = max(0.0, min(x1, w) - max(x0, 0.0))
    iy = max(0.0, min(y1, h) - max(y0, 0.0))
    return 1.0 - ix * iy / area


def _frame(row) -> tuple[float, float] | None:
    w, h = _num(row.get("width")), _num(row.get("height"))
    return (w, h) if w and h else None


@register_metric
class Cutoff(Metric):
    name = "cutoff"
    description = "fraction of the face box (enlarged 10 % a side) outside the frame."
    unit = "fraction of face box"
    direction = "lower"
    needs_pixels = False
    score_map = PowerDecay(x_at=0.1, s_at=0.7)
    weight = 1.0
    order = 90
    extras = ("pad", "touch")

    def measure(self, view) -> float:
        b, fr = _box(view.row.get("bbox")), _frame(view.row)
        if b is None or fr is None:
            return NAN
        x0, y0, x1, y1 = b
        mx, my = ENLARGE * (x1 - x0), ENLARGE * (y1 - y0)
        return _outside_fraction((x0 - mx, y0 - my, x1 + mx, y1 + my), *fr)

    def measure_extras(self, view) -> dict:
        fr = _frame(view.row)
        cb, b = _box(view.row.get("crop_box")), _box(view.row.get("bbox"))
        pad = _outside_fraction(cb, *fr) if cb is not None and fr is not None else NAN
        if b is not None and fr is not None:
            touch = float(b[0] <= 1 or b[1] <= 1 or b[2] >= fr[0] - 1 or b[3] >= fr[1] - 1)
        else:
            touch = NAN
        return {"pad": pad, "touch": touch}
