"""Graded, real degradations of face images: what the quality instrument is calibrated on and checked against.

Every degradation is one :class:`Degradation` unit with a ``kind`` name, the graded ``levels`` the calibration
uses, and an ``apply(rgb, level, rng)`` that works on an RGB uint8 image **in source pixels** (a video frame, or a
crop resampled back onto its source grid, see :func:`degrade_crop`). Levels are in physical units: source pixels
for blur, the JPEG quality factor, grey levels for noise, the scale factor, an exposure gain, an x264 CRF.

* ``defocus``: Gaussian blur, σ in source px;
* ``motion``: linear motion blur, length in source px (a line kernel at a fixed 30° angle);
* ``jpeg``: JPEG re-encode (OpenCV/libjpeg, 4:2:0) at quality q;
* ``noise``: additive white Gaussian sensor noise, σ in grey levels, per RGB channel;
* ``scale``: down-then-up scaling by a factor (area down, bilinear up): the resolution of a smaller camera or a
  zoomed-in low-resolution video;
* ``under`` / ``over``: exposure gain (< 1 darkens, > 1 brightens, clipped at white), applied in linear light
  (sRGB gamma 2.2) as a camera's exposure would;
* ``h264``: an H.264 re-encode at constant rate factor CRF (libx264 via PyAV). For a single image it is encoded
  as a short clip of identical frames; :func:`h264_clip` re-encodes a clip's frames together (what a video
  degraded in transit looks like).

:func:`parse_injection` reads the ``KIND:LEVEL[:FRACTION]`` spec the known-effect check takes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import cv2
import numpy as np

from dfkit.errors import DfkitError


@dataclass(frozen=True)
class Degradation:
    kind: str
    unit: str
    levels: tuple[float, ...]  # graded levels, mildest first
    #: the level from which the calibration requires ``quality`` < 0.5 (None: no such target)
    target_from: float | None
    fn: Callable[[np.ndarray, float, np.random.Generator], np.ndarray]
    #: True when a larger level is a milder degradation (JPEG quality, scale factor, under-exposure gain)
    milder_up: bool = False
    description: str = ""

    def apply(self, rgb: np.ndarray, level: float, rng: np.random.Generator | None = None) -> np.ndarray:
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError("degradations take RGB images (H, W, 3)")
        return self.fn(rgb, float(level), rng if rng is not None else np.random.default_rng(0))

    def ordered(self) -> tuple[float, ...]:
        """Levels from mildest to strongest."""
        return tuple(sorted(self.levels, reverse=self.milder_up))

    def is_target(self, level: float) -> bool:
        if self.target_from is None:
            return False
        return level <= self.target_from if self.milder_up else level >= self.target_from


def _defocus(rgb, sigma, rng):
    if sigma <= 0:
        return rgb.copy()
    return cv2.GaussianBlur(rgb, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)


def _motion(rgb, length, rng, angle_deg: float = 30.0):
    n = int(round(length))
    if n <= 1:
        return rgb.copy()
    k = np.zeros((n, n), np.float32)
    c = (n - 1) / 2
    a = math.radians(angle_deg)
    for t in np.linspace(-c, c, 4 * n):
        x, y = int(round(c + t * math.cos(a))), int(round(c + t * math.sin(a)))
        k[y, x] = 1.0
    k /= k.sum()
    return cv2.filter2D(rgb, -1, k, borderType=cv2.BORDER_REFLECT)


def _jpeg(rgb, q, rng):
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(q)])
    if not ok:
        raise RuntimeError("JPEG encode failed")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _noise(rgb, sigma, rng):
    g = rgb.astype(np.float32) + rng.normal(0.0, sigma, rgb.shape).astype(np.float32)
    return np.clip(np.rint(g), 0, 255).astype(np.uint8)


def _scale(rgb, factor, rng):
    h, w = rgb.shape[:2]
    if factor >= 1:
        return rgb.copy()
    sw, sh = max(1, int(round(w * factor))), max(1, int(round(h * factor)))
    small = cv2.resize(rgb, (sw, sh), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


_LIN = (np.arange(256) / 255.0) ** 2.2


def _exposure(rgb, gain, rng):
    lut = np.clip(255.0 * np.clip(_LIN * gain, 0, 1) ** (1 / 2.2) + 0.5, 0, 255).astype(np.uint8)
    return cv2.LUT(rgb, lut)


def _h264(rgb, crf, rng):
    return h264_clip([rgb] * 3, crf)[1]


def h264_clip(frames: Sequence[np.ndarray], crf: float, fps: int = 25) -> list[np.ndarray]:
    """Re-encode RGB frames as one H.264 clip (libx264, yuv420p, ``crf``, default preset) and decode them back.
    Frames are padded to even sides for 4:2:0 and cropped back."""
    import io

    import av

    from dfkit.media import write_h264

    h, w = frames[0].shape[:2]
    H, W = h + h % 2, w + w % 2
    buf = io.BytesIO()
    write_h264(buf, [np.pad(f, ((0, H - h), (0, W - w), (0, 0)), mode="edge") if (H, W) != (h, w) else f
                     for f in frames], crf, fps=fps, container="mp4",
               threads=None)  # x264's own threading, as the calibration was measured (see the quality README)
    buf.seek(0)
    with av.open(buf) as c:
        out = [fr.to_ndarray(format="rgb24")[:h, :w] for fr in c.decode(video=0)]
    if len(out) != len(frames):
        raise RuntimeError(f"H.264 round trip returned {len(out)} of {len(frames)} frames")
    return out


DEGRADATIONS: dict[str, Degradation] = {d.kind: d for d in (
    Degradation("defocus", "σ source px", (1.0, 2.0, 3.0, 5.0), 3.0, _defocus,
                description="Gaussian defocus blur"),
    Degradation("motion", "length source px", (5.0, 9.0, 15.0, 25.0), 15.0, _motion,
                description="linear motion blur at 30°"),
    Degradation("jpeg", "quality", (90.0, 50.0, 30.0, 15.0), 15.0, _jpeg, milder_up=True,
                description="JPEG re-encode"),
    Degradation("noise", "σ grey levels", (2.0, 5.0, 10.0, 20.0), 10.0, _noise,
                description="additive Gaussian sensor noise"),
    Degradation("scale", "factor", (0.5, 0.25, 0.125), 0.25, _scale, milder_up=True,
                description="down- then up-scaling (lost resolution)"),
    Degradation("under", "gain", (0.5, 0.25, 0.12, 0.06), None, _exposure, milder_up=True,
                description="under-exposure (linear-light gain)"),
    Degradation("over", "gain", (1.5, 2.5, 4.0, 6.0), None, _exposure,
                description="over-exposure (linear-light gain, clipped)"),
    Degradation("h264", "CRF", (23.0, 32.0, 40.0, 48.0), 40.0, _h264,
                description="H.264 re-encode (libx264)"),
)}


def list_degradations() -> list[str]:
    return list(DEGRADATIONS)


def get_degradation(kind: str) -> Degradation:
    try:
        return DEGRADATIONS[kind]
    except KeyError:
        raise DfkitError(f"unknown degradation {kind!r}; known: {', '.join(DEGRADATIONS)}") from None


def degrade(rgb: np.ndarray, kind: str, level: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """``rgb`` (source pixels) degraded by ``kind`` at ``level``."""
    return get_degradation(kind).apply(rgb, level, rng)


# ----------------------------------------------------------------------------------------------------------------------
# on a corpus crop: back onto the source grid, degrade, forward again
# ----------------------------------------------------------------------------------------------------------------------


GRID = 16  # the coding grid of JPEG (8) and H.264 (16 macroblocks) on the source frame


def degrade_crop(rgb: np.ndarray, row: dict, kind: str, level: float,
                 rng: np.random.Generator | None = None) -> np.ndarray:
    """A corpus crop degraded as if its source frame had been: the crop is resampled onto the source pixel grid
    it was cut from (``crop_box``: ``side`` source px a side, at frame position X0, Y0), placed at its position on
    the frame's 16-pixel coding grid (edge-padded up to the grid line before it), so that JPEG / H.264 blocks fall
    where a codec puts them, degraded there, and resampled back to the crop size. Blur σ, noise σ and scale are so
    in source units. Without a ``crop_box`` the crop's own grid is taken as the source grid."""
    from dfkit.quality.view import effective_crop_box

    n = rgb.shape[0]
    eb = effective_crop_box(row.get("crop_box")) if row else None
    if eb is None:
        return degrade(rgb, kind, level, rng)
    x0, y0, side = eb
    if side == n:
        src = rgb
    else:
        # back: an enlarged crop is point-sampled at the source pixel centres (as the metrics' working grid is), a
        # shrunk one enlarged; forward again as the ingest cut it (cubic when enlarging, area when shrinking)
        src = cv2.resize(rgb, (side, side), interpolation=cv2.INTER_LINEAR if side < n else cv2.INTER_CUBIC)
    ox, oy = x0 % GRID, y0 % GRID
    padded = np.pad(src, ((oy, 0), (ox, 0), (0, 0)), mode="edge") if ox or oy else src
    out = degrade(padded, kind, level, rng)[oy:, ox:]
    if side == n:
        return out
    return cv2.resize(out, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_CUBIC if side < n else cv2.INTER_AREA)


# ----------------------------------------------------------------------------------------------------------------------
# the --inject spec
# ----------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Injection:
    kind: str
    level: float
    fraction: float

    def __str__(self) -> str:
        return f"{self.kind}:{self.level:g}:{self.fraction:g}"


def parse_injection(spec: str, option: str = "--inject") -> Injection:
    """``"defocus:3:0.5"`` -> Injection(kind, level, fraction); ``KIND:LEVEL`` means fraction 0.5. One clear
    :class:`~dfkit.errors.DfkitError` naming ``option`` otherwise."""
    parts = [p.strip() for p in str(spec).split(":")]
    if len(parts) not in (2, 3) or not all(parts):
        raise DfkitError(f"{option} {spec!r}: expected KIND:LEVEL[:FRACTION], e.g. defocus:3:0.5 "
                         f"(kinds: {', '.join(DEGRADATIONS)})")
    kind = parts[0]
    if kind not in DEGRADATIONS:
        raise DfkitError(f"{option} {spec!r}: unknown kind {kind!r}; known: {', '.join(DEGRADATIONS)}")
    try:
        level = float(parts[1])
        frac = float(parts[2]) if len(parts) == 3 else 0.5
    except ValueError:
        raise DfkitError(f"{option} {spec!r}: LEVEL and FRACTION must be numbers") from None
    if not math.isfinite(level) or level < 0 or (level == 0 and kind != "h264"):
        raise DfkitError(f"{option} {spec!r}: LEVEL must be a positive number")
    if kind in ("jpeg", "h264") and level != int(level):
        raise DfkitError(f"{option} {spec!r}: a {'JPEG quality' if kind == 'jpeg' else 'CRF'} is a whole number")
    if kind == "jpeg" and not 1 <= level <= 100:
        raise DfkitError(f"{option} {spec!r}: JPEG quality lies in 1..100")
    if kind == "h264" and not 0 <= level <= 51:
        raise DfkitError(f"{option} {spec!r}: H.264 CRF lies in 0..51")
    if kind in ("scale", "under") and not level < 1:
        raise DfkitError(f"{option} {spec!r}: a {kind} factor lies below 1")
    if kind == "over" and not level > 1:
        raise DfkitError(f"{option} {spec!r}: an over-exposure gain lies above 1")
    if kind == "motion" and level < 2:
        raise DfkitError(f"{option} {spec!r}: a motion blur is at least 2 px long")
    if not 0 < frac < 1:
        raise DfkitError(f"{option} {spec!r}: FRACTION lies strictly between 0 and 1")
    return Injection(kind, level, frac)
