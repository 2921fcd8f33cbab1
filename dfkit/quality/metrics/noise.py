"""Noise: Immerkær's fast noise-sigma estimate on the flat parts of the face region.

raw = σ̂ = sqrt(π/2) / 6 · mean |Y * N| with N = [[1,-2,1],[-2,4,-2],[1,-2,1]] (Immerkær 1996, "Fast noise variance
estimation", CVIU 64(2)): N is the difference of two Laplacians, blind to locally linear image content, so its
response is mostly noise. As in Tai & Yang (2008) the mean runs only over the flattest 50 % of pixels (by Sobel
gradient magnitude), so edges and texture are not read as noise. Y is the face region's luma (0-255) on the working grid
(source pixels, at most 256², see ``dfkit.quality.view``). Unit: grey levels (the standard deviation of
additive white Gaussian noise it would be). Luma averages the RGB channels' noise (σ_Y ≈ 0.67 σ_RGB for independent
channel noise) and the flattest-half selection is biased low, so σ = 10 RGB noise reads about 3.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from dfkit.quality.base import NAN, LogLogistic, Metric, register_metric

_KERNEL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)
FLAT_FRACTION = 0.5


@register_metric
class Noise(Metric):
    name = "noise"
    description = "Immerkær noise sigma of the face region's flattest half (luma, working grid)."
    unit = "grey levels (σ)"
    direction = "lower"
    score_map = LogLogistic(x50=2.5, x90=1.0)
    weight = 1.0
    order = 20

    def measure(self, view) -> float:
        if not view.face_ok(8):
            return NAN
        return face_sigma(view)


def face_sigma(view) -> float:
    """:func:`immerkaer_sigma` of the view's face region, computed once per crop (noise and sharpness both use it)."""
    return view.shared("noise.face_sigma", lambda: immerkaer_sigma(view.face_u8))


def immerkaer_sigma(y: np.ndarray) -> float:
    """Immerkær's noise sigma of a luma image (uint8, or float32 grey levels) over its flattest ``FLAT_FRACTION`` of
    pixels (the raw value of this metric; sharpness uses it to discount the Laplacian energy that noise adds).

    On uint8 the filter responses are integers and are computed in int16, and the flatness threshold is read from a
    histogram instead of a partial sort: the same value as the float path (to float rounding), in ~60 % of the time."""
    if y.dtype == np.uint8:
        r = cv2.filter2D(y, cv2.CV_16S, _KERNEL, borderType=cv2.BORDER_REFLECT)[1:-1, 1:-1]
        gx = cv2.Sobel(y, cv2.CV_16S, 1, 0, ksize=3)[1:-1, 1:-1]
        gy = cv2.Sobel(y, cv2.CV_16S, 0, 1, ksize=3)[1:-1, 1:-1]
        flat = (np.abs(gx).astype(np.int32) + np.abs(gy)).ravel()
        k = max(1, int(flat.size * FLAT_FRACTION))
        thr = int(np.searchsorted(np.cumsum(np.bincount(flat)), k))  # the k-th smallest flatness
        sel = np.abs(r.ravel()[flat <= thr])
    else:
        r = np.abs(cv2.filter2D(y, cv2.CV_32F, _KERNEL, borderType=cv2.BORDER_REFLECT))[1:-1, 1:-1]
        gx = cv2.Sobel(y, cv2.CV_32F, 1, 0, ksize=3)[1:-1, 1:-1]
        gy = cv2.Sobel(y, cv2.CV_32F, 0, 1, ksize=3)[1:-1, 1:-1]
        flat = (np.abs(gx) + np.abs(gy)).ravel()
        k = max(1, int(flat.size * FLAT_FRACTION))
        thr = np.partition(flat, k - 1)[k - 1]
        sel = r.ravel()[flat <= thr]
    return math.sqrt(math.pi / 2) / 6 * float(sel.mean())
