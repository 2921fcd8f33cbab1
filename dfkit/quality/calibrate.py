"""``dfkit quality calibrate``: does ``quality`` see quality? Graded real degradations, scored like the corpus.

1. **Sources.** Real clean crops with their geometry: either frames of real clips (``sources_from_videos``: the
   frame and the 4 frames before it are decoded, the face is found on the clean frame), or crops of a corpus
   (``sources_from_corpus``, a fixed-seed sample spread over videos).
2. **Degrade.** Every :mod:`~dfkit.quality.degrade` kind at every graded level. Clip frames are degraded *before*
   cropping (the H.264 re-encode encodes the 5-frame window as a clip), then cut with the clean frame's crop box,
   so only the pixels change; corpus crops are degraded on their source pixel grid
   (:func:`~dfkit.quality.degrade.degrade_crop`). Each crop is its own "video" here: jitter is a property of the
   face track, not of the pixels, and is left out.
3. **Score** with :func:`~dfkit.quality.compute_quality` and the given weights: every metric's score and the
   composite, per crop and level.
4. **Summarise**: per kind and level the median (and quartiles) of ``quality`` and of every weighted metric's score;
   per kind the share of crops whose ``quality`` never rises by more than ``MONOTONE_TOL`` from one level to the next
   stronger one (the clean crop first); the targets (clean median ≥ 0.8, median < 0.5 from each kind's
   ``target_from`` level, ≥ 95 % monotone); and what a threshold of 0.5 / 0.7 / 0.9 means in each kind's units.
5. **Write** ``calibration.json`` (everything), ``calibration.md`` (the tables), ``calibration.png`` (one panel per
   kind: median quality with its quartile band and each weighted score against the level), each atomically.
"""

from __future__ import annotations

import json
import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from dfkit.corpus.schema import quality_column, raw_column, score_metric
from dfkit.errors import DfkitError
from dfkit.quality.degrade import DEGRADATIONS, degrade, degrade_crop, get_degradation, h264_clip

CLEAN_TARGET = 0.8
DEGRADED_TARGET = 0.5
MONOTONE_TARGET = 0.95
MONOTONE_TOL = 0.01
THRESHOLDS = (0.5, 0.7, 0.9)
WINDOW = 5  # frames of a clip re-encoded together for the H.264 levels
CALIBRATION_DIR = "calibration"  # <corpus>/calibration/ when no --out is given; the audit report reads it there
FILES = ("calibration.json", "calibration.md", "calibration.png")


@dataclass
class Source:
    """One clean crop: its corpus-like row (geometry, video facts, clean ``crop`` bytes), and for a clip frame the
    source frames (the last is the crop's frame)."""

    key: str
    row: dict
    frames: list[np.ndarray] | None = None

    def degraded_crop(self, kind: str, level: float, rng: np.random.Generator) -> bytes:
        from dfkit.corpus.codec import decode_crop, encode_crop
        from dfkit.corpus.geometry import crop_square

        if self.frames is None:
            rgb = degrade_crop(decode_crop(self.row["crop"]), self.row, kind, level, rng)
        else:
            frame = (h264_clip(self.frames, level)[-1] if kind == "h264"
                     else degrade(self.frames[-1], kind, level, rng))
            rgb = crop_square(frame, np.asarray(self.row["crop_box"], np.float32), int(self.row["crop_size"]))
        return encode_crop(rgb, "png")[0]


# ----------------------------------------------------------------------------------------------------------------------
# 1. sources
# ----------------------------------------------------------------------------------------------------------------------


def _clip_id(p: Path, paths: Sequence[Path]) -> str:
    """A clip's id: its path relative to the clips' common folder (file names alone repeat, e.g. FF++'s c23/c40)."""
    import os

    try:
        base = Path(os.path.commonpath([str(Path(x).resolve().parent) for x in paths]))
        return Path(p).resolve().relative_to(base).with_suffix("").as_posix()
    except ValueError:
        return Path(p).with_suffix("").as_posix()


#: what cuts a clean frame: ``(rgb, facts, crop_size=...) -> crop row | None`` (no face); the ingest's
#: :func:`dfkit.ingest.frames.frame_row`, passed in by the application (the quality stage does not detect faces)
FrameCutter = Callable[..., "dict | None"]


def sources_from_videos(paths: Sequence[Path], cut: FrameCutter, per_video: int = 4, crop_size: int = 256,
                        meta: Callable[[Path], dict] | None = None) -> list[Source]:
    """``per_video`` frames spread over each clip (each with the ``WINDOW - 1`` frames before it), cut by ``cut``
    as the ingest cuts them (largest face, margin 1.3). Clips that cannot be decoded or show no face are skipped."""
    import av

    frame_row = cut

    out: list[Source] = []
    for p in paths:
        try:
            with av.open(str(p)) as c:
                s = c.streams.video[0]
                total = int(s.frames or 0)
                facts = {"width": s.codec_context.width, "height": s.codec_context.height,
                         "fps": float(s.average_rate or 25), "codec": s.codec_context.name,
                         "bitrate": int(s.bit_rate or c.bit_rate or 0) or None}
                if total < WINDOW:
                    total = 300
                want = sorted({int(round(x)) for x in np.linspace(WINDOW, total - 2, per_video)})
                frames: dict[int, np.ndarray] = {}
                for i, fr in enumerate(c.decode(s)):
                    if any(w - WINDOW < i <= w for w in want):
                        frames[i] = fr.to_ndarray(format="rgb24")
                    if i >= want[-1]:
                        break
        except Exception:  # noqa: BLE001 - an unreadable clip is skipped, the others still calibrate
            continue
        m = dict(meta(p)) if meta else {"dataset": "clip", "video_id": _clip_id(p, paths)}
        for w in want:
            win = [frames[i] for i in range(w - WINDOW + 1, w + 1) if i in frames]
            if len(win) < WINDOW:
                continue
            key = f"{m.get('dataset', 'clip')}/{m.get('video_id', p.stem)}/{w:06d}"
            row = frame_row(win[-1], {**facts, **m, "frame_index": w, "sample_id": key}, crop_size=crop_size)
            if row is not None:
                out.append(Source(key, row, win))
    return out


def sources_from_corpus(root: Path, n: int = 64, seed: int = 0, datasets: Sequence[str] | None = None) -> list[Source]:
    """``n`` crops of the corpus's usable videos, spread over as many videos as possible (round robin over a
    seeded shuffle of videos)."""
    import dfkit.corpus
    from dfkit.corpus.reader import shard_rows

    c = dfkit.corpus.open(root)
    meta = c.metadata()
    if datasets:
        meta = meta[meta["dataset"].isin(list(datasets))]
    if meta.empty:
        raise DfkitError(f"{root} has no crops to calibrate on" + (f" in {', '.join(datasets)}" if datasets else ""))
    # the cleanest crops the corpus has: real videos (fakes carry their method's artifacts) at the least compressed
    # level present; everything when there are no reals
    from dfkit.quality.metrics.compression import compression_level

    reals = meta[meta["label"] == "real"]
    if len(reals):
        lv = reals["compression"].map(lambda c: compression_level(c)).fillna(1e9)
        meta = reals[lv == lv.min()]
    rng = np.random.default_rng(seed)
    groups = [g.sample(frac=1.0, random_state=int(rng.integers(1 << 31)))
              for _, g in meta.groupby(["dataset", "video_id"], sort=True)]
    rng.shuffle(groups)
    picked: list[pd.Series] = []
    depth = 0
    while len(picked) < n and any(depth < len(g) for g in groups):
        for g in groups:
            if depth < len(g) and len(picked) < n:
                picked.append(g.iloc[depth])
        depth += 1
    out = [Source(r["sample_id"], r) for t in shard_rows(c.crop_files(), pd.DataFrame(picked)) for r in t.to_pylist()]
    return sorted(out, key=lambda s: s.key)


# ----------------------------------------------------------------------------------------------------------------------
# 2.-3. degrade and score
# ----------------------------------------------------------------------------------------------------------------------


def _rng(i: int, kind: str, level: float) -> np.random.Generator:
    return np.random.default_rng([i, zlib.crc32(kind.encode()), int(round(level * 1000))])


def run_calibration(sources: Sequence[Source], kinds: Sequence[str] | None = None, weights=None,
                    progress: bool = False) -> pd.DataFrame:
    """One row per (source, kind, level) -- kind ``clean`` / level 0 for the clean crop -- with ``rank`` (0 clean,
    1 mildest, ...), every metric's score ``q_<m>`` and raw ``q_<m>_raw`` (``corpus.schema``'s columns), ``quality`` and ``weakest`` (the metric that set it)."""
    from tqdm.auto import tqdm

    from dfkit.quality.composite import resolve_weights, weakest
    from dfkit.quality.compute import compute_quality
    from dfkit.corpus.schema import rows_to_table

    if not sources:
        raise DfkitError("no clean crops to calibrate on (no readable clip with a face, or an empty corpus)")
    kinds = list(kinds) if kinds else list(DEGRADATIONS)
    for k in kinds:
        get_degradation(k)
    w = resolve_weights(weights)
    jobs = [("clean", 0.0, 0)] + [(k, lv, r + 1) for k in kinds for r, lv in enumerate(DEGRADATIONS[k].ordered())]
    rows, tags = [], []
    bar = tqdm(total=len(jobs) * len(sources), desc="calibrate", unit="crop", disable=not progress, leave=False)
    for i, src in enumerate(sources):
        base = {k: v for k, v in src.row.items() if k != "crop"}
        for kind, level, rank in jobs:
            crop = src.row["crop"] if kind == "clean" else src.degraded_crop(kind, level, _rng(i, kind, level))
            # each crop its own video: jitter (a track property) is not part of a pixel degradation
            rows.append({**base, "crop": crop, "video_id": f"{src.key}|{kind}|{level:g}",
                         "sample_id": f"{src.key}|{kind}|{level:g}"})
            tags.append((src.key, kind, level, rank))
            bar.update(1)
    bar.close()
    q = compute_quality(rows_to_table(rows), weights=w).to_pandas()
    df = pd.DataFrame(tags, columns=["source", "kind", "level", "rank"])
    names = [n for n, x in w.items() if x > 0]
    for n in names:
        df[quality_column(n)] = q[quality_column(n)].to_numpy(np.float64)
        df[raw_column(n)] = q[raw_column(n)].to_numpy(np.float64)
    df["quality"] = q["quality"].to_numpy(np.float64)
    df["weakest"] = weakest({n: df[quality_column(n)].to_numpy() for n in names}, w)
    df.attrs["weights"] = w
    return df


# ----------------------------------------------------------------------------------------------------------------------
# 4. summarise
# ----------------------------------------------------------------------------------------------------------------------


def _crossing(levels: Sequence[float], medians: Sequence[float], t: float, log: bool) -> str:
    """The level (interpolated; in log space for ratio-scale kinds) at which the median quality first falls
    below ``t``, from the clean value at level ``None``."""
    lv = list(levels)
    md = list(medians)
    if md and md[0] < t:
        return "below at clean"
    for j in range(1, len(md)):
        a, b = md[j - 1], md[j]
        if b < t <= a:
            if j == 1:
                return f"< {lv[1]:g}"
            x0, x1 = lv[j - 1], lv[j]
            f = (a - t) / (a - b) if a != b else 0.0
            x = math.exp(math.log(x0) + f * (math.log(x1) - math.log(x0))) if log else x0 + f * (x1 - x0)
            return f"{x:.3g}"
    return f"not below at {lv[-1]:g}" if md else "-"


def summarize(df: pd.DataFrame) -> dict:
    """The calibration's findings (see the module doc), as a JSON-able dict."""
    w = df.attrs.get("weights") or {}
    names = [m for c in df.columns if (m := score_metric(c, df.columns)) and df[c].notna().any()]
    clean = df[df["kind"] == "clean"].set_index("source")
    kinds = [k for k in DEGRADATIONS if k in set(df["kind"])]
    out: dict = {"n_crops": int(len(clean)), "weights": w, "form": "weighted-minimum",
                 "clean": {"median": float(np.nanmedian(clean["quality"])),
                           "q25": float(np.nanpercentile(clean["quality"], 25)),
                           "q75": float(np.nanpercentile(clean["quality"], 75)),
                           "scores": {n: float(np.nanmedian(clean[quality_column(n)])) for n in names},
                           "weakest": clean["weakest"].value_counts().to_dict()},
                 "kinds": {}, "targets": [], "meaning": {}}
    out["targets"].append({"what": f"clean crops: median quality >= {CLEAN_TARGET:g}",
                           "value": out["clean"]["median"], "ok": out["clean"]["median"] >= CLEAN_TARGET})
    for k in kinds:
        d = DEGRADATIONS[k]
        sub = df[df["kind"] == k]
        levels = list(d.ordered())
        per = []
        for lv in levels:
            x = sub[np.isclose(sub["level"], lv)]
            per.append({"level": lv, "median": float(np.nanmedian(x["quality"])),
                        "q25": float(np.nanpercentile(x["quality"], 25)),
                        "q75": float(np.nanpercentile(x["quality"], 75)),
                        "scores": {n: float(np.nanmedian(x[quality_column(n)])) for n in names},
                        "weakest": x["weakest"].value_counts().head(1).index.tolist()[:1]})
        wide = sub.pivot(index="source", columns="rank", values="quality").sort_index(axis=1)
        wide.insert(0, 0, clean["quality"].reindex(wide.index))
        steps = np.diff(wide.to_numpy(np.float64), axis=1)
        known = np.isfinite(steps).all(axis=1)  # a crop unmeasurable at some level says nothing about monotony
        mono = float(np.mean(np.all(steps[known] <= MONOTONE_TOL, axis=1))) if known.any() else float("nan")
        out["kinds"][k] = {"unit": d.unit, "description": d.description, "levels": per, "monotone": mono}
        out["targets"].append({"what": f"{k}: quality never rises by > {MONOTONE_TOL:g} as the level grows, "
                                       f"for >= {MONOTONE_TARGET:.0%} of crops", "value": mono,
                               "ok": bool(mono >= MONOTONE_TARGET)})
        for p in per:
            if d.is_target(p["level"]):
                out["targets"].append({"what": f"{k} {p['level']:g} ({d.unit}): median quality < "
                                               f"{DEGRADED_TARGET:g}", "value": p["median"],
                                       "ok": p["median"] < DEGRADED_TARGET})
        log = k in ("scale", "under", "over", "jpeg")
        md = [out["clean"]["median"]] + [p["median"] for p in per]
        # _crossing's level list lines up with md: a placeholder for the clean crop, then the graded levels
        out["meaning"][k] = {f"{t:g}": _crossing([levels[0]] + levels, md, t, log)
                             for t in THRESHOLDS}
    out["ok"] = all(t["ok"] for t in out["targets"])
    return out


# ----------------------------------------------------------------------------------------------------------------------
# 5. write
# ----------------------------------------------------------------------------------------------------------------------


def markdown(s: dict) -> str:
    names = [n for n, x in s["weights"].items() if x > 0 and n in s["clean"]["scores"]]
    lines = [f"Calibration on {s['n_crops']} clean crops (composite: {s['form']}). Median `quality` of the clean "
             f"crops: {s['clean']['median']:.3f} (quartiles {s['clean']['q25']:.3f}-{s['clean']['q75']:.3f}).", "",
             "| degradation | level | median quality | quartiles | weakest | " + " | ".join(names) + " |",
             "|---|---|---|---|---|" + "---|" * len(names),
             f"| clean | - | {s['clean']['median']:.3f} | {s['clean']['q25']:.2f}-{s['clean']['q75']:.2f} | "
             f"{next(iter(s['clean']['weakest']), '-')} | " + " | ".join(f"{s['clean']['scores'][n]:.2f}"
                                                                       for n in names) + " |"]
    for k, e in s["kinds"].items():
        for p in e["levels"]:
            lines.append(f"| {k} | {p['level']:g} {e['unit']} | {p['median']:.3f} | {p['q25']:.2f}-{p['q75']:.2f} | "
                         f"{(p['weakest'] or ['-'])[0]} | " + " | ".join(f"{p['scores'][n]:.2f}" for n in names)
                         + " |")
    lines += ["", "What a threshold means (the level at which the median `quality` falls below it):", "",
              "| degradation | unit | " + " | ".join(f"quality {t:g}" for t in THRESHOLDS) + " | monotone |",
              "|---|---|" + "---|" * (len(THRESHOLDS) + 1)]
    for k, e in s["kinds"].items():
        lines.append(f"| {k} | {e['unit']} | " + " | ".join(s["meaning"][k][f"{t:g}"] for t in THRESHOLDS)
                     + f" | {e['monotone']:.0%} |")
    lines += ["", "Targets:", ""] + [f"- {'PASS' if t['ok'] else 'FAIL'}: {t['what']} (measured {t['value']:.3f})"
                                     for t in s["targets"]]
    return "\n".join(lines) + "\n"


def plot(s: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = list(s["kinds"])
    cols = 4
    rows = -(-len(kinds) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    names = [n for n, x in s["weights"].items() if x > 0 and n in s["clean"]["scores"]]
    for ax, k in zip(axes.ravel(), kinds):
        e = s["kinds"][k]
        x = np.arange(len(e["levels"]) + 1)
        labels = ["clean"] + [f"{p['level']:g}" for p in e["levels"]]
        med = [s["clean"]["median"]] + [p["median"] for p in e["levels"]]
        lo = [s["clean"]["q25"]] + [p["q25"] for p in e["levels"]]
        hi = [s["clean"]["q75"]] + [p["q75"] for p in e["levels"]]
        for n in names:
            ys = [s["clean"]["scores"][n]] + [p["scores"][n] for p in e["levels"]]
            if max(ys) - min(ys) > 0.05:
                ax.plot(x, ys, lw=1, alpha=0.7, label=n)
        ax.fill_between(x, lo, hi, color="k", alpha=0.12)
        ax.plot(x, med, "k-o", lw=2.2, label="quality")
        ax.axhline(0.5, color="r", ls=":", lw=1)
        ax.axhline(0.8, color="g", ls=":", lw=1)
        ax.set_xticks(x, labels, fontsize=8)
        ax.set_ylim(0, 1.02)
        ax.set_title(f"{k} ({e['unit']}), monotone {e['monotone']:.0%}", fontsize=9)
        ax.legend(fontsize=6, loc="lower left")
    for ax in axes.ravel()[len(kinds):]:
        ax.axis("off")
    fig.suptitle(f"quality on graded degradations ({s['n_crops']} clean crops; band: quartiles)", fontsize=11)
    fig.tight_layout()
    import io

    from dfkit.corpus.store import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def _finite(x):
    """NaN -> None, numpy scalars -> Python (for strict JSON)."""
    if isinstance(x, dict):
        return {str(k): _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return None if not math.isfinite(float(x)) else float(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def write(s: dict, out: Path) -> dict[str, Path]:
    from dfkit.corpus.store import atomic_write_bytes

    out.mkdir(parents=True, exist_ok=True)
    paths = {f: out / f for f in FILES}
    atomic_write_bytes(paths["calibration.json"], json.dumps(_finite(s), indent=1, allow_nan=False).encode())
    atomic_write_bytes(paths["calibration.md"], markdown(s).encode())
    plot(s, paths["calibration.png"])
    return paths


def load(path: Path) -> dict | None:
    """A written calibration (``calibration.json`` or the folder holding it), or None."""
    p = Path(path)
    p = p / "calibration.json" if p.is_dir() else p
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def calibrate(sources: Iterable[Source], out: Path, kinds=None, weights=None, progress: bool = False,
              keep: list | None = None) -> dict:
    """Steps 2-5 for the given sources; returns the summary with ``files`` (the written paths)."""
    df = run_calibration(list(sources), kinds, weights, progress)
    s = summarize(df)
    if keep is not None:
        keep.append(df)
    s["files"] = {k: str(v) for k, v in write(s, Path(out)).items()}
    return s
