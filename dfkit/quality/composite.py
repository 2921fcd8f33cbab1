"""The composite ``quality`` score of a crop, and of a video.

**Definition.** ``quality`` is the *weighted minimum* of the crop's metric scores:

    quality = min_i  s_i ** w_i

over the metrics i with weight w_i > 0 whose score s_i is known (a NaN score -- e.g. no landmarks, no detection
on an interpolated frame, a video with < 3 crops for jitter -- is left out; when the known scores carry less than
half of the total weight, e.g. an undecodable crop, ``quality`` is NaN). The weight is an exponent that says how far
one metric may pull a crop down: w = 1 takes its score as it is, w = 0.5 lets a score of 0.25 cost no more than
0.5, w = 0 leaves the metric out. ``quality`` is monotone non-decreasing in every score, lies in [0, 1], and uses
fixed score maps with absolute anchors, never per-corpus percentiles: a threshold means the same on every corpus.
It reads directly: ``quality >= t`` holds exactly when every weighted score ``s_i >= t ** (1 / w_i)``.

**Why a minimum, not the weighted geometric mean dfkit used before (quality version 1).** A crop is only as useful as
its weakest property, and the calibration on graded real degradations (``dfkit quality calibrate``, README) showed
that a mean of a dozen scores cannot see one ruined property: with every other score at a good 0.93, a geometric
mean put real FF++ crops blurred by σ = 3 px at 0.67, sensor noise σ = 12 at 0.92 and a ¼-scale copy at 0.83, so
``--min-quality 0.7`` removed almost nothing. The minimum keeps a clean crop's value (its weakest score, ≈ 0.85 on
FF++ c23) and lets each degradation through at its own measure's strength.

**Default weights** live on each metric's class (``weight``, :data:`DEFAULT_WEIGHTS` collects them): 1 for the
pixel measures that a degradation ruins outright (sharpness, noise, blockiness, macroblock, exposure) and for cut-off,
0.5 for the softer ones (contrast, face_size, det_score, pose, jitter); the video labels (bitrate, resolution, codec,
compression) 0 -- they are reported, but kept out of the composite so that plotting quality against compression
level measures something rather than restating the label. Override them with a mapping, a YAML/JSON file, or a
``"sharpness=1,noise=0.5"`` string (named weights replace the defaults, others keep theirs; 0 drops a metric).

**Per video**: ``video_quality`` = the median ``quality`` of the video's crops.

See :func:`explain` for what a threshold means in raw units; ``dfkit/quality/README.md`` has the text.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from dfkit.corpus.schema import META_QUALITY_FORM, META_QUALITY_WEIGHTS, quality_column
from dfkit.errors import DfkitError
from dfkit.quality.base import create_metric, list_metrics

MIN_KNOWN_WEIGHT = 0.5  # quality is NaN unless scores are known for at least this fraction of the total weight
FORM = "weighted-minimum"  # recorded with the weights in a quality shard's metadata


class _DefaultWeights(Mapping):
    """``{metric: weight}`` from the metric classes' ``weight`` (read when first used: the registry loads lazily)."""

    def _table(self) -> dict[str, float]:
        return {n: float(create_metric(n).weight) for n in list_metrics()}

    def __getitem__(self, k):
        return self._table()[k]

    def __iter__(self):
        return iter(self._table())

    def __len__(self):
        return len(self._table())

    def __repr__(self):
        return repr(self._table())


DEFAULT_WEIGHTS: Mapping[str, float] = _DefaultWeights()


class WeightsError(DfkitError, ValueError):
    """Bad composite weights (a ValueError, and a one-line CLI error)."""


def _check(name: str, value, source: str) -> float:
    known = list_metrics()
    if name not in known:
        raise WeightsError(f"unknown metric {name!r} in {source}; known metrics: {', '.join(known)}")
    if isinstance(value, bool):
        raise WeightsError(f"weight of {name!r} in {source} is not a number: {value!r}")
    try:
        w = float(value)
    except (TypeError, ValueError):
        raise WeightsError(f"weight of {name!r} in {source} is not a number: {value!r}") from None
    if not math.isfinite(w) or w < 0:
        raise WeightsError(f"weight of {name!r} in {source} must be a finite number >= 0, got {value!r}")
    return w


def parse_weights(spec: str, source: str = "--weights") -> dict[str, float]:
    """``"sharpness=2, noise=1"`` -> ``{"sharpness": 2.0, "noise": 1.0}``. ValueError (:class:`WeightsError`)
    naming the bad item otherwise."""
    out: dict[str, float] = {}
    for item in (spec or "").split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, val = item.partition("=")
        name, val = name.strip(), val.strip()
        if not sep or not name or not val:
            raise WeightsError(f"bad item {item!r} in {source}: expected name=number, e.g. \"sharpness=2,noise=1\"")
        if name in out:
            raise WeightsError(f"metric {name!r} given twice in {source}")
        out[name] = _check(name, val, source)
    return out


def load_weights(path: str | os.PathLike) -> dict[str, float]:
    """Weights from a YAML or JSON file: a mapping ``name: weight``, or ``{weights: {name: weight}}``."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise WeightsError(f"cannot read weights file {p}: {e.strerror or e}") from None
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as e:  # noqa: BLE001 - any parse error is the user's file
        raise WeightsError(f"weights file {p} is not valid {'JSON' if p.suffix == '.json' else 'YAML'}: {e}") from None
    if isinstance(data, dict) and "weights" in data and isinstance(data["weights"], dict):
        data = data["weights"]
    if not isinstance(data, dict):
        raise WeightsError(f"weights file {p} must hold a mapping of metric name -> weight")
    return {str(k): _check(str(k), v, f"weights file {p}") for k, v in data.items()}


def resolve_weights(weights: None | str | os.PathLike | Mapping[str, float] = None) -> dict[str, float]:
    """The full weight table: the defaults, overridden by ``weights`` -- a mapping, a path to a YAML/JSON file,
    or a ``"name=w,..."`` string. Every registered metric gets an entry (0 for metrics without a default)."""
    full = dict(DEFAULT_WEIGHTS)
    if weights is None:
        over: dict[str, float] = {}
    elif isinstance(weights, Mapping):
        over = {str(k): _check(str(k), v, "weights") for k, v in weights.items()}
    elif isinstance(weights, os.PathLike) or (isinstance(weights, str) and "=" not in weights
                                               and weights.strip() and Path(weights).suffix):
        over = load_weights(weights)
    elif isinstance(weights, str):
        over = parse_weights(weights)
    else:
        raise WeightsError("weights must be a mapping, a file path or a 'name=w,...' string, "
                           f"not {type(weights).__name__}")
    full.update(over)
    if not any(w > 0 for w in full.values()):
        raise WeightsError("all composite weights are zero: give at least one metric a positive weight")
    return full


def composite(scores: Mapping[str, np.ndarray | float], weights: Mapping[str, float] | None = None) -> np.ndarray:
    """Vectorised weighted minimum ``min_i s_i ** w_i`` of score arrays (NaN scores left out); NaN where the known
    scores carry less than ``MIN_KNOWN_WEIGHT`` of the total weight. ``weights``: see :func:`resolve_weights`
    (resolved here when not already a full table)."""
    w = weights if _is_resolved(weights) else resolve_weights(weights)
    total = sum(x for x in w.values() if x > 0)
    low = den = None
    for name, wt in w.items():
        if wt <= 0 or name not in scores:
            continue
        s = np.asarray(scores[name], dtype=np.float64)
        ok = np.isfinite(s)
        term = np.where(ok, np.clip(np.where(ok, s, 1.0), 0.0, 1.0) ** wt, np.inf)
        wts = np.where(ok, wt, 0.0)
        low = term if low is None else np.minimum(low, term)
        den = wts if den is None else den + wts
    if low is None:
        n = len(next(iter(scores.values()))) if scores else 0
        return np.full(n, np.nan)
    enough = (den >= MIN_KNOWN_WEIGHT * total - 1e-12) & (den > 0)
    return np.where(enough, low, np.nan)


def weakest(scores: Mapping[str, np.ndarray | float], weights: Mapping[str, float] | None = None) -> np.ndarray:
    """Per row, the name of the metric that sets ``quality`` (the weighted minimum), or None where quality is NaN."""
    w = weights if _is_resolved(weights) else resolve_weights(weights)
    names = [n for n, x in w.items() if x > 0 and n in scores]
    if not names:
        return np.array([], dtype=object)
    terms = np.stack([np.where(np.isfinite(np.asarray(scores[n], np.float64)),
                               np.clip(np.nan_to_num(np.asarray(scores[n], np.float64), nan=1.0), 0, 1) ** w[n],
                               np.inf) for n in names])
    arg = np.argmin(terms, axis=0)
    q = composite(scores, w)
    return np.array([names[a] if np.isfinite(v) else None for a, v in zip(arg, q)], dtype=object)


def quality_of(scores: Mapping[str, float], weights=None) -> float:
    """Composite of one crop's scores ``{metric: score}``."""
    return float(composite({k: np.array([v], dtype=np.float64) for k, v in scores.items()}, weights)[0])


def _is_resolved(w) -> bool:
    return isinstance(w, dict) and set(w) >= set(list_metrics())


def video_quality(video_keys: list, quality: np.ndarray) -> np.ndarray:
    """Per-row median quality of the row's video (rows grouped by equal ``video_keys`` entries)."""
    q = np.asarray(quality, dtype=np.float64)
    out = np.full(len(q), np.nan)
    groups: dict = {}
    for i, k in enumerate(video_keys):
        groups.setdefault(k, []).append(i)
    for idx in groups.values():
        v = q[idx]
        v = v[np.isfinite(v)]
        if v.size:
            out[idx] = float(np.median(v))
    return out


def recompose(table, weights=None):
    """Redo only the composite: a quality table (``q_<metric>`` score columns, ``dataset``, ``video_id``) with its
    ``quality`` and ``video_quality`` columns recomputed for ``weights``. No pixels are touched."""
    import pyarrow as pa

    w = resolve_weights(weights)
    scores = {n: table.column(quality_column(n)).to_numpy(zero_copy_only=False).astype(np.float64)
              for n in w if quality_column(n) in table.column_names}
    missing = [n for n, x in w.items() if x > 0 and quality_column(n) not in table.column_names]
    if missing:
        raise WeightsError(f"no stored scores for weighted metric(s) {', '.join(missing)}: run the metrics first")
    q = composite(scores, w)
    keys = list(zip(table.column("dataset").to_pylist(), table.column("video_id").to_pylist()))
    vq = video_quality(keys, q)
    for name, arr in (("quality", q), ("video_quality", vq)):
        col = pa.array(arr.astype(np.float32), type=pa.float32(), from_pandas=True)
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), name, col)
        else:
            table = table.append_column(name, col)
    meta = dict(table.schema.metadata or {})
    meta[META_QUALITY_WEIGHTS] = json.dumps(w, sort_keys=True).encode()
    meta[META_QUALITY_FORM] = FORM.encode()
    return table.replace_schema_metadata(meta)


# ----------------------------------------------------------------------------------------------------------------------
# what a threshold means
# ----------------------------------------------------------------------------------------------------------------------


def _fmt(v: float) -> str:
    if isinstance(v, float) and math.isnan(v):
        return "-"
    a = abs(v)
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def explain(threshold: float = 0.7, weights=None) -> str:
    """Markdown: for each weighted metric, the raw value at which its score is 0.5, ``threshold`` and 0.9, and
    what a composite ``threshold`` allows."""
    w = resolve_weights(weights)
    total = sum(x for x in w.values() if x > 0)
    lines = [
        f"| metric | weight | raw unit | better | raw at score 0.5 | raw at score {threshold:g} | raw at score 0.9 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in list_metrics():
        m = create_metric(name)
        if m.raw_type == "string":
            at = ("-", "-", "-")
        else:
            at = tuple(_fmt(m.raw_at(s)) for s in (0.5, threshold, 0.9))
        lines.append(f"| {name} | {w[name]:g} | {m.unit} | {m.direction} | {at[0]} | {at[1]} | {at[2]} |")
    # with the weighted minimum, the threshold applies to each weighted score on its own: s_i >= t ** (1 / w_i)
    floors = []
    for name, x in w.items():
        if x > 0:
            s_min = threshold ** (1.0 / x)
            m = create_metric(name)
            if m.raw_type == "string":
                floors.append(f"{name} score >= {s_min:.2f}")
            else:
                floors.append(f"{name} score >= {s_min:.2f} (raw {_fmt(m.raw_at(s_min))})")
    lines += [
        "",
        f"`quality >= {threshold:g}` holds exactly when every weighted metric passes its own floor "
        f"(score >= {threshold:g} ** (1 / weight)): " + "; ".join(floors) + ".",
    ]
    return "\n".join(lines)
