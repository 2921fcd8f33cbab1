"""The ``dfkit`` command line. Every command that reads or writes a corpus takes ``--corpus PATH``.

Thin: the options several commands share are defined in :mod:`dfkit.cli_options`, and each command only parses its
options, calls its function in :mod:`dfkit.services` (which does the work and prints through ``echo``) and sets the
exit code. ``train``, ``eval`` and ``experiment`` are in :mod:`dfkit.cli_train`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer

from dfkit import services
from dfkit.cli_options import (CorpusOpt, corpus_path, datasets_opt, methods_opt, min_quality_opt, out_opt,
                               quiet_opt, splits_opt, weights_opt, workers_opt)
from dfkit.cli_options import corpus_opt, drop_suspect_opt, hidden, train_default
from dfkit.config import default_of
from dfkit.errors import PATH_ERRNOS, DfkitError, one_line, os_error_line

app = typer.Typer(
    help="dfkit: DeepFake datasets -> one quality-measured face-crop corpus, and attribution models on it.\n\n"
         "Typical path: dfkit ingest ffpp ROOT -> dfkit info -> dfkit quality -> dfkit train -> dfkit eval.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)



def _print_version(value: bool) -> None:
    if value:
        typer.echo(services.version_line())
        raise typer.Exit(0)


@app.callback()
def _one_process_unless_train(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", help="Print dfkit's version (and Python's) and exit.",
                                 callback=_print_version, is_eager=True),
) -> None:
    # under torchrun only `dfkit train` shares its work out; any other command would run once per process
    if ctx.invoked_subcommand != "train":
        from dfkit.train.launch import refuse_distributed

        refuse_distributed(f"dfkit {ctx.invoked_subcommand}")


def _ingest_default(name: str):
    """An ingest option's default: :class:`~dfkit.ingest.engine.IngestParams`'s (spelled once, there)."""
    from dfkit.ingest.engine import IngestParams

    return default_of(IngestParams, name)


def _err(msg: str) -> None:
    typer.echo(msg, err=True)


@app.command()
def ingest(
    dataset: str = typer.Argument(..., help="Adapter name (see `dfkit datasets`), e.g. ffpp, celebdf, dfdc."),
    root: Optional[Path] = typer.Argument(None, help="Dataset root as downloaded (default: $DFKIT_ROOT_<NAME> "
                                          "or roots.<name> in the config file).", show_default=False),
    corpus: Optional[Path] = CorpusOpt,
    frames: int = typer.Option(_ingest_default("frames"), help="Frames sampled evenly per video."),
    size: int = typer.Option(_ingest_default("size"), help="Side of the square face crop, pixels."),
    margin: float = typer.Option(_ingest_default("margin"), help="Crop side as a multiple of the face box's larger "
                                 "side."),
    workers: int = workers_opt("Worker processes (parallel over videos).", all_cores=True),
    compression: Optional[str] = typer.Option(None, help="Compression level folder where the dataset has "
                                              "several (FF++: raw/c0, c23 (default), c40)."),
    limit: Optional[int] = typer.Option(None, help="Process at most N (not yet ingested) videos."),
    encoding: str = typer.Option(_ingest_default("encoding"), help="Crop encoding: png or webp (lossless); "
                                 "jpeg[:Q] or webp-lossy[:Q] (lossy: adds artifacts)."),
    min_confidence: float = typer.Option(_ingest_default("min_confidence"), help="Face detector confidence "
                                         "threshold."),
    decoder: str = typer.Option(_ingest_default("decoder"), help="Video decoder: auto (the fastest usable: PyAV), "
                                "pyav, opencv or torchcodec (all frame-exact; see `dfkit info --json`'s decoders)."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Try videos that failed, were missing or "
                                      "had no face in an earlier run again."),
    opt: list[str] = typer.Option([], "--opt", help="Adapter option KEY=VALUE (see `dfkit datasets`); "
                                  "repeatable."),
    scheduler: Optional[str] = typer.Option(None, help="Run on a Dask cluster: a scheduler address "
                                            "(tcp://host:8786; ROOT must be readable on every worker) or "
                                            "'local' (a LocalCluster of --workers processes on 127.0.0.1)."),
    quiet: bool = quiet_opt(),
) -> None:
    """Read a dataset as downloaded, sample frames, find the face, write crops + labels into the corpus.

    Resumable: a rerun skips videos already in the corpus. Bad files are recorded (see `dfkit info --errors`)
    and the run goes on.
    """
    s = services.ingest(dataset, root, corpus_path(corpus), workers=workers, compression=compression, limit=limit,
                        retry_failed=retry_failed, opts=opt, scheduler=scheduler, progress=not quiet,
                        echo=typer.echo, log=_err, frames=frames, size=size, margin=margin, encoding=encoding,
                        min_confidence=min_confidence, decoder=decoder)
    if s.interrupted:
        _err(f"{'terminated' if s.terminated else 'interrupted'}: every finished video is committed; rerun the "
             "same command to resume")
        raise typer.Exit(143 if s.terminated else 130)  # 128 + the signal, as shells report it


@app.command()
def info(
    corpus: Optional[Path] = CorpusOpt,
    errors: bool = typer.Option(False, "--errors", help="List the errors table (failed, partial, no-face, "
                                "missing videos) with file and reason."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output: the same facts as one JSON "
                                 "object (with --errors: every error and note)."),
) -> None:
    """Counts per dataset x method x split, video status, and the corpus size."""
    services.info(corpus_path(corpus), errors=errors, as_json=as_json, echo=typer.echo)


@app.command()
def datasets(
    name: Optional[str] = typer.Argument(None, help="Show only this adapter."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List the dataset adapters: what each expects on disk, its methods (-> canonical name, family) and
    its options (pass them to `dfkit ingest` as --opt KEY=VALUE)."""
    services.datasets(name, as_json=as_json, echo=typer.echo)


@app.command()
def demo(
    out: Path = out_opt(Path("dfkit-demo"), help="Folder for the demo dataset, corpus and reports."),
    workers: int = workers_opt("Worker processes for ingest.", all_cores=True),
    quick: bool = typer.Option(False, "--quick", help="Smaller data and fewer steps (for tests)."),
) -> None:
    """Build a small synthetic dataset in the FF++ layout (from skimage's public-domain astronaut image, four
    synthetic manipulation methods, two compression levels), ingest it and show the corpus."""
    from dfkit.demo.run import run_demo  # the demo's service function (it calls dfkit.services step by step)

    run_demo(out, workers=workers, quick=quick, echo=typer.echo)


quality_app = typer.Typer(help="Per-crop quality metrics and the composite `quality`; `calibrate` checks it on graded "
                           "real degradations.")
app.add_typer(quality_app, name="quality")


def _no_group_options_before(ctx: typer.Context, group: str) -> None:
    """Options of ``dfkit GROUP`` given before its subcommand are refused (they would be silently ignored)."""
    given = [f"--{k.rstrip('_').replace('_', '-')}" for k, v in ctx.params.items()
             if ctx.get_parameter_source(k).name != "DEFAULT"]
    if given:
        raise DfkitError(f"{', '.join(given)} before `{ctx.invoked_subcommand}` is an option of `dfkit {group}`: "
                         f"put it after the subcommand (dfkit {group} {ctx.invoked_subcommand} --help)")


@quality_app.callback(invoke_without_command=True)
def quality(
    ctx: typer.Context,
    corpus: Optional[Path] = CorpusOpt,
    weights: Optional[str] = weights_opt("Composite weights: 'sharpness=2,noise=1' or a YAML/JSON file (unnamed "
                                         "metrics keep their defaults; see README)."),
    workers: int = workers_opt("Worker processes (parallel over shards).", all_cores=True),
    fullref: bool = typer.Option(True, "--fullref/--no-fullref", help="Full-reference metrics of fakes against "
                                 "their paired originals, and of compressed crops against c0."),
    fullref_frames: Optional[int] = typer.Option(None, help="Full-reference on at most N frames per video "
                                                 "(default: all)."),
    recompute: bool = typer.Option(False, "--recompute", help="Recompute every shard, not only new ones."),
    explain_: bool = typer.Option(False, "--explain", help="Print what a quality threshold means under these "
                                  "weights, and exit."),
    scheduler: Optional[str] = typer.Option(None, help="Run on a Dask cluster: a scheduler address "
                                            "(tcp://host:8786; the corpus must be readable on every worker) or "
                                            "'local' (a LocalCluster of --workers processes on 127.0.0.1)."),
    quiet: bool = quiet_opt(),
) -> None:
    """Measure every crop that lacks quality metrics (resumable, parallel): sharpness, noise, blockiness,
    exposure, contrast, face size, detection score, pose, cut-off, jitter, video bitrate/resolution/codec/
    compression, the composite `quality` in [0,1] and full-reference change for fakes. New --weights only redo
    the composite."""
    if ctx.invoked_subcommand is not None:
        return _no_group_options_before(ctx, "quality")
    s = services.quality(None if explain_ else corpus_path(corpus), weights=weights, workers=workers,
                         fullref=fullref, fullref_frames=fullref_frames, recompute=recompute, explain=explain_,
                         scheduler=scheduler, progress=not quiet, echo=typer.echo, log=_err)
    if s is not None and s.errors:
        raise typer.Exit(1)


@quality_app.command("calibrate")
def quality_calibrate(
    corpus: Optional[Path] = CorpusOpt,
    videos: Optional[Path] = typer.Option(None, help="Calibrate on real clips instead of corpus crops: a video file "
                                          "or a folder searched for *.mp4/*.avi/*.mov/*.mkv (frames are degraded "
                                          "before cropping)."),
    out: Optional[Path] = out_opt(None, help="Folder for calibration.json/.md/.png (default: "
                                  "<corpus>/calibration, where `dfkit audit` finds it)."),
    n: int = typer.Option(default_of(services.quality_calibrate, "n"), "--n", help="Clean corpus crops to sample "
                          "(spread over videos)."),
    per_video: int = typer.Option(default_of(services.quality_calibrate, "per_video"), help="Frames per clip with "
                                  "--videos."),
    kinds: Optional[str] = typer.Option(None, help="Degradations, comma-separated (default: all): "
                                        "defocus, motion, jpeg, noise, scale, under, over, h264."),
    weights: Optional[str] = weights_opt("Composite weights to calibrate (as `dfkit quality`)."),
    seed: int = typer.Option(default_of(services.quality_calibrate, "seed"), help="Seed of the crop sample and of "
                             "the noise."),
    quiet: bool = quiet_opt(),
) -> None:
    """Degrade real clean crops in graded steps (defocus, motion blur, JPEG, sensor noise, down-scaling,
    under/over-exposure, H.264 re-encodes), score every level, and print what quality 0.5 / 0.7 / 0.9 mean, with
    the calibration targets (clean median >= 0.8, each strong level < 0.5, monotone for >= 95 % of crops)."""
    services.quality_calibrate(corpus_path(corpus) if videos is None else None, videos=videos, out=out, n=n,
                               per_video=per_video, kinds=kinds, weights=weights, seed=seed, progress=not quiet,
                               echo=typer.echo)


@app.command()
def audit(
    corpus: Optional[Path] = CorpusOpt,
    out: Path = out_opt(default_of(services.audit, "out"), help="Folder for index.html and its PNG plots."),
    leaks: bool = typer.Option(True, "--leaks/--no-leaks", help="Include the split-leak table and "
                               "near-duplicate crops across splits."),
    thumbs: int = typer.Option(default_of(services.audit, "thumbs"), help="Worst and best crops to show."),
    edc: Optional[list[Path]] = typer.Option(None, "--edc", help="Folder of a `dfkit eval RUN --edc --out DIR` "
                                             "result: its error-versus-discard curve goes into the report "
                                             "(repeat for several runs)."),
) -> None:
    """An HTML report (self-contained, opens offline) of the corpus's data quality: distributions per
    dataset x method x split, quality vs compression, full-reference change per method, the calibration, the
    error-versus-discard curves of evaluated runs (--edc), worst and best crops, near-duplicates and split leaks."""
    services.audit(corpus_path(corpus), out=out, leaks=leaks, thumbs=thumbs, edc=edc or (), echo=typer.echo)


splits_app = typer.Typer(help="Split leaks (identities, source videos, near-duplicate crops across "
                          "train/val/test) and identity-disjoint re-splits.", no_args_is_help=True)
app.add_typer(splits_app, name="splits")


@splits_app.command("audit")
def splits_audit(
    corpus: Optional[Path] = CorpusOpt,
    out: Optional[Path] = out_opt(None, help="Also write the report as JSON here."),
    scheme: str = typer.Option("official", help="Split scheme to audit: official, or a re-split's name."),
    hashes: bool = typer.Option(True, "--hashes/--no-hashes", help="Check near-duplicate crops (dHash)."),
    per_video: int = typer.Option(default_of(services.splits_audit, "per_video"), help="Crops per video to hash for "
                                  "the near-duplicate check."),
    max_distance: int = typer.Option(default_of(services.splits_audit, "max_distance"), help="dHash bits that may "
                                     "differ for two crops to count as near-duplicates."),
) -> None:
    """Overlap between train/val/test in identities, source videos and near-duplicate crops, per dataset and
    across datasets, with counts and examples."""
    services.splits_audit(corpus_path(corpus), out=out, scheme=scheme, hashes=hashes, per_video=per_video,
                          max_distance=max_distance, echo=typer.echo)


@splits_app.command("resplit")
def splits_resplit(
    corpus: Optional[Path] = CorpusOpt,
    by: str = typer.Option("identity", help="Only 'identity': no identity or source group in two splits."),
    name: str = typer.Option("identity", help="Name of the new split scheme (use it as --split NAME)."),
    ratios: str = typer.Option(default_of(services.splits_resplit, "ratios"), help="train,val,test proportions (of "
                               "identity groups)."),
    seed: int = typer.Option(default_of(services.splits_resplit, "seed"), help="Seed of the stable assignment."),
) -> None:
    """Make an identity-disjoint re-split of the corpus (stored beside it; the official split stays)."""
    services.splits_resplit(corpus_path(corpus), by=by, name=name, ratios=ratios, seed=seed, echo=typer.echo)


@app.command()
def predict(
    run: Path = typer.Argument(..., help="Run folder made by `dfkit train`."),
    inputs: list[str] = typer.Argument(..., help="Video files, folders (searched recursively for video files) or "
                                       "globs ('clips/**/*.mp4').", show_default=False),
    out_json: Optional[Path] = typer.Option(None, "--json", help="Also write the predictions as JSON here."),
    out_csv: Optional[Path] = typer.Option(None, "--csv", help="Also write the predictions as CSV here (one row "
                                           "per file)."),
    device: str = typer.Option(default_of(services.predict, "device"), "--device", help="cpu, cuda or cuda:N."),
    top_frames: int = typer.Option(default_of(services.predict, "top_frames"), "--top-frames", help="Frames listed "
                                   "per video: those with the highest probability of its top class."),
    quiet: bool = quiet_opt(),
) -> None:
    """Score video files with a trained run: each file is cut into face crops exactly as `dfkit ingest` cut the run's
    corpus (same frames, size, margin, detector threshold, read from its manifest), then per video: the class
    distribution (P(fake) for a binary run), the top class and its confidence, and the frames that weigh most.

    A file that cannot be read or shows no face is one line on stderr and the others go on (exit code 1)."""
    res = services.predict(run, inputs, out_json=out_json, out_csv=out_csv, device=device, top_frames=top_frames,
                           progress=not quiet, echo=typer.echo, log=_err)
    if res["failed"]:
        raise typer.Exit(1)


@app.command("export")
def export(
    fmt: Optional[str] = hidden(None, "--format", help="hf (Hugging Face parquet, `image` a datasets.Image), "
                                "webdataset (tar shards, a .png + .json per crop) or folder "
                                "(split/label/method/*.png + index.csv)."),
    out: Optional[Path] = out_opt(None, help="Folder to write the export into (made beside it, renamed into place "
                                  "when done; an existing non-empty one only with --overwrite)."),
    corpus: Optional[Path] = CorpusOpt,
    datasets: Optional[str] = datasets_opt("Comma-separated datasets to export (default: all), as in train."),
    methods: Optional[str] = methods_opt("Only these fake methods (own or canonical names) in the training split; "
                                         "reals stay (as `dfkit train --methods`)."),
    splits: Optional[str] = splits_opt("Comma-separated splits to export: train, val, test (default: all)."),
    min_quality: Optional[float] = min_quality_opt("export"),
    drop_suspect: bool = drop_suspect_opt("export"),
    split: Optional[str] = hidden(None, "--split", help="Split scheme, as in train: official, identity, or a "
                                  f"re-split's name (default: {train_default('split')})."),
    split_seed: Optional[int] = hidden(None, "--split-seed", help="Seed of a computed identity split, as in train "
                                       f"(default: {train_default('split_seed')})."),
    task: Optional[str] = hidden(None, "--task", help="binary or attribution, as in train: which validation crops "
                                 f"train keeps (default: {train_default('task')})."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing non-empty --out."),
    quiet: bool = quiet_opt(),
) -> None:
    """Export the crops `dfkit train` would see with the same options, with their labels and quality columns, as a
    Hugging Face dataset, WebDataset tar shards or a folder tree.

    Example: dfkit export --format hf --out export-hf --datasets ffpp --min-quality 0.7 --split identity
    """
    services.export(corpus_path(corpus), fmt=fmt, out=out, datasets=datasets, methods=methods, splits=splits,
                    min_quality=min_quality, drop_suspect=drop_suspect, split=split, split_seed=split_seed, task=task,
                    overwrite=overwrite, progress=not quiet, echo=typer.echo)


@app.command("browse")
def browse(
    corpus: Optional[Path] = CorpusOpt,
    name: Optional[str] = typer.Option(None, help="FiftyOne dataset name (default: dfkit-<corpus dir>-<hash "
                                       "of its path>)."),
    port: int = typer.Option(default_of(services.browse, "port"), help="Port of the app (served on 127.0.0.1 "
                             "only)."),
    no_launch: bool = typer.Option(False, "--no-launch", help="Only build/update the dataset."),
    run: Optional[Path] = typer.Option(None, help="A training run: add its predictions, hardness and "
                                       "mistakenness."),
    datasets: Optional[list[str]] = datasets_opt("Only these datasets (comma-separated or repeated)."),
    methods: Optional[list[str]] = methods_opt("Only these methods (dataset's own or canonical names)."),
    splits: Optional[list[str]] = splits_opt("Only these splits (train, val, test)."),
    min_quality: Optional[float] = min_quality_opt("browse"),
    quiet: bool = quiet_opt(),
) -> None:
    """Browse the corpus in the FiftyOne app: one sample per crop with labels, quality, predictions (--run)
    and saved views (per method, per split, low quality, mistakes, near-duplicates, grouped by video).

    The dataset persists and is updated incrementally (only new or changed crops); crops are written once
    into <corpus>/.fiftyone-cache. The app listens on 127.0.0.1 only; Ctrl-C stops it."""
    services.browse(corpus_path(corpus), name=name, port=port, launch=not no_launch, run=run, datasets=datasets,
                    methods=methods, splits=splits, min_quality=min_quality, progress=not quiet, echo=typer.echo)


@app.command("export-model")
def export_model(
    run: Path = typer.Argument(..., help="Run folder made by `dfkit train` (its best checkpoint is exported)."),
    fmt: str = typer.Option("onnx", "--format", help="onnx (opset 17, dynamic batch) or torchscript (torch.jit)."),
    out: Optional[Path] = out_opt(None, help="Folder for model.onnx / model.pt and model.json (default: "
                                  "RUN/export)."),
    corpus: Optional[Path] = corpus_opt("Corpus whose crops check the export (default: the run's corpus; random "
                                        "input when it is gone)."),
    n_check: int = typer.Option(default_of(services.export_model, "n_check"), "--n-check", help="Crops (test split) run through the checkpoint and the "
                                "exported model; their largest logit difference must be <= 1e-4 (+1e-4 x "
                                "max |logit|)."),
    quiet: bool = quiet_opt(),
) -> None:
    """Export a trained run as ONNX or TorchScript, checked against its checkpoint, with model.json beside it:
    input layout (NCHW float32 RGB), resize, mean/std, class names, task, backbone, checkpoint SHA-256.

    Example: dfkit export-model runs/attr-b0 --format onnx
    """
    services.export_model(run, fmt=fmt, out=out, n_check=n_check, corpus=corpus, progress=not quiet,
                          echo=typer.echo)


from dfkit.cli_train import register as _register_train; _register_train(app)  # noqa: E402,E702


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2 (never a traceback)."""
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    try:
        try:
            app()
        except SystemExit as e:  # Typer turns an interrupt inside a command into exit 130; after SIGTERM it is 143
            import signal

            from dfkit.procs import last_signal

            if e.code == 130 and last_signal() == signal.SIGTERM:
                sys.exit(143)
            raise
    except DfkitError as e:
        typer.echo(f"dfkit: error: {one_line(e)}", err=True)
        sys.exit(e.exit_code)
    except OSError as e:  # an output folder that cannot be made, a disk that is full: one line, not a traceback
        typer.echo(f"dfkit: error: {os_error_line(e)}", err=True)
        sys.exit(2 if e.errno in PATH_ERRNOS else 1)
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (dfkit.procs.TerminatedError)
        from dfkit.procs import TerminatedError

        term = isinstance(e, TerminatedError)
        typer.echo(f"dfkit: {'terminated' if term else 'interrupted'}", err=True)
        sys.exit(143 if term else 130)


if __name__ == "__main__":
    main()
