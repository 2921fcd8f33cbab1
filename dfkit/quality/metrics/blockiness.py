"""Blockiness: discontinuity across the 8×8 coding-block grid of the SOURCE video (JPEG / H.264 / MPEG blocks).

The codec's blocks sit on the source frame's pixel grid (boundaries at x, y = 0, 8, 16, ...), but the crop was
resized from ``side`` source pixels to ``crop_size``, so the grid is not at multiples of 8 in the crop. The metric
therefore resamples the in-frame part of the crop back onto the source pixel grid (bilinear, sampling at source
pixel centres; ``crop_box`` and ``crop_size`` give the exact map, see ``dfkit.quality.view``), where the block
boundaries are known exactly, and compares the mean absolute luma step across block boundaries with the mean step
inside blocks:

    raw = ½ (Bh / Nh + Bv / Nv)

Bh = mean |Y[:, x] - Y[:, x-1]| over columns x ≡ 0 (mod 8); Nh the same over columns x ≢ 0, 4 (mod 8) (positions
≡ 4 are left out: H.264's 4×4 transform edges fall there); Bv, Nv likewise for rows (a small constant 0.1 grey level
is added to both means so flat regions read 1). raw ≈ 1: no block structure; 1.3: visible blocking; ≥ 1.6: heavy.

When the crop shrank a large face (``side`` > 2 × crop_size), the grid is sampled at 2 source pixels (blocks are 4
grid pixels, boundaries at grid positions ≡ 0 mod 4, interior ≡ 1, 3); beyond 4 × crop_size the blocks are
averaged away in the crop and raw is NaN. Rows without ``crop_box`` are measured on the crop's own pixel grid
(right for JPEG-encoded crops, not for video blocks).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from dfkit.quality.base import NAN, Logistic, Metric, register_metric

BLOCK = 8
EPS = 0.1
INSET = 2  # source pixels kept away from a frame edge (the zero padding starts there)


def _ratio(profile: np.ndarray, pos: np.ndarray) -> float:
    b = pos % BLOCK == 0
    n = (pos % BLOCK != 0) & (pos % BLOCK != BLOCK // 2)
    if b.sum() < 2 or n.sum() < 2:
        return NAN
    return (float(profile[b].mean()) + EPS) / (float(profile[n].mean()) + EPS)


def blockiness_on_grid(y: np.ndarray, gx0: int, gy0: int, k: int) -> float:
    """Block ratio of a luma image ``y`` whose pixel (0, 0) covers source pixels from (gx0, gy0), each pixel
    ``k`` source pixels wide."""
    y = y.astype(np.int16) if y.dtype == np.uint8 else y.astype(np.float32, copy=False)  # int16: exact, faster
    h, w = y.shape
    if h < 2 * BLOCK // k + 1 or w < 2 * BLOCK // k + 1:
        return NAN
    ph = np.abs(y[:, 1:] - y[:, :-1]).mean(axis=0)
    pv = np.abs(y[1:, :] - y[:-1, :]).mean(axis=1)
    rh = _ratio(ph, gx0 + np.arange(1, w) * k)
    rv = _ratio(pv, gy0 + np.arange(1, h) * k)
    vals = [v for v in (rh, rv) if not math.isnan(v)]
    return float(np.mean(vals)) if vals else NAN


def source_grid(view) -> tuple[np.ndarray, int, int, int] | None:
    """The crop's in-frame part resampled onto the source pixel grid (pitch ``k`` source pixels):
    ``(luma uint8, gx0, gy0, k)``, or None when the blocks are too small in the crop to measure. Computed once
    per crop (blockiness and macroblock both measure on it)."""
    return view.shared("blockiness.source_grid", lambda: _source_grid(view))


def _source_grid(view) -> tuple[np.ndarray, int, int, int] | None:
    g = view.gray
    n_h, n_w = g.shape
    if view.box is None:
        return g, 0, 0, 1
    X0, Y0, side = view.box
    n = n_w
    if side <= 2 * n:
        k = 1
    elif side <= 4 * n:
        k = 2
    else:
        return None
    fs = view.frame_size
    W, H = fs if fs is not None else (X0 + side, Y0 + side)
    sx0 = max(X0, 0) + (INSET if X0 < 0 else 0)
    sy0 = max(Y0, 0) + (INSET if Y0 < 0 else 0)
    sx1 = min(X0 + side, W) - (INSET if X0 + side > W else 0)
    sy1 = min(Y0 + side, H) - (INSET if Y0 + side > H else 0)
    gx0, gy0 = -(-sx0 // k) * k, -(-sy0 // k) * k
    wg, hg = (sx1 - gx0) // k, (sy1 - gy0) // k
    if wg < 4 or hg < 4:
        return None
    sx, sy = n_w / side, n_h / side  # crop px per source px
    m = np.array([[k * sx, 0, (gx0 + k / 2 - X0) * sx - 0.5],
                  [0, k * sy, (gy0 + k / 2 - Y0) * sy - 0.5]], dtype=np.float64)
    grid = cv2.warpAffine(g, m, (int(wg), int(hg)), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)
    return grid, int(gx0), int(gy0), k


@register_metric
class Blockiness(Metric):
    name = "blockiness"
    description = ("luma step across the source's 8×8 coding-block boundaries / step inside blocks, measured on the "
                   "crop resampled to the source pixel grid (1 = no blocking).")
    unit = "ratio"
    direction = "lower"
    score_map = Logistic(x50=1.3, x90=1.1)
    weight = 1.0
    order = 30

    def measure(self, view) -> float:
        sg = source_grid(view)
        if sg is None:
            return NAN
        return blockiness_on_grid(*sg)
