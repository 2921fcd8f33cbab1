"""The generic training loop.

:func:`train` trains any classifier whose loaders yield ``{"image": B x C x H x W float (normalised), "label": B long,
"video_key": list[str]}`` batches:

- loss: cross-entropy; with ``contrastive="supcon"`` either **joint** (``CE + contrastive_weight * SupCon``) or
  **probe** (SupCon alone for ``epochs``, then a linear probe - a fresh optimizer on the head only, the backbone frozen
  - for ``probe_epochs``). SupCon sees a projection MLP of the embedding (``projection_dim``; 0 = the embedding
  itself), as in Khosla et al. 2020; the projection head is saved with the model.
- AdamW (no weight decay on biases and norm parameters), per-step cosine schedule with optional linear warm-up.
- a tqdm bar per epoch with loss, accuracy and samples/s; validation after each epoch (frame- and video-level metrics
  from :func:`dfkit.train.scores.evaluate`, without bootstrap) and best-by-validation selection (video-level balanced
  accuracy by default).
- checkpoints in ``out_dir`` after each epoch: ``last.safetensors``/``last.json`` (model, projection, optimizer,
  scheduler, random states) and, when validation improves, ``best.safetensors``/``best.json`` (model and projection);
  ``history.json`` lists every epoch.
- ``resume=True`` continues from ``last``: epoch counter, optimizer, scheduler and random generators are restored, and
  samplers/datasets with ``set_epoch`` are told the epoch, so a resumed run repeats the uninterrupted one (checked to
  be exact on the CPU; DataLoader worker seeds come from torch's generator, which is restored too).
- ``device``: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``; ``amp`` (:data:`~dfkit.train.settings.AMP_MODES`):
  ``bf16`` autocast (CUDA or CPU), ``fp16`` autocast with a gradient scaler (CUDA), ``auto`` resolved by
  :func:`resolve_amp` (on the CPU by a short measurement: bf16 only when faster); ``channels_last`` (on by default,
  :func:`resolve_channels_last`) puts the model and its input batches in channels-last memory format.
  Both apply to training and validation; the checkpoints are the same either way (contiguous float32 tensors).

- ``dist``: a :class:`~dfkit.train.distributed.DistContext` for data-parallel training under ``torchrun``: the step
  runs through DistributedDataParallel (gradients averaged over the processes), SupCon sees the embeddings of all
  processes, validation predictions are gathered, the epoch statistics summed, and only rank 0 shows progress and
  writes files. The loaders must already be sharded (:func:`dfkit.train.data.make_loaders` with
  ``num_replicas``/``rank``). A resumed data-parallel run restores the model, optimizer and schedule exactly, but
  reseeds the random generators per ``(seed, epoch, rank)`` instead of restoring them.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dfkit.train.checkpoint import checkpoint_paths, load_checkpoint, read_checkpoint_meta, save_checkpoint
from dfkit.train.distributed import SINGLE, DistContext, gather_plain, gather_with_grad
from dfkit.train.losses import ProjectionHead, supcon_loss
from dfkit.train.scores import evaluate
from dfkit.train.settings import TrainSettings

logger = logging.getLogger("dfkit.train")

__all__ = ["train", "predict", "resolve_device", "resolve_amp", "resolve_channels_last", "autocast_dtype",
           "measure_cpu_amp"]


# ----------------------------------------------------------------------------------------------------------------------
# helpers

def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; a CUDA request without CUDA is an error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available")
    return dev


def resolve_channels_last(value: bool | None, device: torch.device) -> bool:
    """``--channels-last``: as given; ``None`` (not given) is on, on every device: bench/train.py measured it faster
    or equal for tiny, efficientnet_b0 and convnext_tiny on the CPU (+30 %, +23 %, +3 % model + optimizer crops/s at
    128 px, 2 cores), and it is the format cuDNN's convolutions prefer."""
    return True if value is None else bool(value)


def autocast_dtype(amp: str | bool) -> torch.dtype | None:
    """A resolved ``amp`` (``off``/``bf16``/``fp16``; ``True`` of older callers: bf16) -> the autocast dtype or None."""
    if amp is True:
        return torch.bfloat16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(str(amp))


def measure_cpu_amp(model: nn.Module, batch_shape: tuple[int, ...], channels_last: bool = False,
                    reps: int = 2) -> dict[str, float]:
    """Seconds per training step (forward, backward) of a copy of ``model`` on a random CPU batch, in float32 and
    under bfloat16 autocast: ``{"off": s, "bf16": s}`` (medians of ``reps`` after one warm-up each). Leaves
    ``model`` and torch's random state as they were."""
    import copy

    state = torch.random.get_rng_state()
    try:
        m = copy.deepcopy(model).to("cpu").train()
        if channels_last:
            m = m.to(memory_format=torch.channels_last)
        x = torch.randn(*batch_shape)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        times: dict[str, list[float]] = {"off": [], "bf16": []}
        for r in range(reps + 1):
            for mode in ("off", "bf16"):
                t0 = time.perf_counter()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "bf16"):
                    out = m(x)
                out.float().sum().backward()
                m.zero_grad(set_to_none=True)
                if r:
                    times[mode].append(time.perf_counter() - t0)
        return {k: float(np.median(v)) for k, v in times.items()}
    finally:
        torch.random.set_rng_state(state)


def resolve_amp(amp: str | bool, device: torch.device, model: nn.Module | None = None,
                batch_shape: tuple[int, ...] | None = None, channels_last: bool = False,
                note: Any = None) -> str:
    """``--amp`` -> ``off``, ``bf16`` or ``fp16`` on ``device``. ``auto``: on CUDA bf16 where the GPU supports it,
    else fp16; on the CPU bf16 when :func:`measure_cpu_amp` finds a step at least 10 % faster with it (needs
    ``model`` and ``batch_shape``; without them: off). ``note(msg)`` is told the measurement. ``fp16`` on the CPU is a
    :class:`~dfkit.errors.SettingsError` (the settings refuse it before anything is written)."""
    from dfkit.errors import SettingsError

    amp = "auto" if amp is True else "off" if amp is False or amp is None else str(amp)
    if amp == "fp16" and device.type != "cuda":
        raise SettingsError("--amp fp16 needs a CUDA device (--device cuda); on the CPU use --amp bf16 or auto")
    if amp != "auto":
        return amp
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type != "cpu" or model is None or batch_shape is None:
        return "off"
    t = measure_cpu_amp(model, batch_shape, channels_last)
    pick = "bf16" if t["bf16"] < 0.9 * t["off"] else "off"
    if note is not None:
        note(f"--amp auto on the CPU: a step takes {t['off']:.3f} s in float32, {t['bf16']:.3f} s in bfloat16 "
             f"-> {pick}")
    return pick


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _embed(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if not hasattr(model, "embed"):
        raise TypeError("contrastive training needs a model with .embed(x) and .classify(emb)/.head "
                        "(see dfkit.train.backbones.BackboneClassifier)")
    return model.embed(x)


def _classify(model: nn.Module, emb: torch.Tensor) -> torch.Tensor:
    if hasattr(model, "classify"):
        return model.classify(emb)
    return model.head(emb)


def _head(model: nn.Module) -> nn.Module:
    head = getattr(model, "head", None)
    if not isinstance(head, nn.Module):
        raise TypeError("the linear probe needs a model with a .head module")
    return head


def _param_groups(modules: Iterable[nn.Module], weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on weight matrices/kernels, none on biases and norm parameters (1-d)."""
    decay, no_decay = [], []
    for m in modules:
        for p in m.parameters():
            if p.requires_grad:
                (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _cosine(total_steps: int, warmup_steps: int, min_ratio: float):
    def f(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    return f


def _batch_shape(loader: Any, model: nn.Module) -> tuple[int, ...] | None:
    """The training batch's shape from a dfkit loader (batch size, image side), for the amp measurement; probe
    batches are at most 16 crops."""
    try:
        inner = getattr(loader, "loader", loader)
        bs = int(inner.batch_size)
        side = int(getattr(inner.dataset, "img_size", 0) or getattr(model, "img_size", 0))
    except (AttributeError, TypeError, ValueError):
        return None
    return (min(bs, 16), 3, side, side) if side else None


def _steps_per_epoch(loader: Any, cfg: TrainSettings) -> int:
    if cfg.steps_per_epoch:
        return int(cfg.steps_per_epoch)
    try:
        return len(loader)
    except TypeError:
        raise ValueError("the training loader has no len(); set steps_per_epoch") from None


def _set_epoch(loader: Any, epoch: int) -> None:
    """Tell the sampler / batch sampler / dataset the epoch (seeded samplers and augmentations use it)."""
    seen = set()
    for obj in (getattr(loader, "sampler", None), getattr(getattr(loader, "batch_sampler", None), "sampler", None),
                getattr(loader, "dataset", None)):
        if obj is not None and id(obj) not in seen and callable(getattr(obj, "set_epoch", None)):
            seen.add(id(obj))
            obj.set_epoch(epoch)


class _Phase:
    """One stage of training: ``main`` (CE or CE + SupCon), ``supcon`` (SupCon alone) or ``probe`` (linear probe)."""

    def __init__(self, name: str, start: int, epochs: int) -> None:
        self.name, self.start, self.epochs = name, start, epochs

    @property
    def end(self) -> int:
        return self.start + self.epochs


def _phases(cfg: TrainSettings) -> list[_Phase]:
    if cfg.contrastive == "supcon" and cfg.contrastive_mode == "probe":
        return [_Phase("supcon", 0, cfg.epochs), _Phase("probe", cfg.epochs, cfg.probe_epochs)]
    return [_Phase("main", 0, cfg.epochs)]


def _phase_at(phases: list[_Phase], epoch: int) -> _Phase:
    for ph in phases:
        if ph.start <= epoch < ph.end:
            return ph
    return phases[-1]


def _rank_seed(seed: int, epoch: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])


def _set_trainable(model: nn.Module, projection: nn.Module | None, phase: _Phase,
                   allowed: dict[nn.Parameter, bool]) -> None:
    """What a phase trains: everything (``main``), all but the classifier head (``supcon``: the head gets no gradient
    from SupCon), only the head (``probe``) -- never a parameter the caller had frozen (``allowed`` False). Frozen
    parameters are left out of DDP's reducer."""
    head = set(_head(model).parameters()) if phase.name in ("supcon", "probe") else set()
    for m in [model] + ([projection] if projection is not None else []):
        for p in m.parameters():
            on = (p in head) if phase.name == "probe" else (p not in head)
            p.requires_grad_(bool(allowed.get(p, True)) and on)


class _Step(nn.Module):
    """One phase's forward pass as a module (what DistributedDataParallel wraps): ``x -> (logits or None,
    projected embedding or None)``."""

    def __init__(self, model: nn.Module, projection: nn.Module | None, phase: str, contrastive: bool) -> None:
        super().__init__()
        self.model, self.projection = model, projection
        self.phase, self.contrastive = phase, contrastive

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if self.phase == "probe":
            with torch.no_grad():
                emb = _embed(self.model, x)
            return _classify(self.model, emb.detach()), None
        if self.phase == "supcon" or self.contrastive:
            emb = _embed(self.model, x)
            assert self.projection is not None
            z = self.projection(emb)
            return (None if self.phase == "supcon" else _classify(self.model, emb)), z
        return self.model(x), None


def _wrap(step: _Step, device: torch.device, ctx: DistContext) -> nn.Module:
    if not ctx.enabled:
        return step
    from torch.nn.parallel import DistributedDataParallel

    # buffers (BatchNorm statistics) are not broadcast at every step: each process keeps its own during the epoch and
    # the loop averages them after it (DistContext.average_buffers)
    return DistributedDataParallel(step, device_ids=[device.index] if device.type == "cuda" else None,
                                   broadcast_buffers=False)


def _predict_all(model: nn.Module, loader: Iterable[dict[str, Any]], device: torch.device, amp: str | bool,
                 ctx: DistContext) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """:func:`predict` on this process's shard, gathered from every process (in rank order)."""
    if not ctx.enabled:
        return predict(model, loader, device, amp)
    parts = ctx.all_gather_object(predict(model, loader, device, amp, allow_empty=True))
    parts = [p for p in parts if len(p[1])]
    if not parts:
        raise ValueError("the validation loaders yielded no batch")
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
            [k for p in parts for k in p[2]])


# ----------------------------------------------------------------------------------------------------------------------
# prediction

@torch.no_grad()
def predict(model: nn.Module, loader: Iterable[dict[str, Any]], device: str | torch.device = "cpu",
            amp: str | bool = False, allow_empty: bool = False) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Run ``model`` over ``loader``: returns ``(probs N x C, labels N, video_keys N)`` (softmax probabilities).
    An empty loader is an error unless ``allow_empty`` (then ``probs`` is ``0 x 0``). ``amp``: a resolved mode
    (``off``/``bf16``/``fp16``; ``True``: bf16 on CUDA only, as before). A model in channels-last format gets its
    input in that format."""
    dev = resolve_device(device)
    dtype = autocast_dtype(amp)
    if amp is True and dev.type != "cuda":
        dtype = None
    first = next(iter(model.parameters()), None)
    cl = first is not None and first.ndim == 4 and first.is_contiguous(memory_format=torch.channels_last) \
        and not first.is_contiguous()
    was_training = model.training
    model.eval()
    probs, labels, keys = [], [], []
    try:
        for batch in loader:
            x = batch["image"].to(dev, non_blocking=True)
            if cl:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(dev.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
                logits = model(x)
            probs.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
            labels.append(torch.as_tensor(batch["label"]).cpu().numpy())
            keys.extend(str(k) for k in batch["video_key"])
    finally:
        model.train(was_training)
    if not probs:
        if allow_empty:
            return np.zeros((0, 0), np.float32), np.zeros(0, np.int64), []
        raise ValueError("the loader yielded no batch")
    return np.concatenate(probs), np.concatenate(labels).astype(np.int64), keys


# ----------------------------------------------------------------------------------------------------------------------
# the loop

def train(
    model: nn.Module,
    train_loader: Iterable[dict[str, Any]],
    val_loader: Iterable[dict[str, Any]] | None,
    cfg: TrainSettings | dict[str, Any],
    out_dir: str | Path,
    *,
    class_names: list[str] | None = None,
    resume: bool = False,
    meta: dict[str, Any] | None = None,
    stop_after_epoch: int | None = None,
    dist: DistContext | None = None,
) -> dict[str, Any]:
    """Train ``model`` and checkpoint it to ``out_dir`` (see the module docstring).

    Args:
        model: a classifier (``forward`` -> logits); contrastive training also needs ``.embed(x)`` and
            ``.classify(emb)`` or ``.head`` (any :class:`~dfkit.train.backbones.BackboneClassifier` has them).
        train_loader, val_loader: iterables of ``{"image", "label", "video_key"}`` batches (``val_loader`` may be
            None: no validation, ``best`` is then the last epoch). Use ``drop_last=True`` for training with
            BatchNorm models. Samplers/datasets with ``set_epoch(epoch)`` are called at each epoch (with
            ``persistent_workers=True`` the workers keep their own dataset copies and do not see it).
        cfg: a :class:`~dfkit.train.settings.TrainSettings` (checked when made) or a dict of its fields; the loop
            reads the optimisation fields (epochs, lr, ..., contrastive, select_*, device, amp, seed, progress).
        out_dir: run folder (created); holds ``last.*``, ``best.*`` and ``history.json``.
        class_names: names of the model's classes (stored in the metadata; default ``"0", "1", ...``).
        resume: continue from ``out_dir/last`` if it exists (otherwise start afresh).
        meta: extra JSON metadata stored in every checkpoint under ``"run"`` (dataset, corpus, split ...).
        stop_after_epoch: return once this many epochs are complete (to split a run into jobs; resume later).
        dist: the data-parallel context under ``torchrun`` (see the module docstring); default: one process.

    A fresh run seeds Python's, numpy's and torch's global generators with ``cfg.seed`` (the model's own
    initialisation happens before, in the caller: seed there too); a resumed run restores them from ``last``.

    Returns a summary: ``{"out_dir", "epochs_done", "best_epoch", "best_metric", "select", "history", "last",
    "best"}``.
    """
    cfg = TrainSettings.from_dict(cfg, "training settings") if isinstance(cfg, dict) else cfg
    ctx = dist or SINGLE
    if not ctx.is_main:
        cfg = replace(cfg, progress=False)  # rank 0 alone shows progress
    out = Path(out_dir)
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    channels_last = resolve_channels_last(cfg.channels_last, device)
    # "auto" is resolved by the runner (it measures on the real batch shape); here without a batch: as resolve_amp
    use_amp = resolve_amp(cfg.amp, device, model, _batch_shape(train_loader, model), channels_last,
                          note=lambda m: _say(cfg, m)) if cfg.amp == "auto" else resolve_amp(cfg.amp, device)
    if ctx.enabled:  # one decision for every process (rank 0's measurement)
        use_amp = ctx.broadcast_object(use_amp)
    contrastive = cfg.contrastive == "supcon"
    phases = _phases(cfg)
    total_epochs = phases[-1].end
    n_classes = int(getattr(model, "num_classes", 0) or 0)
    names = list(class_names) if class_names is not None else [str(i) for i in range(n_classes)]
    select = f"{cfg.select_level}.{cfg.select_metric}"
    steps = _steps_per_epoch(train_loader, cfg)

    last_path = out / "last"
    resuming = resume and checkpoint_paths(last_path)[1].exists()
    if ctx.enabled:  # rank 0 decides; the others must see the same run folder (a shared filesystem)
        resuming = ctx.broadcast_object(resuming)
        if resuming and not checkpoint_paths(last_path)[1].exists():
            raise RuntimeError(f"rank {ctx.rank} cannot see {checkpoint_paths(last_path)[1]}: the run folder must be "
                               "on a filesystem every process reads")
    if not resuming:
        if checkpoint_paths(last_path)[1].exists() and ctx.is_main:
            logger.warning("%s already holds a run; starting afresh and overwriting it (resume=True continues it)",
                           out)
        _seed_everything(cfg.seed)
    projection: nn.Module | None = None
    if contrastive:
        emb_dim = int(getattr(model, "embed_dim"))
        projection = ProjectionHead(emb_dim, cfg.projection_dim) if cfg.projection_dim > 0 else nn.Identity()
    if ctx.enabled and ctx.rank > 0 and not resuming:
        # rank 0 keeps the single-process stream; the others get their own (dropout) after the shared initialisation
        _seed_everything(_rank_seed(cfg.seed, 0, ctx.rank))
    model.to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # the training shapes are fixed (drop_last): pick the fastest kernels
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if projection is not None:
        projection.to(device)
    extra_modules = {"projection": projection} if projection is not None and cfg.projection_dim > 0 else {}

    trainable_at_start = {p: p.requires_grad for m in (model, projection) if m is not None for p in m.parameters()}

    def make_optimizer(phase: _Phase) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
        _set_trainable(model, projection, _Phase("main", 0, 0), trainable_at_start)
        if phase.name == "probe":
            groups = _param_groups([_head(model)], cfg.weight_decay)
            lr = cfg.probe_lr or cfg.lr
        else:
            groups = _param_groups([model] + list(extra_modules.values()), cfg.weight_decay)
            lr = cfg.lr
        _set_trainable(model, projection, phase, trainable_at_start)  # after the groups: the optimizer keeps them
        opt = torch.optim.AdamW([g for g in groups if g["params"]], lr=lr)
        total = max(1, phase.epochs * steps)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, _cosine(total, int(round(cfg.warmup_epochs * steps)), cfg.min_lr_ratio))
        return opt, sched

    # fp16 needs loss scaling (bf16 has float32's range); the scale is re-found after a resume (not checkpointed)
    scaler = torch.amp.GradScaler(device.type, enabled=True) if use_amp == "fp16" else None
    start_epoch, best_metric, best_epoch = 0, -math.inf, 0
    history: list[dict[str, Any]] = []
    optimizer = scheduler = None
    current_phase: _Phase | None = None
    if resuming:
        doc = read_checkpoint_meta(last_path)
        saved = doc["meta"]
        start_epoch = int(saved["epoch"])
        # a checkpoint of an older dfkit holds the former TrainConfig's fields only: compare the keys it has
        ignore = {"device", "progress", "amp", "workers", "threads", "out"}
        old = saved.get("config") or {}
        diff = {k for k, v in cfg.to_dict().items() if k not in ignore and k in old and old[k] != v}
        if diff:
            logger.warning("resuming with changed settings: %s", ", ".join(sorted(diff)))
        current_phase = _phase_at(phases, start_epoch)
        optimizer, scheduler = make_optimizer(current_phase)
        same_phase = saved.get("phase") == current_phase.name
        load_checkpoint(last_path, model=model, modules=extra_modules or None,
                        optimizer=optimizer if same_phase else None, scheduler=scheduler if same_phase else None,
                        restore_rng=not ctx.enabled)
        if ctx.enabled:  # one saved generator state cannot serve every process
            _seed_everything(_rank_seed(cfg.seed, start_epoch, ctx.rank))
        history = list(saved.get("history", []))
        best_metric = saved.get("best_metric")
        best_metric = -math.inf if best_metric is None else float(best_metric)
        best_epoch = int(saved.get("best_epoch") or 0)
        _say(cfg, f"resumed from {checkpoint_paths(last_path)[0]} after epoch {start_epoch}/{total_epochs}")

    stop = total_epochs if stop_after_epoch is None else min(total_epochs, int(stop_after_epoch))
    for epoch in range(start_epoch, stop):
        phase = _phase_at(phases, epoch)
        if current_phase is None or phase.name != current_phase.name:
            current_phase = phase
            optimizer, scheduler = make_optimizer(phase)
            if phase.name == "probe":
                _say(cfg, "SupCon phase done: training a linear probe on the frozen embedding")
        assert optimizer is not None and scheduler is not None
        _set_epoch(train_loader, epoch)
        stats = _train_epoch(model, projection, train_loader, optimizer, scheduler, cfg, phase, device, use_amp,
                             epoch, total_epochs, steps, ctx, channels_last, scaler)
        ctx.average_buffers(model)  # per-process BatchNorm statistics -> one model for validation and checkpoint
        record: dict[str, Any] = {"epoch": epoch + 1, "phase": phase.name, **stats}
        is_best = False
        if val_loader is not None and phase.name != "supcon":
            probs, labels, keys = _predict_all(model, val_loader, device, use_amp, ctx)
            if not names:
                names = [str(i) for i in range(probs.shape[1])]
            res = evaluate(labels, probs, keys, names, n_boot=0)
            record["val"] = {lv: {k: res[lv][k]["value"] for k in ("accuracy", "balanced_accuracy", "macro_f1",
                                                                      "auc")} for lv in ("frame", "video")}
            value = res[cfg.select_level][cfg.select_metric]["value"]
            record["val_selected"] = value
            is_best = value is not None and value > best_metric
            shown = "n/a" if value is None else f"{value:.4f}"
            frame_acc = record["val"]["frame"]["accuracy"]
            _say(cfg, f"epoch {epoch + 1}/{total_epochs} val {select} = {shown} (frame accuracy {frame_acc:.4f})"
                      + ("  * best" if is_best else ""))
        elif val_loader is None and phase.name != "supcon":
            is_best = True  # no validation: the latest epoch is the one to keep
        if is_best:
            best_metric = record.get("val_selected") if record.get("val_selected") is not None else best_metric
            best_epoch = epoch + 1
        history.append(record)
        if not ctx.is_main:
            continue
        ckpt_meta = {
            "config": cfg.to_dict(),
            "class_names": names,
            "epoch": epoch + 1,
            "total_epochs": total_epochs,
            "phase": phase.name,
            "select": select,
            "best_metric": None if best_metric == -math.inf else best_metric,
            "best_epoch": best_epoch,
            "seed": cfg.seed,
            "model": model.config() if hasattr(model, "config") else None,
            "history": history,
            "run": meta or {},
            "world_size": ctx.world,
        }
        save_checkpoint(last_path, model=model, modules=extra_modules or None, optimizer=optimizer,
                        scheduler=scheduler, meta=ckpt_meta, rng=True)
        if is_best:
            save_checkpoint(out / "best", model=model, modules=extra_modules or None, meta=ckpt_meta, rng=False)
        (out / "history.json").write_text(json.dumps(history, indent=1))

    for prm, flag in trainable_at_start.items():  # the caller's model as it came (nothing left frozen)
        prm.requires_grad_(flag)
    ctx.barrier()  # every process returns once rank 0 has written the run
    return {
        "out_dir": str(out),
        "epochs_done": len(history),
        "best_epoch": best_epoch,
        "best_metric": None if best_metric == -math.inf else best_metric,
        "select": select,
        "history": history,
        "last": str(checkpoint_paths(last_path)[0]),
        "best": str(checkpoint_paths(out / "best")[0]) if best_epoch else None,
    }


def _say(cfg: TrainSettings, msg: str) -> None:
    """A status line: printed between progress bars when they are on, logged otherwise."""
    if cfg.progress:
        from tqdm.auto import tqdm

        tqdm.write(msg)
    else:
        logger.info(msg)


def _train_epoch(model: nn.Module, projection: nn.Module | None, loader: Iterable[dict[str, Any]],
                 optimizer: torch.optim.Optimizer, scheduler: Any, cfg: TrainSettings, phase: _Phase,
                 device: torch.device, use_amp: str, epoch: int, total_epochs: int, steps: int,
                 ctx: DistContext = SINGLE, channels_last: bool = False, scaler: Any = None) -> dict[str, Any]:
    from tqdm.auto import tqdm

    probe = phase.name == "probe"
    supcon_only = phase.name == "supcon"
    contrastive = cfg.contrastive == "supcon"
    model.train(not probe)  # the probe keeps the backbone frozen, BatchNorm statistics included
    if projection is not None:
        projection.train(not probe)
    step = _wrap(_Step(model, projection, phase.name, contrastive), device, ctx)
    trainable = [p for g in optimizer.param_groups for p in g["params"]]
    dtype = autocast_dtype(use_amp)
    loss_sum, correct, seen, n_batches = 0.0, 0, 0, 0
    t0 = time.perf_counter()
    bar = tqdm(loader, total=steps, desc=f"epoch {epoch + 1}/{total_epochs} [{phase.name}]", leave=True,
               disable=not cfg.progress, dynamic_ncols=True)
    for i, batch in enumerate(bar):
        if i >= steps:
            break
        x = batch["image"].to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)  # a no-op when the loader made it so
        y = torch.as_tensor(batch["label"]).to(device, non_blocking=True).long()
        with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            logits, z = step(x)
            loss = torch.zeros((), device=device)
            if logits is not None:
                loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
            if z is not None:
                # under DDP every process scores the global batch (see dfkit.train.distributed.gather_with_grad)
                loss_con = supcon_loss(gather_with_grad(z, ctx), gather_plain(y, ctx), cfg.temperature)
                loss = loss_con if supcon_only else loss + cfg.contrastive_weight * loss_con
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            if cfg.grad_clip:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(trainable, cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(trainable, cfg.grad_clip)
            optimizer.step()
        scheduler.step()

        bs = int(y.shape[0])
        seen += bs
        n_batches += 1
        loss_sum += float(loss.detach()) * bs
        if logits is not None:
            correct += int((logits.detach().argmax(1) == y).sum())
        elapsed = time.perf_counter() - t0
        post = {"loss": f"{loss_sum / seen:.4f}"}
        if not supcon_only:
            post["acc"] = f"{correct / seen:.3f}"
        post["samples/s"] = f"{seen * ctx.world / max(elapsed, 1e-9):.0f}"  # all processes (rank 0's pace)
        bar.set_postfix(post, refresh=False)
    bar.close()
    elapsed = time.perf_counter() - t0
    if seen == 0:
        raise ValueError("the training loader yielded no batch")
    loss_sum, correct, seen = ctx.sum([loss_sum, float(correct), float(seen)])
    seen = int(seen)
    return {
        "train_loss": loss_sum / seen,
        "train_accuracy": None if supcon_only else correct / seen,
        "samples": seen,
        "batches": n_batches,
        "seconds": elapsed,
        "samples_per_s": seen / max(elapsed, 1e-9),
        "lr": optimizer.param_groups[0]["lr"],
    }
