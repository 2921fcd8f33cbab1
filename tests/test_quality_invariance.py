"""What the pixel metrics must not confuse with each other, on real faces with known answers.

Sharpness used to rise with added sensor noise (noise's own Laplacian energy: ×1.2 at σ 2, ×6 at σ 10 on the FF++
c23 crops) and with brightening (the Laplacian variance scales with the gain²), and macroblock's ratio was pulled
towards 1 by darkening. These made the composite rise when a face was degraded. The tests build the degraded copies
(noise σ 5 / 10, a ×0.6 or ×1.25 luma gain on faces it does not clip) and check that the measures stay put, while the
uncorrected Laplacian variance shows the effect is really there.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from dfkit.quality import create_metric
from dfkit.quality.degrade import degrade
from tests.conftest import FFPP_REAL


def _astronaut_face() -> np.ndarray:
    import skimage.data

    # the astronaut's face and a little around it (public-domain NASA image shipped with scikit-image)
    return np.ascontiguousarray(skimage.data.astronaut()[10:250, 130:370])


class Face:
    """A clean crop with its row, and its degraded copies made as the calibration makes them (on the source pixels:
    the astronaut image is its own source; an FF++ frame is degraded before it is cropped)."""

    def __init__(self, crop, row, src=None):
        self.crop, self.row, self.src = crop, row, src

    def degraded(self, kind: str, level: float) -> np.ndarray:
        rng = np.random.default_rng(7)
        if self.src is None:
            return degrade(self.crop, kind, level, rng)
        from dfkit.corpus.codec import decode_crop

        return decode_crop(self.src.degraded_crop(kind, level, rng))


def _faces() -> list[Face]:
    """The astronaut without geometry, plus real FF++ c23 crops with their geometry when the shared clips are
    present."""
    out = [Face(_astronaut_face(), {})]
    if not FFPP_REAL.exists():
        return out
    from dfkit.corpus.codec import decode_crop
    from dfkit.ingest.frames import frame_row
    from dfkit.quality import calibrate as cal

    for s in cal.sources_from_videos(sorted(FFPP_REAL.rglob("*.mp4")), frame_row, per_video=2):
        out.append(Face(decode_crop(s.row["crop"]), s.row, s))
    return out


@pytest.fixture(scope="module")
def faces():
    return _faces()


def _laplacian_var(rgb: np.ndarray) -> float:
    y = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(cv2.Laplacian(y, cv2.CV_32F, ksize=1).var())


def _gain(rgb: np.ndarray, g: float) -> np.ndarray:
    return np.clip(rgb.astype(np.float32) * g, 0, 255).round().astype(np.uint8)


def _ratios(faces, name: str, fn) -> np.ndarray:
    m = create_metric(name)
    r = []
    for f in faces:
        a, b = m.raw(f.crop, f.row), m.raw(fn(f), f.row)
        if np.isfinite(a) and np.isfinite(b) and a > 0:
            r.append(b / a)
    assert r, f"{name} measured nothing"
    return np.array(r)


@pytest.mark.parametrize("sigma", [5.0, 10.0])
def test_sensor_noise_does_not_pass_for_detail(faces, sigma):
    noisy = {id(f): f.degraded("noise", sigma) for f in faces}
    # the effect is real: the uncorrected Laplacian variance grows with the noise
    plain = np.median([_laplacian_var(noisy[id(f)]) / _laplacian_var(f.crop) for f in faces])
    assert plain > 1.5
    r = _ratios(faces, "sharpness", lambda f: noisy[id(f)])
    assert 0.6 < np.median(r) < 1.5, r


@pytest.mark.parametrize("g", [0.6, 1.25])
def test_a_gain_is_not_a_change_of_sharpness_or_blocking(faces, g):
    # only faces the gain does not clip (clipping is exposure's business and really removes detail)
    ok = [f for f in faces if np.mean(f.crop.astype(np.float32) * g > 255) < 0.002]
    assert ok
    plain = np.median([_laplacian_var(_gain(f.crop, g)) / _laplacian_var(f.crop) for f in ok])
    assert abs(plain - g * g) < 0.15 * g * g
    s = _ratios(ok, "sharpness", lambda f: _gain(f.crop, g))
    assert np.all(np.abs(s - 1) < 0.15), s
    mb = create_metric("macroblock")
    d = [mb.raw(_gain(f.crop, g), f.row) - mb.raw(f.crop, f.row) for f in ok if f.row]
    if d:  # macroblock needs the source geometry (real crops only); uint8 rounding of the gain moves it a little
        assert np.nanmedian(np.abs(d)) < 0.01 and np.nanmax(np.abs(d)) < 0.04, d


def test_blur_still_lowers_corrected_sharpness(faces):
    r = _ratios(faces, "sharpness", lambda f: f.degraded("defocus", 2.0))
    assert np.all(r < 0.5), r


def test_a_flat_or_dark_face_does_not_read_sharp():
    """Contrast normalisation must not stretch a featureless face's noise into detail."""
    rng = np.random.default_rng(0)
    m = create_metric("sharpness")
    for base, sigma in ((128, 1.0), (8, 0.7)):
        img = np.clip(base + rng.normal(0, sigma, (160, 160, 3)), 0, 255).round().astype(np.uint8)
        assert m.score(m.raw(img, {})) < 0.5
