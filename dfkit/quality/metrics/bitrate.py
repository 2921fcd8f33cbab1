"""Bitrate: the video's bits per pixel per frame (a per-video metric, broadcast to its crops).

raw = bitrate / (width · height · fps), from the container/stream facts (``bitrate`` in bits per second). About 0.1
bpp and up is visually transparent H.264 for typical content; FF++ c23 is around 0.05-0.1, c40 around 0.01; below
0.01 blocks and smearing dominate. Codec-blind (HEVC/AV1 need ~40 % fewer bits for the same quality) and content-
blind (static scenes need fewer bits). Not part of the default crop composite (weight 0): it is a label of the
video, and the composite should measure the crops so that "quality vs compression" is a finding, not a tautology.
"""

from __future__ import annotations

from dfkit.quality.base import NAN, LogLogistic, Metric, register_metric
from dfkit.quality.view import _num


@register_metric
class Bitrate(Metric):
    name = "bitrate"
    description = "bits per pixel per frame: bitrate / (width * height * fps)."
    unit = "bits / pixel / frame"
    direction = "higher"
    level = "video"
    needs_pixels = False
    score_map = LogLogistic(x50=0.02, x90=0.08)
    weight = 0.0
    order = 110

    def measure_video(self, rows) -> float:
        r = rows[0] if rows else {}
        br, w, h, fps = (_num(r.get(k)) for k in ("bitrate", "width", "height", "fps"))
        if not br or not w or not h or not fps:
            return NAN
        return br / (w * h * fps)
