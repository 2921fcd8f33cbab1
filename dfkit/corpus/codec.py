"""The crop codec: how a face crop is stored in the ``crop`` column (with ``crop_format``), and how it is read back.

One decoder, one contract: :func:`decode_crop` returns RGB ``uint8`` ``H x W x 3`` or raises :class:`CropDecodeError`
(a :class:`~dfkit.errors.DfkitError`, and a ``ValueError`` as before) naming the problem. :func:`try_decode_crop` is
the same decoder for callers that record an undecodable crop instead of stopping (quality metrics: NaN).

OpenCV is imported on first use, so that importing the corpus package stays light. PNG crops are decoded with
libspng (``pyspng``) when it is installed: the same pixels as OpenCV's libpng (checked in the tests) in ~70 % of the
time (``bench/quality.py``); anything it does not return as 8-bit RGB falls back to OpenCV.
"""

from __future__ import annotations

import numpy as np

from dfkit.errors import DfkitError

#: the ``crop_format`` values :func:`encode_crop` writes
CROP_FORMATS = ("png", "webp", "jpeg")


class CropDecodeError(DfkitError, ValueError):
    """Stored crop bytes that do not decode to an image (empty, truncated, or not PNG/WebP/JPEG)."""


def encode_crop(rgb: np.ndarray, encoding: str = "png") -> tuple[bytes, str]:
    """Encode a crop. Lossless by default (``png``; ``webp`` = lossless WebP); ``jpeg[:Q]`` / ``webp-lossy[:Q]``
    are lossy options (they add compression artifacts that confound attribution and quality measurement).
    Returns ``(bytes, crop_format)``; a ``ValueError`` for an unknown encoding."""
    import cv2

    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    kind, _, q = encoding.partition(":")
    if kind == "png":
        # lossless whatever the settings; Huffman-only deflate encodes ~1.5x faster than the default and, on
        # camera noise, is also smaller and faster to decode (bench/ingest.py)
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1,
                                             cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY])
        fmt = "png"
    elif kind == "webp":
        ok, buf = cv2.imencode(".webp", bgr, [cv2.IMWRITE_WEBP_QUALITY, 101])  # >100 = lossless
        fmt = "webp"
    elif kind == "webp-lossy":
        ok, buf = cv2.imencode(".webp", bgr, [cv2.IMWRITE_WEBP_QUALITY, int(q or 90)])
        fmt = "webp"
    elif kind == "jpeg":
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(q or 95)])
        fmt = "jpeg"
    else:
        raise ValueError(f"unknown crop encoding {encoding!r}: use png, webp, webp-lossy[:Q] or jpeg[:Q]")
    if not ok:
        raise RuntimeError(f"could not encode crop as {fmt}")
    return buf.tobytes(), fmt


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_spng = None  # the pyspng module, False when it is not installed (looked up on first use)


def _fast_png(data) -> np.ndarray | None:
    """8-bit RGB pixels of a PNG through libspng, or None (not a PNG, pyspng absent, another pixel format, or bytes
    it cannot decode: OpenCV then decides)."""
    global _spng
    if _spng is None:
        try:
            import pyspng
            _spng = pyspng
        except ImportError:
            _spng = False
    if not _spng or bytes(data[:8]) != _PNG_SIGNATURE:
        return None
    try:
        img = _spng.load(bytes(data) if not isinstance(data, bytes) else data)
    except Exception:  # noqa: BLE001 - truncated or damaged: OpenCV gives the verdict and the message
        return None
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        return None
    return img


def decode_crop(data: bytes | bytearray | memoryview | None) -> np.ndarray:
    """Encoded crop bytes -> RGB ``uint8`` ``H x W x 3``. :class:`CropDecodeError` when there are no bytes or they
    are not an image."""
    if data is None or len(data) == 0:
        raise CropDecodeError("undecodable crop bytes: the crop is empty")
    img = _fast_png(data)
    if img is not None:
        return img
    import cv2

    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise CropDecodeError(f"undecodable crop bytes: {len(data)} bytes that are not a PNG, WebP or JPEG image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def try_decode_crop(data: bytes | bytearray | memoryview | None) -> np.ndarray | None:
    """:func:`decode_crop`, but ``None`` instead of :class:`CropDecodeError` (for callers that record the failure)."""
    try:
        return decode_crop(data)
    except CropDecodeError:
        return None


class DecodedCrops:
    """Crops decoded once per ``sample_id`` and kept for the next pass over the same rows (the quality pass and its
    full-reference passes measure the same crops; several fakes share one reference), up to ``max_bytes`` of
    pixels: past that, crops are decoded as asked and not kept. ``decodes`` counts the decoder calls."""

    def __init__(self, max_bytes: int = 256 * 2**20):
        self.max_bytes = max_bytes
        self.bytes = 0
        self.decodes = 0
        self._pixels: dict[str, np.ndarray | None] = {}

    def get(self, sample_id: str | None, data) -> np.ndarray | None:
        """The crop's pixels (:func:`try_decode_crop`: None when undecodable), decoded at most once per id."""
        if sample_id is not None and sample_id in self._pixels:
            return self._pixels[sample_id]
        self.decodes += 1
        rgb = try_decode_crop(data)
        size = rgb.nbytes if rgb is not None else 0
        if sample_id is not None and self.bytes + size <= self.max_bytes:
            if rgb is not None:
                rgb.setflags(write=False)  # shared between passes: a pass that would write into it fails loudly
            self._pixels[sample_id] = rgb
            self.bytes += size
        return rgb
