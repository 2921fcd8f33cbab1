"""Sharpness: variance of the Laplacian of the face region, scale-normalised.

raw = Var(∇²Y) where Y is the luma (0-255) of the face region (detection box inside the crop) and ∇² the
4-neighbour Laplacian kernel [[0,1,0],[1,-4,1],[0,1,0]]. Scale normalisation: Y is taken on the *working grid*
(``dfkit.quality.view``): the source pixel grid when the face region was smaller than 256 source pixels (the crop
is sampled back at the source pixel centres), else the 256² reference grid. A Laplacian on an image enlarged s
times has about s⁻⁴ times the variance, so measuring the enlarged crop would mostly measure the enlargement; on
the working grid the value describes blur present in the source (focus, motion, compression smoothing) and does
not depend on the corpus crop size. How few pixels the face had is ``face_size``'s measure. Known limits: noise and
strong texture raise it, darkness lowers it (their own metrics say so).
"""

from __future__ import annotations

import cv2

from dfkit.quality.base import NAN, LogLogistic, Metric, register_metric


@register_metric
class Sharpness(Metric):
    name = "sharpness"
    description = ("variance of the Laplacian of the face region's luma on the working grid "
                   "(source pixels, at most 256²).")
    unit = "grey levels²"
    direction = "higher"
    score_map = LogLogistic(x50=12.0, x90=40.0)
    weight = 1.0
    order = 10

    def measure(self, view) -> float:
        if not view.face_ok(8):
            return NAN
        lap = cv2.Laplacian(view.face_f32, cv2.CV_32F, ksize=1, borderType=cv2.BORDER_REFLECT)
        _, sd = cv2.meanStdDev(lap[1:-1, 1:-1])
        return float(sd[0, 0]) ** 2
