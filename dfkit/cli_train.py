"""``dfkit train``, ``dfkit eval`` and ``dfkit experiment {quality-sweep,cross-dataset}``.

Mounted on the main app by :func:`register` (one line in :mod:`dfkit.cli`). Settings resolve as: built-in defaults
< ``--config FILE.yaml`` < the command line (options left out do not override); the run folder keeps the resolved
settings as ``config.yaml``/``config.json``. User errors are :class:`~dfkit.errors.DfkitError` (one line, exit 2).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from dfkit.errors import DfkitError
from dfkit.train.settings import MIN_QUALITY_HELP, TrainSettings

CORPUS_HELP = "Corpus directory (default: $DFKIT_CORPUS, the config file's `corpus:`, else ./dfkit-corpus)."


def _opt(default: Any, *names: str, help: str, **kw) -> Any:  # noqa: A002 - typer's name
    return typer.Option(default, *names, help=help, show_default=False, **kw)


def _dflt(name: str) -> str:
    """``TrainSettings``'s default of ``name`` as the help texts show it: the options themselves default to None
    ("not given": the --config file or the saved run may set it), so the default is spelled once, in the dataclass."""
    from dfkit.config import default_of

    v = default_of(TrainSettings, name)
    return f"{v:g}" if isinstance(v, float) else str(v)


def _on(name: str, on: str = "on", off: str = "off") -> str:
    from dfkit.config import default_of

    return on if default_of(TrainSettings, name) else off


def _base_settings(config: Optional[Path], cli: dict[str, Any], resume_dir: Optional[Path] = None):
    """defaults < saved run config (when resuming) < --config file < command line."""
    import json

    from dfkit.config import resolve_corpus
    from dfkit.train.settings import load_settings_file

    d: dict[str, Any] = {}
    if resume_dir is not None and (resume_dir / "config.json").exists():
        saved = json.loads((resume_dir / "config.json").read_text())
        d.update({k: v for k, v in saved.items() if k in TrainSettings.keys()})
    if config is not None:
        d.update(load_settings_file(config))
    d.update({k: v for k, v in cli.items() if v is not None})
    s = TrainSettings.from_dict(d)
    if not s.corpus:
        s.corpus = str(resolve_corpus(None))
    return s


def _quiet_logs() -> None:
    import logging

    logging.getLogger("dfkit.train").setLevel(logging.ERROR)


def train(
    corpus: Optional[Path] = _opt(None, "--corpus", help=CORPUS_HELP),
    config: Optional[Path] = _opt(None, "--config", help="YAML file with the same settings (keys as the options, "
                                  "e.g. `backbone: efficientnet_b0`); the command line overrides it."),
    task: Optional[str] = _opt(None, "--task", help="binary (real vs fake) or attribution (real + each method) "
                               f"(default: {_dflt('task')})."),
    backbone: Optional[str] = _opt(None, "--backbone", help="Backbone name: tiny, efficientnet_b0, efficientnet_b4, "
                                   "legacy_xception, convnext_tiny, convnext_small, swin_small, "
                                   f"vit_small_patch16_224 (default: {_dflt('backbone')})."),
    datasets: Optional[str] = _opt(None, "--datasets", help="Comma-separated datasets to use (default: all)."),
    methods: Optional[str] = _opt(None, "--methods", help="Only these fake methods (own or canonical names) in "
                                  "training; reals stay. Others become 'unseen' in eval."),
    min_quality: Optional[float] = _opt(None, "--min-quality", help=MIN_QUALITY_HELP),
    split: Optional[str] = _opt(None, "--split", help="official (the dataset's split) or identity (no identity "
                                f"or source video in two splits) (default: {_dflt('split')})."),
    split_seed: Optional[int] = _opt(None, "--split-seed", help="Seed of a computed identity split (default: "
                                     f"{_dflt('split_seed')}; kept apart from --seed so every training seed "
                                     "sees the same split)."),
    epochs: Optional[int] = _opt(None, "--epochs", help=f"Epochs (default: {_dflt('epochs')})."),
    img_size: Optional[int] = _opt(None, "--img-size", help="Input side in pixels (default: the backbone's)."),
    crop: Optional[str] = _opt(None, "--crop", help="resize (the whole crop to --img-size) or center (the central "
                               f"--img-size pixels, at the stored resolution) (default: {_dflt('crop')})."),
    batch_size: Optional[int] = _opt(None, "--batch-size", help="Batch size, per process "
                                     f"(default: {_dflt('batch_size')})."),
    lr: Optional[float] = _opt(None, "--lr", help="Peak learning rate (AdamW, cosine schedule) "
                             f"(default: {_dflt('lr')})."),
    seed: Optional[int] = _opt(None, "--seed", help="Random seed (model init, sampling, augmentation) "
                               f"(default: {_dflt('seed')})."),
    out: Optional[Path] = _opt(None, "--out", help="Run folder (default: runs/<task>_<backbone>_<datasets>_<time>)."),
    contrastive: Optional[str] = _opt(None, "--contrastive", help="supcon: add a supervised contrastive loss on "
                                      "the embedding."),
    contrastive_mode: Optional[str] = _opt(None, "--contrastive-mode", help="joint (CE + SupCon) or probe "
                                           f"(SupCon, then a linear probe) (default: {_dflt('contrastive_mode')})."),
    probe_epochs: Optional[int] = _opt(None, "--probe-epochs", help="Linear-probe epochs in probe mode "
                                       f"(default: {_dflt('probe_epochs')})."),
    pretrained: Optional[bool] = _opt(None, "--pretrained/--scratch", help="Use timm's pretrained weights (needs "
                                      f"the internet) (default: "
                                      f"{_on('pretrained', 'pretrained', 'from scratch, said so')})."),
    weights: Optional[Path] = _opt(None, "--weights", help="Local weights (.safetensors/.pth state dict, or a dfkit "
                                   "checkpoint) to start from."),
    augment: Optional[bool] = _opt(None, "--augment/--no-augment", help="Flip, colour jitter, blur, JPEG "
                                   f"(default: {_on('augment')})."),
    drop_real: Optional[bool] = _opt(None, "--drop-real/--keep-real", help="Attribution without the real "
                                     f"class (default: {_on('drop_real', 'drop', 'keep')})."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint "
                                "(its saved settings apply; e.g. raise --epochs to extend it)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run in --out."),
    device: Optional[str] = _opt(None, "--device", help=f"cpu, cuda, cuda:N or auto (default: {_dflt('device')})."),
    workers: Optional[int] = _opt(None, "--workers", help="DataLoader worker processes decoding crops "
                                  "(default: cores - 1, at most 8)."),
    threads: Optional[int] = _opt(None, "--threads", help="Torch CPU threads (default: the cores the workers "
                                  "leave free, at least 1)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Train a binary or attribution model on the corpus (selection, split, quality filter), with checkpoints
    (safetensors + JSON), best-by-validation selection and --resume.

    Example: dfkit train --task attribution --backbone efficientnet_b0 --datasets ffpp --min-quality 0.7
    --split identity --epochs 20 --img-size 224 --out runs/attr-b0
    """
    from dfkit.train.runner import train_run

    _quiet_logs()
    if resume and out is None:
        raise DfkitError("--resume needs --out RUN (the run folder to continue)")
    cli = dict(corpus=str(corpus) if corpus else None, task=task, backbone=backbone, datasets=datasets,
               methods=methods, min_quality=min_quality, split=split, split_seed=split_seed, epochs=epochs,
               img_size=img_size, crop=crop,
               batch_size=batch_size, lr=lr, seed=seed, out=str(out) if out else None, contrastive=contrastive,
               contrastive_mode=contrastive_mode, probe_epochs=probe_epochs, pretrained=pretrained,
               weights=str(weights) if weights else None, augment=augment, drop_real=drop_real, device=device,
               workers=workers, threads=threads, progress=False if quiet else None)
    s = _base_settings(config, cli, resume_dir=out if resume else None)
    train_run(s, echo=typer.echo, resume=resume, overwrite=overwrite)


def eval_cmd(
    run: Path = typer.Argument(..., help="Run folder made by `dfkit train`."),
    corpus: Optional[Path] = _opt(None, "--corpus", help="Corpus directory (default: the run's corpus, else "
                                  "$DFKIT_CORPUS / the config file / ./dfkit-corpus)."),
    datasets: Optional[str] = _opt(None, "--datasets", help="Comma-separated datasets to evaluate on "
                                   "(default: the run's)."),
    split: str = typer.Option("test", "--split", help="train, val, test or all (in the run's split scheme)."),
    out: Optional[Path] = _opt(None, "--out", help="Report folder (default: RUN/eval_<datasets>_<split>)."),
    min_quality: Optional[float] = _opt(None, "--min-quality", help="Evaluation filter, in [0, 1]: score only the "
                                        "evaluated crops (those of --split) with quality >= this (needs `dfkit "
                                        "quality`); the run's own training filter is not applied here."),
    n_boot: int = typer.Option(1000, "--n-boot", help="Bootstrap resamples of the videos for the 95% CIs."),
    batch_size: int = typer.Option(128, "--batch-size", help="Batch size."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda or auto."),
    workers: Optional[int] = _opt(None, "--workers", help="DataLoader workers (default: cores - 1)."),
    threads: Optional[int] = _opt(None, "--threads", help="Torch CPU threads."),
    edc: bool = typer.Option(False, "--edc", help="Also the error-versus-discard curves of the crops' quality "
                             "(ISO/IEC 29794-5 style): error after discarding the lowest-quality 0%, 5%, ... "
                             "against random discards, frame and video level (edc.json, edc.png; needs `dfkit "
                             "quality`)."),
    edc_max_discard: float = typer.Option(0.8, "--edc-max-discard", help="Largest discarded fraction of the EDC "
                                          "(beyond ~80% too few videos remain to measure an error)."),
) -> None:
    """Evaluate a run: frame- and video-level metrics with bootstrap CIs over videos, confusion matrices,
    cross-dataset attribution (unseen methods reported apart), predictions.parquet; --edc: error versus discard."""
    from dfkit.train.evaluation import eval_run

    _quiet_logs()
    if n_boot < 0:
        raise DfkitError("--n-boot must be >= 0")
    if not 0.05 <= edc_max_discard < 1:
        raise DfkitError("--edc-max-discard must lie in [0.05, 1): the curve steps by 5% and something must remain")
    eval_run(run, corpus=corpus, datasets=datasets, split=split, out=out, min_quality=min_quality, n_boot=n_boot,
             batch_size=batch_size, workers=workers, device=device, threads=threads, echo=typer.echo, edc=edc,
             edc_max_discard=edc_max_discard)


experiment_app = typer.Typer(help="Experiments: quality sweep at equal training size; cross-dataset matrix.",
                             no_args_is_help=True)


@experiment_app.command("quality-sweep")
def quality_sweep_cmd(
    corpus: Optional[Path] = _opt(None, "--corpus", help=CORPUS_HELP),
    config: Optional[Path] = _opt(None, "--config", help="YAML file with training settings (as `dfkit train`)."),
    thresholds: str = typer.Option("0,0.5,0.6,0.7", "--thresholds", help="Comma-separated training filters, each "
                                   "in [0, 1]: one arm per threshold trains on the training-split crops with "
                                   "quality >= it (0 = all crops), as `dfkit train --min-quality`; validation and "
                                   "test crops are never filtered."),
    seeds: str = typer.Option("0,1,2", "--seeds", help="Comma-separated seeds; every arm is trained per seed."),
    low_arm: bool = typer.Option(True, "--low-arm/--no-low-arm", help="Add the arm trained only on crops below "
                                 "the lowest non-zero threshold."),
    task: Optional[str] = _opt(None, "--task", help=f"binary or attribution (default: {_dflt('task')})."),
    backbone: Optional[str] = _opt(None, "--backbone", help=f"Backbone (default: {_dflt('backbone')})."),
    datasets: Optional[str] = _opt(None, "--datasets", help="Comma-separated datasets (default: all)."),
    split: Optional[str] = _opt(None, "--split", help=f"official or identity (default: {_dflt('split')})."),
    epochs: Optional[int] = _opt(None, "--epochs", help="Epochs per arm."),
    img_size: Optional[int] = _opt(None, "--img-size", help="Input side."),
    crop: Optional[str] = _opt(None, "--crop", help="resize or center (as `dfkit train`)."),
    batch_size: Optional[int] = _opt(None, "--batch-size", help="Batch size."),
    lr: Optional[float] = _opt(None, "--lr", help="Learning rate."),
    augment: Optional[bool] = _opt(None, "--augment/--no-augment", help="Augmentations "
                                   f"(default: {_on('augment')})."),
    metric: str = typer.Option("balanced_accuracy", "--metric", help="accuracy, balanced_accuracy, macro_f1, auc."),
    level: str = typer.Option("video", "--level", help="video or frame."),
    n_boot: int = typer.Option(1000, "--n-boot", help="Bootstrap resamples for the CIs."),
    out: Path = typer.Option(Path("runs/quality-sweep"), "--out", help="Output folder."),
    device: Optional[str] = _opt(None, "--device", help="cpu, cuda or auto."),
    workers: Optional[int] = _opt(None, "--workers", help="DataLoader workers."),
    threads: Optional[int] = _opt(None, "--threads", help="Torch CPU threads."),
    inject: Optional[str] = typer.Option(None, "--inject", help="Known-effect check KIND:LEVEL[:FRACTION], e.g. "
                                         "defocus:3:0.5: degrade that share of the training videos at load time "
                                         "(never in the corpus), score them, report how well quality separates "
                                         "them (AUROC with CI), then sweep. Kinds: defocus, motion, jpeg, noise, "
                                         "scale, under, over, h264."),
    separation_only: bool = typer.Option(False, "--separation-only", help="With --inject: report the AUROC only, "
                                         "train nothing."),
) -> None:
    """Train and evaluate at several --min-quality thresholds with the training-set size held equal (subsampled
    by video to the smallest arm, per class), over seeds, plus a low-quality-only arm: table + plot with CIs and
    the paired differences of every arm against the unfiltered one. With --inject, first degrade a known share of
    the training videos, so the sweep has an effect to find."""
    from dfkit.train.experiments import parse_floats, parse_ints, quality_sweep, sweep_table_text

    _quiet_logs()
    if separation_only and not inject:
        raise DfkitError("--separation-only needs --inject KIND:LEVEL[:FRACTION]")
    if inject:
        from dfkit.quality.degrade import parse_injection
        from dfkit.train.known_effect import known_effect

        inj = parse_injection(inject)  # refused before anything runs or is written
        cli = dict(corpus=str(corpus) if corpus else None, task=task, backbone=backbone, datasets=datasets,
                   split=split, epochs=epochs, img_size=img_size, crop=crop, batch_size=batch_size, lr=lr,
                   augment=augment, device=device, workers=workers, threads=threads, progress=False)
        rep = known_effect(_base_settings(config, cli), inj, thresholds=parse_floats(thresholds),
                           seeds=parse_ints(seeds), out=out, n_boot=n_boot, sweep=not separation_only,
                           metric=metric, level=level, low_arm=low_arm, echo=typer.echo)
        if not separation_only:
            typer.echo(sweep_table_text(json.loads((out / "sweep" / "sweep.json").read_text())))
        typer.echo(f"known effect: {out / 'known_effect.json'}" + ("" if separation_only else
                                                                    f" (sweep: {out / 'sweep' / 'sweep.md'})"))
        return
    cli = dict(corpus=str(corpus) if corpus else None, task=task, backbone=backbone, datasets=datasets, split=split,
               epochs=epochs, img_size=img_size, crop=crop, batch_size=batch_size, lr=lr, augment=augment,
               device=device,
               workers=workers, threads=threads, progress=False)
    s = _base_settings(config, cli)
    rep = quality_sweep(s, thresholds=parse_floats(thresholds), seeds=parse_ints(seeds), low_arm=low_arm, out=out,
                        metric=metric, level=level, n_boot=n_boot, echo=typer.echo)
    typer.echo(sweep_table_text(rep))
    typer.echo(f"sweep: {out / 'sweep.md'} (+ sweep.json, sweep.png" + (", edc.json, edc.png" if rep.get("edc") else "")
               + ")")


@experiment_app.command("cross-dataset")
def cross_dataset_cmd(
    corpus: Optional[Path] = _opt(None, "--corpus", help=CORPUS_HELP),
    config: Optional[Path] = _opt(None, "--config", help="YAML file with training settings (as `dfkit train`)."),
    datasets: Optional[str] = _opt(None, "--datasets", help="Comma-separated datasets (default: all in the "
                                   "corpus)."),
    tasks: str = typer.Option("binary,attribution", "--tasks", help="Tasks side by side."),
    backbone: Optional[str] = _opt(None, "--backbone", help=f"Backbone (default: {_dflt('backbone')})."),
    split: Optional[str] = _opt(None, "--split", help=f"official or identity (default: {_dflt('split')})."),
    min_quality: Optional[float] = _opt(None, "--min-quality", help="Training filter of every run, in [0, 1]: "
                                        "train only on training-split crops with quality >= this (needs `dfkit "
                                        "quality`); each run is evaluated on every dataset's unfiltered test "
                                        "split."),
    epochs: Optional[int] = _opt(None, "--epochs", help="Epochs per run."),
    img_size: Optional[int] = _opt(None, "--img-size", help="Input side."),
    crop: Optional[str] = _opt(None, "--crop", help="resize or center (as `dfkit train`)."),
    batch_size: Optional[int] = _opt(None, "--batch-size", help="Batch size."),
    lr: Optional[float] = _opt(None, "--lr", help="Learning rate."),
    seed: Optional[int] = _opt(None, "--seed", help="Seed."),
    metric: str = typer.Option("balanced_accuracy", "--metric", help="accuracy, balanced_accuracy, macro_f1, auc."),
    level: str = typer.Option("video", "--level", help="video or frame."),
    n_boot: int = typer.Option(1000, "--n-boot", help="Bootstrap resamples for the CIs."),
    out: Path = typer.Option(Path("runs/cross-dataset"), "--out", help="Output folder."),
    device: Optional[str] = _opt(None, "--device", help="cpu, cuda or auto."),
    workers: Optional[int] = _opt(None, "--workers", help="DataLoader workers."),
    threads: Optional[int] = _opt(None, "--threads", help="Torch CPU threads."),
) -> None:
    """Train on each dataset and evaluate on each, binary and attribution side by side (JSON + heatmap PNG)."""
    from dfkit.train.experiments import cross_dataset

    _quiet_logs()
    if level not in ("frame", "video"):
        raise DfkitError("--level must be frame or video")
    cli = dict(corpus=str(corpus) if corpus else None, backbone=backbone, split=split, min_quality=min_quality,
               epochs=epochs, img_size=img_size, crop=crop, batch_size=batch_size, lr=lr, seed=seed, device=device,
               workers=workers, threads=threads, progress=False)
    s = _base_settings(config, cli)
    rep = cross_dataset(s, datasets=datasets, tasks=tasks.split(","), out=out, metric=metric, level=level,
                        n_boot=n_boot, echo=typer.echo)
    typer.echo(f"cross-dataset: {Path(rep['out_dir']) / 'cross_dataset.json'} (+ cross_dataset.md, "
               "cross_dataset.png)")


def register(app: typer.Typer) -> None:
    """Add ``train``, ``eval`` and ``experiment`` to the main ``dfkit`` app."""
    app.command("train")(train)
    app.command("eval")(eval_cmd)
    app.add_typer(experiment_app, name="experiment")
