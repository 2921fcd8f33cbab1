"""The training loop on a synthetic in-memory dataset: learning, checkpoints, resume, SupCon modes."""

import json

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from dfkit.train.backbones import create_backbone
from dfkit.train.checkpoint import load_checkpoint, read_checkpoint_meta
from dfkit.train.loop import _param_groups, predict, train
from dfkit.train.settings import TrainSettings
from dfkit.train.sampler import ClassBalancedSampler

CLASSES = ["real", "stripes_h", "stripes_v"]


class StripesDataset(Dataset):
    """Class-dependent textures under noise: class 0 plain noise, 1 horizontal stripes, 2 vertical stripes;
    ``frames`` frames per video share the video's stripe period. Deterministic from (seed, index)."""

    def __init__(self, n_videos: int, frames: int = 4, size: int = 32, seed: int = 0, amplitude: float = 0.6):
        self.n_videos, self.frames, self.size, self.seed, self.amplitude = n_videos, frames, size, seed, amplitude
        self.labels = [(i // frames) % 3 for i in range(n_videos * frames)]

    def __len__(self):
        return self.n_videos * self.frames

    def __getitem__(self, i):
        v, c = i // self.frames, self.labels[i]
        g = np.random.default_rng([self.seed, v, i])
        period = np.random.default_rng([self.seed, v]).uniform(3, 7)
        yy, xx = np.mgrid[0:self.size, 0:self.size]
        coord = {0: np.zeros_like(yy), 1: yy, 2: xx}[c]
        pattern = self.amplitude * np.sin(2 * np.pi * coord / period + g.uniform(0, 2 * np.pi)) if c else 0.0
        img = pattern + g.normal(0, 1.0, (3, self.size, self.size))
        return {"image": torch.tensor(img, dtype=torch.float32), "label": c, "video_key": f"synth/{v:03d}"}


@pytest.fixture(autouse=True)
def one_thread():
    # tiny convolutions run faster on one thread, and a busy 2-core machine makes 2 OpenMP threads crawl
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _loaders(n_train=36, n_val=18, batch=24, seed=0):
    tr = StripesDataset(n_train, seed=seed)
    va = StripesDataset(n_val, seed=seed + 100)
    train_loader = DataLoader(tr, batch_size=batch, sampler=ClassBalancedSampler(tr.labels, seed=seed),
                              drop_last=True)
    return train_loader, DataLoader(va, batch_size=64)


def _model(seed=0):
    torch.manual_seed(seed)
    return create_backbone("tiny", num_classes=3, img_size=32)


def test_tiny_model_learns_above_chance(tmp_path, capsys):
    tl, vl = _loaders()
    cfg = TrainSettings(epochs=4, lr=3e-3, seed=0, progress=True)
    summary = train(_model(), tl, vl, cfg, tmp_path / "run", class_names=CLASSES, meta={"dataset": "synthetic"})
    hist = summary["history"]
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4]
    final = hist[-1]["val"]
    # chance is 1/3
    assert final["frame"]["balanced_accuracy"] > 0.6, hist
    assert final["video"]["balanced_accuracy"] > 0.6, hist
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert summary["best_metric"] == max(h["val_selected"] for h in hist)
    assert summary["select"] == "video.balanced_accuracy"
    run = tmp_path / "run"
    for name in ("last.safetensors", "last.json", "best.safetensors", "best.json", "history.json"):
        assert (run / name).exists(), name
    best = read_checkpoint_meta(run / "best")["meta"]
    assert best["epoch"] == summary["best_epoch"] and best["class_names"] == CLASSES
    assert best["model"]["backbone"] == "tiny" and best["run"] == {"dataset": "synthetic"}
    assert len(json.loads((run / "history.json").read_text())) == 4
    # the progress bar shows loss, accuracy and throughput
    err = capsys.readouterr().err
    assert "epoch 4/4" in err and "loss=" in err and "acc=" in err and "samples/s=" in err

    # the best checkpoint reproduces its validation score
    m = _model(seed=1)
    load_checkpoint(run / "best", model=m)
    probs, labels, keys = predict(m, vl)
    assert probs.shape == (len(vl.dataset), 3) and keys[0] == "synth/000"
    best_hist = hist[summary["best_epoch"] - 1]["val"]["frame"]["accuracy"]
    assert (probs.argmax(1) == labels).mean() == pytest.approx(best_hist)


def _compare_runs(a, b):
    assert len(a["history"]) == len(b["history"])
    for ha, hb in zip(a["history"], b["history"]):
        assert ha["epoch"] == hb["epoch"] and ha["phase"] == hb["phase"]
        assert ha["train_loss"] == pytest.approx(hb["train_loss"], rel=1e-6, abs=1e-7)
        assert ha.get("val") == hb.get("val")  # same predictions, same metrics (deterministic on the CPU)
        assert ha["lr"] == pytest.approx(hb["lr"])


def _weights_equal(dir_a, dir_b, modules=None):
    ma, mb = _model(5), _model(6)
    extra_a = {k: v() for k, v in (modules or {}).items()}
    extra_b = {k: v() for k, v in (modules or {}).items()}
    da = load_checkpoint(dir_a / "last", model=ma, modules=extra_a or None)
    db = load_checkpoint(dir_b / "last", model=mb, modules=extra_b or None)
    for (k, va), vb in zip(ma.state_dict().items(), mb.state_dict().values()):
        assert torch.allclose(va.float(), vb.float(), atol=1e-6), k
    return da, db


def test_resume_matches_straight_run(tmp_path):
    cfg = TrainSettings(epochs=2, lr=3e-3, seed=3, progress=False)
    tl, vl = _loaders(n_train=24, n_val=9)
    straight = train(_model(), tl, vl, cfg, tmp_path / "straight", class_names=CLASSES)

    tl, vl = _loaders(n_train=24, n_val=9)
    first = train(_model(), tl, vl, cfg, tmp_path / "split", class_names=CLASSES, stop_after_epoch=1)
    assert first["epochs_done"] == 1
    meta1 = read_checkpoint_meta(tmp_path / "split" / "last")
    assert meta1["meta"]["epoch"] == 1
    # resume into a model with other initial weights: everything comes from the checkpoint
    tl, vl = _loaders(n_train=24, n_val=9)
    resumed = train(_model(seed=42), tl, vl, cfg, tmp_path / "split", class_names=CLASSES, resume=True)
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    _compare_runs(straight, resumed)
    da, db = _weights_equal(tmp_path / "straight", tmp_path / "split")
    assert da["meta"]["epoch"] == db["meta"]["epoch"] == 2
    # the optimizer and the schedule continued: AdamW's step counters and the scheduler cover both epochs
    steps = len(tl)
    model = _model()
    opt = torch.optim.AdamW(_param_groups([model], 0.05))  # the loop's grouping (decay / no decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    load_checkpoint(tmp_path / "split" / "last", optimizer=opt, scheduler=sched)
    assert opt.state and all(float(s["step"]) == 2 * steps for s in opt.state.values())
    assert sched.last_epoch == 2 * steps
    # resuming a finished run does nothing
    again = train(_model(), tl, vl, cfg, tmp_path / "split", class_names=CLASSES, resume=True)
    assert again["epochs_done"] == 2 and again["best_epoch"] == resumed["best_epoch"]


def test_supcon_joint_and_probe(tmp_path):
    tl, vl = _loaders(n_train=24, n_val=9)
    joint = train(_model(), tl, vl, TrainSettings(epochs=2, lr=3e-3, contrastive="supcon", contrastive_weight=0.5,
                                                progress=False), tmp_path / "joint", class_names=CLASSES)
    assert [h["phase"] for h in joint["history"]] == ["main", "main"]
    assert read_checkpoint_meta(tmp_path / "joint" / "best")["modules"] == ["model", "projection"]

    cfg = TrainSettings(epochs=2, probe_epochs=2, lr=3e-3, contrastive="supcon", contrastive_mode="probe",
                      projection_dim=32, seed=1, progress=False)
    probe = train(_model(), tl, vl, cfg, tmp_path / "probe", class_names=CLASSES)
    hist = probe["history"]
    assert [h["phase"] for h in hist] == ["supcon", "supcon", "probe", "probe"]
    assert hist[0]["train_accuracy"] is None and "val" not in hist[0]  # no classifier yet
    assert probe["best_epoch"] in (3, 4)
    assert "val" in hist[2] and "val" in hist[3]

    # resume across the phase boundary repeats the uninterrupted run
    tl, vl = _loaders(n_train=24, n_val=9)
    train(_model(), tl, vl, cfg, tmp_path / "probe_split", class_names=CLASSES, stop_after_epoch=2)
    tl, vl = _loaders(n_train=24, n_val=9)
    resumed = train(_model(7), tl, vl, cfg, tmp_path / "probe_split", class_names=CLASSES, resume=True)
    _compare_runs(probe, resumed)
    from dfkit.train.losses import ProjectionHead
    _weights_equal(tmp_path / "probe", tmp_path / "probe_split", {"projection": lambda: ProjectionHead(128, 32)})


def test_frozen_backbone_in_probe(tmp_path):
    """The probe trains the head only: weights and BatchNorm statistics of the backbone stay as SupCon left them."""
    tl, vl = _loaders(n_train=12, n_val=6)
    cfg = TrainSettings(epochs=1, probe_epochs=1, lr=3e-3, contrastive="supcon", contrastive_mode="probe",
                      progress=False)
    out = tmp_path / "p"
    train(_model(), tl, vl, cfg, out, stop_after_epoch=1)
    after_supcon = _model(9)
    load_checkpoint(out / "last", model=after_supcon)
    model = _model(10)
    train(model, tl, vl, cfg, out, resume=True)
    for (k, a), b in zip(after_supcon.features.state_dict().items(), model.features.state_dict().values()):
        assert torch.equal(a, b), k
    assert not torch.equal(after_supcon.head.weight, model.head.weight)


def test_callers_frozen_parameters_stay_frozen_and_flags_come_back(tmp_path):
    """The loop freezes per phase (the head during SupCon, the backbone in the probe) but never unfreezes what the
    caller froze, and hands the model back with the caller's requires_grad flags."""
    tl, vl = _loaders(n_train=12, n_val=6)
    model = _model()
    first = next(model.features.parameters())
    first.requires_grad_(False)
    before = first.detach().clone()
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    cfg = TrainSettings(epochs=1, probe_epochs=1, lr=3e-3, contrastive="supcon", contrastive_mode="probe",
                      progress=False)
    train(model, tl, vl, cfg, tmp_path / "p")
    assert torch.equal(first, before)
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags


def test_config_errors(tmp_path):
    tl, vl = _loaders(n_train=3, n_val=3)
    with pytest.raises(ValueError, match="unknown setting"):
        train(_model(), tl, vl, {"epochs": 1, "learning_rate": 1}, tmp_path)
    with pytest.raises(ValueError, match="contrastive"):
        train(_model(), tl, vl, TrainSettings(contrastive="triplet"), tmp_path)
