"""The ``dfkit`` command line. Every command that reads or writes a corpus takes ``--corpus PATH``."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer

from dfkit.errors import DfkitError

app = typer.Typer(
    help="dfkit: DeepFake datasets -> one quality-measured face-crop corpus, and attribution models on it.\n\n"
         "Typical path: dfkit ingest ffpp ROOT -> dfkit info -> dfkit quality -> dfkit train -> dfkit eval.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

CorpusOpt = typer.Option(None, "--corpus", help="Corpus directory (default: $DFKIT_CORPUS, the config file's "
                         "`corpus:`, else ./dfkit-corpus).", show_default=False)


@app.callback()
def _one_process_unless_train(ctx: typer.Context) -> None:
    # under torchrun only `dfkit train` shares its work out; any other command would run once per process
    if ctx.invoked_subcommand != "train":
        from dfkit.train.distributed import refuse_distributed

        refuse_distributed(f"dfkit {ctx.invoked_subcommand}")


def _corpus_path(arg: Optional[Path]) -> Path:
    from dfkit.config import resolve_corpus

    return resolve_corpus(arg)


def _parse_opts(opts: list[str]) -> dict[str, str]:
    out = {}
    for o in opts:
        k, sep, v = o.partition("=")
        if not sep or not k:
            raise DfkitError(f"--opt expects KEY=VALUE, got {o!r}")
        out[k.replace("-", "_")] = v
    return out


def _ingest_default(name: str):
    """An ingest option's default: :class:`~dfkit.ingest.engine.IngestParams`'s (spelled once, there)."""
    from dfkit.config import default_of
    from dfkit.ingest.engine import IngestParams

    return default_of(IngestParams, name)


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
    workers: int = typer.Option(os.cpu_count() or 1, help="Worker processes (parallel over videos)."),
    compression: Optional[str] = typer.Option(None, help="Compression level folder where the dataset has "
                                              "several (FF++: raw/c0, c23 (default), c40)."),
    limit: Optional[int] = typer.Option(None, help="Process at most N (not yet ingested) videos."),
    encoding: str = typer.Option(_ingest_default("encoding"), help="Crop encoding: png or webp (lossless); "
                                 "jpeg[:Q] or webp-lossy[:Q] (lossy: adds artifacts)."),
    min_confidence: float = typer.Option(_ingest_default("min_confidence"), help="Face detector confidence "
                                         "threshold."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Try videos that failed, were missing or "
                                      "had no face in an earlier run again."),
    opt: list[str] = typer.Option([], "--opt", help="Adapter option KEY=VALUE (see `dfkit datasets`); "
                                  "repeatable."),
    scheduler: Optional[str] = typer.Option(None, help="Run on a Dask cluster: a scheduler address "
                                            "(tcp://host:8786; ROOT must be readable on every worker) or "
                                            "'local' (a LocalCluster of --workers processes on 127.0.0.1)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Read a dataset as downloaded, sample frames, find the face, write crops + labels into the corpus.

    Resumable: a rerun skips videos already in the corpus. Bad files are recorded (see `dfkit info --errors`)
    and the run goes on.
    """
    from dfkit.config import resolve_root
    from dfkit.ingest.base import create_adapter
    from dfkit.ingest.engine import IngestParams, run_ingest
    from dfkit.corpus.codec import encode_crop

    import numpy as np

    try:
        encode_crop(np.zeros((8, 8, 3), np.uint8), encoding)  # reject a bad --encoding before any work
    except ValueError as e:
        raise DfkitError(f"--encoding: {e}") from None
    root_path = resolve_root(dataset, root)
    options = _parse_opts(opt)
    if compression is not None:
        options["compression"] = compression
    adapter = create_adapter(dataset, root_path, **options)
    adapter.check_root()
    out = _corpus_path(corpus)
    params = IngestParams(frames=frames, size=size, margin=margin, encoding=encoding,
                          min_confidence=min_confidence)
    s = run_ingest(adapter, out, params, workers=workers, limit=limit, retry_failed=retry_failed,
                   progress=not quiet, log=lambda m: typer.echo(m, err=True), scheduler=scheduler)
    _print_summary(s, out)
    if s.interrupted:
        typer.echo("interrupted: every finished video is committed; rerun the same command to resume", err=True)
        raise typer.Exit(130)


def _print_summary(s, corpus: Path) -> None:
    st = s.status
    rate = s.processed / s.seconds if s.seconds else 0.0
    crate = s.crops / s.seconds if s.seconds else 0.0
    typer.echo(f"{s.dataset}: {s.listed} videos listed, {s.skipped} already in the corpus, {s.processed} processed "
               f"in {s.seconds:.1f} s ({rate:.2f} videos/s, {crate:.1f} crops/s)")
    typer.echo(f"  ok {st.get('ok', 0)} | partial {st.get('partial', 0)} | no face {st.get('no_face', 0)} | "
               f"failed {st.get('failed', 0)} | missing {st.get('missing', 0)} | crops written {s.crops}"
               + (f" | {s.ignored_files} unrelated files ignored" if s.ignored_files else ""))
    for e in s.errors[:10]:
        typer.echo(f"  {e['status']:8s} {e['video_path']}: {e['stage']}: {e['reason']}")
    if len(s.errors) > 10:
        typer.echo(f"  ... {len(s.errors) - 10} more: dfkit info --errors --corpus {corpus}")
    typer.echo(f"corpus: {corpus}")


@app.command()
def info(
    corpus: Optional[Path] = CorpusOpt,
    errors: bool = typer.Option(False, "--errors", help="List the errors table (failed, partial, no-face, "
                                "missing videos) with file and reason."),
) -> None:
    """Counts per dataset x method x split, video status, and the corpus size."""
    from dfkit.report import corpus_info_text

    typer.echo(corpus_info_text(_corpus_path(corpus), errors=errors))


@app.command()
def datasets(
    name: Optional[str] = typer.Argument(None, help="Show only this adapter."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List the dataset adapters: what each expects on disk, its methods (-> canonical name, family) and
    its options (pass them to `dfkit ingest` as --opt KEY=VALUE)."""
    import json

    from dfkit.ingest.catalog import describe_adapters

    items = describe_adapters()
    if name is not None:
        items = [d for d in items if d["name"] == name]
        if not items:
            raise DfkitError(f"unknown dataset {name!r}; see `dfkit datasets`")
    if as_json:
        typer.echo(json.dumps(items, indent=2))
        return
    for d in items:
        typer.echo(f"{d['name']}: {d['title']}")
        typer.echo(f"  expects: {d['expects']}")
        if d["methods"]:
            typer.echo("  methods: " + ", ".join(
                m["name"] + ("" if m["canonical"] == m["name"] else f" -> {m['canonical']}") + f" ({m['family']})"
                for m in d["methods"]))
        for k, h in d["options"].items():
            typer.echo(f"  --opt {k}=...  {h}")
        typer.echo("")


@app.command()
def demo(
    out: Path = typer.Option(Path("dfkit-demo"), help="Folder for the demo dataset, corpus and reports."),
    workers: int = typer.Option(os.cpu_count() or 1, help="Worker processes for ingest."),
    quick: bool = typer.Option(False, "--quick", help="Smaller data and fewer steps (for tests)."),
) -> None:
    """Build a small synthetic dataset in the FF++ layout (from skimage's public-domain astronaut image, four
    synthetic manipulation methods, two compression levels), ingest it and show the corpus."""
    from dfkit.demo.run import run_demo

    run_demo(out, workers=workers, quick=quick, echo=typer.echo)


quality_app = typer.Typer(help="Per-crop quality metrics and the composite `quality`; `calibrate` checks it on graded "
                           "real degradations.")
app.add_typer(quality_app, name="quality")


@quality_app.callback(invoke_without_command=True)
def quality(
    ctx: typer.Context,
    corpus: Optional[Path] = CorpusOpt,
    weights: Optional[str] = typer.Option(None, help="Composite weights: 'sharpness=2,noise=1' or a YAML/JSON "
                                          "file (unnamed metrics keep their defaults; see README)."),
    workers: int = typer.Option(os.cpu_count() or 1, help="Worker processes (parallel over shards)."),
    fullref: bool = typer.Option(True, "--fullref/--no-fullref", help="Full-reference metrics of fakes against "
                                 "their paired originals, and of compressed crops against c0."),
    fullref_frames: Optional[int] = typer.Option(None, help="Full-reference on at most N frames per video "
                                                 "(default: all)."),
    recompute: bool = typer.Option(False, "--recompute", help="Recompute every shard, not only new ones."),
    explain_: bool = typer.Option(False, "--explain", help="Print what a quality threshold means under these "
                                  "weights, and exit."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Measure every crop that lacks quality metrics (resumable, parallel): sharpness, noise, blockiness,
    exposure, contrast, face size, detection score, pose, cut-off, jitter, video bitrate/resolution/codec/
    compression, the composite `quality` in [0,1] and full-reference change for fakes. New --weights only redo
    the composite."""
    if ctx.invoked_subcommand is not None:
        given = [f"--{k.rstrip('_').replace('_', '-')}" for k, v in ctx.params.items()
                 if ctx.get_parameter_source(k).name != "DEFAULT"]
        if given:
            raise DfkitError(f"{', '.join(given)} before `{ctx.invoked_subcommand}` is an option of `dfkit quality`: "
                             f"put it after the subcommand (dfkit quality {ctx.invoked_subcommand} --help)")
        return
    from dfkit.quality import explain, resolve_weights
    from dfkit.quality.run import run_quality

    w = resolve_weights(weights)
    if explain_:
        typer.echo(explain(0.7, w))
        return
    root = _corpus_path(corpus)
    import dfkit.corpus

    dfkit.corpus.open(root)  # a clear error when there is no corpus
    s = run_quality(root, w, workers=workers, fullref=fullref, fullref_frames=fullref_frames,
                    recompute=recompute, progress=not quiet, log=lambda m: typer.echo(m, err=True))
    typer.echo(f"quality: {s.shards_computed} of {s.shards_total} shards computed ({s.crops} crops, "
               f"{s.fullref_pairs} fake/original pairs, {s.c0_pairs} crops vs c0), {s.shards_recomposed} "
               f"re-weighted, {s.seconds:.1f} s")
    for e in s.errors:
        typer.echo(f"  failed: {e}", err=True)
    if s.errors:
        raise typer.Exit(1)


@quality_app.command("calibrate")
def quality_calibrate(
    corpus: Optional[Path] = CorpusOpt,
    videos: Optional[Path] = typer.Option(None, help="Calibrate on real clips instead of corpus crops: a video file "
                                          "or a folder searched for *.mp4/*.avi/*.mov/*.mkv (frames are degraded "
                                          "before cropping)."),
    out: Optional[Path] = typer.Option(None, help="Folder for calibration.json/.md/.png (default: "
                                       "<corpus>/calibration, where `dfkit audit` finds it)."),
    n: int = typer.Option(48, "--n", help="Clean corpus crops to sample (spread over videos)."),
    per_video: int = typer.Option(4, help="Frames per clip with --videos."),
    kinds: Optional[str] = typer.Option(None, help="Degradations, comma-separated (default: all): "
                                        "defocus, motion, jpeg, noise, scale, under, over, h264."),
    weights: Optional[str] = typer.Option(None, help="Composite weights to calibrate (as `dfkit quality`)."),
    seed: int = typer.Option(0, help="Seed of the crop sample and of the noise."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Degrade real clean crops in graded steps (defocus, motion blur, JPEG, sensor noise, down-scaling,
    under/over-exposure, H.264 re-encodes), score every level, and print what quality 0.5 / 0.7 / 0.9 mean, with
    the calibration targets (clean median >= 0.8, each strong level < 0.5, monotone for >= 95 % of crops)."""
    from dfkit.quality import calibrate as cal
    from dfkit.quality import resolve_weights
    from dfkit.quality.degrade import list_degradations

    w = resolve_weights(weights) if weights or videos is not None else None  # None: the corpus's own weights
    ks = [k.strip() for k in kinds.split(",") if k.strip()] if kinds else None
    for k in ks or []:
        if k not in list_degradations():
            raise DfkitError(f"--kinds: unknown degradation {k!r}; known: {', '.join(list_degradations())}")
    if n < 1 or per_video < 1:
        raise DfkitError("--n and --per-video must be >= 1")
    if videos is not None:
        if not videos.exists():
            raise DfkitError(f"--videos {videos}: no such file or folder")
        exts = {".mp4", ".avi", ".mov", ".mkv", ".webm"}
        paths = [videos] if videos.is_file() else sorted(p for p in videos.rglob("*") if p.suffix.lower() in exts)
        if not paths:
            raise DfkitError(f"--videos {videos}: no video files there")
        if out is None:
            raise DfkitError("--videos needs --out (where to write the calibration)")
        sources = cal.sources_from_videos(paths, per_video=per_video)
    else:
        import dfkit.corpus

        root = _corpus_path(corpus)
        dfkit.corpus.open(root)
        out = out or root / cal.CALIBRATION_DIR
        if w is None:  # calibrate the composite the corpus's scores were made with
            from dfkit.quality.run import stored_weights

            w = resolve_weights(stored_weights(root))
        sources = cal.sources_from_corpus(root, n=n, seed=seed)
    s = cal.calibrate(sources, out, kinds=ks, weights=w, progress=not quiet)
    typer.echo(cal.markdown(s))
    typer.echo(f"written: {', '.join(s['files'].values())}")


@app.command()
def audit(
    corpus: Optional[Path] = CorpusOpt,
    out: Path = typer.Option(Path("dfkit-audit"), help="Folder for index.html and its PNG plots."),
    leaks: bool = typer.Option(True, "--leaks/--no-leaks", help="Include the split-leak table and "
                               "near-duplicate crops across splits."),
    thumbs: int = typer.Option(24, help="Worst and best crops to show."),
) -> None:
    """An HTML report (self-contained, opens offline) of the corpus's data quality: distributions per
    dataset x method x split, quality vs compression, full-reference change per method, worst and best crops,
    near-duplicates and split leaks."""
    import dfkit.corpus
    from dfkit.corpus.schema import usable
    from dfkit.quality.audit import build_report
    from dfkit.splits import audit as leak_audit
    from dfkit.splits import crop_hashes

    c = dfkit.corpus.open(_corpus_path(corpus))
    rep = None
    if leaks:
        v = c.videos()
        rep = leak_audit(usable(v), crop_hashes(c))
    path = build_report(c, out, rep, n_thumbs=thumbs)
    typer.echo(f"audit report: {path}")


splits_app = typer.Typer(help="Split leaks (identities, source videos, near-duplicate crops across "
                          "train/val/test) and identity-disjoint re-splits.", no_args_is_help=True)
app.add_typer(splits_app, name="splits")


@splits_app.command("audit")
def splits_audit(
    corpus: Optional[Path] = CorpusOpt,
    out: Optional[Path] = typer.Option(None, help="Also write the report as JSON here."),
    scheme: str = typer.Option("official", help="Split scheme to audit: official, or a re-split's name."),
    hashes: bool = typer.Option(True, "--hashes/--no-hashes", help="Check near-duplicate crops (dHash)."),
    per_video: int = typer.Option(4, help="Crops per video to hash for the near-duplicate check."),
    max_distance: int = typer.Option(4, help="dHash bits that may differ for two crops to count as "
                                     "near-duplicates."),
) -> None:
    """Overlap between train/val/test in identities, source videos and near-duplicate crops, per dataset and
    across datasets, with counts and examples."""
    import json

    import dfkit.corpus
    from dfkit.corpus.schema import usable
    from dfkit.splits import audit, crop_hashes, format_audit

    c = dfkit.corpus.open(_corpus_path(corpus)).select(split_scheme=scheme)
    videos = c.videos()
    videos = usable(videos)
    h = crop_hashes(c, per_video=per_video) if hashes else None
    rep = audit(videos, h, max_distance=max_distance)
    rep["scheme"] = scheme
    typer.echo(f"split audit ({scheme} splits)")
    typer.echo(format_audit(rep))
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(rep, indent=2))
        typer.echo(f"written: {out}")


@splits_app.command("resplit")
def splits_resplit(
    corpus: Optional[Path] = CorpusOpt,
    by: str = typer.Option("identity", help="Only 'identity': no identity or source group in two splits."),
    name: str = typer.Option("identity", help="Name of the new split scheme (use it as --split NAME)."),
    ratios: str = typer.Option("0.8,0.1,0.1", help="train,val,test proportions (of identity groups)."),
    seed: int = typer.Option(0, help="Seed of the stable assignment."),
) -> None:
    """Make an identity-disjoint re-split of the corpus (stored beside it; the official split stays)."""
    import dfkit.corpus
    from dfkit.splits import identity_split, write_scheme

    if by != "identity":
        raise DfkitError(f"--by {by!r}: only 'identity' is supported")
    try:
        r = tuple(float(x) for x in ratios.split(","))
    except ValueError:
        raise DfkitError(f"--ratios expects three numbers like 0.8,0.1,0.1, got {ratios!r}") from None
    if name == "official":
        raise DfkitError("--name official is reserved for the datasets' own splits")
    root = _corpus_path(corpus)
    videos = dfkit.corpus.open(root).videos()
    try:
        assign = identity_split(videos, r, seed)
    except ValueError as e:
        raise DfkitError(str(e)) from None
    path = write_scheme(root, name, assign)
    counts = videos.assign(s=[assign[(d, v)] for d, v in zip(videos["dataset"], videos["video_id"])])
    typer.echo(counts.groupby(["dataset", "s"]).size().unstack(fill_value=0).to_string())
    typer.echo(f"written: {path}; use it with --split {name} (train) or `dfkit splits audit --scheme {name}`")


from dfkit.browse import register as _register_browse; _register_browse(app)  # noqa: E402,E702


from dfkit.cli_train import register as _register_train; _register_train(app)  # noqa: E402,E702


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2 (never a traceback)."""
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    try:
        app()
    except DfkitError as e:
        typer.echo(f"dfkit: error: {e}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        typer.echo("dfkit: interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
