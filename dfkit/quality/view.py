"""One crop as the metrics see it: decoded pixels + the row's geometry, with the shared work done once.

Geometry conventions (those of ``dfkit.corpus.geometry.crop_square``, which cuts the corpus crops):

* the stored ``crop_box`` [x0, y0, x1, y1] is rounded to the integer square ``X0 = round(x0)``,
  ``Y0 = round(y0)``, ``side = max(round(x1) - X0, round(y1) - Y0, 1)``, the part outside the frame is zero
  padded, and the square is resized to ``crop_size``² (area averaging when shrinking, cubic when enlarging);
* so crop pixel ``u`` covers source ``[X0 + u * side / n, X0 + (u + 1) * side / n)`` (n = crop side) and crop
  pixel centres sit at source ``X0 + (u + 0.5) * side / n`` (OpenCV's half-pixel convention).

Regions, all in crop pixels as ``(r0, r1, c0, c1)`` half-open:

* ``valid``: the part of the crop that shows the frame (not the zero padding), inset by 2 source pixels (at least
  2 crop pixels) so that the resampling ringing at the frame edge is excluded;
* ``face``: the detection ``bbox`` intersected with ``valid``; the central 70 % of the crop when the row has no
  ``bbox``/``crop_box``;
* ``core``: the central 60 % of ``face`` (skin and features, not the hair and background in the box corners).

The pixel metrics (sharpness, noise, exposure, contrast) measure the face region of the *working image*: the crop
resampled to ``m = min(256, side, crop side)`` pixels a side (a crop is never enlarged), i.e. onto the coarser of two
grids: the source pixel grid (when
the crop was enlarged from a face region smaller than 256 source pixels, it is sampled back at the source pixel
centres, which recovers the source pixels) or the 256² reference grid (when the crop shows more source pixels than
that). So a value means the same for any corpus crop size of at least ``min(256, side)`` -- a smaller crop holds
fewer pixels than that and is measured on its own grid -- and sharpness / noise describe the source (focus,
motion blur, compression smoothing, sensor noise) rather than how much the crop was upsampled, which is
``face_size``'s job. Blockiness resamples the valid region onto the source pixel grid (see
``metrics/blockiness.py``).
"""

from __future__ import annotations

import math
from functools import cached_property

import cv2
import numpy as np

REF = 256
FALLBACK_FACE = 0.70  # central fraction of the crop used as the face region without geometry
CORE_INSET = 0.20  # the face "core" drops 20 % of the face box on each side
# Reference luma contrast (standard deviation, grey levels) of a well-exposed face: measures that scale with the
# image's gain (Laplacian variance, curvature) are rescaled to it, so brightening or darkening a face does not read as
# sharpening or blurring it (exposure has its own metric). About the median face of FF++ c23 clips.
REFERENCE_CONTRAST = 40.0
# a face with less contrast than this is not stretched further (at most ×2): a flat or black face region holds no
# detail to bring out, and stretching its noise or quantisation steps ×40 made it read sharp
MIN_CONTRAST = 20.0


def contrast_gain(y: np.ndarray) -> float:
    """``REFERENCE_CONTRAST / std(y)``, std at least ``MIN_CONTRAST``: the factor that brings ``y`` to the reference
    contrast."""
    if y.size and y.ndim == 2 and y.dtype in (np.uint8, np.float32):
        sd = float(cv2.meanStdDev(y)[1][0, 0])  # one pass, no float64 copy
    else:
        sd = float(np.std(y))
    return REFERENCE_CONTRAST / max(sd, MIN_CONTRAST)


def _num(v):
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _box(v) -> tuple[float, float, float, float] | None:
    if v is None:
        return None
    try:
        vals = [float(x) for x in v]
    except (TypeError, ValueError):
        return None
    if len(vals) != 4 or any(math.isnan(x) for x in vals):
        return None
    return vals[0], vals[1], vals[2], vals[3]


def effective_crop_box(crop_box) -> tuple[int, int, int] | None:
    """``(X0, Y0, side)``: the integer square actually cut for ``crop_box`` (as ``crop_square`` rounds it)."""
    b = _box(crop_box)
    if b is None:
        return None
    x0, y0, x1, y1 = (int(round(v)) for v in b)
    side = max(x1 - x0, y1 - y0, 1)
    return x0, y0, side


class CropView:
    """The crop pixels (RGB uint8, may be ``None`` for metadata-only metrics) and its row, with lazily computed,
    cached derived data: grey levels, the reference-size grey image, the valid and face regions."""

    def __init__(self, rgb: np.ndarray | None, row: dict | None):
        self.rgb = rgb
        self.row = row if row is not None else {}
        if rgb is not None:
            if rgb.ndim == 2:
                rgb = np.repeat(rgb[:, :, None], 3, axis=2)
                self.rgb = rgb
            self.h, self.w = rgb.shape[:2]
        else:
            n = int(self.row.get("crop_size") or REF)
            self.h = self.w = n
        self._memo: dict = {}

    def shared(self, key: str, compute):
        """``compute()`` once per view under ``key``: an intermediate that several metrics use (the source-grid
        resampling of blockiness and macroblock, the noise sigma of noise and sharpness) is computed once per crop.
        ``key`` is the owning function's qualified name."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    # -- geometry ------------------------------------------------------------------------------------------------
    @cached_property
    def box(self) -> tuple[int, int, int] | None:
        return effective_crop_box(self.row.get("crop_box"))

    @property
    def frame_size(self) -> tuple[int, int] | None:
        w, h = _num(self.row.get("width")), _num(self.row.get("height"))
        if not w or not h:
            return None
        return int(w), int(h)

    def source_to_crop(self, sx0: float, sy0: float, sx1: float, sy1: float) -> tuple[float, float, float, float]:
        """A source-pixel rectangle in (fractional) crop pixels ``(r0, r1, c0, c1)``."""
        X0, Y0, side = self.box
        fx, fy = self.w / side, self.h / side
        return (sy0 - Y0) * fy, (sy1 - Y0) * fy, (sx0 - X0) * fx, (sx1 - X0) * fx

    def _clip_rect(self, r0, r1, c0, c1) -> tuple[int, int, int, int]:
        r0, c0 = max(0, int(math.ceil(r0 - 1e-6))), max(0, int(math.ceil(c0 - 1e-6)))
        r1, c1 = min(self.h, int(math.floor(r1 + 1e-6))), min(self.w, int(math.floor(c1 + 1e-6)))
        return r0, max(r0, r1), c0, max(c0, c1)

    @cached_property
    def valid_rect(self) -> tuple[int, int, int, int]:
        """Crop pixels showing the frame (not padding), inset by 2 source pixels / at least 2 crop pixels."""
        if self.box is None or self.frame_size is None:
            return 0, self.h, 0, self.w
        X0, Y0, side = self.box
        W, H = self.frame_size
        if X0 >= 0 and Y0 >= 0 and X0 + side <= W and Y0 + side <= H:
            return 0, self.h, 0, self.w  # nothing padded
        inset = 2.0
        sx0 = max(X0, 0) + (inset if X0 < 0 else 0)
        sy0 = max(Y0, 0) + (inset if Y0 < 0 else 0)
        sx1 = min(X0 + side, W) - (inset if X0 + side > W else 0)
        sy1 = min(Y0 + side, H) - (inset if Y0 + side > H else 0)
        r0, r1, c0, c1 = self.source_to_crop(sx0, sy0, sx1, sy1)
        pad = 2  # crop pixels, in case a source pixel is smaller than a crop pixel
        r0 = r0 + pad if Y0 < 0 else r0
        c0 = c0 + pad if X0 < 0 else c0
        r1 = r1 - pad if Y0 + side > H else r1
        c1 = c1 - pad if X0 + side > W else c1
        return self._clip_rect(r0, r1, c0, c1)

    @cached_property
    def face_rect(self) -> tuple[int, int, int, int]:
        """The face box (detection ``bbox``) within the valid region, crop pixels."""
        bb = _box(self.row.get("bbox"))
        vr0, vr1, vc0, vc1 = self.valid_rect
        if bb is None or self.box is None:
            m = (1 - FALLBACK_FACE) / 2
            r = (self.h * m, self.h * (1 - m), self.w * m, self.w * (1 - m))
        else:
            r = self.source_to_crop(*bb)
        r0, r1, c0, c1 = self._clip_rect(*r)
        r0, r1 = max(r0, vr0), min(r1, vr1)
        c0, c1 = max(c0, vc0), min(c1, vc1)
        return r0, max(r0, r1), c0, max(c0, c1)

    @staticmethod
    def scale_rect(rect, fy: float, fx: float) -> tuple[int, int, int, int]:
        r0, r1, c0, c1 = rect
        return (int(math.ceil(r0 * fy - 1e-6)), int(math.floor(r1 * fy + 1e-6)),
                int(math.ceil(c0 * fx - 1e-6)), int(math.floor(c1 * fx + 1e-6)))

    # -- pixels --------------------------------------------------------------------------------------------------
    @cached_property
    def gray(self) -> np.ndarray:
        """Luma (BT.601, as OpenCV), uint8, native crop size."""
        if self.rgb is None:
            raise ValueError("this metric needs the crop pixels")
        return cv2.cvtColor(np.ascontiguousarray(self.rgb), cv2.COLOR_RGB2GRAY)

    @cached_property
    def work_size(self) -> int:
        """Side of the working image: ``min(REF, side, n)`` -- the coarsest of the source pixel grid, the 256²
        reference grid and the crop's own grid (``n``): a crop smaller than its face box is measured as it is, never
        enlarged (interpolation would invent pixels and smooth away the noise a camera left). ``min(REF, n)``
        without a ``crop_box``."""
        n = max(self.gray.shape) if self.rgb is not None else REF
        if self.box is None:
            return max(8, min(REF, n))
        return max(8, min(REF, self.box[2], n))

    @cached_property
    def work_u8(self) -> np.ndarray:
        """Luma resampled to ``work_size``², uint8. When the crop was enlarged from fewer source pixels, this
        point-samples it (bilinear) at the source pixel centres, recovering the source pixels; when it was shrunk,
        it is area-averaged to 256²."""
        g = self.gray
        m = self.work_size
        if g.shape == (m, m):
            return g
        if m > max(g.shape):
            interp = cv2.INTER_CUBIC
        elif self.box is not None and m == self.box[2]:
            interp = cv2.INTER_LINEAR  # back onto the source grid: sample at source pixel centres
        else:
            interp = cv2.INTER_AREA
        return cv2.resize(g, (m, m), interpolation=interp)

    @cached_property
    def work_face_rect(self) -> tuple[int, int, int, int]:
        m = self.work_size
        return self.scale_rect(self.face_rect, m / self.h, m / self.w)

    @cached_property
    def face_u8(self) -> np.ndarray:
        """The face region of the working luma, uint8 (may be empty)."""
        r0, r1, c0, c1 = self.work_face_rect
        return self.work_u8[r0:r1, c0:c1]

    @cached_property
    def face_f32(self) -> np.ndarray:
        return self.face_u8.astype(np.float32)

    @cached_property
    def core_u8(self) -> np.ndarray:
        """The central 60 % (width and height) of the face region: skin and features, without the hair and
        background in the corners of the detection box."""
        f = self.face_u8
        h, w = f.shape
        a, b = int(h * CORE_INSET), int(w * CORE_INSET)
        return f[a:h - a, b:w - b]

    def face_ok(self, min_side: int = 8) -> bool:
        f = self.face_u8
        return f.shape[0] >= min_side and f.shape[1] >= min_side
