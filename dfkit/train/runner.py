"""``dfkit train`` as a function: settings -> data -> model -> :func:`dfkit.train.loop.train` -> a run folder.

A run folder holds::

    config.yaml / config.json   the resolved settings (defaults < --config FILE < command line), classes, counts
    data.json                   frames and videos per split and class, notes on the selection, ``holdout_methods``
                                (the canonical methods left out of train and val, ``--holdout-methods``) and
                                ``drop_suspect``:
                                whether suspect crops were left out and how many per split and class
                                (:attr:`dfkit.train.data.DataSelection.suspect`)
    splits.parquet              the per-video split used (identity re-splits computed for the run)
    last.safetensors/.json      the latest checkpoint (model, optimizer, scheduler, random states): --resume
    best.safetensors/.json      the best epoch by validation (video-level balanced accuracy)
    prototypes.safetensors      the best model's class prototypes (mean L2-normalised embedding of <= 200 training
                                crops per class) and openset.json, the open-set scores' validation thresholds
                                (:func:`dfkit.train.openset.fit_run_open_set`)
    history.json                one record per epoch

Under ``torchrun`` (see :mod:`dfkit.train.distributed`) every process selects the same data and trains its shard of
each epoch; rank 0 alone writes the run folder and prints. ``batch_size`` is per process; ``config.json`` records
``world_size`` and ``global_batch_size``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from dfkit.errors import DfkitError
from dfkit.train.data import DataSelection, default_workers, make_loaders, select_data
from dfkit.train.settings import TrainSettings, load_settings_file

Echo = Callable[[str], None]

__all__ = ["TrainSettings", "load_settings_file", "train_run", "default_threads"]


def default_threads(workers: int, cores: int | None = None) -> int:
    """Torch threads by default: the cores (``cores``, default all of the machine's) the DataLoader workers leave
    free (at least 1)."""
    return max(1, (cores or os.cpu_count() or 1) - max(0, int(workers)))


def default_out(s: TrainSettings) -> str:
    ds = "-".join(s.datasets) if s.datasets else "all"
    return str(Path("runs") / f"{s.task}_{s.backbone}_{ds}_{time.strftime('%Y%m%d-%H%M%S')}")


def _build_model(s: TrainSettings, num_classes: int, img_size: int):
    import torch

    from dfkit.train.backbones import create_backbone

    import logging

    torch.manual_seed(int(s.seed))
    lg = logging.getLogger("dfkit.train")
    level = lg.level
    lg.setLevel(logging.ERROR)  # the from-scratch warning is said by train_run, once
    try:
        return create_backbone(s.backbone, num_classes=num_classes, pretrained=bool(s.pretrained),
                               weights=Path(s.weights).expanduser() if s.weights else None, img_size=img_size)
    except (ValueError, RuntimeError, FileNotFoundError, KeyError) as e:
        raise DfkitError(f"backbone {s.backbone}: {str(e).splitlines()[0]}") from None
    finally:
        lg.setLevel(level)


#: ``config.json``'s copy of the corpus manifest's ``ingests`` (each with the parameters its crops were cut with), so
#: that ``dfkit predict`` cuts a new file the way the training crops were cut even when the corpus is gone
CORPUS_INGESTS_KEY = "corpus_ingests"


def _corpus_ingests(corpus) -> list[dict[str, Any]]:
    from dfkit.corpus.store import read_manifest

    try:
        return [r for r in read_manifest(Path(corpus)).get("ingests") or [] if isinstance(r, dict)]
    except Exception:  # noqa: BLE001 - a record for later, never a reason to stop training
        return []


def _saved_config(out: Path) -> dict[str, Any]:
    """The run's saved ``config.json`` ({} when there is none); a damaged one is one line naming it."""
    path = out / "config.json"
    if not path.exists():
        return {}
    try:
        saved = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DfkitError(f"--resume: {path} is damaged ({e}); nothing was changed") from None
    if not isinstance(saved, dict):
        raise DfkitError(f"--resume: {path} is not a run config; nothing was changed")
    return saved


def _check_resume(out: Path, model) -> None:
    """``out/last`` is whole and fits ``model`` (backbone, classes, image size): else one line naming the file and
    the problem (:class:`~dfkit.train.checkpoint.CheckpointError`), before the run folder is touched."""
    from dfkit.train.checkpoint import CheckpointError, verify_checkpoint

    try:
        doc = verify_checkpoint(out / "last", model, state=("rng",))
        int(doc["meta"]["epoch"])
    except CheckpointError as e:
        raise CheckpointError(f"--resume: {e}; nothing was changed") from None
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"--resume: {out / 'last.json'} records no epoch (damaged checkpoint); nothing was "
                              "changed") from None


def _write_config(out: Path, resolved: dict[str, Any]) -> None:
    import yaml

    (out / "config.json").write_text(json.dumps(resolved, indent=1))
    (out / "config.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))


def train_run(settings: TrainSettings, *, echo: Echo = print, resume: bool = False, overwrite: bool = False,
              selection: DataSelection | None = None, train_rows: pd.DataFrame | None = None) -> dict[str, Any]:
    """Train one run (see the module docstring). Returns the loop's summary plus ``run_dir``, ``class_names``,
    ``counts`` and ``seconds``.

    ``selection`` / ``train_rows``: pass a prepared selection (and a subset of its training rows), as the
    experiments do; otherwise the data is selected from ``settings``. ``resume`` continues ``settings.out`` from
    its ``last`` checkpoint (with the run's saved split and classes); without it an existing run is refused unless
    ``overwrite``. Under ``torchrun`` this process joins the process group (and leaves it on return)."""
    from dfkit.train.distributed import init_from_env, shutdown

    s = settings
    s.validate()  # checked at construction; again here, as callers may have changed attributes since
    ctx, dev = init_from_env(s.device)
    try:
        return _train_run(s, ctx, dev, echo if ctx.is_main else (lambda _msg: None), resume, overwrite, selection,
                          train_rows)
    finally:
        shutdown(ctx)


def _train_run(s: TrainSettings, ctx, dev: str, echo: Echo, resume: bool, overwrite: bool,
               selection: DataSelection | None, train_rows: pd.DataFrame | None) -> dict[str, Any]:
    import torch

    from dfkit.config import resolve_corpus
    from dfkit.train.backbones import backbone_spec
    from dfkit.train.checkpoint import checkpoint_paths
    from dfkit.train.loop import train

    t0 = time.perf_counter()
    out = Path(ctx.broadcast_object(s.out or default_out(s))).expanduser()  # one timestamped name for all ranks
    s.out = str(out)
    has_run = checkpoint_paths(out / "last")[1].exists()
    saved: dict[str, Any] = {}
    if resume:
        if not has_run:
            raise DfkitError(f"--resume: {out} holds no run to continue (no last.json)")
        saved = _saved_config(out)
    elif has_run and not overwrite:
        raise DfkitError(f"{out} already holds a run: pass --resume to continue it, or choose another --out")
    corpus_root = Path(s.corpus).expanduser() if s.corpus else resolve_corpus(None)
    s.corpus = str(corpus_root.resolve()) if corpus_root.exists() else str(corpus_root)
    spec = backbone_spec(s.backbone)
    img_size = int(s.img_size or spec.default_img_size)
    s.img_size = img_size
    workers = default_workers(ctx.cores()) if s.workers is None else max(0, int(s.workers))
    threads = default_threads(workers, ctx.cores()) if s.threads is None else max(1, int(s.threads))
    s.workers, s.threads = workers, threads

    if selection is None:
        assignment = None
        if resume and (out / "splits.parquet").exists() and s.split == saved.get("split", s.split):
            assignment = pd.read_parquet(out / "splits.parquet") if s.split not in ("official",) else None
        selection = select_data(corpus_root, task=s.task, datasets=s.datasets, methods=s.methods,
                                compression=s.compression, split=s.split, min_quality=s.min_quality,
                                holdout_methods=s.holdout_methods,
                                max_quality=s.max_quality, drop_real=s.drop_real,
                                drop_suspect=s.drop_suspect, seed=s.split_seed,
                                assignment=assignment, class_names=saved.get("class_names") if resume else None)
    names = selection.class_names
    if resume and saved.get("class_names") and saved["class_names"] != names:
        raise DfkitError(f"--resume: the selection's classes {names} differ from the run's {saved['class_names']}")
    rows = selection.train if train_rows is None else train_rows
    ctx.barrier()  # every process has looked at the run folder before rank 0 changes it
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
    if has_run and not resume and ctx.is_main:  # --overwrite: no stale checkpoint of the old run may survive
        for name in ("last.safetensors", "last.json", "best.safetensors", "best.json", "history.json"):
            (out / name).unlink(missing_ok=True)

    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model = _build_model(s, len(names), img_size)
        if resume:  # refused before anything in the run folder is written
            _check_resume(out, model)
        if model.weights_source == "scratch":
            echo(f"{s.backbone}: training from scratch (no pretrained weights: pass --pretrained with internet "
                 "access, or --weights PATH)")
        if dev == "auto":
            dev = "cuda" if torch.cuda.is_available() else "cpu"
        from dfkit.train.loop import resolve_amp, resolve_channels_last

        channels_last = resolve_channels_last(s.channels_last, torch.device(dev))
        train_loader, val_loader = make_loaders(selection, img_size=img_size, batch_size=s.batch_size,
                                                workers=workers, mean=model.mean, std=model.std,
                                                augment=s.augment, balanced=s.balanced, seed=s.seed, device=dev,
                                                train_rows=rows, samples_per_epoch=s.samples_per_epoch,
                                                crop=s.crop, num_replicas=ctx.world, rank=ctx.rank,
                                                channels_last=channels_last)
        # --amp auto on the CPU measures bf16 against float32 on this model and batch shape (rank 0 decides)
        amp_used = resolve_amp(s.amp, torch.device(dev), model, (min(int(s.batch_size), 16), 3, img_size, img_size),
                               channels_last, note=echo)
        amp_used = ctx.broadcast_object(amp_used) if ctx.enabled else amp_used
        counts = selection.counts()
        if train_rows is not None:
            counts["train"] = {"frames": int(len(rows)), "videos": int(rows["video_key"].nunique()),
                               "per_class": {str(c): {"frames": int(len(g)), "videos": int(g["video_key"].nunique())}
                                             for c, g in rows.groupby("class_name")}}
        resolved = {**s.to_dict(), "class_names": names, "weights_source": model.weights_source,
                    "device_used": dev, "amp_used": amp_used, "channels_last_used": channels_last,
                    "counts": counts, "notes": selection.notes, "dfkit_command": "train",
                    "world_size": ctx.world, "global_batch_size": int(s.batch_size) * ctx.world,
                    CORPUS_INGESTS_KEY: _corpus_ingests(s.corpus)}
        if ctx.is_main:
            _write_config(out, resolved)
            (out / "data.json").write_text(json.dumps({"counts": counts, "notes": selection.notes,
                                                       "class_names": names, "drop_suspect": selection.suspect,
                                                       "holdout_methods": selection.holdout_methods},
                                                      indent=1))
            assign = selection.assignment
            if assign is None:
                vids = pd.concat([selection.train, selection.val, selection.test])
                assign = vids[["dataset", "video_id", "split"]].drop_duplicates(["dataset", "video_id"])
            assign.to_parquet(out / "splits.parquet", index=False)
        tr = counts["train"]
        echo(f"data: {s.task}, classes {', '.join(names)}; train {tr['frames']} crops / {tr['videos']} videos, "
             f"val {counts['val']['frames']} / {counts['val']['videos']}, split {s.split}"
             + (f", min quality {s.min_quality}" if s.min_quality is not None else "")
             + (", suspect crops dropped" if selection.suspect.get("enabled") else ""))
        if s.amp != "off" or not channels_last:  # the defaults (float32, channels-last) go unsaid
            echo(f"speed: {dev}, mixed precision {amp_used}, channels-last {'on' if channels_last else 'off'}")
        if ctx.enabled:
            echo(f"data-parallel: {ctx.world} processes on {dev.split(':')[0]}, batch {s.batch_size} per process "
                 f"({s.batch_size * ctx.world} per step)")
        for n in selection.notes:
            echo(f"  note: {n}")
        if val_loader is None:
            echo("  note: no validation crops: the last epoch is kept as best")
        # the loop takes the same settings, on the device resolved for this process, amp and memory format resolved
        cfg = replace(s, device=dev, amp=amp_used, channels_last=channels_last)
        if resume:
            from dfkit.train.checkpoint import read_checkpoint_meta

            done = int(read_checkpoint_meta(out / "last")["meta"]["epoch"])
            was = (int(saved.get("world_size") or 1), int(saved.get("batch_size") or s.batch_size))
            if was != (ctx.world, int(s.batch_size)):
                echo(f"  note: the run was trained with {was[0]} process(es) x batch {was[1]}, now {ctx.world} x "
                     f"{s.batch_size}: steps per epoch, and so the learning-rate schedule, change from here on")
            total = s.epochs + (s.probe_epochs if s.contrastive and s.contrastive_mode == "probe" else 0)
            echo(f"resuming {out} after epoch {done} (of {total})")
        meta = {"settings": s.to_dict(), "corpus": s.corpus, "task": s.task, "split": s.split,
                "datasets": s.datasets}
        summary = train(model, train_loader, val_loader, cfg, out, class_names=names, resume=resume, meta=meta,
                        dist=ctx)
        if ctx.is_main:  # the open-set side of the best model: prototypes + validation thresholds (openset.py)
            from dfkit.train.openset import fit_run_open_set

            rec = fit_run_open_set(out, selection, device=dev, batch_size=2 * int(s.batch_size), workers=workers,
                                   crop=s.crop, seed=int(s.seed), holdout_methods=selection.holdout_methods,
                                   train_rows=rows)
            summary["open_set"] = rec
            for n in rec["notes"]:
                echo(f"  note: {n}")
        ctx.barrier()
    finally:
        torch.set_num_threads(old_threads)
    summary.update(run_dir=str(out), class_names=names, counts=counts, seconds=time.perf_counter() - t0)
    best = summary.get("best_metric")
    echo(f"trained {summary['epochs_done']} epochs in {summary['seconds']:.0f} s; best epoch {summary['best_epoch']}"
         + (f" (val {summary['select']} {best:.3f})" if best is not None else "") + f"; run: {out}")
    return summary
