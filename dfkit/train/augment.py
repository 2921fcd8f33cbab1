"""Training augmentations on uint8 RGB face crops, each one toggleable, deterministic under a seed.

>>> aug = Augmenter(AugmentConfig(jpeg=False))
>>> out = aug(img_uint8_hwc, rng=sample_rng(seed, epoch, index))   # same (seed, epoch, index) -> same output
>>> x = to_tensor(out, mean, std)                                   # float 3 x H x W, normalised

The random draws come only from the ``numpy.random.Generator`` passed in, so results do not depend on the worker
that processes a sample, nor on global random state; :func:`sample_rng` derives one generator per
``(seed, epoch, index)``. Transforms, in order (each applied with its probability):

- ``flip``: horizontal flip (p 0.5);
- ``crop_jitter`` (off by default): a random square crop of ``crop_scale`` x the side (its place uniform), resized
  back to the side (p 0.5);
- ``color_jitter``: small brightness/contrast/saturation changes (factors in ``1 +- 0.1`` by default);
- ``channel_gain`` (off by default): per-channel gains in ``1 +- channel_gain_range`` (a white-balance / colour-cast
  change, p 0.8), for data whose identities differ mostly by colour (the synthetic demo);
- ``blur``: Gaussian blur, sigma uniform in ``blur_sigma`` (p 0.2);
- ``jpeg``: JPEG re-compression through OpenCV, quality uniform in ``jpeg_quality`` (p 0.3).

Images are ``H x W x 3`` numpy arrays or torch tensors (``H x W x 3`` or ``3 x H x W``); the output has the input's
type and layout.

**On the batch.** The training loader splits the work (:meth:`Augmenter.split`): per item, on the stored crop, only
what needs OpenCV (``blur``, ``jpeg``); the draws of the others (:data:`BATCH_OPS`: flip, crop jitter, colour jitter,
channel gain) become one row of :data:`PARAM_FIELDS` per crop, and :func:`apply_batch` applies them to the whole
fitted batch as tensor ops -- on the training device after the ``uint8`` batch was moved there (a GPU), or in the
loader worker on the CPU. The draws are the very same (same generator, same order), so a crop gets the same flip,
factors and gains either way; what changes is the order: the batch ops come after blur, JPEG and the resize to
``img_size`` instead of before. Flip, crop jitter and the pointwise colour ops commute with blur and resize (up to
clipping and rounding); only JPEG does not: colour changes now scale the compression artifacts instead of being
compressed. The per-item :meth:`Augmenter.__call__` keeps the former order (the reference, and what single images
use).
"""


from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["AugmentConfig", "Augmenter", "sample_rng", "to_tensor", "apply_batch", "BATCH_OPS", "PARAM_FIELDS"]

#: the transforms :func:`apply_batch` does on a whole batch (the others run per item, in the loader workers)
BATCH_OPS = ("flip", "crop_jitter", "color_jitter", "channel_gain")
#: the columns of a batch's augmentation parameters (``B x len(PARAM_FIELDS)`` float32; an ``*_on`` column is 0/1)
PARAM_FIELDS = ("flip_on", "crop_on", "crop_scale", "crop_x", "crop_y", "jitter_on", "brightness", "contrast",
                "saturation", "order0", "order1", "order2", "gain_on", "gain_r", "gain_g", "gain_b")
_P = {name: i for i, name in enumerate(PARAM_FIELDS)}


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
    crop_jitter: bool = False
    crop_jitter_p: float = 0.5
    crop_scale: tuple[float, float] = (0.8, 1.0)  # the crop's side, as a share of the image side

    @classmethod
    def off(cls) -> "AugmentConfig":
        return cls(flip=False, color_jitter=False, blur=False, jpeg=False, channel_gain=False, crop_jitter=False)

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
        return c.flip or c.color_jitter or c.blur or c.jpeg or c.channel_gain or c.crop_jitter

    @property
    def batch_enabled(self) -> bool:
        """Whether any of the :data:`BATCH_OPS` is on."""
        c = self.cfg
        return c.flip or c.crop_jitter or c.color_jitter or c.channel_gain

    def _draw(self, rng: np.random.Generator) -> dict[str, Any]:
        c = self.cfg
        # draw every random number unconditionally, in a fixed order, so toggling one transform does not change
        # the draws of the others; a draw added later comes after the earlier ones (their values stay)
        d: dict[str, Any] = {"u": rng.random(4), "jit": rng.uniform(-1, 1, 3), "order": rng.permutation(3),
                             "sigma": rng.uniform(*c.blur_sigma),
                             "quality": int(rng.integers(c.jpeg_quality[0], c.jpeg_quality[1] + 1)),
                             "u_gain": rng.random(), "gains": rng.uniform(-1, 1, 3),
                             "u_crop": rng.random(), "crop": rng.random(3)}
        return d

    def _params(self, d: dict[str, Any]) -> np.ndarray:
        """The batch ops' parameters of one crop (a row of :data:`PARAM_FIELDS`)."""
        c = self.cfg
        row = np.zeros(len(PARAM_FIELDS), np.float32)
        row[_P["flip_on"]] = float(c.flip and d["u"][0] < c.flip_p)
        lo, hi = c.crop_scale
        row[_P["crop_on"]] = float(c.crop_jitter and d["u_crop"] < c.crop_jitter_p)
        row[_P["crop_scale"]] = lo + (hi - lo) * d["crop"][0]
        row[_P["crop_x"]], row[_P["crop_y"]] = d["crop"][1], d["crop"][2]
        row[_P["jitter_on"]] = float(c.color_jitter and d["u"][1] < c.color_jitter_p)
        row[_P["brightness"]] = 1 + c.brightness * d["jit"][0]
        row[_P["contrast"]] = 1 + c.contrast * d["jit"][1]
        row[_P["saturation"]] = 1 + c.saturation * d["jit"][2]
        row[_P["order0"]:_P["order2"] + 1] = d["order"]
        row[_P["gain_on"]] = float(c.channel_gain and d["u_gain"] < c.channel_gain_p)
        row[_P["gain_r"]:_P["gain_b"] + 1] = 1 + c.channel_gain_range * d["gains"]
        return row

    def _item_ops(self, out: np.ndarray, d: dict[str, Any]) -> np.ndarray:
        c = self.cfg
        if c.blur and d["u"][2] < c.blur_p:
            import cv2

            out = cv2.GaussianBlur(np.ascontiguousarray(out), (0, 0), sigmaX=float(d["sigma"]))
        if c.jpeg and d["u"][3] < c.jpeg_p:
            out = jpeg_recompress(out, d["quality"])
        return out

    @staticmethod
    def _check(img: Any) -> tuple[np.ndarray, str]:
        arr, layout = _as_hwc_uint8(img)
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
            raise ValueError(f"expected a uint8 RGB image H x W x 3 (or 3 x H x W), got {arr.dtype} {arr.shape}")
        return arr, layout

    def __call__(self, img: Any, rng: np.random.Generator) -> Any:
        """Every enabled transform on one image, in the module docstring's order (the per-item reference)."""
        arr, layout = self._check(img)
        c = self.cfg
        d = self._draw(rng)
        p = self._params(d)
        out = arr
        if p[_P["flip_on"]]:
            out = out[:, ::-1]
        if p[_P["crop_on"]]:
            out = _crop_jitter_item(out, p)
        if p[_P["jitter_on"]]:
            out = self._jitter(out, d["jit"], d["order"])
        if p[_P["gain_on"]]:
            g = p[_P["gain_r"]:_P["gain_b"] + 1].astype(np.float32)
            out = np.clip(np.rint(out.astype(np.float32) * g), 0, 255).astype(np.uint8)
        out = self._item_ops(out, d)
        return _restore(np.ascontiguousarray(out), layout)

    def split(self, img: Any, rng: np.random.Generator) -> tuple[Any, np.ndarray]:
        """The per-item part (blur, JPEG) applied, and the batch ops' parameters: ``(image, row of
        PARAM_FIELDS)``; :func:`apply_batch` does the rest on the batch. Same draws as :meth:`__call__`."""
        arr, layout = self._check(img)
        d = self._draw(rng)
        return _restore(np.ascontiguousarray(self._item_ops(arr, d)), layout), self._params(d)

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


def _crop_box(p: np.ndarray, h: int, w: int) -> tuple[float, float, float, float]:
    """The jitter crop of a ``h`` x ``w`` image in pixels: ``(x0, y0, side_x, side_y)`` (the side a share of each)."""
    s = float(p[_P["crop_scale"]])
    return (1 - s) * w * float(p[_P["crop_x"]]), (1 - s) * h * float(p[_P["crop_y"]]), s * w, s * h


def _crop_jitter_item(img: np.ndarray, p: np.ndarray) -> np.ndarray:
    import cv2

    h, w = img.shape[:2]
    x0, y0, sw, sh = _crop_box(p, h, w)
    # the affine map output pixel -> input pixel (centres), as apply_batch's sampling grid
    m = np.array([[sw / w, 0, x0 + 0.5 * sw / w - 0.5], [0, sh / h, y0 + 0.5 * sh / h - 0.5]], np.float64)
    return cv2.warpAffine(np.ascontiguousarray(img), m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REFLECT)


def apply_batch(x, params):
    """The :data:`BATCH_OPS` on a batch: ``x`` float ``B x 3 x H x W`` in [0, 255] (any device, any memory
    format), ``params`` ``B x len(PARAM_FIELDS)`` (rows from :meth:`Augmenter.split`). Returns float in [0, 255]
    (not rounded), in the order of :meth:`Augmenter.__call__`: flip, crop jitter, colour jitter (brightness,
    contrast and saturation in each crop's own order), channel gain."""
    import torch

    p = params.to(device=x.device, dtype=torch.float32)
    if p.ndim != 2 or p.shape != (x.shape[0], len(PARAM_FIELDS)):
        raise ValueError(f"augmentation parameters must be B x {len(PARAM_FIELDS)}, got {tuple(p.shape)}")
    if x.ndim != 4 or x.shape[1] != 3 or not x.is_floating_point():
        raise ValueError(f"expected a float batch B x 3 x H x W, got {x.dtype} {tuple(x.shape)}")

    def on(name: str) -> torch.Tensor:
        return p[:, _P[name]] > 0.5

    flip = on("flip_on")
    if bool(flip.any()):
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    crop = on("crop_on")
    if bool(crop.any()):
        idx = crop.nonzero().flatten()
        x = x.clone()  # never the caller's tensor in place
        x[idx] = _crop_jitter_batch(x[idx], p[idx])
    jit = on("jitter_on")
    if bool(jit.any()):
        x = x.clone()
        w = torch.tensor([0.299, 0.587, 0.114], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        order = p[:, _P["order0"]:_P["order2"] + 1].round().long()
        code = order[:, 0] * 9 + order[:, 1] * 3 + order[:, 2]
        factors = p[:, [_P["brightness"], _P["contrast"], _P["saturation"]]]
        # one group per op order: its crops gathered once, jittered in place in that order, written back once
        for c in torch.unique(code[jit]).tolist():
            idx = (jit & (code == c)).nonzero().flatten()
            xi, f = x[idx], factors[idx].view(-1, 3, 1, 1, 1)
            for op in (c // 9, (c // 3) % 3, c % 3):
                fo = f[:, op]
                if op == 0:
                    xi.mul_(fo)
                elif op == 1:  # around the mean grey level of the crop
                    m = (xi * w).sum(1, keepdim=True).mean((2, 3), keepdim=True)
                    xi.mul_(fo).add_(m * (1 - fo))
                else:  # around each pixel's grey level
                    g = (xi * w).sum(1, keepdim=True)
                    xi.mul_(fo).add_(g.mul_(1 - fo))
                xi.clamp_(0, 255)
            x[idx] = xi
    gain = on("gain_on")
    if bool(gain.any()):
        g = torch.where(gain.view(-1, 1), p[:, _P["gain_r"]:_P["gain_b"] + 1], torch.ones_like(p[:, :3]))
        x = (x * g.view(-1, 3, 1, 1)).clamp_(0, 255)
    return x


def _crop_jitter_batch(x, p):
    """Bilinear resampling of each crop's jitter box back to the full side (the grid of :func:`_crop_jitter_item`)."""
    import torch
    import torch.nn.functional as F

    b, _, h, w = x.shape
    s = p[:, _P["crop_scale"]]
    # normalised coordinates (align_corners=False): output u in [-1, 1] -> input s * u + t
    tx = (1 - s) * (2 * p[:, _P["crop_x"]] - 1)
    ty = (1 - s) * (2 * p[:, _P["crop_y"]] - 1)
    theta = torch.zeros(b, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = s, tx, s, ty
    grid = F.affine_grid(theta, [b, 3, h, w], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


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
