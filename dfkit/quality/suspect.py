"""Suspect labels: fake crops on which (almost) nothing changed against their paired original.

A fake video's label is a video-level claim and its crops inherit it, but many fake crops are not manipulated:
frames where the swap failed or had not started, a fake shorter than its target, the wrong face of a multi-person
video. For a paired fake crop (cut on its original's frame and box), ``dfkit quality`` already measures
``fr_change_face``: the share of the face box whose smoothed luma differs from the original's by more than
:data:`dfkit.quality.fullref.CHANGE_THRESHOLD` grey levels. A crop on which less than :data:`MAX_CHANGED_FACE` of
the face changed gets ``suspect_label`` = true and a one-line ``suspect_reason``; a checked crop above it gets
false; a crop that cannot be checked (a real crop, a fake without a paired original in the corpus, a frame outside
``--fullref-frames``) stays null.

Calibration (``bench/suspect.py`` prints it; the README's "Label noise" section has the figures): on the real FF++
c23 clips in ``../shared/realdata``, every paired fake crop of Deepfakes, FaceSwap and NeuralTextures changed on at
least 24 % of its face box (medians 38 / 45 / 26 %), while an *untouched* copy of an original (the same frames
re-encoded as a fake would be, H.264 CRF 23) changed on at most 4.6 % (CRF 28: 16 %). 10 % -- "on at least 90 % of
the face nothing changed" -- lies between the two at c23; at c40 and in other datasets the compression noise of an
untouched frame is larger, and the cases `bench/suspect.py` builds say how the rule does there.

The columns' names are the corpus's (:data:`dfkit.corpus.schema.SUSPECT_COLUMN`, ``SUSPECT_REASON_COLUMN``); the
rule's version is stored in each quality shard (``META_SUSPECT_VERSION``) so that a new rule relabels the corpus
from the stored ``fr_*`` values without reading pixels.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from dfkit.corpus.schema import SUSPECT_COLUMN, SUSPECT_REASON_COLUMN

#: the rule's version (stored per quality shard; a change relabels from the stored fr_* columns)
SUSPECT_VERSION = 1
#: a paired fake crop on which a smaller share of the face box changed is suspect (see the module docstring)
MAX_CHANGED_FACE = 0.10
#: the full-reference column the rule reads (written by ``dfkit quality`` for paired fakes)
CHANGE_COLUMN = "fr_change_face"


def suspect_reason(changed_face: float) -> str:
    return (f"{changed_face:.1%} of the face changed against its paired original "
            f"(suspect below {MAX_CHANGED_FACE:.0%}): probably not manipulated on this frame")


def label_suspects(q: pa.Table, max_changed: float = MAX_CHANGED_FACE) -> pa.Table:
    """``q`` (a quality table) with ``suspect_label`` / ``suspect_reason`` (re)computed from ``fr_change_face``:
    true below ``max_changed``, false at or above it, null where there is no value (not checked)."""
    for name in (SUSPECT_COLUMN, SUSPECT_REASON_COLUMN):
        if name in q.column_names:
            q = q.drop_columns([name])
    n = q.num_rows
    if CHANGE_COLUMN in q.column_names:
        change = np.asarray(q[CHANGE_COLUMN].to_numpy(zero_copy_only=False), dtype=np.float64)
    else:
        change = np.full(n, np.nan)
    checked = np.isfinite(change)
    flag = checked & (change < max_changed)
    labels = pa.array([bool(f) if c else None for f, c in zip(flag, checked)], type=pa.bool_())
    reasons = pa.array([suspect_reason(float(v)) if f else None for v, f in zip(change, flag)], type=pa.string())
    out = q.append_column(SUSPECT_COLUMN, labels).append_column(SUSPECT_REASON_COLUMN, reasons)
    return out.replace_schema_metadata(q.schema.metadata)


def summarize(meta) -> "pd.DataFrame":  # noqa: F821 - pandas imported lazily
    """Per dataset x method (fakes only): crops, checked (a paired original to compare with), suspect, and the
    suspect share of the checked crops. ``meta`` is a corpus metadata DataFrame (quality joined)."""
    import pandas as pd

    fakes = meta[meta["label"] == "fake"]
    cols = ["dataset", "method_canonical", "crops", "checked", "suspect", "suspect_rate", "unpaired"]
    if fakes.empty:
        return pd.DataFrame(columns=cols)
    has = SUSPECT_COLUMN in fakes.columns
    lab = fakes[SUSPECT_COLUMN] if has else pd.Series(None, index=fakes.index, dtype=object)
    df = pd.DataFrame({"dataset": fakes["dataset"], "method_canonical": fakes["method_canonical"],
                       "checked": lab.notna(), "suspect": lab.fillna(False).astype(bool),
                       "unpaired": fakes["pair_video_id"].isna() if "pair_video_id" in fakes else True})
    g = df.groupby(["dataset", "method_canonical"], sort=True)
    out = g.agg(crops=("checked", "size"), checked=("checked", "sum"), suspect=("suspect", "sum"),
                unpaired=("unpaired", "sum")).reset_index()
    out["suspect_rate"] = np.where(out["checked"] > 0, out["suspect"] / out["checked"].clip(lower=1), np.nan)
    return out[cols]
