"""One function per ``dfkit`` command: the work behind the command line, callable from Python (the demo calls them).

Each takes plain Python arguments (paths, numbers, strings; None where the command's option was not given), does
what the command does and returns its result (a summary object or dict). What the command prints goes through the
``echo`` argument (its standard output) and ``log`` (its progress and warnings, standard error in the CLI); both
default to printing nothing, so a caller that only wants the result gets it quietly. The Typer commands in
:mod:`dfkit.cli` and :mod:`dfkit.cli_train` only parse options, call one of these and set the exit code. User errors
are :class:`~dfkit.errors.DfkitError` (the CLI prints one line and exits 2), raised before anything is written.

``dfkit demo``'s function is :func:`dfkit.demo.run.run_demo` (the demo builds on these, so it cannot live here).

Module level imports only the base modules, so that the CLI starts fast; the stages are imported on first use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

from dfkit.errors import DfkitError, one_line

Echo = Callable[[str], None]
PathLike = Union[str, Path]


def silent(_msg: str) -> None:
    """An ``echo`` that prints nothing."""


def _corpus(arg: Optional[PathLike]) -> Path:
    from dfkit.config import resolve_corpus

    return resolve_corpus(Path(arg) if arg is not None else None)


def parse_opts(opts: Sequence[str]) -> dict[str, str]:
    """``["KEY=VALUE", ...]`` (``--opt``) -> ``{key: value}`` (dashes in keys become underscores)."""
    out = {}
    for o in opts:
        k, sep, v = o.partition("=")
        if not sep or not k:
            raise DfkitError(f"--opt expects KEY=VALUE, got {o!r}")
        out[k.replace("-", "_")] = v
    return out


# ---------------------------------------------------------------------------------------------------------------------
# corpus: ingest, info, datasets

def ingest(dataset: str, root: Optional[PathLike] = None, corpus: Optional[PathLike] = None, *,
           workers: Optional[int] = None, compression: Optional[str] = None, limit: Optional[int] = None,
           retry_failed: bool = False, opts: Union[Sequence[str], Mapping[str, str]] = (),
           scheduler: Optional[str] = None, progress: bool = True, echo: Echo = silent, log: Echo = silent,
           **params: Any):
    """``dfkit ingest``: ``params`` are :class:`~dfkit.ingest.engine.IngestParams` fields (frames, size, margin,
    encoding, min_confidence; left out: its defaults). Prints the run's summary; returns the
    :class:`~dfkit.ingest.engine.IngestSummary` (``interrupted`` set on Ctrl-C: every finished video is committed)."""
    from dfkit.config import resolve_root
    from dfkit.ingest.base import create_adapter
    from dfkit.ingest.engine import IngestParams, run_ingest

    p = IngestParams(**params)  # checks every range (and --encoding) before any work
    root_path = resolve_root(dataset, Path(root) if root is not None else None)
    options = dict(opts) if isinstance(opts, Mapping) else parse_opts(opts)
    if compression is not None:
        options["compression"] = compression
    adapter = create_adapter(dataset, root_path, **options)
    adapter.check_root()
    out = _corpus(corpus)
    s = run_ingest(adapter, out, p, workers=workers, limit=limit, retry_failed=retry_failed, progress=progress,
                   log=log, scheduler=scheduler)
    for line in ingest_summary_lines(s, out) + ([] if retry_failed else _retry_hint(s, out)):
        echo(line)
    return s


def _retry_hint(s, corpus: Path) -> list[str]:
    """A rerun that skipped videos which failed, had no face or were missing before says how to try them again."""
    if not s.skipped:
        return []
    import dfkit.corpus
    from dfkit.ingest.engine import RETRYABLE

    v = dfkit.corpus.open(corpus).videos()
    n = int((v["status"].isin(RETRYABLE) & (v["dataset"] == s.dataset)).sum()) if len(v) else 0
    if not n:
        return []
    return [f"  {n} {s.dataset} videos in the corpus failed, had no face or were missing in an earlier run and were "
            "skipped: add --retry-failed to try them again (e.g. after fixing the files or changing "
            "--min-confidence)"]


def ingest_summary_lines(s, corpus: Path) -> list[str]:
    st = s.status
    rate = s.processed / s.seconds if s.seconds else 0.0
    crate = s.crops / s.seconds if s.seconds else 0.0
    lines = [f"{s.dataset}: {s.listed} videos listed, {s.skipped} already in the corpus, {s.processed} processed "
             f"in {s.seconds:.1f} s ({rate:.2f} videos/s, {crate:.1f} crops/s)",
             f"  ok {st.get('ok', 0)} | partial {st.get('partial', 0)} | no face {st.get('no_face', 0)} | "
             f"failed {st.get('failed', 0)} | missing {st.get('missing', 0)} | crops written {s.crops}"
             + (f" | {s.ignored_files} unrelated files ignored" if s.ignored_files else "")]
    lines += [one_line(f"  {e['status']:8s} {e['video_path']}: " + (f"{e['stage']}: " if e.get("stage") else "")
                       + f"{e['reason']}") for e in s.errors[:10]]
    if len(s.errors) > 10:
        lines.append(f"  ... {len(s.errors) - 10} more: dfkit info --errors --corpus {corpus}")
    return lines + [f"corpus: {corpus}"]


def version_line() -> str:
    """``dfkit --version``: dfkit's version and the Python it runs on."""
    import platform

    from dfkit import __version__

    return f"dfkit {__version__} (Python {platform.python_version()})"


def info(corpus: Optional[PathLike] = None, *, errors: bool = False, as_json: bool = False,
         echo: Echo = silent) -> Union[str, dict]:
    """``dfkit info``: counts per dataset x method x split, video status, size (and the errors table); with
    ``as_json`` the same facts as one JSON object (printed) and returned as a dict."""
    from dfkit.corpus.store import damaged_shards, recovery_hint, skipping_damaged
    from dfkit.report import corpus_info, corpus_info_text

    root = _corpus(corpus)
    with skipping_damaged():  # damaged shards are left out of the counts and listed below (never silently)
        facts = corpus_info(root, errors=errors) if as_json else None
        text = None if as_json else corpus_info_text(root, errors=errors)
    damaged = damaged_shards(root)
    if as_json:
        import json

        facts["damaged"] = [{"shard": str(sh.path), "reason": one_line(str(why)),
                             "recover": one_line(recovery_hint(root, sh.path.parent.name))} for sh, why in damaged]
        echo(json.dumps(facts, indent=2))
        return facts
    if damaged:
        text += f"\nDAMAGED: {len(damaged)} shard(s) could not be read and are left out of the counts above:"
        for sh, why in damaged:
            text += "\n  " + one_line(f"{sh.path}: {why}")
            text += "\n    " + one_line(f"to recover: {recovery_hint(root, sh.path.parent.name)}")
    echo(text)
    return text


def datasets(name: Optional[str] = None, *, as_json: bool = False, echo: Echo = silent) -> list[dict[str, Any]]:
    """``dfkit datasets``: the adapters' descriptions (all, or the one called ``name``)."""
    import json

    from dfkit.ingest.catalog import describe_adapters

    items = describe_adapters()
    if name is not None:
        items = [d for d in items if d["name"] == name]
        if not items:
            raise DfkitError(f"unknown dataset {name!r}; see `dfkit datasets`")
    if as_json:
        echo(json.dumps(items, indent=2))
        return items
    for d in items:
        echo(f"{d['name']}: {d['title']}")
        echo(f"  expects: {d['expects']}")
        if d["methods"]:
            echo("  methods: " + ", ".join(
                m["name"] + ("" if m["canonical"] == m["name"] else f" -> {m['canonical']}") + f" ({m['family']})"
                for m in d["methods"]))
        for k, h in d["options"].items():
            echo(f"  --opt {k}=...  {h}")
        echo("")
    return items


# ---------------------------------------------------------------------------------------------------------------------
# quality, calibrate, audit

def quality(corpus: Optional[PathLike] = None, *, weights: Any = None, workers: Optional[int] = None,
            fullref: bool = True, fullref_frames: Optional[int] = None, recompute: bool = False,
            explain: bool = False, scheduler: Optional[str] = None, progress: bool = True, echo: Echo = silent,
            log: Echo = silent):
    """``dfkit quality``: measure every crop that lacks metrics (``scheduler``: on a Dask cluster, as ``ingest``);
    returns the :class:`~dfkit.quality.run.QualitySummary` (its ``errors``: shards that failed). ``explain``: only
    print what a quality threshold means under ``weights`` (returns None)."""
    import dfkit.corpus
    from dfkit.quality import explain as explain_text
    from dfkit.quality import resolve_weights
    from dfkit.quality.run import run_quality

    w = resolve_weights(weights)
    if explain:
        echo(explain_text(0.7, w))
        return None
    root = _corpus(corpus)
    dfkit.corpus.open(root)  # a clear error when there is no corpus
    s = run_quality(root, w, workers=workers, fullref=fullref, fullref_frames=fullref_frames, recompute=recompute,
                    progress=progress, log=log, scheduler=scheduler)
    echo(f"quality: {s.shards_computed} of {s.shards_total} shards computed ({s.crops} crops, "
         f"{s.fullref_pairs} fake/original pairs, {s.c0_pairs} crops vs c0), {s.shards_recomposed} "
         f"re-weighted, {s.seconds:.1f} s")
    for e in s.errors:
        log(f"  failed: {e}")
    return s


VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm"}


def quality_calibrate(corpus: Optional[PathLike] = None, *, videos: Optional[PathLike] = None,
                      out: Optional[PathLike] = None, n: int = 48, per_video: int = 4,
                      kinds: Union[str, Sequence[str], None] = None, weights: Any = None, seed: int = 0,
                      progress: bool = True, echo: Echo = silent) -> dict[str, Any]:
    """``dfkit quality calibrate``: degrade clean crops (of the corpus, or of ``videos``) in graded steps and score
    them; prints the calibration's markdown; returns its summary (``files``: what was written)."""
    from dfkit.quality import calibrate as cal
    from dfkit.quality import resolve_weights
    from dfkit.quality.degrade import list_degradations

    videos = Path(videos) if videos is not None else None
    out = Path(out) if out is not None else None
    w = resolve_weights(weights) if weights or videos is not None else None  # None: the corpus's own weights
    ks = ([k.strip() for k in kinds.split(",") if k.strip()] if isinstance(kinds, str) else list(kinds or ())) or None
    for k in ks or []:
        if k not in list_degradations():
            raise DfkitError(f"--kinds: unknown degradation {k!r}; known: {', '.join(list_degradations())}")
    if n < 1 or per_video < 1:
        raise DfkitError("--n and --per-video must be >= 1")
    if videos is not None:
        if not videos.exists():
            raise DfkitError(f"--videos {videos}: no such file or folder")
        paths = [videos] if videos.is_file() else sorted(p for p in videos.rglob("*")
                                                         if p.suffix.lower() in VIDEO_EXTS)
        if not paths:
            raise DfkitError(f"--videos {videos}: no video files there")
        if out is None:
            raise DfkitError("--videos needs --out (where to write the calibration)")
        from dfkit.ingest.frames import frame_row

        sources = cal.sources_from_videos(paths, frame_row, per_video=per_video)
    else:
        import dfkit.corpus

        root = _corpus(corpus)
        dfkit.corpus.open(root)
        out = out or root / cal.CALIBRATION_DIR
        if w is None:  # calibrate the composite the corpus's scores were made with
            from dfkit.quality.run import stored_weights

            w = resolve_weights(stored_weights(root))
        sources = cal.sources_from_corpus(root, n=n, seed=seed)
    s = cal.calibrate(sources, out, kinds=ks, weights=w, progress=progress)
    echo(cal.markdown(s))
    echo(f"written: {', '.join(s['files'].values())}")
    return s


def audit(corpus: Optional[PathLike] = None, *, out: PathLike = Path("dfkit-audit"), leaks: bool = True,
          thumbs: int = 24, edc: Sequence[PathLike] = (), progress: bool = True, echo: Echo = silent) -> dict[str, Any]:
    """``dfkit audit``: the HTML data-quality report. ``edc``: folders of ``dfkit eval RUN --edc`` results whose
    error-versus-discard curves the report shows (checked first). Returns ``{"report": index.html, "leaks": the
    split-leak report (None without ``leaks``)}``."""
    import dfkit.corpus
    from dfkit.corpus.schema import usable
    from dfkit.quality.audit import build_report
    from dfkit.splits import audit as leak_audit
    from dfkit.splits import crop_hashes
    from dfkit.train.edc import edc_report_block, load_edc

    if thumbs < 0:
        raise DfkitError(f"--thumbs must be 0 or more, not {thumbs}")
    curves = [load_edc(p) for p in edc]  # refused before anything is written
    c = dfkit.corpus.open(_corpus(corpus))
    rep = leak_audit(usable(c.videos()), crop_hashes(c, progress=progress)) if leaks else None
    path = build_report(c, Path(out), rep, n_thumbs=thumbs, edc_blocks=[edc_report_block(t, r) for t, r in curves])
    echo(f"audit report: {path}")
    return {"report": path, "leaks": rep}


# ---------------------------------------------------------------------------------------------------------------------
# splits

def splits_audit(corpus: Optional[PathLike] = None, *, out: Optional[PathLike] = None, scheme: str = "official",
                 hashes: bool = True, per_video: int = 4, max_distance: int = 4, progress: bool = True,
                 echo: Echo = silent) -> dict[str, Any]:
    """``dfkit splits audit``: overlap between train/val/test (identities, sources, near-duplicate crops); returns
    the report (also written as JSON to ``out``)."""
    import json

    import dfkit.corpus
    from dfkit.corpus.schema import usable
    from dfkit.splits import audit as leak_audit
    from dfkit.splits import crop_hashes, format_audit

    c = dfkit.corpus.open(_corpus(corpus)).select(split_scheme=scheme)
    h = crop_hashes(c, per_video=per_video, progress=progress) if hashes else None
    rep = leak_audit(usable(c.videos()), h, max_distance=max_distance)
    rep["scheme"] = scheme
    echo(f"split audit ({scheme} splits)")
    echo(format_audit(rep))
    if out:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(rep, indent=2))
        echo(f"written: {out}")
    return rep


def splits_resplit(corpus: Optional[PathLike] = None, *, by: str = "identity", name: str = "identity",
                   ratios: Union[str, Sequence[float]] = "0.8,0.1,0.1", seed: int = 0, echo: Echo = silent) -> Path:
    """``dfkit splits resplit``: an identity-disjoint split scheme stored beside the corpus; returns its file."""
    import dfkit.corpus
    from dfkit.splits import identity_split, write_scheme

    from dfkit.corpus.schema import check_scheme_name

    check_scheme_name(name, "--name")
    if by != "identity":
        raise DfkitError(f"--by {by!r}: only 'identity' is supported")
    try:
        r = tuple(float(x) for x in (ratios.split(",") if isinstance(ratios, str) else ratios))
    except ValueError:
        raise DfkitError(f"--ratios expects three numbers like 0.8,0.1,0.1, got {ratios!r}") from None
    if name == "official":
        raise DfkitError("--name official is reserved for the datasets' own splits")
    root = _corpus(corpus)
    videos = dfkit.corpus.open(root).videos()
    try:
        assign = identity_split(videos, r, seed)
    except ValueError as e:
        raise DfkitError(str(e)) from None
    path = write_scheme(root, name, assign)
    counts = videos.assign(s=[assign[(d, v)] for d, v in zip(videos["dataset"], videos["video_id"])])
    echo(counts.groupby(["dataset", "s"]).size().unstack(fill_value=0).to_string())
    echo(f"written: {path}; use it with --split {name} (train) or `dfkit splits audit --scheme {name}`")
    return path


# ---------------------------------------------------------------------------------------------------------------------
# export

#: columns :func:`dfkit.train.data.select_data` adds for the model (task-dependent): not part of an export's record
_SELECTION_COLUMNS = ("class_name", "target", "video_key")


def export(corpus: Optional[PathLike] = None, *, fmt: Optional[str] = None, out: Optional[PathLike] = None,
           datasets: Any = None, methods: Any = None, splits: Any = None, min_quality: Optional[float] = None,
           drop_suspect: bool = False, split: Optional[str] = None, split_seed: Optional[int] = None,
           task: Optional[str] = None, overwrite: bool = False, progress: bool = True,
           echo: Echo = silent) -> dict[str, Any]:
    """``dfkit export``: the crops ``dfkit train`` sees with the same options, by train's own selection
    (:func:`dfkit.train.data.select_data`: ``min_quality`` filters the training split only, ``drop_suspect`` training
    and validation, ``methods`` the training fakes; validation crops of classes the model would not have and crops
    without a split are left out), restricted to ``splits``, written as ``fmt`` into ``out``
    (:func:`dfkit.corpus.export.export_view`). ``split``/``split_seed``/``task`` left out: train's defaults. Returns
    the export's manifest.

    1. refuse, before reading crops: an unknown format or split, a bad ``min_quality``, no ``out`` or an ``out`` that
       exists and is not empty (without ``overwrite``);
    2. select as train does (its one-line errors: unknown dataset, method or split scheme, no quality scores, no
       training crop, ...);
    3. write the export and print how many crops per split went where, and the line that loads it."""
    import pandas as pd

    from dfkit.config import default_of
    from dfkit.corpus.export import FORMATS, check_out, export_view
    from dfkit.corpus.reader import Corpus
    from dfkit.corpus.schema import check_quality
    from dfkit.train.data import SPLITS, parse_list, select_data
    from dfkit.train.settings import TrainSettings

    root = _corpus(corpus)
    if fmt not in FORMATS:
        raise DfkitError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}" if fmt else
                         f"--format is required: {', '.join(FORMATS)}")
    if out is None:
        raise DfkitError("--out DIR is required: the folder the export is written into")
    out = check_out(out, overwrite, root)
    min_quality = check_quality(min_quality, "--min-quality")
    want = parse_list(splits) or list(SPLITS)
    bad = [s for s in want if s not in SPLITS]
    if bad:
        raise DfkitError(f"--splits {','.join(bad)}: use {', '.join(SPLITS)} (comma-separated)")
    split = split if split is not None else default_of(TrainSettings, "split")
    split_seed = split_seed if split_seed is not None else default_of(TrainSettings, "split_seed")
    task = task if task is not None else default_of(TrainSettings, "task")
    sel = select_data(root, task=task, datasets=datasets, methods=methods, split=split, min_quality=min_quality,
                      drop_suspect=drop_suspect, seed=split_seed)
    parts = {"train": sel.train, "val": sel.val, "test": sel.test}
    rows = pd.concat([parts[s] for s in SPLITS if s in want], ignore_index=True)
    rows = rows.drop(columns=[c for c in _SELECTION_COLUMNS if c in rows.columns])
    if rows.empty:
        raise DfkitError(f"--splits {','.join(want)}: the selection has no crops in these splits")
    filters = {"task": task, "split": split, "split_seed": split_seed, "datasets": parse_list(datasets),
               "methods": parse_list(methods), "splits": want, "min_quality": min_quality,
               "drop_suspect": drop_suspect, "selection": "dfkit train's (dfkit.train.data.select_data)"}
    for note in sel.notes:
        echo(f"note: {note}")
    m = export_view(Corpus(root), fmt, out, rows=rows, filters=filters, overwrite=overwrite, progress=progress)
    per = ", ".join(f"{s} {c['crops']}" for s, c in m["counts"]["per_split"].items())
    echo(f"exported {m['counts']['crops']} crops ({per}) of {m['counts']['videos']} videos as {fmt} to {out}")
    echo(f"load: {m['load']}")
    return m


# ---------------------------------------------------------------------------------------------------------------------
# browse

def browse(corpus: Optional[PathLike] = None, *, name: Optional[str] = None, port: int = 5151, launch: bool = True,
           run: Optional[PathLike] = None, datasets: Any = None, methods: Any = None, splits: Any = None,
           min_quality: Optional[float] = None, progress: bool = True, echo: Echo = silent):
    """``dfkit browse``: build/update the corpus's FiftyOne dataset and (``launch``) serve the app; returns the
    :class:`~dfkit.browse.core.BuildStats`."""
    from dfkit.corpus.schema import check_quality

    min_quality = check_quality(min_quality, "--min-quality")  # refused before anything is built
    from dfkit.browse.core import browse as _browse

    return _browse(_corpus(corpus), name=name, port=port, launch=launch, run=Path(run) if run else None,
                   datasets=datasets, methods=methods, splits=splits, min_quality=min_quality, progress=progress,
                   echo=echo, predictor=_browse_predictor if run else None)


def _browse_predictor(run: Path, view):
    """``dfkit browse --run``: the run's predictions on the browsed view (the training stage's predict_corpus)."""
    from dfkit.train.predict import predict_corpus

    return predict_corpus(run, view, device="cpu")


# ---------------------------------------------------------------------------------------------------------------------
# train, eval, experiments

Settings = Union["TrainSettings", Mapping[str, Any], None]  # noqa: F821 - dfkit.train.settings.TrainSettings


def resolve_settings(config: Optional[PathLike] = None, given: Optional[Mapping[str, Any]] = None,
                     resume_dir: Optional[PathLike] = None):
    """The training settings: defaults < saved run config (when resuming) < ``config`` file < ``given`` (None
    values: not given); ``corpus`` unset resolves as ``--corpus`` does."""
    import json

    from dfkit.config import resolve_corpus
    from dfkit.train.settings import TrainSettings, load_settings_file

    d: dict[str, Any] = {}
    if resume_dir is not None and (Path(resume_dir) / "config.json").exists():
        try:
            saved = json.loads((Path(resume_dir) / "config.json").read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DfkitError(f"--resume: {Path(resume_dir) / 'config.json'} is damaged ({e})") from None
        if not isinstance(saved, dict):
            raise DfkitError(f"--resume: {Path(resume_dir) / 'config.json'} is not a run config")
        d.update({k: v for k, v in saved.items() if k in TrainSettings.keys()})
    if config is not None:
        d.update(load_settings_file(Path(config)))
    d.update({k: (str(v) if isinstance(v, Path) else v) for k, v in (given or {}).items() if v is not None})
    s = TrainSettings.from_dict(d)
    if not s.corpus:
        s.corpus = str(resolve_corpus(None))
    return s


def _settings(settings: Settings, config: Optional[PathLike], resume_dir: Optional[PathLike] = None):
    from dfkit.train.settings import TrainSettings

    if isinstance(settings, TrainSettings):
        if config is not None:
            raise TypeError("pass either TrainSettings or a config file with the settings to override")
        return settings
    return resolve_settings(config, settings, resume_dir)


def train(settings: Settings = None, *, config: Optional[PathLike] = None, resume: bool = False,
          overwrite: bool = False, echo: Echo = silent) -> dict[str, Any]:
    """``dfkit train``: ``settings`` are a :class:`~dfkit.train.settings.TrainSettings`, or the given options as a
    mapping over ``config`` (see :func:`resolve_settings`). Returns the run's summary."""
    from dfkit.train.runner import train_run

    out = settings.get("out") if isinstance(settings, Mapping) else getattr(settings, "out", None)
    if resume and not out:
        raise DfkitError("--resume needs --out RUN (the run folder to continue)")
    s = _settings(settings, config, resume_dir=out if resume else None)
    return train_run(s, echo=echo, resume=resume, overwrite=overwrite)


def evaluate(run: PathLike, *, corpus: Optional[PathLike] = None, datasets: Optional[str] = None,
             split: str = "test", out: Optional[PathLike] = None, min_quality: Optional[float] = None,
             n_boot: int = 1000, batch_size: int = 128, device: str = "auto", workers: Optional[int] = None,
             threads: Optional[int] = None, edc: bool = False, edc_max_discard: float = 0.8,
             drop_suspect: bool = False, echo: Echo = silent) -> dict[str, Any]:
    """``dfkit eval``: evaluate a run (metrics with bootstrap CIs, reports, predictions); returns the report.
    ``drop_suspect``: leave the suspect crops out of the evaluated ones."""
    from dfkit.train.evaluation import eval_run

    if n_boot < 0:
        raise DfkitError("--n-boot must be >= 0")
    if not 0.05 <= edc_max_discard < 1:
        raise DfkitError("--edc-max-discard must lie in [0.05, 1): the curve steps by 5% and something must remain")
    return eval_run(Path(run), corpus=corpus, datasets=datasets, split=split, out=out, min_quality=min_quality,
                    n_boot=n_boot, batch_size=batch_size, workers=workers, device=device, threads=threads,
                    echo=echo, edc=edc, edc_max_discard=edc_max_discard, drop_suspect=drop_suspect)


def _predict_inputs(inputs: Union[PathLike, Sequence[PathLike]]) -> list[Path]:
    """``dfkit predict``'s VIDEO|FOLDER|GLOB arguments -> the files, in order, once each: a file as given, a
    folder's video files (:data:`VIDEO_EXTS`, recursively, sorted), a glob's files (``**`` recurses). A path that
    does not exist, a folder without videos or a glob matching nothing is one line (exit 2)."""
    import glob

    items = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    if not items:
        raise DfkitError("dfkit predict needs VIDEO, FOLDER or GLOB")
    files: dict[Path, None] = {}
    for item in items:
        p = Path(item).expanduser()
        if p.is_file():
            found = [p]
        elif p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in VIDEO_EXTS)
            if not found:
                raise DfkitError(f"{p}: no video files there ({', '.join(sorted(VIDEO_EXTS))}, searched recursively)")
        elif glob.has_magic(str(item)):
            found = sorted(Path(f) for f in glob.glob(str(p), recursive=True) if Path(f).is_file())
            if not found:
                raise DfkitError(f"{item}: no file matches")
        else:
            raise DfkitError(f"{p}: no such file or folder")
        files.update(dict.fromkeys(found))
    return list(files)


def _predict_params(run: Path, cfg: Mapping[str, Any]):
    """The :class:`~dfkit.ingest.engine.IngestParams` the run's training crops were cut with (its corpus's manifest)
    and notes; a run whose corpus is gone is refused: runs themselves do not record the crop parameters."""
    from dfkit.corpus.store import MANIFEST, read_manifest
    from dfkit.ingest.single import params_from_manifest
    from dfkit.train.data import parse_list

    from dfkit.train.runner import CORPUS_INGESTS_KEY

    corpus = Path(str(cfg["corpus"])).expanduser() if cfg.get("corpus") else None
    if corpus is not None and (corpus / MANIFEST).is_file():
        manifest, where = read_manifest(corpus), str(corpus)
    elif cfg.get(CORPUS_INGESTS_KEY):  # the corpus is gone: the copy of its ingests the run recorded
        manifest, where = {"ingests": cfg[CORPUS_INGESTS_KEY]}, f"{run / 'config.json'} ({CORPUS_INGESTS_KEY})"
    else:
        where = f"its corpus {corpus} has no {MANIFEST}" if corpus else "its config names no corpus"
        raise DfkitError(f"{run}: the crop parameters (frames, size, margin, min_confidence) are read from the run's "
                         f"corpus, and {where}; the run (trained before dfkit recorded them) has no copy")
    try:
        return params_from_manifest(manifest, parse_list(cfg.get("datasets")))
    except DfkitError as e:
        raise DfkitError(f"{run}: {where}: {e}") from None


def predict(run: PathLike, inputs: Union[PathLike, Sequence[PathLike]], *, out_json: Optional[PathLike] = None,
            out_csv: Optional[PathLike] = None, device: str = "cpu", top_frames: int = 3, batch_size: int = 128,
            progress: bool = True, echo: Echo = silent, log: Echo = silent) -> dict[str, Any]:
    """``dfkit predict``: score video files with a trained run, each cut by the ingest engine with the run's corpus
    parameters (:func:`dfkit.ingest.single.crop_file`) and answered per video with eval's aggregation
    (:func:`dfkit.train.predict.video_prediction`).

    1. refused before any work: ``device``, ``top_frames``, an output whose folder does not exist, the run, its
       crop parameters (:func:`_predict_params`), the inputs (:func:`_predict_inputs`);
    2. per file (a progress bar over files): crops in memory, the model, the video's answer; a file that gives no
       crops (unreadable, no face) is one line on ``log`` and the rest go on;
    3. the table (``echo``), ``out_json`` / ``out_csv``.

    Returns ``{"run", "class_names", "params", "notes", "open_set", "videos": [one entry per file], "failed": [its
    paths]}``; the command exits 1 when ``failed`` is not empty."""
    from dataclasses import asdict

    from tqdm import tqdm

    from dfkit.ingest.single import USABLE, crop_file
    from dfkit.train import predict as tp

    dev = tp.check_device(device)
    if isinstance(top_frames, bool) or not isinstance(top_frames, int) or top_frames < 0:
        raise DfkitError(f"--top-frames must be a whole number of at least 0, not {top_frames!r}")
    outs = {opt: Path(p).expanduser() for opt, p in (("--json", out_json), ("--csv", out_csv)) if p is not None}
    for opt, p in outs.items():
        if p.is_dir() or not p.parent.is_dir():
            raise DfkitError(f"{opt} {p}: " + ("is a folder" if p.is_dir() else f"folder {p.parent} does not exist"))
    run = Path(run).expanduser()
    model, names, cfg = tp.load_run(run, device=dev)
    params, notes = _predict_params(run, cfg)
    open_set = tp.RunOpenSet(run)
    files = _predict_inputs(inputs)
    for n in notes:
        log(f"note: {n}")
    records, failed = [], []
    for f in tqdm(files, desc="predict", unit="file", disable=not progress, dynamic_ncols=True):
        vrow, crops = crop_file(f, params)
        answer = None
        if vrow.get("status") in USABLE and crops:
            probs, logits, emb = tp.predict_crops(model, [c["crop"] for c in crops], device=dev,
                                                  batch_size=batch_size, crop=cfg.get("crop", "resize"),
                                                  return_embeddings=True)
            answer = tp.video_prediction(probs, names, [c["frame_index"] for c in crops],
                                         [c["timestamp_s"] for c in crops], top_k=top_frames,
                                         open_set=open_set.video(logits, emb))
        else:
            failed.append(str(f))
            log(one_line(f"{f}: {vrow.get('status')} at {vrow.get('stage')}: {vrow.get('reason')}"))
        records.append(tp.prediction_record(str(f), vrow, answer))
    echo(tp.predictions_table(records, names))
    echo(f"{len(files) - len(failed)} of {len(files)} files scored with {run} ({cfg.get('task')}, classes "
         f"{', '.join(names)}); open-set score: {open_set.note()}")
    meta = {"run": str(run), "task": cfg.get("task"), "class_names": names, "params": asdict(params), "notes": notes,
            "open_set": open_set.describe()}
    if "--json" in outs:
        echo(f"written: {tp.write_predictions_json(outs['--json'], records, meta)}")
    if "--csv" in outs:
        echo(f"written: {tp.write_predictions_csv(outs['--csv'], records, names)}")
    return {**meta, "videos": records, "failed": failed}


def quality_sweep(settings: Settings = None, *, config: Optional[PathLike] = None,
                  thresholds: Union[str, Sequence[float]] = (0.0, 0.5, 0.6, 0.7),
                  seeds: Union[str, Sequence[int]] = (0, 1, 2), low_arm: bool = True,
                  metric: str = "balanced_accuracy", level: str = "video", n_boot: int = 1000,
                  out: PathLike = Path("runs/quality-sweep"), inject: Optional[str] = None,
                  separation_only: bool = False, suspect_arm: bool = False, echo: Echo = silent) -> dict[str, Any]:
    """``dfkit experiment quality-sweep``: train and evaluate at several training filters at equal training size
    (``inject``: first the known-effect check, ``separation_only``: only its AUROC; ``suspect_arm``: also the arm
    without the suspect crops). Prints the table; returns the sweep's report (with ``inject``: the known-effect
    report)."""
    from dfkit.train.experiments import (check_suspect_arm, parse_floats, parse_ints, quality_sweep as sweep,
                                         sweep_table_text)

    out = Path(out)
    if separation_only and not inject:
        raise DfkitError("--separation-only needs --inject KIND:LEVEL[:FRACTION]")
    s = _settings(settings, config)
    check_suspect_arm(suspect_arm, parse_floats(thresholds), s.drop_suspect)  # refused before anything runs
    if inject:
        from dfkit.quality.degrade import parse_injection
        from dfkit.train.known_effect import known_effect

        inj = parse_injection(inject)  # refused before anything runs or is written
        rep = known_effect(s, inj, thresholds=parse_floats(thresholds),
                           seeds=parse_ints(seeds), out=out, n_boot=n_boot, sweep=not separation_only,
                           metric=metric, level=level, low_arm=low_arm, suspect_arm=suspect_arm, echo=echo)
        if not separation_only:
            import json

            echo(sweep_table_text(json.loads((out / "sweep" / "sweep.json").read_text())))
        echo(f"known effect: {out / 'known_effect.json'}" + ("" if separation_only else
                                                              f" (sweep: {out / 'sweep' / 'sweep.md'})"))
        return rep
    rep = sweep(s, thresholds=parse_floats(thresholds), seeds=parse_ints(seeds), low_arm=low_arm, out=out,
                metric=metric, level=level, n_boot=n_boot, suspect_arm=suspect_arm, echo=echo)
    echo(sweep_table_text(rep))
    echo(f"sweep: {out / 'sweep.md'} (+ sweep.json, sweep.png" + (", edc.json, edc.png" if rep.get("edc") else "")
         + ")")
    return rep


def cross_dataset(settings: Settings = None, *, config: Optional[PathLike] = None, datasets: Optional[str] = None,
                  tasks: Union[str, Sequence[str]] = ("binary", "attribution"), metric: str = "balanced_accuracy",
                  level: str = "video", n_boot: int = 1000, out: PathLike = Path("runs/cross-dataset"),
                  echo: Echo = silent) -> dict[str, Any]:
    """``dfkit experiment cross-dataset``: train on each dataset, evaluate on each; returns the report."""
    from dfkit.train.experiments import cross_dataset as cross

    if level not in ("frame", "video"):
        raise DfkitError("--level must be frame or video")
    rep = cross(_settings(settings, config), datasets=datasets,
                tasks=tasks.split(",") if isinstance(tasks, str) else list(tasks), out=Path(out), metric=metric,
                level=level, n_boot=n_boot, echo=echo)
    echo(f"cross-dataset: {Path(rep['out_dir']) / 'cross_dataset.json'} (+ cross_dataset.md, cross_dataset.png)")
    return rep


def export_model(run: PathLike, *, fmt: str = "onnx", out: Optional[PathLike] = None, n_check: int = 32,
                 corpus: Optional[PathLike] = None, progress: bool = True, echo: Echo = silent) -> dict[str, Any]:
    """``dfkit export-model``: the run's best checkpoint as ONNX or TorchScript plus ``model.json`` (preprocessing,
    classes, the check against the checkpoint); returns that document (:func:`dfkit.train.export.export_model`)."""
    from dfkit.train.export import export_model as export

    doc = export(run, fmt, out=out, n_check=n_check, corpus=corpus, progress=progress)
    c = doc["check"]
    on = (f"{c['n']} {c['split']} crops of {c['corpus']}" if c["inputs"] == "corpus crops"
          else f"{c['n']} random inputs ({c['why']})")
    folder = Path(out).expanduser() if out is not None else Path(run).expanduser() / "export"
    echo(f"exported {doc['backbone']} ({len(doc['class_names'])} classes, {doc['img_size']} px) as {fmt}: "
         f"{folder / doc['file']} + {folder / 'model.json'}")
    echo(f"check on {on}, batch {c['batch_size']}: max abs logit difference {c['max_abs_diff']:.3g} "
         f"(tolerance {c['tolerance']:.3g}), arg-max agrees on {c['argmax_agree']:.0%}")
    return doc


def study_run(study: PathLike, *, corpus: Optional[PathLike] = None, out: Optional[PathLike] = None,
              dry_run: bool = False, quiet: bool = False, echo: Echo = silent) -> dict[str, Any]:
    """``dfkit study run``: expand the study file's grid and train/evaluate every cell not finished yet (``dry_run``:
    only the table of cells, their crops and the estimated cost). Returns the study's index."""
    from dfkit.train.study import load_study, run_study

    s = load_study(study, corpus=corpus, out=out)  # every key checked before anything runs or is written
    return run_study(s, dry_run=dry_run, progress=not quiet, echo=echo)


def study_report(study_dir: PathLike, *, out: Optional[PathLike] = None, echo: Echo = silent) -> dict[str, Any]:
    """``dfkit study report``: one table per question (paired differences with 95% CIs), the cross-dataset
    heatmaps and a self-contained HTML page. Returns the report."""
    from dfkit.train.study import report_study

    return report_study(Path(study_dir), out=out, echo=echo)
