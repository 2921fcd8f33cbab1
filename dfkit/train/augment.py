"""Training augmentations on uint8 RGB face crops, each one toggleable, deterministic under a seed.

>>> aug = Augmenter(AugmentConfig(jpeg=False))
>>> out = aug(img_uint8_hwc, rng=sample_rng(seed, epoch, index))   # same (seed, epoch, index) -> same output
>>> x = to_tensor(out, mean, std)                                   # float 3 x H x W, normalised

The random draws come only from the ``numpy.random.Generator`` passed in, so results do not depend on the worker
that processes a sample, nor on global random state; :func:`sample_rng` derives one generator per
``(seed, epoch, index)``. Transforms, in order (each applied with its probability):

- ``flip``: horizontal flip (p 0.5);
- ``color_jitter``: small brightness/contrast/saturation changes (factors in ``1 +- 0.1`` by default);
- ``channel_gain`` (off by default): per-channel gains in ``1 +- channel_gain_range`` (a white-balance / colour-cast
  change, p 0.8), for data whose identities differ mostly by colour (the synthetic demo);
- ``blur``: Gaussian blur, sigma uniform in ``blur_sigma`` (p 0.2);
- ``jpeg``: JPEG re-compression through OpenCV, quality uniform in ``jpeg_quality`` (p 0.3).

Images are ``H x W x 3`` numpy arrays or torch tensors (``H x W x 3`` or ``3 x H x W``); the output has the input's
type and layout.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["AugmentConfig", "Augmenter", "sample_rng", "to_tensor"]


@dataclass
class AugmentConfig:
    """Which augmentations run, how often and how strongly. ``AugmentConfig.off()`` disables all of them."""

    flip: bool = True
    flip_p: float = 0.5
    color_jitter: bool = True
    color_jitter_p: float = 0.8
    brightness: float = 0.1
    contrast: float = 0.1
    saturation: float = 0.1
    channel_gain: bool = False
    channel_gain_p: float = 0.8
    channel_gain_range: float = 0.25
    blur: bool = True
    blur_p: float = 0.2
    blur_sigma: tuple[float, float] = (0.1, 1.5)
    jpeg: bool = True
    jpeg_p: float = 0.3
    jpeg_quality: tuple[int, int] = (60, 95)

    @classmethod
    def off(cls) -> "AugmentConfig":
        return cls(flip=False, color_jitter=False, blur=False, jpeg=False, channel_gain=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """An independent generator for one sample of one epoch (stable across workers and resumes)."""
    return np.random.default_rng([int(seed), int(epoch), int(index)])


def _as_hwc_uint8(img: Any) -> tuple[np.ndarray, str]:
    """``(array H x W x 3 uint8, layout)`` where layout is ``np-hwc``, ``torch-hwc`` or ``torch-chw``."""
    try:
        import torch

        if isinstance(img, torch.Tensor):
            arr = img.detach().cpu().numpy()
            if arr.ndim == 3 and arr.shape[0] == 3 and arr.shape[-1] != 3:
                return np.ascontiguousarray(arr.transpose(1, 2, 0)), "torch-chw"
            return arr, "torch-hwc"
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return np.asarray(img), "np-hwc"


def _restore(arr: np.ndarray, layout: str) -> Any:
    if layout == "np-hwc":
        return arr
    import torch

    if layout == "torch-chw":
        arr = arr.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(arr))


def _gray(x: np.ndarray) -> np.ndarray:
    return x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114


class Augmenter:
    """Applies the enabled augmentations of an :class:`AugmentConfig`; call with an image and a generator."""

    def __init__(self, cfg: AugmentConfig | None = None) -> None:
        self.cfg = cfg or AugmentConfig()

    @property
    def enabled(self) -> bool:
        c = self.cfg
        return c.flip or c.color_jitter or c.blur or c.jpeg or c.channel_gain

    def __call__(self, img: Any, rng: np.random.Generator) -> Any:
        arr, layout = _as_hwc_uint8(img)
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
            raise ValueError(f"expected a uint8 RGB image H x W x 3 (or 3 x H x W), got {arr.dtype} {arr.shape}")
        c = self.cfg
        # draw every random number unconditionally, in a fixed order, so toggling one transform does not change
        # the draws of the others
        u = rng.random(4)
        jit = rng.uniform(-1, 1, 3)
        order = rng.permutation(3)
        sigma = rng.uniform(*c.blur_sigma)
        quality = int(rng.integers(c.jpeg_quality[0], c.jpeg_quality[1] + 1))
        u_gain = rng.random()  # drawn after the others: adding it left their draws unchanged
        gains = rng.uniform(-1, 1, 3)

        out = arr
        if c.flip and u[0] < c.flip_p:
            out = out[:, ::-1]
        if c.color_jitter and u[1] < c.color_jitter_p:
            out = self._jitter(out, jit, order)
        if c.channel_gain and u_gain < c.channel_gain_p:
            g = (1 + c.channel_gain_range * gains).astype(np.float32)
            out = np.clip(np.rint(out.astype(np.float32) * g), 0, 255).astype(np.uint8)
        if c.blur and u[2] < c.blur_p:
            import cv2

            out = cv2.GaussianBlur(np.ascontiguousarray(out), (0, 0), sigmaX=float(sigma))
        if c.jpeg and u[3] < c.jpeg_p:
            out = jpeg_recompress(out, quality)
        return _restore(np.ascontiguousarray(out), layout)

    def _jitter(self, img: np.ndarray, jit: np.ndarray, order: np.ndarray) -> np.ndarray:
        c = self.cfg
        x = img.astype(np.float32)
        factors = (1 + c.brightness * jit[0], 1 + c.contrast * jit[1], 1 + c.saturation * jit[2])
        for op in order:
            if op == 0:
                x = x * factors[0]
            elif op == 1:
                x = (x - _gray(x).mean()) * factors[1] + _gray(x).mean()
            else:
                g = _gray(x)[..., None]
                x = (x - g) * factors[2] + g
            x = np.clip(x, 0, 255)
        return np.rint(x).astype(np.uint8)


def jpeg_recompress(img: np.ndarray, quality: int) -> np.ndarray:
    """Encode an RGB uint8 image as JPEG at ``quality`` and decode it again (OpenCV; colours stay RGB)."""
    import cv2

    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2BGR),
                           [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def to_tensor(img: Any, mean: tuple[float, ...] = (0.485, 0.456, 0.406),
              std: tuple[float, ...] = (0.229, 0.224, 0.225)):
    """uint8 RGB ``H x W x 3`` (array or tensor, or ``3 x H x W`` tensor) -> float32 ``3 x H x W`` tensor,
    scaled to [0, 1] and normalised with ``mean``/``std`` (use the backbone's ``model.mean``/``model.std``)."""
    import torch

    arr, _ = _as_hwc_uint8(img)
    t = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).float().div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32)[:, None, None]
    s = torch.tensor(std, dtype=torch.float32)[:, None, None]
    return (t - m) / s
