"""``dfkit eval`` as a function: a trained run + a corpus selection -> metrics, reports, predictions.

For every crop of the selection (default: the run's datasets, the ``test`` split of the run's split scheme) the
run's best model predicts class probabilities (:func:`dfkit.train.predict.predict_rows`). Each crop's true class is
its canonical method (``real`` for reals); :func:`dfkit.train.scores.cross_dataset_attribution` scores the crops
whose class the model has (a binary model maps every fake to ``fake``) - frame level and video level (mean of the
frame probabilities per ``dataset/video_id``), each with a 95% bootstrap CI over videos - and reports fakes of
methods the model never saw separately (how they spread over the known classes). Written to ``--out``::

    eval.json            everything (overall and per dataset)
    eval.md / eval.html  the tables
    confusion_frame.png / confusion_video.png
    predictions.parquet  sample_id, pred, confidence, probs, logits (+ class names in the file metadata)
    openset_scores.parquet  sample_id and the open-set scores of each crop (msp, energy, prototype; higher = more
                         likely an unknown method, :mod:`dfkit.train.openset`)
    edc.json / edc.png   with ``--edc``: error-versus-discard curves by quality (:mod:`dfkit.train.edc`)

``min_quality`` (``dfkit eval --min-quality``) is the evaluation filter: it keeps the evaluated crops (those of
``split``) with ``quality >= min_quality``, in [0, 1]; the run's own training filter (``dfkit train --min-quality``,
which never touched validation or test) is not applied. ``drop_suspect`` (``dfkit eval --drop-suspect``, off by
default) leaves the suspect crops (:func:`dfkit.corpus.schema.suspect_mask`) out of the evaluated ones; the report's
``drop_suspect`` says how many per class (a corpus without the suspect column is refused before anything is
written). Whether the run itself was trained with ``--drop-suspect`` does not change what is evaluated.

Open set (:mod:`dfkit.train.openset`): every crop gets the rejection scores (MSP, energy and, when the run stores
class prototypes, the prototype distance; an old run without them: the first two and a note); when the evaluated
crops hold unseen methods (e.g. the run's ``--holdout-methods``), ``eval.json``'s ``open_set`` (and eval.md/html,
the summary line) reports for each score the AUROC of unseen versus known videos with a bootstrap CI, the
known-class accuracy at the run's validation-chosen threshold and the rejection rates it gives on these videos, and
with >= 2 unseen methods the NMI/ARI of k-means on their videos' mean embeddings.
"""

from __future__ import annotations

import html
import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from dfkit.errors import DfkitError
from dfkit.train.data import (REAL, apply_split, corpus_view, parse_list, require_suspect_column, split_assignment,
                              suspect_counts)

Echo = Callable[[str], None]

#: a predictions file's metadata key: the run's class names (JSON list), in the order of ``probs``/``logits``
META_CLASS_NAMES = b"dfkit.class_names"
#: the per-crop open-set scores eval writes beside predictions.parquet
OPENSET_SCORES_FILE = "openset_scores.parquet"

__all__ = ["eval_run", "eval_rows", "save_predictions", "load_predictions", "summary_line"]


def _rows_for(run_dir: Path, cfg: dict[str, Any], root: Path, datasets: list[str] | None, split: str,
              min_quality: float | None, drop_suspect: bool = False,
              suspect: dict[str, Any] | None = None) -> tuple[pd.DataFrame, list[Path], list[str]]:
    """The evaluated rows, the crop files and notes; ``suspect`` (a dict) receives the ``drop_suspect`` record."""
    from dfkit.corpus.reader import Filter
    from dfkit.corpus.schema import SUSPECT_COLUMN, suspect_mask

    notes: list[str] = []
    mode = cfg.get("split", "official")
    whole, meta, scheme = corpus_view(root, mode, datasets)
    if drop_suspect:
        require_suspect_column(meta)
    if datasets:
        meta = meta[meta["dataset"].isin(datasets)]
    if scheme == "official" and mode != "official":
        saved = run_dir / "splits.parquet"
        assign = pd.read_parquet(saved) if saved.exists() else None
        keys = meta[["dataset", "video_id"]].drop_duplicates()
        if assign is not None:
            missing = keys.merge(assign, on=["dataset", "video_id"], how="left")["split"].isna().sum()
        else:
            missing = len(keys)
        if missing:
            fresh = split_assignment(root, mode, int(cfg.get("split_seed", 0)))
            if assign is not None and fresh is not None:
                fresh = fresh.merge(assign[["dataset", "video_id"]], on=["dataset", "video_id"], how="left",
                                    indicator=True)
                fresh = fresh[fresh["_merge"] == "left_only"].drop(columns="_merge")
                assign = pd.concat([assign, fresh], ignore_index=True)
            else:
                assign = fresh
            notes.append(f"{missing} videos were not in the run's split table; their {mode} split was computed now")
        meta = apply_split(meta, assign)
    if split != "all":
        meta = meta[meta["split"] == split]
    if min_quality is not None:
        meta = Filter(min_quality=min_quality).apply(meta)
    record: dict[str, Any] = {"enabled": bool(drop_suspect)}
    if drop_suspect or SUSPECT_COLUMN in meta.columns:
        sus = suspect_mask(meta).to_numpy(bool)
        record["dropped" if drop_suspect else "kept"] = suspect_counts(meta[sus], "attribution")
        if drop_suspect:
            meta = meta[~sus]
            notes.append(f"--drop-suspect left out {int(sus.sum())} suspect crops ({SUSPECT_COLUMN} true)")
        elif sus.any():
            notes.append(f"{int(sus.sum())} evaluated crops are suspect ({SUSPECT_COLUMN} true): --drop-suspect "
                         "leaves them out")
    if suspect is not None:
        suspect.update(record)
    if meta.empty:
        what = f"{', '.join(datasets) if datasets else 'all datasets'}, split {split}"
        hint = ("; an identity split of few identity groups can leave a split empty (see the run's splits.parquet;"
                " try another --split-seed or --split official)") if mode != "official" else ""
        raise DfkitError(f"no crops to evaluate ({what}" + (f", quality >= {min_quality}" if min_quality else "")
                         + (", suspect crops dropped" if drop_suspect else "") + ")" + hint)
    return meta.reset_index(drop=True), whole.crop_files(), notes


def save_predictions(df: pd.DataFrame, path: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    t = pa.Table.from_pandas(df, preserve_index=False)
    md = dict(t.schema.metadata or {})
    md[META_CLASS_NAMES] = json.dumps(df.attrs.get("class_names", [])).encode()
    pq.write_table(t.replace_schema_metadata(md), path)
    return path


def load_predictions(path: str | Path) -> pd.DataFrame:
    """A predictions file of :func:`save_predictions`, with ``df.attrs["class_names"]`` restored."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.exists():
        raise DfkitError(f"no predictions at {path} (evaluate the run first)")
    t = pq.read_table(path)
    df = t.to_pandas()
    raw = (t.schema.metadata or {}).get(META_CLASS_NAMES)
    df.attrs["class_names"] = json.loads(raw) if raw else []
    return df


def eval_rows(meta: pd.DataFrame, preds: pd.DataFrame, class_names: Sequence[str], *, n_boot: int = 1000,
              seed: int = 0) -> dict[str, Any]:
    """Metrics of predictions ``preds`` (from :func:`~dfkit.train.predict.predict_rows`, same row order as
    ``meta``): ``{"overall": cross_dataset_attribution(...), "per_dataset": {name: ...}}``."""
    from dfkit.train.scores import cross_dataset_attribution

    if len(meta) != len(preds) or (meta["sample_id"].astype(str).to_numpy() != preds["sample_id"].to_numpy()).any():
        raise ValueError("predictions and metadata are not aligned")
    probs = np.asarray(preds["probs"].tolist(), dtype=np.float64)
    methods = np.where(meta["label"].to_numpy() == REAL, REAL, meta["method_canonical"].astype(str).to_numpy())
    keys = (meta["dataset"].astype(str) + "/" + meta["video_id"].astype(str)).to_numpy()
    out: dict[str, Any] = {"overall": cross_dataset_attribution(class_names, methods, probs, keys, n_boot=n_boot,
                                                                seed=seed)}
    ds = meta["dataset"].to_numpy()
    per = {}
    if len(set(ds)) > 1:
        for d in sorted(set(ds)):
            m = ds == d
            per[str(d)] = cross_dataset_attribution(class_names, methods[m], probs[m], keys[m], n_boot=n_boot,
                                                    seed=seed)
    out["per_dataset"] = per
    return out


def _v(stat: dict[str, Any] | None) -> str:
    if not stat or stat.get("value") is None:
        return "n/a"
    s = f"{stat['value']:.3f}"
    if stat.get("ci"):
        s += f" [{stat['ci'][0]:.3f}, {stat['ci'][1]:.3f}]"
    return s


def summary_line(res: dict[str, Any]) -> str:
    """One line: the known-class metrics (video and frame) and the unseen methods."""
    k = res.get("known")
    if k is None:
        line = "no crop of a class the model knows"
    else:
        line = (f"video balanced accuracy {_v(k['video']['balanced_accuracy'])}, accuracy "
                f"{_v(k['video']['accuracy'])}; frame accuracy {_v(k['frame']['accuracy'])}"
                f" ({k['n_frames']} frames, {k['n_videos']} videos)")
        if "eer" in k["video"]:
            line += f"; video AUC {_v(k['video']['auc'])}, EER {_v(k['video']['eer'])}"
    if res.get("unseen_methods"):
        line += f"; unseen methods (not scored): {', '.join(res['unseen_methods'])}"
    return line


def _html(report: dict[str, Any]) -> str:
    def block(name: str, res: dict[str, Any]) -> str:
        rows = []
        k = res.get("known")
        if k is not None:
            labels = [("accuracy", "accuracy"), ("balanced_accuracy", "balanced accuracy"), ("macro_f1", "macro-F1"),
                      ("auc", "AUC")] + ([("eer", "EER")] if "eer" in k["frame"] else [])
            for key, label in labels:
                rows.append(f"<tr><td>{label}</td><td>{_v(k['frame'][key])}</td><td>{_v(k['video'][key])}</td></tr>")
            for c in k["class_names"]:
                rows.append(f"<tr><td>recall {html.escape(c)}</td><td>{_v(k['frame']['per_class_recall'][c])}</td>"
                            f"<td>{_v(k['video']['per_class_recall'][c])}</td></tr>")
        t = (f"<h2>{html.escape(name)}</h2><table><tr><th>metric</th><th>frame</th><th>video</th></tr>"
             + "".join(rows) + "</table>")
        if res.get("unseen"):
            names = res["class_names"]
            t += ("<h3>Unseen methods (share of videos predicted as each class)</h3><table><tr><th>method</th>"
                  + "".join(f"<th>{html.escape(n)}</th>" for n in names) + "</tr>")
            for m, e in res["unseen"].items():
                t += (f"<tr><td>{html.escape(m)}</td>"
                      + "".join(f"<td>{e['video_predicted_as'][n]:.3f}</td>" for n in names) + "</tr>")
            t += "</table>"
        return t

    body = block("all selected", report["overall"]) + "".join(block(d, r) for d, r in report["per_dataset"].items())
    if report.get("open_set") and report["open_set"]["unseen_methods"]:
        from dfkit.train.openset import html_block

        body += html_block(report["open_set"])
    if report.get("edc"):
        from dfkit.train.edc import edc_html

        body += edc_html(report["edc"], png=report.get("files", {}).get("edc_png"))
    head = (f"<p>run <code>{html.escape(report['run'])}</code>, datasets {html.escape(', '.join(report['datasets']))}"
            f", split {html.escape(report['split'])}; 95% bootstrap CIs over videos</p>")
    style = ("<style>body{font-family:sans-serif}table{border-collapse:collapse;margin:8px 0}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child{text-align:left}</style>")
    return f"<!doctype html><html><head><meta charset='utf-8'><title>dfkit eval</title>{style}</head><body>" \
           f"<h1>dfkit eval</h1>{head}{body}</body></html>\n"


def _open_set(run: Path, cfg: dict[str, Any], meta: pd.DataFrame, preds: pd.DataFrame, emb: np.ndarray | None,
              names: Sequence[str], n_boot: int, seed: int, out_dir: Path) -> dict[str, Any]:
    """The open-set section of the report (:func:`dfkit.train.openset.evaluate_open_set`); writes the per-crop
    scores to ``out_dir/OPENSET_SCORES_FILE``."""
    from dfkit.train.data import parse_list
    from dfkit.train.openset import RunOpenSet, evaluate_open_set

    methods = np.where(meta["label"].to_numpy() == REAL, REAL, meta["method_canonical"].astype(str).to_numpy())
    keys = (meta["dataset"].astype(str) + "/" + meta["video_id"].astype(str)).to_numpy()
    logits = np.asarray(preds["logits"].tolist(), dtype=np.float64)
    ros = RunOpenSet(run)
    held = ros.record.get("holdout_methods") or parse_list(cfg.get("holdout_methods"))  # canonical, else as given
    section, cs = evaluate_open_set(methods, keys, logits, emb, names, ros, holdout_methods=held, n_boot=n_boot,
                                    seed=seed)
    pd.DataFrame({"sample_id": preds["sample_id"].to_numpy(), **{n: v.astype(float) for n, v in cs.items()}}) \
        .to_parquet(out_dir / OPENSET_SCORES_FILE, index=False)
    return section


def eval_run(run_dir: str | Path, *, corpus: str | Path | None = None, datasets: Sequence[str] | str | None = None,
             split: str = "test", out: str | Path | None = None, min_quality: float | None = None,
             n_boot: int = 1000, batch_size: int = 128, workers: int | None = None, device: str = "auto",
             threads: int | None = None, echo: Echo = print, seed: int = 0, edc: bool = False,
             edc_max_discard: float = 0.8, drop_suspect: bool = False) -> dict[str, Any]:
    """Evaluate the run in ``run_dir`` (see the module docstring). Returns the report dict (also ``eval.json``).
    ``edc``: also the error-versus-discard curves of the crops' ``quality`` (``edc.json``, ``edc.png``, a line in
    the reports), discarding up to ``edc_max_discard``. ``drop_suspect``: leave the suspect crops out."""
    import torch

    from dfkit.config import resolve_corpus
    from dfkit.train.data import default_workers
    from dfkit.train.scores import save_confusion_png, to_markdown
    from dfkit.train.predict import load_run, predict_rows
    from dfkit.train.runner import default_threads

    from dfkit.train.settings import check_quality

    t0 = time.perf_counter()
    run = Path(run_dir).expanduser()
    min_quality = check_quality(min_quality, "--min-quality")  # refused before anything is read or written
    if split not in ("train", "val", "test", "all"):
        raise DfkitError(f"--split must be train, val, test or all, not {split!r}")
    if device not in ("auto", "cpu") and not str(device).startswith("cuda"):
        raise DfkitError(f"--device must be cpu, cuda or auto, not {device!r}")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise DfkitError(f"--device {device}: CUDA is not available on this machine")
    dev = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    workers = default_workers() if workers is None else max(0, int(workers))
    threads = default_threads(workers) if threads is None else max(1, int(threads))
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model, names, cfg = load_run(run, device=dev)
        if corpus is not None:
            root = Path(corpus).expanduser()
        elif cfg.get("corpus") and Path(cfg["corpus"]).exists():
            root = Path(cfg["corpus"])
        else:
            root = resolve_corpus(None)
        ds = parse_list(datasets) or cfg.get("datasets")
        suspect: dict[str, Any] = {}
        meta, files, notes = _rows_for(run, cfg, root, ds, split, min_quality, drop_suspect, suspect)
        if edc and ("quality" not in meta.columns or not meta["quality"].notna().any()):
            raise DfkitError("--edc needs quality scores, and the evaluated crops have none: run `dfkit quality` "
                             "on the corpus first")
        out_dir = Path(out).expanduser() if out else run / f"eval_{'-'.join(ds) if ds else 'all'}_{split}"
        out_dir.mkdir(parents=True, exist_ok=True)
        echo(f"eval {run} on {', '.join(ds) if ds else 'all datasets'} ({split} split, {cfg.get('split', 'official')}"
             f" scheme): {len(meta)} crops, {meta.groupby(['dataset', 'video_id']).ngroups} videos"
             + (f" ({suspect['dropped']['frames']} suspect crops dropped)" if drop_suspect else ""))
        preds, emb = predict_rows(model, files, meta, names, device=dev, batch_size=batch_size, workers=workers,
                                  crop=cfg.get("crop", "resize"), return_embeddings=True)
    finally:
        torch.set_num_threads(old_threads)
    save_predictions(preds, out_dir / "predictions.parquet")
    res = eval_rows(meta, preds, names, n_boot=n_boot, seed=seed)
    open_set = _open_set(run, cfg, meta, preds, emb, names, n_boot, seed, out_dir)
    report = {
        "run": str(run), "corpus": str(root), "datasets": ds or sorted(meta["dataset"].unique().tolist()),
        "split": split, "split_scheme": cfg.get("split", "official"), "min_quality": min_quality,
        "drop_suspect": suspect,
        "task": cfg.get("task"), "backbone": cfg.get("backbone"), "class_names": names,
        "n_frames": int(len(meta)), "notes": notes, **res, "open_set": open_set,
    }
    k = res["overall"]["known"]
    files_out = {"json": "eval.json", "markdown": "eval.md", "html": "eval.html",
                 "predictions": "predictions.parquet", "openset_scores": OPENSET_SCORES_FILE}
    if k is not None:
        for lv in ("frame", "video"):
            save_confusion_png(k[lv]["confusion_matrix"], names, out_dir / f"confusion_{lv}.png",
                               title=f"{lv} level ({k[lv]['n']} {lv}s)")
            files_out[f"confusion_{lv}"] = f"confusion_{lv}.png"
    if edc:
        from dfkit.train.edc import edc_from_predictions, write_edc

        report["edc"] = edc_from_predictions(meta, preds, names, n_boot=n_boot, seed=seed,
                                             max_discard=edc_max_discard)
        files_out.update(write_edc(report["edc"], out_dir, title=f"{run.name}: error versus discard"))
    report["files"] = files_out
    report["seconds"] = time.perf_counter() - t0
    (out_dir / "eval.json").write_text(json.dumps(report, indent=1, allow_nan=False))
    md = [f"# dfkit eval: {run.name}", "",
          f"run `{run}` ({cfg.get('task')}, {cfg.get('backbone')}), corpus `{root}`, datasets "
          f"{', '.join(report['datasets'])}, split {split} ({report['split_scheme']} scheme)"
          + (f", quality >= {min_quality}" if min_quality is not None else "")
          + (f", {suspect['dropped']['frames']} suspect crops dropped" if drop_suspect else "") + ".", ""]
    md.append(to_markdown(res["overall"], title="All selected crops"))
    for d, r in res["per_dataset"].items():
        md.append(to_markdown(r, title=d))
    if open_set["unseen_methods"]:
        from dfkit.train.openset import markdown as openset_markdown

        md.append(openset_markdown(open_set))
    if edc:
        from dfkit.train.edc import edc_markdown

        md.append(edc_markdown(report["edc"]) + "\n![error versus discard](edc.png)\n")
    for n in notes:
        md.append(f"_Note: {n}._\n")
    (out_dir / "eval.md").write_text("\n".join(md))
    (out_dir / "eval.html").write_text(_html(report))
    echo("  " + summary_line(res["overall"]))
    for d, r in res["per_dataset"].items():
        echo(f"  {d}: " + summary_line(r))
    if open_set["unseen_methods"]:
        from dfkit.train.openset import summary_text

        echo("  " + summary_text(open_set))
        for n in open_set["notes"]:
            echo(f"  open-set note: {n}")
    if edc:
        from dfkit.train.edc import edc_summary_line

        echo("  " + edc_summary_line(report["edc"]))
    echo(f"  report: {out_dir / 'eval.md'} (+ eval.json, eval.html, confusion_*.png, predictions.parquet, "
         f"{OPENSET_SCORES_FILE}"
         + (", edc.json, edc.png" if edc else "") + ")")
    report["out_dir"] = str(out_dir)
    return report
