"""Sharpness: variance of the Laplacian of the face region, scale-, noise- and contrast-normalised.

raw = max(Var(∇²Y) − NOISE_GAIN · σ̂², NOISE_FLOOR · Var(∇²Y)) · g²

where Y is the luma (0-255) of the face region (detection box inside the crop), ∇² the 4-neighbour Laplacian
kernel [[0,1,0],[1,-4,1],[0,1,0]], σ̂ the noise metric's Immerkær estimate on the same pixels and g =
``REFERENCE_CONTRAST / std(Y)`` (``dfkit.quality.view.contrast_gain``).

*Noise.* White noise adds its own Laplacian energy (20 σ² for σ-noise), so a noisier copy of a face reads sharper.
On the FF++ c23 crops the Laplacian variance grows by 25-28 (median 27, quartiles 22-30) per unit of σ̂² when
Gaussian noise σ 2-20 is added; NOISE_GAIN = 27 removes it, so sensor noise no longer passes for detail (how much
noise there is stays ``noise``'s measure).
*Contrast.* Var(∇²Y) scales with the square of the image gain: brightening a face ×1.5 raised it 2.25× and read as
sharpening. Rescaling Y to the reference contrast makes the value gain-invariant; how well the face is exposed is
``exposure``'s measure.
*Scale.* Y is taken on the *working grid*
(``dfkit.quality.view``): the source pixel grid when the face region was smaller than 256 source pixels (the crop
is sampled back at the source pixel centres), else the 256² reference grid. A Laplacian on an image enlarged s
times has about s⁻⁴ times the variance, so measuring the enlarged crop would mostly measure the enlargement; on
the working grid the value describes blur present in the source (focus, motion, compression smoothing) and does
not depend on the corpus crop size. How few pixels the face had is ``face_size``'s measure. Known limit: strong texture
(beards, patterned backgrounds inside the box) raises it.
"""

from __future__ import annotations

import cv2

from dfkit.quality.base import NAN, LogLogistic, Metric, register_metric
from dfkit.quality.metrics.noise import face_sigma
from dfkit.quality.view import contrast_gain

NOISE_GAIN = 27.0  # Laplacian variance per unit of Immerkær σ̂², measured on FF++ c23 crops with added noise
# at most 3/4 of the energy is taken for noise: spatially correlated noise (resampled, denoised, compressed) has less
# Laplacian energy per σ̂² than white noise, and must not wipe out a face's real detail
NOISE_FLOOR = 0.25


@register_metric
class Sharpness(Metric):
    name = "sharpness"
    description = ("variance of the Laplacian of the face region's luma on the working grid (source pixels, at "
                   "most 256²), less the noise's share, at the reference contrast.")
    unit = "grey levels²"
    direction = "higher"
    score_map = LogLogistic(x50=12.0, x90=40.0)
    weight = 1.0
    order = 10

    def measure(self, view) -> float:
        if not view.face_ok(8):
            return NAN
        y = view.face_u8
        lap = cv2.Laplacian(y, cv2.CV_16S, ksize=1, borderType=cv2.BORDER_REFLECT)  # integers: exact in int16
        _, sd = cv2.meanStdDev(lap[1:-1, 1:-1])
        v = float(sd[0, 0]) ** 2
        energy = max(v - NOISE_GAIN * face_sigma(view) ** 2, NOISE_FLOOR * v)
        return energy * contrast_gain(y) ** 2
