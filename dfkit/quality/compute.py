"""Batch computation: crop rows (with their encoded ``crop``) -> a quality table keyed by ``sample_id``.

:func:`compute_quality` returns, per input row, in input order:

* ``sample_id``, ``dataset``, ``video_id`` (keys);
* for every metric ``m`` (:func:`~dfkit.quality.base.list_metrics`): ``q_<m>_raw`` (float64; string for ``codec``)
  and ``q_<m>`` (float32 score in [0, 1], higher = better; NaN = not measurable), plus the metric's extra raw
  columns ``q_<m>_<extra>`` (pose: yaw, pitch, roll; exposure: dark, bright; cutoff: pad, touch);
* ``quality`` (float32): the composite (:mod:`dfkit.quality.composite`), ``video_quality`` (float32): the median
  ``quality`` of the row's video among the rows of this table;
* ``q_errors`` (string, null when none): metrics that raised, ``"name: Error: message; ..."``.

Video-level metrics (jitter, bitrate, resolution, codec, compression) are computed per (dataset, video_id) from the
rows of the batch and broadcast; jitter and ``video_quality`` need all crops of a video in the same call, so callers
should batch by whole videos (one crops shard holds whole videos).

The schema carries metadata ``dfkit.quality.version`` (bump when a metric's definition changes: stored raws are
then stale) and ``dfkit.quality.weights`` (the weights used for ``quality``; :func:`~dfkit.quality.composite.recompose`
redoes only the composite for new weights).
"""

from __future__ import annotations

import json
import math
from typing import Sequence

import numpy as np
import pyarrow as pa

from dfkit.corpus.codec import DecodedCrops
from dfkit.corpus.schema import (META_QUALITY_FORM, META_QUALITY_VERSION, META_QUALITY_WEIGHTS, QUALITY_ERRORS_COLUMN,
                                 extra_column, quality_column, raw_column)
from dfkit.quality.base import Metric, get_metrics
from dfkit.quality.composite import FORM, composite, resolve_weights, video_quality
from dfkit.quality.view import CropView

QUALITY_VERSION = 4  # 3: normalised sharpness, steep macroblock; 4: crops never enlarged, stretch ≤ ×2
KEY_COLUMNS = ("sample_id", "dataset", "video_id")


def quality_schema(metrics: Sequence[Metric] | None = None) -> pa.Schema:
    """The columns :func:`compute_quality` returns."""
    ms = get_metrics() if metrics is None else list(metrics)
    fields = [pa.field("sample_id", pa.string(), nullable=False), pa.field("dataset", pa.string()),
              pa.field("video_id", pa.string())]
    for m in ms:
        fields.append(pa.field(raw_column(m.name), pa.string() if m.raw_type == "string" else pa.float64()))
        fields.append(pa.field(quality_column(m.name), pa.float32()))
        fields += [pa.field(extra_column(m.name, e), pa.float64()) for e in m.extras]
    fields += [pa.field("quality", pa.float32()), pa.field("video_quality", pa.float32()),
               pa.field(QUALITY_ERRORS_COLUMN, pa.string())]
    return pa.schema(fields, metadata={META_QUALITY_VERSION: str(QUALITY_VERSION).encode()})


def _nan_if_bad(v):
    if v is None:
        return math.nan
    try:
        f = float(v)
    except (TypeError, ValueError):
        return math.nan
    return f


def compute_quality(table: pa.Table, weights=None, metrics: Sequence[str] | None = None,
                    decoded: DecodedCrops | None = None) -> pa.Table:
    """Metrics, scores and the composite for a batch of crop rows (see the module doc for the columns).

    ``table`` needs ``sample_id``, ``dataset``, ``video_id``, ``frame_index`` and ``crop`` (encoded bytes), and
    uses whatever geometry / video-fact columns it has (``bbox``, ``crop_box``, ``landmarks``, ``det_score``,
    ``width``, ``height``, ``fps``, ``bitrate``, ``codec``, ``compression``). ``weights``: see
    :func:`~dfkit.quality.composite.resolve_weights`. ``metrics``: names to compute (default: all registered).
    ``decoded``: a :class:`~dfkit.corpus.codec.DecodedCrops` shared with the full-reference passes over the same
    rows (each crop is then decoded once for all of them)."""
    w = resolve_weights(weights)
    ms = get_metrics(metrics)
    crop_ms = [m for m in ms if m.level == "crop"]
    video_ms = [m for m in ms if m.level == "video"]
    need_pixels = any(m.needs_pixels for m in crop_ms)
    n = table.num_rows
    meta_cols = [c for c in table.column_names if c != "crop"]
    rows = table.select(meta_cols).to_pylist()
    crops = table.column("crop").to_pylist() if need_pixels and "crop" in table.column_names else [None] * n
    decoded = decoded if decoded is not None else DecodedCrops(max_bytes=0)

    raws: dict[str, list] = {m.name: [math.nan] * n for m in ms}
    extras: dict[str, list] = {f"{m.name}_{e}": [math.nan] * n for m in ms for e in m.extras}
    errors: list[list[str]] = [[] for _ in range(n)]

    for i, row in enumerate(rows):
        rgb = None
        if need_pixels:
            rgb = decoded.get(row.get("sample_id"), crops[i])  # None when undecodable: the metrics are then NaN
            if rgb is None:
                errors[i].append("crop: undecodable or missing crop bytes")
        view = CropView(rgb, row)
        for m in crop_ms:
            if m.needs_pixels and rgb is None:
                continue
            try:
                raws[m.name][i] = m.measure(view)
                if m.extras:
                    for k, v in m.measure_extras(view).items():
                        extras[f"{m.name}_{k}"][i] = _nan_if_bad(v)
            except Exception as e:  # noqa: BLE001 - one odd crop must not stop the batch; recorded in q_errors
                errors[i].append(f"{m.name}: {type(e).__name__}: {e}")

    keys = [(r.get("dataset"), r.get("video_id")) for r in rows]
    if video_ms:
        groups: dict = {}
        for i, k in enumerate(keys):
            groups.setdefault(k, []).append(i)
        for idx in groups.values():
            idx = sorted(idx, key=lambda j: (rows[j].get("frame_index") is None, rows[j].get("frame_index") or 0))
            vrows = [rows[j] for j in idx]
            for m in video_ms:
                try:
                    v = m.measure_video(vrows)
                except Exception as e:  # noqa: BLE001
                    v = None if m.raw_type == "string" else math.nan
                    for j in idx:
                        errors[j].append(f"{m.name}: {type(e).__name__}: {e}")
                for j in idx:
                    raws[m.name][j] = v

    # scores are stored as float32; the composite uses exactly the stored values, so recompose() reproduces it
    scores = {m.name: m.scores(raws[m.name]).astype(np.float32).astype(np.float64) for m in ms}
    q = composite(scores, w)
    vq = video_quality(keys, q)

    schema = quality_schema(ms)
    cols: dict[str, pa.Array] = {
        "sample_id": table.column("sample_id").combine_chunks() if n else pa.array([], pa.string()),
        "dataset": pa.array([k[0] for k in keys], pa.string()),
        "video_id": pa.array([k[1] for k in keys], pa.string()),
    }
    for m in ms:
        if m.raw_type == "string":
            cols[raw_column(m.name)] = pa.array(raws[m.name], pa.string())
        else:
            cols[raw_column(m.name)] = pa.array(np.asarray(raws[m.name], dtype=np.float64), pa.float64())
        cols[quality_column(m.name)] = pa.array(scores[m.name].astype(np.float32), pa.float32())
        for e in m.extras:
            cols[extra_column(m.name, e)] = pa.array(np.asarray(extras[f"{m.name}_{e}"], dtype=np.float64),
                                                     pa.float64())
    cols["quality"] = pa.array(q.astype(np.float32), pa.float32())
    cols["video_quality"] = pa.array(vq.astype(np.float32), pa.float32())
    cols[QUALITY_ERRORS_COLUMN] = pa.array(["; ".join(e) if e else None for e in errors], pa.string())
    meta = dict(schema.metadata or {})
    meta[META_QUALITY_WEIGHTS] = json.dumps(w, sort_keys=True).encode()
    meta[META_QUALITY_FORM] = FORM.encode()
    return pa.table([cols[f.name] for f in schema], schema=schema.with_metadata(meta))


def summarize_videos(quality_table: pa.Table) -> pa.Table:
    """One row per (dataset, video_id) of a quality table: ``n_crops``, ``video_quality`` (median crop quality),
    ``quality_mean``, ``quality_min``, and the video-level metric columns (``q_<m>_raw``, ``q_<m>`` for jitter,
    bitrate, resolution, codec, compression: the same on every crop of a video)."""
    from dfkit.quality.base import list_metrics

    vcols = [c for n in list_metrics("video") for c in (raw_column(n), quality_column(n))
             if c in quality_table.column_names]
    t = quality_table.select(["dataset", "video_id", "quality"] + vcols)
    aggs = [("quality", "count"), ("quality", "approximate_median"), ("quality", "mean"), ("quality", "min")]
    aggs += [(c, "first") for c in vcols]
    g = t.group_by(["dataset", "video_id"], use_threads=False).aggregate(aggs)
    names = {"quality_count": "n_crops", "quality_approximate_median": "video_quality", "quality_mean": "quality_mean",
             "quality_min": "quality_min"}
    names.update({f"{c}_first": c for c in vcols})
    g = g.rename_columns([names.get(c, c) for c in g.column_names])
    # exact median (approximate_median is a t-digest) from the rows
    med = video_quality(list(zip(t.column("dataset").to_pylist(), t.column("video_id").to_pylist())),
                        t.column("quality").to_numpy(zero_copy_only=False))
    first = {}
    for k, v in zip(zip(t.column("dataset").to_pylist(), t.column("video_id").to_pylist()), med):
        first.setdefault(k, v)
    exact = [first[k] for k in zip(g.column("dataset").to_pylist(), g.column("video_id").to_pylist())]
    g = g.set_column(g.column_names.index("video_quality"), "video_quality",
                     pa.array(np.asarray(exact, dtype=np.float32), pa.float32()))
    return g.sort_by([("dataset", "ascending"), ("video_id", "ascending")])
