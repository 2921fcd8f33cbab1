"""Augmentations (seeded, toggleable) and the class-balanced sampler."""

import numpy as np
import pytest
import torch

from dfkit.train.augment import AugmentConfig, Augmenter, jpeg_recompress, sample_rng, to_tensor
from dfkit.train.sampler import ClassBalancedSampler, class_balanced_weights


def _face(seed=0, h=48, w=40):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 / w, yy * 255 / h, np.full((h, w), 128.0)], -1) + rng.normal(0, 10, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


ALWAYS = dict(flip_p=1.0, color_jitter_p=1.0, blur_p=1.0, jpeg_p=1.0)


def test_deterministic_under_seed():
    img = _face()
    aug = Augmenter(AugmentConfig(**ALWAYS))
    a = aug(img, sample_rng(0, 1, 7))
    b = aug(img, sample_rng(0, 1, 7))
    assert a.dtype == np.uint8 and a.shape == img.shape
    assert np.array_equal(a, b)
    # another sample index or epoch -> other draws
    assert not np.array_equal(a, aug(img, sample_rng(0, 1, 8)))
    assert not np.array_equal(a, aug(img, sample_rng(0, 2, 7)))
    assert not np.array_equal(img, a)


def test_each_toggle():
    img = _face()
    off = AugmentConfig.off()
    assert not Augmenter(off).enabled
    assert np.array_equal(Augmenter(off)(img, sample_rng(0, 0, 0)), img)
    # flip alone is an exact mirror
    flip = Augmenter(AugmentConfig(flip=True, color_jitter=False, blur=False, jpeg=False, flip_p=1.0))
    assert np.array_equal(flip(img, sample_rng(0, 0, 0)), img[:, ::-1])
    for name in ("color_jitter", "blur", "jpeg"):
        cfg = AugmentConfig(**{**AugmentConfig.off().to_dict(), name: True, f"{name}_p": 1.0})
        out = Augmenter(cfg)(img, sample_rng(0, 0, 0))
        diff = np.abs(out.astype(int) - img.astype(int))
        assert out.shape == img.shape and diff.max() > 0, name
        assert diff.mean() < 25, name  # small perturbations, the face stays the face
    # toggling one transform leaves the draws of the others unchanged
    both = Augmenter(AugmentConfig(**{**AugmentConfig.off().to_dict(), "flip": True, "flip_p": 1.0,
                                      "jpeg": True, "jpeg_p": 1.0}))
    jpeg_only = Augmenter(AugmentConfig(**{**AugmentConfig.off().to_dict(), "jpeg": True, "jpeg_p": 1.0}))
    assert np.array_equal(both(img, sample_rng(3, 0, 0)),
                          jpeg_only(img[:, ::-1].copy(), sample_rng(3, 0, 0)))


def test_jpeg_keeps_colours_and_tensor_layouts():
    red = np.zeros((32, 32, 3), np.uint8)
    red[..., 0] = 200
    out = jpeg_recompress(red, 90)
    assert out[..., 0].mean() > 180 and out[..., 2].mean() < 20  # RGB stays RGB through OpenCV's BGR
    img = _face()
    chw = torch.from_numpy(img).permute(2, 0, 1).contiguous()
    aug = Augmenter(AugmentConfig(**ALWAYS))
    out_t = aug(chw, sample_rng(1, 0, 0))
    assert isinstance(out_t, torch.Tensor) and out_t.shape == chw.shape and out_t.dtype == torch.uint8
    assert np.array_equal(out_t.permute(1, 2, 0).numpy(), aug(img, sample_rng(1, 0, 0)))
    with pytest.raises(ValueError):
        aug(img.astype(np.float32), sample_rng(0, 0, 0))


def test_to_tensor():
    img = np.full((4, 5, 3), 255, np.uint8)
    t = to_tensor(img, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    assert t.shape == (3, 4, 5) and t.dtype == torch.float32 and torch.allclose(t, torch.ones_like(t))


def test_class_balanced_sampler():
    labels = [0] * 90 + [1] * 9 + [2] * 1
    w = class_balanced_weights(labels)
    assert w.sum() == pytest.approx(1.0)
    # each class carries a third of the weight: 1/(3*90), 1/(3*9), 1/3
    assert (w[0], w[90], w[99]) == pytest.approx((1 / 270, 1 / 27, 1 / 3))
    s = ClassBalancedSampler(labels, num_samples=3000, seed=4)
    idx = list(s)
    assert len(idx) == len(s) == 3000
    counts = np.bincount(np.asarray(labels)[idx], minlength=3)
    assert all(900 < c < 1100 for c in counts), counts
    assert list(s) == idx  # same epoch, same order
    s.set_epoch(1)
    assert list(s) != idx
    s2 = ClassBalancedSampler(labels, num_samples=3000, seed=4)
    s2.set_epoch(1)
    assert list(s2) == list(s)
    no_repl = list(ClassBalancedSampler(labels, replacement=False, seed=0))
    assert sorted(no_repl) == list(range(100))
    with pytest.raises(ValueError):
        ClassBalancedSampler(labels, num_samples=101, replacement=False)
