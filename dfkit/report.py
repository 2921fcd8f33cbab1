"""Text summaries of a corpus (``dfkit info``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

import dfkit.corpus
from dfkit.corpus.schema import SUSPECT_COLUMN, usable
from dfkit.errors import one_line


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TB"


def corpus_size(root: Path) -> int:
    return sum(p.stat().st_size for p in Path(root).rglob("*.parquet"))


def counts_table(meta: pd.DataFrame, videos: pd.DataFrame) -> pd.DataFrame:
    """Crops and videos per dataset x method x split (split shown as '-' where the dataset gives none)."""
    keys = ["dataset", "method", "split"]
    m = meta.assign(split=meta["split"].fillna("-"))
    v = videos.assign(split=videos["split"].fillna("-"))
    crops = m.groupby(keys).size().rename("crops")
    vids = usable(v).groupby(keys).size().rename("videos")
    t = pd.concat([vids, crops], axis=1).fillna(0).astype(int).reset_index()
    return t.sort_values(keys).reset_index(drop=True)


def suspect_lines(meta: pd.DataFrame) -> list[str]:
    """The suspect-label block of ``dfkit info``: per dataset x method, fake crops checked against their paired
    original and how many look untouched; fakes that cannot be checked (no paired original) are counted."""
    from dfkit.quality.suspect import MAX_CHANGED_FACE, summarize

    if SUSPECT_COLUMN not in meta.columns or (meta["label"] == "fake").sum() == 0:
        return []
    s = summarize(meta)
    lines = [f"suspect labels (fake crops on which < {MAX_CHANGED_FACE:.0%} of the face changed against the paired "
             f"original; `dfkit train --drop-suspect` leaves them out):"]
    show = s.assign(suspect_rate=s["suspect_rate"].map(lambda v: "-" if pd.isna(v) else f"{v:.1%}"))
    lines.append(show.rename(columns={"method_canonical": "method", "suspect_rate": "rate",
                                      "unpaired": "no_original"}).to_string(index=False))
    n_unp = int(s["unpaired"].sum())
    if n_unp:
        lines.append(f"{n_unp} fake crops have no paired original in the corpus and cannot be checked "
                     "(their label is the dataset's claim only)")
    return lines


def corpus_info_text(root: Path, errors: bool = False) -> str:
    c = dfkit.corpus.open(root)
    man = c.manifest
    meta = c.metadata(["dataset", "method", "method_canonical", "split", "label", "pair_video_id", "quality",
                       SUSPECT_COLUMN])
    videos = c.videos()
    lines = [f"corpus {root}  (schema {man.get('schema_version', '?')}, dfkit {man.get('dfkit_version', '?')}, "
             f"{_human(corpus_size(root))} on disk)"]
    if videos.empty:
        lines.append("empty: nothing ingested yet")
        return "\n".join(lines)
    t = counts_table(meta, videos)
    lines.append(t.to_string(index=False))
    lines.append(f"total: {int((videos['status'].isin(['ok', 'partial'])).sum())} videos with crops, "
                 f"{len(meta)} crops")
    st = videos.groupby(["dataset", "status"]).size().unstack(fill_value=0)
    lines.append("video status per dataset:\n" + st.to_string())
    if "quality" in meta.columns and meta["quality"].notna().any():
        q = meta["quality"]
        lines.append(f"quality: median {q.median():.3f}; >= 0.5: {(q >= 0.5).mean():.0%}; "
                     f">= 0.7: {(q >= 0.7).mean():.0%} of crops")
    lines += suspect_lines(meta)
    err = c.errors()
    # ok videos with a reason carry a note (a fake not paired with its original): shown with the errors
    notes = videos[(videos["status"] == "ok") & videos["reason"].notna()] if "reason" in videos.columns \
        else videos.iloc[:0]
    if errors:
        if err.empty:
            lines.append("errors: none")
        else:
            lines.append(f"errors ({len(err)}):")
            for r in err.itertuples():
                lines.append(one_line(f"  {r.status:8s} {r.dataset}:{r.video_path}: {r.stage}: {r.reason}"))
        if len(notes):
            lines.append(f"notes ({len(notes)}, ingested):")
            for r in notes.itertuples():
                lines.append(one_line(f"  {r.status:8s} {r.dataset}:{r.video_path}: {r.reason}"))
    else:
        if not err.empty:
            lines.append(f"{len(err)} videos not fully ingested: see `dfkit info --errors`")
        if len(notes):
            lines.append(f"{len(notes)} ingested videos carry a note (e.g. a fake not paired with its original): "
                         "see `dfkit info --errors`")
    return "\n".join(lines)
