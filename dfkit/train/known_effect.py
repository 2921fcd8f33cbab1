"""The known-effect check: does the instrument detect a quality effect where one is known to exist?

``dfkit experiment known-effect --inject KIND:LEVEL:FRACTION`` (and ``quality-sweep --inject``):

1. **Choose** a deterministic fraction of the *training* videos, the same share of every class (videos ordered by a
   seeded hash of their key; validation and test stay as they are).
2. **Degrade** their crops with :func:`~dfkit.quality.degrade.degrade_crop` (on the source pixel grid, a noise
   seed per crop from its ``sample_id``) -- in memory only: the corpus is never written. The training loader applies
   the same degradation when it loads those rows (``INJECT_COLUMN``), so the model sees exactly what was scored.
3. **Score** the degraded crops with the corpus's weights; their ``quality``/``video_quality`` replace the stored
   values in the selection.
4. **Separation**: AUROC of ``quality`` for clean vs injected training crops (1.0 = every clean crop above every
   injected one), with a 95 % CI from a bootstrap over videos (clean and injected videos resampled separately).
5. **Sweep**: the quality sweep on that selection -- unfiltered (the injected crops in) against filtered arms -- with
   the paired differences of :func:`~dfkit.train.experiments.quality_sweep`.
"""

from __future__ import annotations

import hashlib
import json
import time
import zlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from dfkit.errors import DfkitError
from dfkit.quality.degrade import Injection, degrade_crop, parse_injection
from dfkit.train.data import INJECT_COLUMN

Echo = Any


def crop_rng(sample_id: str) -> np.random.Generator:
    """The noise seed of one crop's injected degradation (the same at scoring and at load time)."""
    return np.random.default_rng(zlib.crc32(str(sample_id).encode()))


def degrade_loaded(img: np.ndarray, spec: str, sample_id: str, crop_box) -> np.ndarray:
    """What the training loader does to a row with an ``inject`` spec (``KIND:LEVEL``)."""
    kind, _, level = str(spec).partition(":")
    box = None if crop_box is None else [float(v) for v in crop_box]
    return degrade_crop(img, {"crop_box": box}, kind, float(level), crop_rng(sample_id))


# ----------------------------------------------------------------------------------------------------------------------
# 1. which videos


def pick_videos(train: pd.DataFrame, fraction: float, seed: int = 0) -> set[str]:
    """``round(fraction × videos)`` training videos of every class (at least one, never all of a class with > 1
    video), ordered by a seeded hash of ``video_key``: deterministic, and independent of row order."""
    picked: set[str] = set()
    for _, g in train.groupby("target", sort=True):
        keys = sorted(set(g["video_key"].astype(str)),
                      key=lambda k: hashlib.sha1(f"{seed}|{k}".encode()).hexdigest())
        n = int(round(fraction * len(keys)))
        n = min(max(n, 1), max(len(keys) - 1, 1))
        picked.update(keys[:n])
    return picked


# ----------------------------------------------------------------------------------------------------------------------
# 2.-3. degrade and score


def score_injected(files: Sequence[Path], rows: pd.DataFrame, inj: Injection, weights=None,
                   progress: bool = False) -> pd.DataFrame:
    """``sample_id, quality, video_quality`` of ``rows`` (corpus rows with ``_file``) after the injection."""
    import pyarrow as pa
    from tqdm.auto import tqdm

    from dfkit.corpus.reader import shard_rows
    from dfkit.corpus.codec import decode_crop, encode_crop
    from dfkit.quality.compute import compute_quality

    parts = []
    for t in tqdm(shard_rows(files, rows), total=rows["_file"].nunique(), desc=f"inject {inj.kind}:{inj.level:g}",
                  unit="shard", disable=not progress, leave=False):
        crops = []
        for sid, data, box in zip(t["sample_id"].to_pylist(), t["crop"].to_pylist(), t["crop_box"].to_pylist()):
            img = degrade_crop(decode_crop(data), {"crop_box": box}, inj.kind, inj.level, crop_rng(sid))
            crops.append(encode_crop(img, "png")[0])
        t = t.set_column(t.column_names.index("crop"), "crop", pa.array(crops, pa.binary()))
        parts.append(compute_quality(t, weights=weights).select(["sample_id", "quality", "video_quality"]))
    if not parts:
        return pd.DataFrame(columns=["sample_id", "quality", "video_quality"])
    return pa.concat_tables(parts).to_pandas()


def inject(sel, inj: Injection, seed: int = 0, weights=None, progress: bool = False):
    """A copy of the selection ``sel`` whose training rows of the picked videos carry ``INJECT_COLUMN`` and their
    degraded ``quality``; also returns the picked video keys."""
    from dataclasses import replace

    train = sel.train.copy()
    if "quality" not in train.columns:
        raise DfkitError("this corpus has no quality scores yet: run `dfkit quality` first")
    keys = pick_videos(train, inj.fraction, seed)
    hit = train["video_key"].astype(str).isin(keys)
    new = score_injected(sel.files, train[hit], inj, weights, progress).set_index("sample_id")
    train["quality_clean"] = train["quality"]
    idx = train.index[hit]
    sids = train.loc[idx, "sample_id"].astype(str)
    train.loc[idx, "quality"] = new["quality"].reindex(sids).to_numpy()
    train.loc[idx, "video_quality"] = new["video_quality"].reindex(sids).to_numpy()
    train[INJECT_COLUMN] = None
    train.loc[idx, INJECT_COLUMN] = f"{inj.kind}:{inj.level!r}"  # repr: loaded at exactly the scored level
    return replace(sel, train=train, notes=list(sel.notes) + [
        f"known effect: {inj.kind} {inj.level:g} injected at load time into {len(keys)} training videos "
        f"({int(hit.sum())} crops); the corpus is unchanged"]), keys


# ----------------------------------------------------------------------------------------------------------------------
# 4. separation


def auroc(clean: np.ndarray, injected: np.ndarray) -> float:
    """P(a clean crop's quality > an injected one's), ties counting half (the Mann-Whitney AUROC)."""
    c = np.asarray(clean, np.float64)
    d = np.asarray(injected, np.float64)
    c, d = c[np.isfinite(c)], d[np.isfinite(d)]
    if not len(c) or not len(d):
        return float("nan")
    from scipy.stats import rankdata

    r = rankdata(np.concatenate([c, d]))
    return float((r[:len(c)].sum() - len(c) * (len(c) + 1) / 2) / (len(c) * len(d)))


def separation(train: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """AUROC of ``quality`` for clean vs injected training crops (rows with ``INJECT_COLUMN``), with a 95 % CI
    from resampling videos (clean and injected separately)."""
    inj = train[INJECT_COLUMN].notna()
    q = train["quality"].to_numpy(np.float64)
    keys = train["video_key"].astype(str).to_numpy()
    out = {"auroc": auroc(q[~inj.to_numpy()], q[inj.to_numpy()]), "ci": None,
           "clean_crops": int((~inj).sum()), "injected_crops": int(inj.sum()),
           "clean_median_quality": float(np.nanmedian(q[~inj.to_numpy()])) if (~inj).any() else None,
           "injected_median_quality": float(np.nanmedian(q[inj.to_numpy()])) if inj.any() else None}
    if "quality_clean" in train:
        qc = train.loc[inj, "quality_clean"].to_numpy(np.float64)
        out["injected_median_quality_before"] = float(np.nanmedian(qc)) if len(qc) else None
    groups = {}
    for flag in (False, True):
        sub = np.flatnonzero(inj.to_numpy() == flag)
        by = pd.Series(sub).groupby(keys[sub]).apply(list)
        groups[flag] = [np.asarray(v) for v in by.tolist()]
    if n_boot and all(len(g) >= 2 for g in groups.values()):
        rng = np.random.default_rng(seed)
        vals = []
        for _ in range(int(n_boot)):
            pick = {f: np.concatenate([groups[f][j] for j in rng.integers(0, len(groups[f]), len(groups[f]))])
                    for f in groups}
            vals.append(auroc(q[pick[False]], q[pick[True]]))
        out["ci"] = [float(np.nanpercentile(vals, 2.5)), float(np.nanpercentile(vals, 97.5))]
    return out


def separation_line(inj: Injection, n_videos: int, sep: dict[str, Any]) -> str:
    f = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    ci = f" [95% CI {sep['ci'][0]:.3f}, {sep['ci'][1]:.3f}]" if sep.get("ci") else ""
    return (f"known effect {inj}: {n_videos} training videos degraded at load time; quality separates their "
            f"{sep['injected_crops']} crops from the {sep['clean_crops']} clean ones with AUROC {f(sep['auroc'])}{ci} "
            f"(median quality {f(sep['clean_median_quality'])} clean, {f(sep['injected_median_quality'])} injected, "
            f"{f(sep.get('injected_median_quality_before'))} before injection)")


# ----------------------------------------------------------------------------------------------------------------------
# the command


def known_effect(base, inject_spec: str | Injection, *, thresholds: Sequence[float] = (0.0, 0.5),
                 seeds: Sequence[int] = (0, 1), out: str | Path = "runs/known-effect", n_boot: int = 1000,
                 sweep: bool = True, metric: str = "balanced_accuracy", level: str = "video", low_arm: bool = True,
                 progress: bool = True, suspect_arm: bool = False, echo: Echo = print) -> dict[str, Any]:
    """Steps 1-5 of the module doc; writes ``known_effect.json`` (and the sweep's files) under ``out``."""
    from dfkit.config import resolve_corpus
    from dfkit.quality.run import stored_weights
    from dfkit.train.data import select_data
    from dfkit.train.experiments import check_sweep_options

    t0 = time.perf_counter()
    inj = inject_spec if isinstance(inject_spec, Injection) else parse_injection(inject_spec)
    thresholds = check_sweep_options(metric, level, thresholds)  # refused before the slow scoring
    base = base.copy()  # a checked copy (the caller's object stays as it was)
    root = Path(base.corpus).expanduser() if base.corpus else resolve_corpus(None)
    base.corpus = str(root)
    out = Path(out).expanduser()
    sel = select_data(root, task=base.task, datasets=base.datasets, methods=base.methods,
                      compression=base.compression, split=base.split, drop_real=base.drop_real,
                      drop_suspect=base.drop_suspect,
                      seed=base.split_seed)
    weights = stored_weights(root)
    sel2, keys = inject(sel, inj, seed=base.seed, weights=weights, progress=progress)
    sep = separation(sel2.train, n_boot=n_boot, seed=base.seed)
    echo(separation_line(inj, len(keys), sep))
    report: dict[str, Any] = {"inject": str(inj), "kind": inj.kind, "level": inj.level, "fraction": inj.fraction,
                              "videos": sorted(keys), "separation": sep}
    if sweep:
        from dfkit.train.experiments import quality_sweep

        rep = quality_sweep(base, thresholds=thresholds, seeds=seeds, low_arm=low_arm, out=out / "sweep", metric=metric,
                            level=level, n_boot=n_boot, echo=echo, selection=sel2, suspect_arm=suspect_arm)
        report["sweep"] = {k: rep.get(k) for k in ("summary", "paired", "conclusion", "out_dir")}
    report["seconds"] = time.perf_counter() - t0
    out.mkdir(parents=True, exist_ok=True)
    from dfkit.corpus.store import atomic_write_bytes

    atomic_write_bytes(out / "known_effect.json", json.dumps(report, indent=1, default=str).encode())
    report["out_dir"] = str(out)
    return report
