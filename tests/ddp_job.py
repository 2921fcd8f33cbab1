"""A training job run by tests/test_train_distributed.py, once under ``torchrun --nproc_per_node=2`` and once as one
process with twice the batch: ``python ddp_job.py CORPUS OUT MODE BATCH``.

MODE ``ce``, ``joint`` (CE + SupCon), ``probe`` (SupCon, then a linear probe): the model has no BatchNorm (BatchNorm
normalises with per-process batch statistics, so only BatchNorm-free models can match a single process exactly) and
no dropout; augmentations are on (they are seeded per crop, not per process); the seed is not 0, so the model and
projection initialisation must follow ``--seed`` in every process. MODE ``bn``: the same with BatchNorm; every
process writes a digest of its final model (``rank<r>.json``): they must agree with each other and the checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch
from torch import nn

from dfkit.train.backbones.registry import BackboneClassifier
from dfkit.train.checkpoint import load_checkpoint
from dfkit.train.data import make_loaders, select_data
from dfkit.train.distributed import init_from_env, shutdown
from dfkit.train.loop import train
from dfkit.train.settings import TrainSettings


def _model(n_classes: int, bn: bool) -> BackboneClassifier:
    norm = (lambda c: nn.BatchNorm2d(c)) if bn else (lambda c: nn.Identity())
    features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), norm(8), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2),
                             norm(16), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return BackboneClassifier(features, 16, n_classes, backbone_name="bn" if bn else "nobn", img_size=32)


def _digest(model: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def main() -> None:
    corpus, out, mode, batch = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    torch.set_num_threads(1)
    ctx, device = init_from_env("cpu")
    try:
        sel = select_data(corpus, task="attribution")
        torch.manual_seed(7)
        model = _model(len(sel.class_names), bn=mode == "bn")
        train_loader, val_loader = make_loaders(sel, img_size=32, batch_size=batch, workers=0, mean=model.mean,
                                                std=model.std, augment=True, seed=3, samples_per_epoch=96,
                                                num_replicas=ctx.world, rank=ctx.rank)
        cfg = TrainSettings(epochs=2, lr=3e-3, device=device, progress=False, seed=5,
                          contrastive="supcon" if mode in ("joint", "probe") else None,
                          contrastive_mode="probe" if mode == "probe" else "joint", probe_epochs=1)
        summary = train(model, train_loader, val_loader, cfg, out, class_names=sel.class_names, dist=ctx)
        (out / f"rank{ctx.rank}.json").write_text(json.dumps({"digest": _digest(model)}))
        if ctx.is_main:
            # the run folder holds what rank 0 wrote; reload it to be sure the checkpoint is the trained model
            fresh = _model(len(sel.class_names), bn=mode == "bn")
            load_checkpoint(out / "last", model=fresh)
            same = all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), model.state_dict().values()))
            (out / "job.json").write_text(json.dumps({"world": ctx.world, "checkpoint_is_model": same,
                                                      "epochs_done": summary["epochs_done"]}))
    finally:
        shutdown(ctx)


if __name__ == "__main__":
    main()
