"""``dfkit train``, ``dfkit eval`` and ``dfkit experiment {quality-sweep,cross-dataset}``.

Mounted on the main app by :func:`register` (one line in :mod:`dfkit.cli`). Settings resolve as: built-in defaults
< ``--config FILE.yaml`` < the command line (options left out do not override); the run folder keeps the resolved
settings as ``config.yaml``/``config.json``. User errors are :class:`~dfkit.errors.DfkitError` (one line, exit 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dfkit import services
from dfkit.cli_options import (CorpusOpt, corpus_opt, datasets_opt, default_text, drop_suspect_opt, methods_opt,
                               min_quality_opt, out_opt, quiet_opt, weights_opt, workers_opt)
from dfkit.cli_options import hidden as _opt
from dfkit.cli_options import train_default as _dflt
from dfkit.cli_options import train_on as _on
from dfkit.config import default_of


def _quiet_logs() -> None:
    import logging

    logging.getLogger("dfkit.train").setLevel(logging.ERROR)


def _d(service, name: str):
    """The default of a service function's parameter, as its option shows it (spelled once, in the signature)."""
    return default_text(default_of(service, name))


def train(
    corpus: Optional[Path] = CorpusOpt,
    config: Optional[Path] = _opt(None, "--config", help="YAML file with the same settings (keys as the options, "
                                  "e.g. `backbone: efficientnet_b0`); the command line overrides it."),
    task: Optional[str] = _opt(None, "--task", help="binary (real vs fake) or attribution (real + each method) "
                               f"(default: {_dflt('task')})."),
    backbone: Optional[str] = _opt(None, "--backbone", help="Backbone name: tiny, efficientnet_b0, efficientnet_b4, "
                                   "legacy_xception, convnext_tiny, convnext_small, swin_small, "
                                   f"vit_small_patch16_224 (default: {_dflt('backbone')})."),
    datasets: Optional[str] = datasets_opt("Comma-separated datasets to use (default: all)."),
    methods: Optional[str] = methods_opt("Only these fake methods (own or canonical names) in training; reals "
                                         "stay. Others become 'unseen' in eval."),
    holdout_methods: Optional[str] = _opt(None, "--holdout-methods", help="Leave-methods-out: these fake methods "
                                          "(own or canonical names, comma-separated) are kept out of training and "
                                          "validation and stay in test, where eval scores them as unseen "
                                          "(open-set AUROC)."),
    min_quality: Optional[float] = min_quality_opt("train"),
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
    out: Optional[Path] = out_opt(None, help="Run folder (default: runs/<task>_<backbone>_<datasets>_<time>)."),
    contrastive: Optional[str] = _opt(None, "--contrastive", help="supcon: add a supervised contrastive loss on "
                                      "the embedding."),
    contrastive_mode: Optional[str] = _opt(None, "--contrastive-mode", help="joint (CE + SupCon) or probe "
                                           f"(SupCon, then a linear probe) (default: {_dflt('contrastive_mode')})."),
    probe_epochs: Optional[int] = _opt(None, "--probe-epochs", help="Linear-probe epochs in probe mode "
                                       f"(default: {_dflt('probe_epochs')})."),
    pretrained: Optional[bool] = _opt(None, "--pretrained/--scratch", help="Use timm's pretrained weights (needs "
                                      f"the internet) (default: "
                                      f"{_on('pretrained', 'pretrained', 'from scratch, said so')})."),
    weights: Optional[Path] = weights_opt("Local weights (.safetensors/.pth state dict, or a dfkit checkpoint) "
                                          "to start from."),
    augment: Optional[bool] = _opt(None, "--augment/--no-augment", help="Flip, colour jitter, blur, JPEG "
                                   f"(default: {_on('augment')})."),
    drop_real: Optional[bool] = _opt(None, "--drop-real/--keep-real", help="Attribution without the real "
                                     f"class (default: {_on('drop_real', 'drop', 'keep')})."),
    drop_suspect: Optional[bool] = drop_suspect_opt("train"),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint "
                                "(its saved settings apply; e.g. raise --epochs to extend it)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run in --out."),
    device: Optional[str] = _opt(None, "--device", help=f"cpu, cuda, cuda:N or auto (default: {_dflt('device')})."),
    amp: Optional[str] = _opt(None, "--amp", help="Mixed precision: off, bf16, fp16 (CUDA only) or auto (bf16 or "
                              "fp16 on CUDA; on the CPU bf16 only if a short measurement finds it faster) "
                              f"(default: {_dflt('amp')})."),
    channels_last: Optional[bool] = _opt(None, "--channels-last/--no-channels-last", help="Channels-last memory "
                                         "format for the model and batches (default: "
                                         f"{_on('channels_last')}; measured faster or equal on CPU and GPU)."),
    workers: Optional[int] = workers_opt("DataLoader worker processes decoding crops (default: cores - 1, at "
                                         "most 8)."),
    threads: Optional[int] = _opt(None, "--threads", help="Torch CPU threads (default: the cores the workers "
                                  "leave free, at least 1)."),
    quiet: bool = quiet_opt("No progress bars."),
) -> None:
    """Train a binary or attribution model on the corpus (selection, split, quality filter), with checkpoints
    (safetensors + JSON), best-by-validation selection and --resume.

    Example: dfkit train --task attribution --backbone efficientnet_b0 --datasets ffpp --min-quality 0.7
    --split identity --epochs 20 --img-size 224 --out runs/attr-b0
    """
    _quiet_logs()
    given = dict(corpus=corpus, task=task, backbone=backbone, datasets=datasets, methods=methods,
                 min_quality=min_quality, split=split, split_seed=split_seed, epochs=epochs, img_size=img_size,
                 crop=crop, batch_size=batch_size, lr=lr, seed=seed, out=out, contrastive=contrastive,
                 contrastive_mode=contrastive_mode, probe_epochs=probe_epochs, pretrained=pretrained, weights=weights,
                 augment=augment, drop_real=drop_real, drop_suspect=drop_suspect, device=device, workers=workers,
                 threads=threads, progress=False if quiet else None, holdout_methods=holdout_methods, amp=amp,
                 channels_last=channels_last)
    services.train(given, config=config, resume=resume, overwrite=overwrite, echo=typer.echo)


def eval_cmd(
    run: Path = typer.Argument(..., help="Run folder made by `dfkit train`."),
    corpus: Optional[Path] = corpus_opt("Corpus directory (default: the run's corpus, else $DFKIT_CORPUS / the "
                                        "config file / ./dfkit-corpus)."),
    datasets: Optional[str] = datasets_opt("Comma-separated datasets to evaluate on (default: the run's)."),
    split: str = typer.Option(_d(services.evaluate, "split"), "--split", help="train, val, test or all (in the "
                              "run's split scheme)."),
    out: Optional[Path] = out_opt(None, help="Report folder (default: RUN/eval_<datasets>_<split>)."),
    min_quality: Optional[float] = min_quality_opt("eval"),
    n_boot: int = typer.Option(_d(services.evaluate, "n_boot"), "--n-boot", help="Bootstrap resamples of the "
                               "videos for the 95% CIs."),
    batch_size: int = typer.Option(_d(services.evaluate, "batch_size"), "--batch-size", help="Batch size."),
    device: str = typer.Option(_d(services.evaluate, "device"), "--device", help="cpu, cuda or auto."),
    workers: Optional[int] = workers_opt("DataLoader workers (default: cores - 1)."),
    threads: Optional[int] = _opt(None, "--threads", help="Torch CPU threads."),
    edc: bool = typer.Option(False, "--edc", help="Also the error-versus-discard curves of the crops' quality "
                             "(ISO/IEC 29794-5 style): error after discarding the lowest-quality 0%, 5%, ... "
                             "against random discards, frame and video level (edc.json, edc.png; needs `dfkit "
                             "quality`)."),
    edc_max_discard: float = typer.Option(_d(services.evaluate, "edc_max_discard"), "--edc-max-discard",
                                          help="Largest discarded fraction of the EDC (beyond ~80% too few videos "
                                          "remain to measure an error)."),
    drop_suspect: bool = drop_suspect_opt("eval"),
) -> None:
    """Evaluate a run: frame- and video-level metrics with bootstrap CIs over videos, confusion matrices,
    cross-dataset attribution (unseen methods reported apart), predictions.parquet; --edc: error versus discard."""
    _quiet_logs()
    services.evaluate(run, corpus=corpus, datasets=datasets, split=split, out=out, min_quality=min_quality,
                      n_boot=n_boot, batch_size=batch_size, device=device, workers=workers, threads=threads,
                      edc=edc, edc_max_discard=edc_max_discard, drop_suspect=drop_suspect, echo=typer.echo)


experiment_app = typer.Typer(help="Experiments: quality sweep at equal training size; cross-dataset matrix.",
                             no_args_is_help=True)

_METRIC_HELP = "accuracy, balanced_accuracy, macro_f1, auc."


@experiment_app.command("quality-sweep")
def quality_sweep_cmd(
    corpus: Optional[Path] = CorpusOpt,
    config: Optional[Path] = _opt(None, "--config", help="YAML file with training settings (as `dfkit train`)."),
    thresholds: str = typer.Option(_d(services.quality_sweep, "thresholds"), "--thresholds", help="Comma-separated "
                                   "training filters, each in [0, 1]: one arm per threshold trains on the "
                                   "training-split crops with quality >= it (0 = all crops), as `dfkit train "
                                   "--min-quality`; validation and test crops are never filtered."),
    seeds: str = typer.Option(_d(services.quality_sweep, "seeds"), "--seeds", help="Comma-separated seeds; every "
                              "arm is trained per seed."),
    low_arm: bool = typer.Option(True, "--low-arm/--no-low-arm", help="Add the arm trained only on crops below "
                                 "the lowest non-zero threshold."),
    task: Optional[str] = _opt(None, "--task", help=f"binary or attribution (default: {_dflt('task')})."),
    backbone: Optional[str] = _opt(None, "--backbone", help=f"Backbone (default: {_dflt('backbone')})."),
    datasets: Optional[str] = datasets_opt("Comma-separated datasets (default: all)."),
    split: Optional[str] = _opt(None, "--split", help=f"official or identity (default: {_dflt('split')})."),
    epochs: Optional[int] = _opt(None, "--epochs", help="Epochs per arm."),
    img_size: Optional[int] = _opt(None, "--img-size", help="Input side."),
    crop: Optional[str] = _opt(None, "--crop", help="resize or center (as `dfkit train`)."),
    batch_size: Optional[int] = _opt(None, "--batch-size", help="Batch size."),
    lr: Optional[float] = _opt(None, "--lr", help="Learning rate."),
    augment: Optional[bool] = _opt(None, "--augment/--no-augment", help="Augmentations "
                                   f"(default: {_on('augment')})."),
    metric: str = typer.Option(_d(services.quality_sweep, "metric"), "--metric", help=_METRIC_HELP),
    level: str = typer.Option(_d(services.quality_sweep, "level"), "--level", help="video or frame."),
    n_boot: int = typer.Option(_d(services.quality_sweep, "n_boot"), "--n-boot", help="Bootstrap resamples for "
                               "the CIs."),
    out: Path = out_opt(_d(services.quality_sweep, "out"), help="Output folder."),
    device: Optional[str] = _opt(None, "--device", help="cpu, cuda or auto."),
    workers: Optional[int] = workers_opt("DataLoader workers."),
    threads: Optional[int] = _opt(None, "--threads", help="Torch CPU threads."),
    inject: Optional[str] = typer.Option(None, "--inject", help="Known-effect check KIND:LEVEL[:FRACTION], e.g. "
                                         "defocus:3:0.5: degrade that share of the training videos at load time "
                                         "(never in the corpus), score them, report how well quality separates "
                                         "them (AUROC with CI), then sweep. Kinds: defocus, motion, jpeg, noise, "
                                         "scale, under, over, h264."),
    separation_only: bool = typer.Option(False, "--separation-only", help="With --inject: report the AUROC only, "
                                         "train nothing."),
    suspect_arm: bool = typer.Option(False, "--suspect-arm", help="Add the arm 'drop suspect labels': all training "
                                     "crops but the suspect ones (as `dfkit train --drop-suspect`; needs `dfkit "
                                     "quality`), at the same size, compared paired with the unfiltered arm "
                                     "(threshold 0)."),
) -> None:
    """Train and evaluate at several --min-quality thresholds with the training-set size held equal (subsampled
    by video to the smallest arm, per class), over seeds, plus a low-quality-only arm: table + plot with CIs and
    the paired differences of every arm against the unfiltered one. With --inject, first degrade a known share of
    the training videos, so the sweep has an effect to find."""
    _quiet_logs()
    given = dict(corpus=corpus, task=task, backbone=backbone, datasets=datasets, split=split, epochs=epochs,
                 img_size=img_size, crop=crop, batch_size=batch_size, lr=lr, augment=augment, device=device,
                 workers=workers, threads=threads, progress=False)
    services.quality_sweep(given, config=config, thresholds=thresholds, seeds=seeds, low_arm=low_arm,
                           metric=metric, level=level, n_boot=n_boot, out=out, inject=inject,
                           separation_only=separation_only, suspect_arm=suspect_arm, echo=typer.echo)


@experiment_app.command("cross-dataset")
def cross_dataset_cmd(
    corpus: Optional[Path] = CorpusOpt,
    config: Optional[Path] = _opt(None, "--config", help="YAML file with training settings (as `dfkit train`)."),
    datasets: Optional[str] = datasets_opt("Comma-separated datasets (default: all in the corpus)."),
    tasks: str = typer.Option(_d(services.cross_dataset, "tasks"), "--tasks", help="Tasks side by side."),
    backbone: Optional[str] = _opt(None, "--backbone", help=f"Backbone (default: {_dflt('backbone')})."),
    split: Optional[str] = _opt(None, "--split", help=f"official or identity (default: {_dflt('split')})."),
    min_quality: Optional[float] = min_quality_opt("cross-dataset"),
    epochs: Optional[int] = _opt(None, "--epochs", help="Epochs per run."),
    img_size: Optional[int] = _opt(None, "--img-size", help="Input side."),
    crop: Optional[str] = _opt(None, "--crop", help="resize or center (as `dfkit train`)."),
    batch_size: Optional[int] = _opt(None, "--batch-size", help="Batch size."),
    lr: Optional[float] = _opt(None, "--lr", help="Learning rate."),
    seed: Optional[int] = _opt(None, "--seed", help="Seed."),
    metric: str = typer.Option(_d(services.cross_dataset, "metric"), "--metric", help=_METRIC_HELP),
    level: str = typer.Option(_d(services.cross_dataset, "level"), "--level", help="video or frame."),
    n_boot: int = typer.Option(_d(services.cross_dataset, "n_boot"), "--n-boot", help="Bootstrap resamples for "
                               "the CIs."),
    out: Path = out_opt(_d(services.cross_dataset, "out"), help="Output folder."),
    device: Optional[str] = _opt(None, "--device", help="cpu, cuda or auto."),
    workers: Optional[int] = workers_opt("DataLoader workers."),
    threads: Optional[int] = _opt(None, "--threads", help="Torch CPU threads."),
) -> None:
    """Train on each dataset and evaluate on each, binary and attribution side by side (JSON + heatmap PNG)."""
    _quiet_logs()
    given = dict(corpus=corpus, backbone=backbone, split=split, min_quality=min_quality, epochs=epochs,
                 img_size=img_size, crop=crop, batch_size=batch_size, lr=lr, seed=seed, device=device,
                 workers=workers, threads=threads, progress=False)
    services.cross_dataset(given, config=config, datasets=datasets, tasks=tasks, metric=metric, level=level,
                           n_boot=n_boot, out=out, echo=typer.echo)


study_app = typer.Typer(help="Studies: a grid of runs from one YAML file (manifests/studies/), resumable, and "
                        "one report with paired differences.", no_args_is_help=True)


@study_app.command("run")
def study_run_cmd(
    study: Path = typer.Argument(..., help="Study file (YAML; see manifests/studies/template.yaml), or the name of "
                                 "a shipped one: smoke, paper, cross-dataset, quality."),
    corpus: Optional[Path] = corpus_opt("Corpus directory (default: the study file's corpus:, else "
                                        "$DFKIT_CORPUS / the config file / ./dfkit-corpus)."),
    out: Optional[Path] = out_opt(None, help="Study folder (default: the study file's out:)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the cells, their crops and the estimated cost "
                                 "(from measured steps/s); train nothing."),
    quiet: bool = quiet_opt("No progress bars."),
) -> None:
    """Train and evaluate every cell of a study's grid (task x backbone x contrastive x min_quality x training
    datasets x seed), each an ordinary run folder named by its settings' digest: a killed study resumes, a finished
    cell is never retrained."""
    _quiet_logs()
    services.study_run(study, corpus=corpus, out=out, dry_run=dry_run, quiet=quiet, echo=typer.echo)


@study_app.command("report")
def study_report_cmd(
    study_dir: Path = typer.Argument(..., help="Study folder made by `dfkit study run`."),
    out: Optional[Path] = out_opt(None, help="Report folder (default: STUDY_DIR/report)."),
) -> None:
    """One table per question (binary vs attribution, backbone size, SupCon, quality arms) with 95% CIs and paired
    differences on the same test videos, cross-dataset heatmaps and a self-contained HTML page."""
    services.study_report(study_dir, out=out, echo=typer.echo)


def register(app: typer.Typer) -> None:
    """Add ``train``, ``eval``, ``experiment`` and ``study`` to the main ``dfkit`` app."""
    app.command("train")(train)
    app.command("eval")(eval_cmd)
    app.add_typer(experiment_app, name="experiment")
    app.add_typer(study_app, name="study")
