"""Codec: the video codec's name (a per-video, categorical metric, broadcast to its crops).

raw = the codec name as PyAV/FFmpeg reports it (``h264``, ``hevc``, ``mpeg4``, ...). The score is a fixed table of
how much a codec family damages a face at the bitrates datasets use: lossless/intra-lossless codecs 1.0, modern
block-transform codecs with deblocking (HEVC, AV1, VP9) 0.9, H.264 0.8, older ones (MPEG-4 part 2, VP8) 0.6,
MPEG-1/2, MJPEG 0.5, unknown codecs NaN. A coarse prior, not a measurement; not in the default composite (weight 0).
"""

from __future__ import annotations

from dfkit.quality.base import Lookup, Metric, register_metric

CODEC_SCORES = {
    "ffv1": 1.0, "huffyuv": 1.0, "ffvhuff": 1.0, "rawvideo": 1.0, "png": 1.0, "utvideo": 1.0, "magicyuv": 1.0,
    "hevc": 0.9, "h265": 0.9, "av1": 0.9, "libdav1d": 0.9, "libaom-av1": 0.9, "vp9": 0.9,
    "h264": 0.8, "avc": 0.8,
    "mpeg4": 0.6, "msmpeg4v3": 0.6, "xvid": 0.6, "vp8": 0.6, "wmv3": 0.6, "vc1": 0.6,
    "mpeg2video": 0.5, "mpeg1video": 0.5, "mjpeg": 0.5, "wmv2": 0.5, "h263": 0.4,
}


@register_metric
class Codec(Metric):
    name = "codec"
    description = "video codec name; score from a fixed table of codec families."
    unit = "name"
    direction = "categorical"
    level = "video"
    needs_pixels = False
    raw_type = "string"
    score_map = Lookup(table=CODEC_SCORES)
    weight = 0.0
    order = 130

    def measure_video(self, rows):
        r = rows[0] if rows else {}
        c = r.get("codec")
        return str(c).lower() if c else None
