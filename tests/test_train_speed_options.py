"""Training speed options: augmentation on the batch (same draws as per item), --channels-last and --amp (checked
before anything is written; fp16 on the CPU refused), and a real training step under channels-last + bf16."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from dfkit.train.augment import PARAM_FIELDS, AugmentConfig, Augmenter, apply_batch, sample_rng
from tests.test_train_cli import demo_corpus, one_thread, run_cli  # noqa: F401 - fixtures

OFF = AugmentConfig.off().to_dict()


def _img(seed: int, size: int = 40) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    img = np.stack([xx * 200 / size + 20, yy * 200 / size + 30, np.full((size, size), 120.0)], -1)
    return np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)


def _batch(aug: Augmenter, n: int, seed: int = 0, epoch: int = 0) -> tuple[torch.Tensor, torch.Tensor, list]:
    """n crops split as the loader does: (uint8 B x 3 x H x W, parameters, the per-item references)."""
    imgs, rows, refs = [], [], []
    for i in range(n):
        img = _img(i)
        part, row = aug.split(img, sample_rng(seed, epoch, i))
        imgs.append(part)
        rows.append(row)
        refs.append(aug(img, sample_rng(seed, epoch, i)))
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2)
    return x, torch.from_numpy(np.stack(rows)), refs


def test_flip_on_the_batch_hits_its_share_and_is_a_mirror():
    aug = Augmenter(AugmentConfig(**{**OFF, "flip": True, "flip_p": 0.3}))
    x, p, _ = _batch(aug, 400)
    flipped = p[:, PARAM_FIELDS.index("flip_on")] > 0.5
    assert 0.23 < float(flipped.float().mean()) < 0.37  # p 0.3 over 400 crops
    out = apply_batch(x.float(), p)
    assert out.shape == x.shape and out.dtype == torch.float32
    assert torch.equal(out[flipped], x[flipped].flip(-1).float())
    assert torch.equal(out[~flipped], x[~flipped].float())


def test_batch_ops_match_the_per_item_reference():
    # flip, colour jitter (each crop's own op order) and channel gain: the batch path gives what the per-item path
    # gives with the same generator, up to rounding (the per-item path rounds after each stage)
    cfg = AugmentConfig(**{**OFF, "flip": True, "color_jitter": True, "color_jitter_p": 1.0, "channel_gain": True,
                           "brightness": 0.3, "contrast": 0.3, "saturation": 0.3})
    aug = Augmenter(cfg)
    x, p, refs = _batch(aug, 24, seed=5)
    out = apply_batch(x.float(), p)
    assert float(out.min()) >= 0 and float(out.max()) <= 255
    ref = torch.from_numpy(np.stack(refs)).permute(0, 3, 1, 2).float()
    diff = (out - ref).abs()
    assert float(diff.max()) <= 2.0 and float(diff.mean()) < 0.6, (float(diff.max()), float(diff.mean()))
    assert float((out - x.float()).abs().mean()) > 3  # and it did change the crops
    # three op orders at least occur (the order is drawn per crop)
    orders = {tuple(r) for r in p[:, PARAM_FIELDS.index("order0"):PARAM_FIELDS.index("order2") + 1].tolist()}
    assert len(orders) >= 3


def test_crop_jitter_on_the_batch_matches_the_per_item_path():
    cfg = AugmentConfig(**{**OFF, "crop_jitter": True, "crop_jitter_p": 1.0, "crop_scale": (0.6, 0.9)})
    aug = Augmenter(cfg)
    x, p, refs = _batch(aug, 8, seed=2)
    out = apply_batch(x.float(), p)
    ref = torch.from_numpy(np.stack(refs)).permute(0, 3, 1, 2).float()
    assert float((out - ref).abs().mean()) < 1.0
    assert float((out - x.float()).abs().mean()) > 5  # a zoom, not the identity


def test_split_keeps_the_draws_and_is_deterministic():
    aug = Augmenter(AugmentConfig(flip_p=1.0, color_jitter_p=1.0, blur_p=1.0, jpeg_p=1.0))
    img = _img(0)
    a_img, a_p = aug.split(img, sample_rng(3, 1, 7))
    b_img, b_p = aug.split(img, sample_rng(3, 1, 7))
    assert np.array_equal(a_img, b_img) and np.array_equal(a_p, b_p)
    c_img, c_p = aug.split(img, sample_rng(3, 2, 7))
    assert not np.array_equal(a_p, c_p)
    # the per-item part is blur + JPEG only: no flip in it
    blur_jpeg = Augmenter(AugmentConfig(**{**OFF, "blur": True, "blur_p": 1.0, "jpeg": True, "jpeg_p": 1.0}))
    assert np.array_equal(a_img, blur_jpeg(img, sample_rng(3, 1, 7)))
    with pytest.raises(ValueError, match="B x"):
        apply_batch(torch.zeros(2, 3, 8, 8), torch.zeros(3, len(PARAM_FIELDS)))


def test_loader_worker_and_device_paths_agree(demo_corpus):
    from dfkit.train.data import CropDataset, make_loaders, select_data

    sel = select_data(demo_corpus, task="binary")
    cfg = AugmentConfig(blur=False, jpeg=False, channel_gain=True, crop_jitter=True)
    rows = sel.train.iloc[:16]
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    worker = CropDataset(sel.files, rows, 48, augment=cfg, seed=1, augment_on="worker")
    device = CropDataset(sel.files, rows, 48, augment=cfg, seed=1, augment_on="device")
    item = CropDataset(sel.files, rows, 48, augment=None, seed=1)
    idx = list(range(16))
    bw, bd, bi = worker.__getitems__(idx), device.__getitems__(idx), item.__getitems__(idx)
    assert bw["image"].dtype == torch.uint8 and "aug" not in bw
    assert bd["image"].dtype == torch.uint8 and bd["aug"].shape == (16, len(PARAM_FIELDS))
    assert torch.equal(bd["image"], bi["image"])  # the device path hands over the un-augmented fitted crops
    on_dev = apply_batch(bd["image"].float(), bd["aug"])
    assert float((on_dev - bw["image"].float()).abs().max()) <= 0.5 + 1e-4  # the worker rounds, nothing else
    # the training loader: normalised float batches in channels-last format, augmented
    tr, _ = make_loaders(sel, img_size=48, batch_size=8, workers=0, mean=mean, std=std, augment=cfg, seed=1,
                         channels_last=True, augment_on="device")
    b = next(iter(tr))
    assert b["image"].dtype == torch.float32 and "aug" not in b
    auto, _ = make_loaders(sel, img_size=48, batch_size=8, workers=0, mean=mean, std=std, augment=cfg, device="cpu")
    assert auto.dataset.augment_on == "item"  # on the CPU the per-item path measured faster (bench/train.py)
    assert b["image"].is_contiguous(memory_format=torch.channels_last)
    lo, hi = (0 - 0.5) / 0.25, (1 - 0.5) / 0.25
    assert float(b["image"].min()) >= lo - 1e-5 and float(b["image"].max()) <= hi + 1e-5


def test_amp_and_channels_last_settings():
    from dfkit.errors import SettingsError
    from dfkit.train.settings import TrainSettings

    assert TrainSettings(backbone="tiny").amp == "off" and TrainSettings(backbone="tiny").channels_last is True
    assert TrainSettings(backbone="tiny", amp="BF16").amp == "bf16"
    assert TrainSettings.from_saved({"amp": True}).amp == "auto"  # an old record's amp: true
    assert TrainSettings.from_saved({"amp": False}).amp == "off"
    with pytest.raises(SettingsError, match="--amp must be one of"):
        TrainSettings(backbone="tiny", amp="fp8")
    with pytest.raises(SettingsError, match="--amp fp16 needs a CUDA device"):
        TrainSettings(backbone="tiny", amp="fp16", device="cpu")
    with pytest.raises(SettingsError, match="--channels-last must be true or false"):
        TrainSettings(backbone="tiny", channels_last="yes")


def test_amp_auto_on_the_cpu_follows_the_measurement(monkeypatch):
    import dfkit.train.loop as loop

    cpu = torch.device("cpu")
    model = torch.nn.Conv2d(3, 4, 3)
    notes: list[str] = []
    for times, want in (({"off": 1.0, "bf16": 0.5}, "bf16"), ({"off": 1.0, "bf16": 0.95}, "off"),
                        ({"off": 1.0, "bf16": 2.0}, "off")):
        monkeypatch.setattr(loop, "measure_cpu_amp", lambda *a, t=times, **k: t)
        assert loop.resolve_amp("auto", cpu, model, (2, 3, 8, 8), note=notes.append) == want
    assert len(notes) == 3 and "-> bf16" in notes[0] and "-> off" in notes[1]
    assert loop.resolve_amp("bf16", cpu) == "bf16" and loop.resolve_amp(False, cpu) == "off"
    assert loop.resolve_channels_last(None, cpu) is True and loop.resolve_channels_last(False, cpu) is False


def test_measure_cpu_amp_leaves_model_and_random_state():
    from dfkit.train.loop import measure_cpu_amp

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Dropout(0.5))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(0)
    expect = torch.rand(3)
    torch.manual_seed(0)
    t = measure_cpu_amp(model, (2, 3, 16, 16), reps=1)
    assert set(t) == {"off", "bf16"} and all(v > 0 for v in t.values())
    assert torch.equal(torch.rand(3), expect)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_fp16_on_the_cpu_is_one_line_and_writes_nothing(demo_corpus, tmp_path, capsys):
    run = tmp_path / "r"
    code, _, err = run_cli(["train", "--corpus", demo_corpus, "--backbone", "tiny", "--out", run, "--epochs", "1",
                            "--device", "cpu", "--amp", "fp16", "-q"], capsys)
    assert code == 2
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "--amp fp16 needs a CUDA device" in lines[0], err
    assert not run.exists()


def test_training_step_channels_last_bf16_on_cpu(demo_corpus, tmp_path, capsys):
    run = tmp_path / "r"
    code, out, err = run_cli(["train", "--corpus", demo_corpus, "--backbone", "tiny", "--task", "binary", "--out",
                              run, "--epochs", "1", "--img-size", "32", "--batch-size", "16", "--device", "cpu",
                              "--workers", "0", "--channels-last", "--amp", "bf16", "-q"], capsys)
    assert code == 0, err
    cfg = json.loads((run / "config.json").read_text())
    assert (cfg["amp"], cfg["amp_used"], cfg["channels_last_used"]) == ("bf16", "bf16", True)
    assert "mixed precision bf16, channels-last on" in out
    hist = json.loads((run / "history.json").read_text())
    assert hist[0]["batches"] > 0 and math.isfinite(hist[0]["train_loss"])
    # the checkpoint is an ordinary float32 one: it evaluates without the options
    code, _, err = run_cli(["eval", run, "--device", "cpu", "--n-boot", "10", "--workers", "0"], capsys)
    assert code == 0, err
