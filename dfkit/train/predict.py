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
"""

from __future__ import annotations

import json
from pathlib import Path
import numpy as np
import pandas as pd

from dfkit.errors import DfkitError

__all__ = ["load_run", "run_checkpoint", "predict_corpus", "predict_rows"]


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


def predict_rows(model, files, rows: pd.DataFrame, class_names: list[str], *, device: str = "cpu",
                 batch_size: int = 128, workers: int = 0, progress: bool = False,
                 crop: str = "resize") -> pd.DataFrame:
    """Run ``model`` over corpus ``rows`` (metadata with ``_file``/``_row``); see the module docstring. ``crop``:
    how crops are fitted to the model's input (the run's ``crop`` setting)."""
    import torch

    from dfkit.train.data import make_eval_loader
    from dfkit.train.loop import resolve_device

    dev = resolve_device(device)
    if rows.empty:
        raise DfkitError("nothing to predict: the selection holds no crops")
    loader = make_eval_loader(files, rows, img_size=model.img_size, batch_size=batch_size, workers=workers,
                              mean=model.mean, std=model.std, device=dev, crop=crop)
    logits_all = []
    it = loader
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(loader, desc="predict", unit="batch")
    model.eval()
    with torch.no_grad():
        for b in it:
            logits_all.append(model(b["image"]).float().cpu().numpy())
    logits = np.concatenate(logits_all).astype(np.float64)
    z = logits - logits.max(1, keepdims=True)
    probs = np.exp(z)
    probs /= probs.sum(1, keepdims=True)
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
