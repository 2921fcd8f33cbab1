"""Text summaries of a corpus (``dfkit info``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

import dfkit.corpus
from dfkit.corpus.schema import PAIR_MISMATCH_COLUMN, SUSPECT_COLUMN, usable
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
    n_mis = int(s["mismatched"].sum())
    if n_mis:
        vids = meta.loc[meta[PAIR_MISMATCH_COLUMN].fillna(False).astype(bool), "video_path"].nunique() \
            if "video_path" in meta.columns else "?"
        lines.append(f"{n_mis} fake crops ({vids} videos) differ from their paired original outside the face almost "
                     "everywhere: the dataset pairs them with a video they were not made from (their full-reference "
                     "values and suspect check mean nothing; the pair_mismatch column marks them)")
    n_unp = int(s["unpaired"].sum())
    if n_unp:
        lines.append(f"{n_unp} fake crops have no paired original in the corpus and cannot be checked "
                     "(their label is the dataset's claim only)")
    return lines


class _Facts:
    """What ``dfkit info`` reports, read once: shown as text (:func:`corpus_info_text`) or JSON
    (:func:`corpus_info`)."""

    def __init__(self, root: Path):
        c = dfkit.corpus.open(root)
        self.root = Path(root)
        self.manifest = c.manifest
        self.size = corpus_size(root)
        self.meta = c.metadata(["dataset", "method", "method_canonical", "split", "label", "pair_video_id",
                                "video_path", "quality", SUSPECT_COLUMN, PAIR_MISMATCH_COLUMN])
        self.videos = c.videos()
        self.empty = self.videos.empty
        if self.empty:
            return
        self.table = counts_table(self.meta, self.videos)
        self.with_crops = int(self.videos["status"].isin(["ok", "partial"]).sum())
        self.status = self.videos.groupby(["dataset", "status"]).size().unstack(fill_value=0)
        q = self.meta["quality"] if "quality" in self.meta.columns else pd.Series(dtype=float)
        self.quality = q if q.notna().any() else None
        self.errors = c.errors()
        # ok videos with a reason carry a note (a fake not paired with its original): shown with the errors
        v = self.videos
        self.notes = v[(v["status"] == "ok") & v["reason"].notna()] if "reason" in v.columns else v.iloc[:0]


def _records(df: pd.DataFrame, cols: list[str]) -> list[dict]:
    out = df[[c for c in cols if c in df.columns]].astype(object)
    return out.where(out.notna(), None).to_dict("records")


def corpus_info(root: Path, errors: bool = False) -> dict:
    """``dfkit info --json``: the same facts as :func:`corpus_info_text`, JSON-ready (``errors``/``notes`` list
    every entry with ``errors=True``, else only their counts)."""
    f = _Facts(root)
    out = {"corpus": str(f.root), "schema_version": f.manifest.get("schema_version"),
           "dfkit_version": f.manifest.get("dfkit_version"), "bytes_on_disk": f.size,
           "videos_with_crops": 0, "crops": len(f.meta), "counts": [], "video_status": {}, "quality": None,
           "suspect": None, "n_errors": 0, "n_notes": 0}
    if f.empty:
        return out
    out["videos_with_crops"] = f.with_crops
    out["counts"] = _records(f.table, list(f.table.columns))
    out["video_status"] = {ds: {st: int(n) for st, n in row.items() if n} for ds, row in f.status.iterrows()}
    if f.quality is not None:
        q = f.quality
        out["quality"] = {"median": float(q.median()), "share_ge_0.5": float((q >= 0.5).mean()),
                          "share_ge_0.7": float((q >= 0.7).mean()), "scored": int(q.notna().sum())}
    if SUSPECT_COLUMN in f.meta.columns and (f.meta["label"] == "fake").sum():
        from dfkit.quality.suspect import MAX_CHANGED_FACE, summarize

        s = summarize(f.meta)
        out["suspect"] = {"max_changed_face": MAX_CHANGED_FACE, "per_method": _records(s, list(s.columns))}
    out["n_errors"], out["n_notes"] = len(f.errors), len(f.notes)
    if errors:
        out["errors"] = _records(f.errors, ["status", "dataset", "video_path", "stage", "reason"])
        out["notes"] = _records(f.notes, ["status", "dataset", "video_path", "reason"])
    return out


def corpus_info_text(root: Path, errors: bool = False) -> str:
    f = _Facts(root)
    man = f.manifest
    lines = [f"corpus {root}  (schema {man.get('schema_version', '?')}, dfkit {man.get('dfkit_version', '?')}, "
             f"{_human(f.size)} on disk)"]
    if f.empty:
        lines.append("empty: nothing ingested yet")
        return "\n".join(lines)
    lines.append(f.table.to_string(index=False))
    lines.append(f"total: {f.with_crops} videos with crops, {len(f.meta)} crops")
    lines.append("video status per dataset:\n" + f.status.to_string())
    if f.quality is not None:
        q = f.quality
        lines.append(f"quality: median {q.median():.3f}; >= 0.5: {(q >= 0.5).mean():.0%}; "
                     f">= 0.7: {(q >= 0.7).mean():.0%} of crops")
    lines += suspect_lines(f.meta)
    err, notes = f.errors, f.notes
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
