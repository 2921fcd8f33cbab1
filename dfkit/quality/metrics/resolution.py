"""Resolution: the video frame's short side in pixels (a per-video metric, broadcast to its crops).

raw = min(width, height): 480 for 640x480, 720 for 1280x720, 1080 for 1920x1080 and for portrait 1080x1920. What
matters for a face crop is the face's own size (``face_size``); this is the video-level context. Not in the default
composite (weight 0).
"""

from __future__ import annotations

from dfkit.quality.base import NAN, LogLogistic, Metric, register_metric
from dfkit.quality.view import _num


@register_metric
class Resolution(Metric):
    name = "resolution"
    description = "short side of the video frame, pixels."
    unit = "px"
    direction = "higher"
    level = "video"
    needs_pixels = False
    score_map = LogLogistic(x50=360.0, x90=720.0)
    weight = 0.0
    order = 120

    def measure_video(self, rows) -> float:
        r = rows[0] if rows else {}
        w, h = _num(r.get("width")), _num(r.get("height"))
        if not w or not h:
            return NAN
        return min(w, h)
