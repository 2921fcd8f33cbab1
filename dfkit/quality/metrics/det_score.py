"""Detection score: the face detector's confidence for this crop's face.

raw = ``det_score`` (mediapipe BlazeFace probability, 0-1; the ingest keeps detections above 0.5). Null for
crops whose box was interpolated between detections (no detection on that frame) -> NaN, left out of the composite.
"""

from __future__ import annotations

from dfkit.quality.base import NAN, Logistic, Metric, register_metric
from dfkit.quality.view import _num


@register_metric
class DetScore(Metric):
    name = "det_score"
    description = "face detector confidence (null when the box was not detected on this frame)."
    unit = "probability"
    direction = "higher"
    needs_pixels = False
    score_map = Logistic(x50=0.5, x90=0.8)
    weight = 0.5
    order = 70

    def measure(self, view) -> float:
        v = _num(view.row.get("det_score"))
        return NAN if v is None else v
