"""Predictions of a trained run on a corpus view.

>>> import dfkit.corpus
>>> from dfkit.train.predict import predict_corpus
>>> view = dfkit.corpus.open("dfkit-corpus").select(datasets="ffpp", splits="test")
>>> df = predict_corpus("runs/attr-b0", view)
>>> df.columns.tolist()   # ['sample_id', 'pred', 'confidence', 'probs', 'logits']
>>> df.attrs["class_names"]

``pred`` is the arg-max class name, ``confidence`` its softmax probability, ``probs``/``logits`` one value per class
in ``df.attrs["class_names"]`` order. Rows follow the view's metadata order (shard order). The model is the run's
``best`` checkpoint (``last`` when there is no ``best``).

Files outside any corpus (``dfkit predict``): :func:`predict_crops` runs the model on crops held in memory (the
encoded images the ingest engine cuts, decoded, fitted and normalised exactly as the evaluation loader does:
:func:`~dfkit.train.data.fit_crop`, :func:`~dfkit.train.data.normalize_batch`), and :func:`video_prediction` makes a
video's answer from its frames' probabilities with eval's video-level aggregation
(:func:`dfkit.train.scores.video_level`, the mean of the frame probabilities): the class distribution, ``p_fake``,
the top class and its confidence, and the frames that weigh most. Its ``open_set`` is the run's
:class:`~dfkit.train.openset.RunOpenSet` answer for the same crops: the mean MSP, energy and prototype-distance scores
(higher = more likely an unknown method), the run's validation thresholds and ``unknown`` ("unknown method?": the
primary score -- the prototype distance when the run has prototypes -- above its threshold).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from dfkit.errors import DfkitError
from dfkit.train.openset import RunOpenSet  # re-exported: the open-set side of dfkit predict

__all__ = ["load_run", "run_checkpoint", "predict_corpus", "predict_rows", "predict_crops", "video_prediction",
           "check_device", "RunOpenSet"]


def run_checkpoint(run_dir: str | Path, which: str = "best") -> Path:
    """The checkpoint ``run_dir/<which>`` (``best`` falls back to ``last``)."""
    from dfkit.train.checkpoint import checkpoint_paths

    run = Path(run_dir).expanduser()
    if not run.is_dir():
        raise DfkitError(f"no run at {run} (train one with `dfkit train --out {run}`)")
    for name in ([which, "last"] if which == "best" else [which]):
        st, js = checkpoint_paths(run / name)
        if st.exists() and js.exists():
            return run / name
    raise DfkitError(f"{run} holds no checkpoint ({which}.safetensors / {which}.json)")


def load_run(run_dir: str | Path, which: str = "best", device: str = "cpu"):
    """``(model in eval mode on device, class_names, run config dict)`` of a run folder."""
    from dfkit.train.checkpoint import build_model_from_checkpoint, read_checkpoint_meta

    ckpt = run_checkpoint(run_dir, which)
    meta = read_checkpoint_meta(ckpt)["meta"]
    cfg_path = Path(run_dir) / "config.json"
    config = json.loads(cfg_path.read_text()) if cfg_path.exists() else dict(meta.get("run", {}).get("settings", {}))
    import logging

    lg = logging.getLogger("dfkit.train")
    level = lg.level
    lg.setLevel(logging.WARNING)  # "loaded local weights" is noise here
    try:
        model = build_model_from_checkpoint(ckpt)
    finally:
        lg.setLevel(level)
    from dfkit.train.loop import resolve_device

    model.to(resolve_device(device)).eval()
    names = list(meta.get("class_names") or [str(i) for i in range(model.num_classes)])
    return model, names, config


def _softmax(logits: np.ndarray) -> np.ndarray:
    """Class probabilities (float64) of ``N x C`` logits: the one softmax of every prediction path here."""
    z = logits - logits.max(1, keepdims=True)
    probs = np.exp(z)
    probs /= probs.sum(1, keepdims=True)
    return probs


def predict_rows(model, files, rows: pd.DataFrame, class_names: list[str], *, device: str = "cpu",
                 batch_size: int = 128, workers: int = 0, progress: bool = False,
                 crop: str = "resize", return_embeddings: bool = False):
    """Run ``model`` over corpus ``rows`` (metadata with ``_file``/``_row``); see the module docstring. ``crop``:
    how crops are fitted to the model's input (the run's ``crop`` setting). ``return_embeddings``: return
    ``(df, embeddings N x D float64 or None)``, the penultimate embeddings of the same forward pass
    (:func:`dfkit.train.openset.forward_with_embeddings`)."""
    import torch

    from dfkit.train.data import make_eval_loader
    from dfkit.train.loop import resolve_device
    from dfkit.train.openset import forward_with_embeddings

    dev = resolve_device(device)
    if rows.empty:
        raise DfkitError("nothing to predict: the selection holds no crops")
    loader = make_eval_loader(files, rows, img_size=model.img_size, batch_size=batch_size, workers=workers,
                              mean=model.mean, std=model.std, device=dev, crop=crop)
    logits_all, emb_all = [], []
    it = loader
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(loader, desc="predict", unit="batch")
    model.eval()
    with torch.no_grad():
        for b in it:
            if return_embeddings:
                lo, e = forward_with_embeddings(model, b["image"])
                if e is not None:
                    emb_all.append(e.float().cpu().numpy())
            else:
                lo = model(b["image"])
            logits_all.append(lo.float().cpu().numpy())
    logits = np.concatenate(logits_all).astype(np.float64)
    probs = _softmax(logits)
    pred = probs.argmax(1)
    names = np.asarray(class_names, dtype=object)
    df = pd.DataFrame({
        "sample_id": rows["sample_id"].astype(str).to_numpy(),
        "pred": names[pred],
        "confidence": probs[np.arange(len(pred)), pred].astype(float),
        "probs": [p.tolist() for p in probs.astype(np.float32).astype(float)],
        "logits": [v.tolist() for v in logits.astype(np.float32).astype(float)],
    })
    df.attrs["class_names"] = list(class_names)
    if return_embeddings:
        return df, (np.concatenate(emb_all).astype(np.float64) if emb_all else None)
    return df


def predict_corpus(run_dir: str | Path, corpus_view, device: str = "cpu", batch_size: int = 128,
                   workers: int = 0, rows: pd.DataFrame | None = None, progress: bool = False) -> pd.DataFrame:
    """Predictions of the run in ``run_dir`` for every crop of ``corpus_view`` (a ``dfkit.corpus`` view, e.g.
    ``dfkit.corpus.open(path).select(...)``; ``rows`` may pass a subset of its metadata).

    Returns a DataFrame with ``sample_id``, ``pred`` (class name), ``confidence`` (float), ``probs`` and ``logits``
    (lists of floats in class order), and ``df.attrs["class_names"]``."""
    model, names, config = load_run(run_dir, device=device)
    meta = corpus_view.metadata() if rows is None else rows
    return predict_rows(model, corpus_view.crop_files(), meta, names, device=device, batch_size=batch_size,
                        workers=workers, progress=progress, crop=config.get("crop", "resize"))


# ----------------------------------------------------------------------------------------------------------------------
# files outside any corpus (``dfkit predict``)


#: frames listed per video (:func:`video_prediction`'s ``top_k``) unless asked otherwise
TOP_FRAMES = 3


def check_device(device: str) -> str:
    """``cpu``, ``cuda`` or ``cuda:N`` that this machine has, else one line (``--device``)."""
    d = str(device)
    if d == "cpu":
        return d
    m = re.fullmatch(r"cuda(?::(\d+))?", d)
    if m is None:
        raise DfkitError(f"--device must be cpu, cuda or cuda:N, not {device!r}")
    import torch

    if not torch.cuda.is_available():
        raise DfkitError(f"--device {d}: CUDA is not available on this machine")
    if m.group(1) is not None and int(m.group(1)) >= torch.cuda.device_count():
        raise DfkitError(f"--device {d}: this machine has {torch.cuda.device_count()} CUDA device(s) "
                         f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})")
    return d


def predict_crops(model, crops: Sequence[bytes], *, device: str = "cpu", batch_size: int = 128,
                  crop: str = "resize", return_embeddings: bool = False):
    """``(probs, logits)``, each ``N x C`` float64, of ``model`` on encoded crop images held in memory (the ``crop``
    bytes of the ingest engine's rows). Each crop goes the evaluation loader's way: decoded
    (:func:`~dfkit.corpus.codec.decode_crop`), fitted to the model's input by ``crop`` (the run's setting,
    :func:`~dfkit.train.data.fit_crop`), normalised with the backbone's mean/std on the device
    (:func:`~dfkit.train.data.normalize_batch`); the probabilities are rounded to float32 as
    :func:`predict_rows` stores them. ``return_embeddings``: ``(probs, logits, embeddings N x D or None)``, for the
    open-set scores (:class:`dfkit.train.openset.RunOpenSet`)."""
    import torch

    from dfkit.train.openset import forward_with_embeddings

    from dfkit.corpus.codec import decode_crop
    from dfkit.train.data import CROP_MODES, fit_crop, normalize_batch
    from dfkit.train.loop import resolve_device

    if crop not in CROP_MODES:
        raise DfkitError(f"crop must be one of {', '.join(CROP_MODES)}, not {crop!r}")
    if not len(crops):
        raise DfkitError("nothing to predict: no crops")
    dev = resolve_device(device)
    s = int(model.img_size)
    bs = max(1, int(batch_size))
    logits_all, emb_all = [], []
    model.eval()
    with torch.no_grad():
        for i in range(0, len(crops), bs):
            part = crops[i:i + bs]
            out = np.empty((len(part), s, s, 3), dtype=np.uint8)
            for k, data in enumerate(part):
                out[k] = fit_crop(decode_crop(data), s, crop)
            x = torch.from_numpy(out).permute(0, 3, 1, 2).to(dev)
            lo, e = forward_with_embeddings(model, normalize_batch(x, model.mean, model.std))
            logits_all.append(lo.float().cpu().numpy())
            if e is not None:
                emb_all.append(e.float().cpu().numpy())
    logits = np.concatenate(logits_all).astype(np.float64)
    probs = _softmax(logits).astype(np.float32).astype(np.float64)
    logits = logits.astype(np.float32).astype(np.float64)
    if return_embeddings:
        return probs, logits, (np.concatenate(emb_all).astype(np.float64) if emb_all else None)
    return probs, logits


def video_prediction(probs: np.ndarray, class_names: Sequence[str], frame_indices: Sequence[int],
                     timestamps: Sequence[float | None] | None = None, top_k: int = TOP_FRAMES,
                     open_set: dict[str, Any] | None = None) -> dict[str, Any]:
    """A video's answer from its frames' class probabilities (``N x C``, frames in ``frame_indices`` order):

    - ``probs``: ``{class: probability}``, eval's video-level aggregation (:func:`dfkit.train.scores.video_level`:
      the mean of the frame probabilities), so a video scored here and by ``dfkit eval`` on the same crops gets the
      same numbers;
    - ``pred`` / ``confidence``: the top class and its probability (eval's video-level prediction, the arg-max);
    - ``p_fake``: P(fake) -- the ``fake`` class of a binary run, ``1 - P(real)`` of an attribution run with a real
      class, None without one;
    - ``top_frames``: the ``top_k`` frames that weigh most in the top class: the video's probability of the top
      class is the mean over frames, so a frame weighs by its own probability of that class; each is
      ``{"frame_index", "timestamp_s", "p", "share"}`` with ``share`` its part of the sum over frames (largest
      first; ties in frame order);
    - ``n_frames``: the frames scored;
    - ``open_set``: as given (the run's :meth:`RunOpenSet.video` answer for the same crops), else None."""
    from dfkit.train.scores import video_level

    p = np.asarray(probs, dtype=np.float64)
    names = [str(c) for c in class_names]
    if p.ndim != 2 or p.shape != (len(frame_indices), len(names)) or not len(p):
        raise ValueError("probs must be N x C for N >= 1 frames and the C class names")
    _, _, _, pv = video_level(np.zeros(len(p), dtype=np.int64), p, ["video"] * len(p))
    pv = pv[0]
    top = int(pv.argmax())
    if "fake" in names:
        p_fake: float | None = float(pv[names.index("fake")])
    elif "real" in names:
        p_fake = float(1.0 - pv[names.index("real")])
    else:
        p_fake = None
    weight = p[:, top]
    order = np.argsort(-weight, kind="stable")[:max(0, int(top_k))]
    total = float(weight.sum())
    ts = list(timestamps) if timestamps is not None else [None] * len(p)
    frames = [{"frame_index": int(frame_indices[t]), "timestamp_s": None if ts[t] is None else float(ts[t]),
               "p": float(weight[t]), "share": float(weight[t] / total) if total > 0 else 0.0} for t in order]
    return {"probs": {n: float(v) for n, v in zip(names, pv)}, "pred": names[top], "confidence": float(pv[top]),
            "p_fake": p_fake, "top_frames": frames, "n_frames": int(len(p)), "open_set": open_set}


def prediction_record(path: str, video_row: dict[str, Any], answer: dict[str, Any] | None) -> dict[str, Any]:
    """One file's entry of ``dfkit predict``'s output: where it is and how it went (the ingest engine's
    ``status``/``stage``/``reason``), and :func:`video_prediction`'s answer (None values for a file that gave no
    crops). ``open_set``: the run's open-set answer (:meth:`RunOpenSet.video`: the scores, the thresholds,
    ``unknown``), None for a file that gave no crops."""
    rec: dict[str, Any] = {"path": str(path), "status": video_row.get("status"), "stage": video_row.get("stage"),
                           "reason": video_row.get("reason"), "n_sampled": video_row.get("n_sampled"),
                           "n_frames": None, "pred": None, "confidence": None, "p_fake": None, "probs": None,
                           "open_set": None, "top_frames": None}
    if answer is not None:
        rec.update(answer)
    return rec


def _num(v: float | None, width: int) -> str:
    return f"{v:>{width}.3f}" if v is not None else f"{'-':>{width}}"


def _unknown(r: dict[str, Any]) -> str:
    """``yes``/``no``: the video's primary open-set score is above the run's threshold; ``-`` without one."""
    u = (r.get("open_set") or {}).get("unknown")
    return "-" if u is None else ("yes" if u else "no")


def predictions_table(records: Sequence[dict[str, Any]], class_names: Sequence[str]) -> str:
    """The on-screen table of :func:`prediction_record` entries: file, frames scored, top class, its confidence,
    P(fake), "unknown method?" (the open-set decision, :func:`_unknown`), every class's probability (a binary
    run: P(fake) alone) and the frames that weigh most."""
    names = [str(c) for c in class_names]
    per_class = names if "fake" not in names else []
    fw = max([4] + [len(r["path"]) for r in records])
    pw = max([4] + [len(n) for n in names])
    head = (f"{'file':<{fw}}  {'frames':>6}  {'pred':<{pw}}  {'conf':>5}  {'P(fake)':>7}  {'unknown?':>8}"
            + "".join(f"  {n:>{max(5, len(n))}}" for n in per_class) + "  top frames (frame: p of pred)")
    lines = [head]
    for r in records:
        if r["pred"] is None:
            lines.append(f"{r['path']:<{fw}}  {'-':>6}  {r['status']}: {r['reason']}")
            continue
        frames = ", ".join(f"{f['frame_index']}: {f['p']:.2f}" for f in r["top_frames"])
        lines.append(f"{r['path']:<{fw}}  {r['n_frames']:>6}  {r['pred']:<{pw}}  {_num(r['confidence'], 5)}  "
                     f"{_num(r['p_fake'], 7)}  {_unknown(r):>8}"
                     + "".join(f"  {_num(r['probs'][n], max(5, len(n)))}" for n in per_class) + f"  {frames}")
    return "\n".join(lines)


def write_predictions_json(path: str | Path, records: Sequence[dict[str, Any]], meta: dict[str, Any]) -> Path:
    """``{**meta, "videos": records}`` as JSON at ``path`` (``meta["open_set"]``: :meth:`RunOpenSet.describe`)."""
    path = Path(path)
    path.write_text(json.dumps({**meta, "videos": list(records)}, indent=1, allow_nan=False) + "\n")
    return path


def write_predictions_csv(path: str | Path, records: Sequence[dict[str, Any]], class_names: Sequence[str]) -> Path:
    """One row per file: ``path, status, stage, reason, n_frames, pred, confidence, p_fake, p_<class>...,
    open_set, open_set_<score>..., top_frames`` (``open_set``: ``yes``/``no``, "unknown method?", the primary score
    above the run's threshold; ``open_set_<score>``: the video's scores, :data:`~dfkit.train.openset.SCORES`;
    ``top_frames``: ``frame:p;frame:p`` of the top class, largest first); empty cells where a file gave no
    prediction, or where the run has no such score or threshold."""
    from dfkit.train.openset import SCORES

    import csv

    path = Path(path)
    names = [str(c) for c in class_names]
    cols = ["path", "status", "stage", "reason", "n_frames", "pred", "confidence", "p_fake"]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols + [f"p_{n}" for n in names] + ["open_set"] + [f"open_set_{n}" for n in SCORES]
                   + ["top_frames"])
        for r in records:
            probs = r["probs"] or {}
            frames = ";".join(f"{t['frame_index']}:{t['p']:.6f}" for t in r["top_frames"] or [])
            os_scores = (r.get("open_set") or {}).get("scores") or {}
            verdict = _unknown(r)
            w.writerow(["" if r[c] is None else r[c] for c in cols] + [probs.get(n, "") for n in names]
                       + ["" if verdict == "-" else verdict] + [os_scores.get(n, "") for n in SCORES] + [frames])
    return path
