"""The corpus's crop geometry: how a ``crop_box`` (stored per crop, source-frame pixels, may extend past the frame) is
cut from its frame into the ``crop_size``² image in the ``crop`` column.

``crop_box`` [x0, y0, x1, y1] is rounded to the integer square ``X0 = round(x0)``, ``Y0 = round(y0)``,
``side = max(round(x1) - X0, round(y1) - Y0, 1)``; the part outside the frame is zero padded and the square is
resized to ``size``² (area averaging when shrinking, cubic when enlarging). Ingest cuts every crop this way; the
quality metrics (``dfkit.quality.view``) and the calibration's degrade-then-cut rely on the same convention.
OpenCV is imported on first use, so that importing the corpus package stays light.
"""

from __future__ import annotations

import numpy as np


def square_crop_box(box: np.ndarray, margin: float) -> np.ndarray:
    """The square around a face box: centred on it, side ``margin * max(w, h)`` (may extend past the frame)."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    side = margin * max(box[2] - box[0], box[3] - box[1])
    return np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], dtype=np.float32)


def crop_square(frame: np.ndarray, crop_box: np.ndarray, size: int) -> np.ndarray:
    """Cut ``crop_box`` out of ``frame`` (zero padding where it leaves the frame) and resize to ``size``²."""
    h, w = frame.shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in crop_box)
    side = max(x1 - x0, y1 - y0, 1)
    x1, y1 = x0 + side, y0 + side
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    patch = np.zeros((side, side, 3), dtype=np.uint8)
    if sx1 > sx0 and sy1 > sy0:
        patch[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = frame[sy0:sy1, sx0:sx1]
    import cv2

    interp = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    return cv2.resize(patch, (size, size), interpolation=interp)
