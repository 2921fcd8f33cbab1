"""Face size: the width of the face in SOURCE pixels, i.e. the resolution actually behind the crop.

raw = bbox width (x1 - x0) in source pixels (the detection box). A 60-px face resized to a 256² crop is upsampled
about 5×; no pixel metric of the crop can recover what was never recorded.
"""

from __future__ import annotations

from dfkit.quality.base import NAN, LogLogistic, Metric, register_metric
from dfkit.quality.view import _box


@register_metric
class FaceSize(Metric):
    name = "face_size"
    description = "face (detection box) width in source pixels."
    unit = "source px"
    direction = "higher"
    needs_pixels = False
    score_map = LogLogistic(x50=64.0, x90=160.0)
    weight = 0.5
    order = 60

    def measure(self, view) -> float:
        b = _box(view.row.get("bbox"))
        if b is None:
            return NAN
        return max(0.0, b[2] - b[0])
