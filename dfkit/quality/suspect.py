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

Pair mismatch (rule version 2): a paired fake changes its face, not the scene around it. On the same real FF++ c23
clips, the crop outside the face box changed on at most 25 % of its pixels for every true pair (NeuralTextures,
whose blending reaches past the box: 13-25 %; Deepfakes <= 1.4 %, FaceSwap <= 5.7 %), and on at least 92 % when a
fake was paired (through a CSV ``pair`` column) with another original of the same frame size. A checked crop above
:data:`MAX_CHANGED_OUTSIDE` gets ``pair_mismatch`` = true (its ``fr_*`` values compare unrelated pictures, so its
suspect label is left null); ``tests/test_pair_mismatch.py`` builds those pairs and checks the rule.

The columns' names are the corpus's (:data:`dfkit.corpus.schema.SUSPECT_COLUMN`, ``SUSPECT_REASON_COLUMN``); the
rule's version is stored in each quality shard (``META_SUSPECT_VERSION``) so that a new rule relabels the corpus
from the stored ``fr_*`` values without reading pixels.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from dfkit.corpus.schema import (PAIR_MISMATCH_COLUMN, PAIR_MISMATCH_REASON_COLUMN, SUSPECT_COLUMN,
                                 SUSPECT_REASON_COLUMN)

#: the rule's version (stored per quality shard; a change relabels from the stored fr_* columns). 2: pair mismatch
SUSPECT_VERSION = 2
#: a paired fake crop on which a smaller share of the face box changed is suspect (see the module docstring)
MAX_CHANGED_FACE = 0.10
#: a paired fake crop on which a larger share of the crop outside the face box changed was paired with a video it was
#: not made from (see the module docstring)
MAX_CHANGED_OUTSIDE = 0.50
#: the full-reference columns the rules read (written by ``dfkit quality`` for paired fakes)
CHANGE_COLUMN = "fr_change_face"
OUTSIDE_COLUMN = "fr_change_outside"
COLUMNS = (SUSPECT_COLUMN, SUSPECT_REASON_COLUMN, PAIR_MISMATCH_COLUMN, PAIR_MISMATCH_REASON_COLUMN)


def suspect_reason(changed_face: float) -> str:
    return (f"{changed_face:.1%} of the face changed against its paired original "
            f"(suspect below {MAX_CHANGED_FACE:.0%}): probably not manipulated on this frame")


def mismatch_reason(changed_outside: float) -> str:
    return (f"{changed_outside:.1%} of the crop outside the face differs from its paired original (a true pair "
            f"changes < {MAX_CHANGED_OUTSIDE:.0%}): probably paired with a video it was not made from")


def _values(q: pa.Table, name: str) -> np.ndarray:
    if name not in q.column_names:
        return np.full(q.num_rows, np.nan)
    return np.asarray(q[name].to_numpy(zero_copy_only=False), dtype=np.float64)


def label_suspects(q: pa.Table, max_changed: float = MAX_CHANGED_FACE,
                   max_outside: float = MAX_CHANGED_OUTSIDE) -> pa.Table:
    """``q`` (a quality table) with the label checks (re)computed from the stored full-reference values:

    * ``pair_mismatch``: true where ``fr_change_outside`` exceeds ``max_outside``, false at or below, null where
      there is no value;
    * ``suspect_label``: true where ``fr_change_face`` is below ``max_changed``, false at or above it, null where
      there is no value (not checked) or the pair is a mismatch."""
    q = q.drop_columns([c for c in COLUMNS if c in q.column_names])
    change, outside = _values(q, CHANGE_COLUMN), _values(q, OUTSIDE_COLUMN)
    has_out = np.isfinite(outside)
    mismatch = has_out & (outside > max_outside)
    checked = np.isfinite(change) & ~mismatch
    flag = checked & (change < max_changed)

    def col(values, keep, typ):
        return pa.array([v if k else None for v, k in zip(values, keep)], type=typ)

    cols = {SUSPECT_COLUMN: col(flag.tolist(), checked, pa.bool_()),
            SUSPECT_REASON_COLUMN: col([suspect_reason(float(v)) for v in change], flag, pa.string()),
            PAIR_MISMATCH_COLUMN: col(mismatch.tolist(), has_out, pa.bool_()),
            PAIR_MISMATCH_REASON_COLUMN: col([mismatch_reason(float(v)) for v in outside], mismatch, pa.string())}
    out = q
    for name, arr in cols.items():
        out = out.append_column(name, arr)
    return out.replace_schema_metadata(q.schema.metadata)


def summarize(meta) -> "pd.DataFrame":  # noqa: F821 - pandas imported lazily
    """Per dataset x method (fakes only): crops, checked (a paired original to compare with), suspect, and the
    suspect share of the checked crops. ``meta`` is a corpus metadata DataFrame (quality joined)."""
    import pandas as pd

    fakes = meta[meta["label"] == "fake"]
    cols = ["dataset", "method_canonical", "crops", "checked", "suspect", "suspect_rate", "unpaired", "mismatched"]
    if fakes.empty:
        return pd.DataFrame(columns=cols)

    def flags(name):
        return fakes[name] if name in fakes.columns else pd.Series(None, index=fakes.index, dtype=object)

    lab = flags(SUSPECT_COLUMN)
    df = pd.DataFrame({"dataset": fakes["dataset"], "method_canonical": fakes["method_canonical"],
                       "checked": lab.notna(), "suspect": lab.fillna(False).astype(bool),
                       "unpaired": fakes["pair_video_id"].isna() if "pair_video_id" in fakes else True,
                       "mismatched": flags(PAIR_MISMATCH_COLUMN).fillna(False).astype(bool)})
    g = df.groupby(["dataset", "method_canonical"], sort=True)
    out = g.agg(crops=("checked", "size"), checked=("checked", "sum"), suspect=("suspect", "sum"),
                unpaired=("unpaired", "sum"), mismatched=("mismatched", "sum")).reset_index()
    out["suspect_rate"] = np.where(out["checked"] > 0, out["suspect"] / out["checked"].clip(lower=1), np.nan)
    return out[cols]
