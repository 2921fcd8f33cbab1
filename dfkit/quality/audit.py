"""``dfkit audit``: a self-contained HTML report of a corpus's data quality, with PNG plots and thumbnails.

The report (``OUT/index.html``; every image is also embedded, so the one file opens offline and can be mailed)
shows: counts and quality per dataset x method x split; quality distributions per group; quality against
compression level and bitrate; how strongly each method changed the face (full-reference against the paired
original); the suspect labels (fake crops on which nothing changed, with examples); each metric's score distribution; the worst and best crops; near-duplicate crops across splits; the
split-leak table; and the ingest errors.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from dfkit.corpus.schema import quality_column, raw_column  # noqa: E402
from dfkit.quality.base import list_metrics  # noqa: E402


def _png(fig, out: Path, name: str) -> tuple[str, str]:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    data = buf.getvalue()
    (out / name).write_bytes(data)
    return name, base64.b64encode(data).decode()


def _img(name_b64: tuple[str, str], alt: str, cls: str = "plot") -> str:
    name, b64 = name_b64
    return (f'<figure><img class="{cls}" alt="{html.escape(alt)}" data-file="{name}" '
            f'src="data:image/png;base64,{b64}"><figcaption>{html.escape(alt)}</figcaption></figure>')


def _group_label(df: pd.DataFrame) -> pd.Series:
    return df["dataset"] + " / " + df["method"] + " / " + df["split"].fillna("-")


def plot_quality_by_group(m: pd.DataFrame, out: Path):
    g = m.assign(group=_group_label(m))
    groups = sorted(g["group"].unique())
    data = [g.loc[g["group"] == k, "quality"].dropna().to_numpy() for k in groups]
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(groups) + 1.2))
    ax.boxplot(data, orientation="horizontal", tick_labels=groups, showfliers=True, flierprops={"markersize": 2})
    ax.axvline(0.7, color="tab:red", ls="--", lw=1, label="0.7")
    ax.set_xlim(0, 1)
    ax.set_xlabel("composite quality (higher = better)")
    ax.set_title("Quality per dataset / method / split")
    ax.legend(loc="lower left")
    return _png(fig, out, "quality_by_group.png")


def plot_quality_vs_compression(m: pd.DataFrame, out: Path):
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    g = m.assign(level=m["dataset"] + " " + m["compression"].fillna("?"))
    levels = sorted(g["level"].unique())
    axes[0].boxplot([g.loc[g["level"] == k, "quality"].dropna() for k in levels], tick_labels=levels)
    axes[0].set_ylabel("quality")
    axes[0].set_title("Quality by compression level")
    axes[0].tick_params(axis="x", rotation=30)
    bpp = m.get(raw_column("bitrate"))
    if bpp is not None and bpp.notna().any():
        for k, sub in g.groupby("level"):
            axes[1].scatter(sub[raw_column("bitrate")], sub["quality"], s=6, alpha=0.5, label=k)
        axes[1].set_xscale("log")
        axes[1].set_xlabel("video bits per pixel per frame")
        axes[1].set_ylabel("quality")
        axes[1].legend(fontsize=7)
    axes[1].set_title("Quality vs bitrate")
    return _png(fig, out, "quality_vs_compression.png")


def plot_fullref(m: pd.DataFrame, out: Path):
    f = m[m["label"].eq("fake") & m.get("fr_ssim", pd.Series(index=m.index, dtype=float)).notna()]
    if f.empty:
        return None
    methods = sorted(f["method"].unique())
    fig, axes = plt.subplots(1, 3, figsize=(13, 0.3 * len(methods) + 2.5))
    for ax, col, title in ((axes[0], "fr_ssim", "SSIM vs original (1 = unchanged)"),
                           (axes[1], "fr_change_face", "fraction of the face changed"),
                           (axes[2], "fr_change_outside", "fraction changed outside the face")):
        if col in f:
            ax.boxplot([f.loc[f["method"] == k, col].dropna() for k in methods], vert=False, tick_labels=methods)
        if ax is not axes[0]:
            ax.set_yticklabels([])
        ax.set_title(title, fontsize=10)
    fig.suptitle("How each method changed the face (full-reference, paired original, same frame and box)")
    return _png(fig, out, "fullref_by_method.png")


def plot_metric_scores(m: pd.DataFrame, out: Path):
    names = [n for n in list_metrics() if quality_column(n) in m and m[quality_column(n)].notna().any()]
    if not names:
        return None
    cols = 5
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(13, 2.3 * rows), squeeze=False)
    for ax, n in zip(axes.ravel(), names):
        for lab, sub in m.groupby("label"):
            ax.hist(sub[quality_column(n)].dropna(), bins=20, range=(0, 1), alpha=0.6, label=lab)
        ax.set_title(n, fontsize=10)
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("Per-metric scores in [0, 1] (higher = better)")
    fig.tight_layout()
    return _png(fig, out, "metric_scores.png")


def thumbnails(corpus, rows: pd.DataFrame, out: Path, name: str, caption: Callable[[dict], str]):
    """A contact sheet of crops with captions, saved as one PNG."""
    if rows.empty:
        return None
    n = len(rows)
    cols = min(8, n)
    r = (n + cols - 1) // cols
    fig, axes = plt.subplots(r, cols, figsize=(1.6 * cols, 1.9 * r), squeeze=False)
    order = {sid: i for i, sid in enumerate(rows["sample_id"])}
    for rec, img in corpus.crops(rows):
        ax = axes.ravel()[order[rec["sample_id"]]]
        ax.imshow(img)
        ax.set_title(caption(rec), fontsize=6)
    for ax in axes.ravel():
        ax.axis("off")
    fig.tight_layout()
    return _png(fig, out, name)


def _worst_metric(rec: dict) -> str:
    """The metric that sets this crop's quality (the weighted minimum's argument, default weights)."""
    import numpy as np

    from dfkit.quality.composite import weakest

    scores = {n: np.array([np.nan if rec.get(quality_column(n)) is None else rec[quality_column(n)]], dtype=np.float64)
              for n in list_metrics()}
    w = weakest(scores)
    return w[0] if len(w) and w[0] else "?"


def _table(df: pd.DataFrame) -> str:
    return df.to_html(index=False, classes="tbl", border=0, float_format=lambda v: f"{v:.3f}")


def _calibration_section(root: Path, out: Path) -> str:
    """What the composite sees on graded degradations (``dfkit quality calibrate``'s result in the corpus)."""
    from dfkit.quality import calibrate as cal

    d = Path(root) / cal.CALIBRATION_DIR
    s = cal.load(d)
    head = "<h2>Calibration: quality on graded degradations</h2>"
    if s is None:
        return head + ("<p>Not calibrated yet: <code>dfkit quality calibrate</code> degrades real crops of this corpus "
                       "in graded steps and shows what each quality threshold means.</p>")
    png = d / "calibration.png"
    img = ""
    if png.exists():
        img = _img((png.name, base64.b64encode(png.read_bytes()).decode()), "quality per degradation level")
    f = lambda v, spec=".3f": "n/a" if v is None else format(v, spec)  # noqa: E731 - NaN is stored as null
    rows = [{"degradation": k, "unit": e["unit"], **{f"quality {t}": s["meaning"][k][t] for t in s["meaning"][k]},
             "monotone": f(e["monotone"], ".0%")} for k, e in s["kinds"].items()]
    targets = "".join(f"<li>{'PASS' if t['ok'] else 'FAIL'}: {html.escape(t['what'])} (measured {f(t['value'])})</li>"
                      for t in s["targets"])
    return (head + f"<p>{s['n_crops']} clean crops, composite {html.escape(s['form'])}: clean median "
            f"{f(s['clean']['median'])}. The table gives the level at which the median quality falls below each "
            f"threshold.</p>" + img + _table(pd.DataFrame(rows)) + f"<ul>{targets}</ul>")


def _edc_section(blocks: Sequence[str]) -> str:
    """The error-versus-discard curves of models evaluated on this corpus (``dfkit eval RUN --edc``), as HTML blocks
    made by :func:`dfkit.train.edc.edc_report_block` (the caller builds them: quality does not import train)."""
    head = "<h2>Does quality matter to a model? Error versus discard</h2>"
    if not blocks:
        return head + ("<p>No curve given: <code>dfkit eval RUN --edc --out DIR</code> discards the lowest-quality test "
                       "crops in 5 % steps and plots the model's error on the rest against random discards; pass "
                       "<code>--edc DIR</code> to <code>dfkit audit</code> to show it here.</p>")
    return head + "".join(blocks)


def suspect_sheet(corpus, m: pd.DataFrame, rows: pd.DataFrame, out: Path, name: str = "suspect_labels.png"):
    """Suspect fake crops, one per row: the fake, its paired original at the same box, and the change map (the
    smoothed |Δ luma|; the changed pixels are those above the threshold), as one PNG."""
    from dfkit.quality.fullref import CHANGE_THRESHOLD, change_map

    if rows.empty:
        return None
    refs = m[m["sample_id"].isin(set(rows["fr_ref_sample_id"].dropna()))]
    imgs = {rec["sample_id"]: img for rec, img in corpus.crops(pd.concat([rows, refs]))}
    fig, axes = plt.subplots(len(rows), 3, figsize=(5.4, 1.9 * len(rows)), squeeze=False)
    for ax_row, r in zip(axes, rows.to_dict("records")):
        fake, ref = imgs.get(r["sample_id"]), imgs.get(r.get("fr_ref_sample_id"))
        ax_row[0].imshow(fake)
        ax_row[0].set_title(f"{r['method']} {r['video_id'].rsplit('/', 1)[-1]}\nframe {r['frame_index']}", fontsize=6)
        if ref is not None and fake is not None and ref.shape == fake.shape:
            ax_row[1].imshow(ref)
            ax_row[2].imshow(change_map(fake, ref), cmap="magma", vmin=0, vmax=4 * CHANGE_THRESHOLD)
        ax_row[1].set_title("paired original", fontsize=6)
        ax_row[2].set_title(f"change map: {r['fr_change_face']:.1%} of face changed", fontsize=6)
        for ax in ax_row:
            ax.axis("off")
    fig.tight_layout()
    return _png(fig, out, name)


def _suspect_section(corpus, m: pd.DataFrame, out: Path, n_examples: int = 8) -> str:
    """Suspect labels: per dataset x method, the fake crops checked against their original and the share that
    looks untouched, the fakes that cannot be checked, and examples (fake, original, change map)."""
    from dfkit.corpus.schema import SUSPECT_COLUMN
    from dfkit.quality.suspect import MAX_CHANGED_FACE, summarize

    head = "<h2>Suspect labels: fakes that may not be fake</h2>"
    if (m["label"] == "fake").sum() == 0:
        return head + "<p>No fake crops in this corpus.</p>"
    if SUSPECT_COLUMN not in m.columns or "fr_change_face" not in m.columns:
        return head + ("<p>Not checked: <code>dfkit quality</code> with full reference (not <code>--no-fullref</code>) "
                       "labels them, where a fake's original is in the corpus.</p>")
    s = summarize(m)
    text = (f"<p>A fake crop is <b>suspect</b> when less than {MAX_CHANGED_FACE:.0%} of its face box changed "
            "against its paired original at the same frame and box (full-reference change map): the manipulation "
            "probably did not touch it (failed swap, untouched frames, the wrong face). "
            "<code>dfkit train --drop-suspect</code> leaves them out.</p>")
    n_unp = int(s["unpaired"].sum())
    if n_unp:
        text += (f"<p><b>{n_unp} fake crops cannot be checked</b>: their original is not in the corpus (e.g. DFDC "
                 "parts without <code>original</code> keys, Celeb-DF sources not ingested, WildDeepfake). Their "
                 "label is the dataset's claim only.</p>")
    flagged = m[m[SUSPECT_COLUMN].fillna(False).astype(bool)].sort_values("fr_change_face")
    # spread over videos: each video's least changed crop first, then its next ones
    ex = flagged.assign(_k=flagged.groupby("video_id").cumcount()).sort_values(["_k", "fr_change_face"],
                                                                                kind="stable").head(n_examples)
    body = head + text + _table(s)
    if ex.empty:
        checked = m[m[SUSPECT_COLUMN].notna()]
        if len(checked):
            body += (f"<p>No checked crop is suspect; the least changed one changed on "
                     f"{checked['fr_change_face'].min():.1%} of its face.</p>")
        return body
    sheet = suspect_sheet(corpus, m, ex, out)
    return body + (_img(sheet, "suspect fake crops: fake, paired original, change map", "thumbs") if sheet else "")


def build_report(corpus, out: Path, leaks: dict[str, Any] | None = None, n_thumbs: int = 24,
                 edc_blocks: Sequence[str] = ()) -> Path:
    """The audit report ``out/index.html``. ``edc_blocks``: HTML of error-versus-discard results to include
    (:func:`dfkit.train.edc.edc_report_block`)."""
    out.mkdir(parents=True, exist_ok=True)
    m = corpus.metadata()
    if "quality" not in m.columns:
        from dfkit.errors import DfkitError

        raise DfkitError(f"{corpus.root} has no quality metrics yet: run `dfkit quality` first")
    parts: list[str] = []
    summary = m.assign(split=m["split"].fillna("-")).groupby(["dataset", "method", "split"]).agg(
        crops=("sample_id", "size"), videos=("video_id", "nunique"), median_quality=("quality", "median"),
        share_ge_07=("quality", lambda q: float((q >= 0.7).mean()))).reset_index()
    parts.append("<h2>Corpus</h2>" + _table(summary))
    parts.append("<h2>Quality distributions</h2>" + _img(plot_quality_by_group(m, out), "quality per group"))
    parts.append("<h2>Quality and compression</h2>"
                 + _img(plot_quality_vs_compression(m, out), "quality vs compression level and bitrate"))
    fr = plot_fullref(m, out)
    parts.append("<h2>Full-reference change per method</h2>" + (
        _img(fr, "full-reference change per method") if fr else
        "<p>No fake has a paired original in this corpus (or `dfkit quality --no-fullref` was used).</p>"))
    if fr is not None:
        cols = [c for c in ("fr_ssim", "fr_ms_ssim", "fr_psnr", "fr_gmsd", "fr_haarpsi", "fr_change_face",
                            "fr_change_outside") if c in m]
        t = m[m["label"].eq("fake") & m["fr_ssim"].notna()].groupby(["dataset", "method", "compression"])[cols]
        parts.append(_table(t.median().reset_index()))
    parts.append(_suspect_section(corpus, m, out))
    ms = plot_metric_scores(m, out)
    if ms:
        parts.append("<h2>Metric scores</h2>" + _img(ms, "per-metric score distributions"))
    parts.append(_calibration_section(corpus.root, out))
    parts.append(_edc_section(edc_blocks))
    q = m.dropna(subset=["quality"]).sort_values("quality")
    cap = lambda r: f"{r['method']} {r['quality']:.2f}\nworst: {_worst_metric(r)}"  # noqa: E731
    worst = thumbnails(corpus, q.head(n_thumbs), out, "worst_crops.png", cap)
    best = thumbnails(corpus, q.tail(n_thumbs).iloc[::-1], out, "best_crops.png",
                      lambda r: f"{r['method']} {r['quality']:.2f}")
    parts.append("<h2>Worst crops</h2>" + (_img(worst, "lowest quality crops", "thumbs") if worst else ""))
    parts.append("<h2>Best crops</h2>" + (_img(best, "highest quality crops", "thumbs") if best else ""))
    if leaks is not None:
        nd = leaks.get("near_duplicates") or {"count": 0, "examples": []}
        parts.append(f"<h2>Near-duplicate crops across splits</h2><p>{nd['count']} pairs "
                     f"(dHash distance &le; {nd.get('max_distance', '?')}, {nd.get('checked_crops', 0)} crops "
                     f"checked).</p>")
        if nd["examples"]:
            ids = [e["a"] for e in nd["examples"][:8]] + [e["b"] for e in nd["examples"][:8]]
            rows = m[m["sample_id"].isin(ids)].set_index("sample_id").loc[
                [i for i in ids if i in set(m["sample_id"])]].reset_index()
            sheet = thumbnails(corpus, rows, out, "near_duplicates.png",
                               lambda r: f"{r['split']} {r['video_id'][-14:]}")
            parts.append(_img(sheet, "near-duplicates: first row and second row pair up", "thumbs"))
        rows = []
        for ds, e in leaks["datasets"].items():
            rows.append({"scope": ds, "videos": e["videos"], "identities in >1 split": e["identity"]["count"],
                         "source groups in >1 split": e["group"]["count"],
                         "examples": "; ".join(f"{x['key']} ({'/'.join(x['splits'])})"
                                               for x in e["group"]["examples"][:4] + e["identity"]["examples"][:4])})
        x = leaks["cross_dataset"]["identity"]
        rows.append({"scope": "cross-dataset", "videos": "", "identities in >1 split": x["count"],
                     "source groups in >1 split": "", "examples": "; ".join(e["key"] for e in x["examples"][:6])})
        parts.append("<h2>Split leaks</h2>" + _table(pd.DataFrame(rows)))
    err = corpus.errors()
    parts.append("<h2>Ingest errors</h2>" + (_table(err.head(200)) if len(err) else "<p>None.</p>"))
    doc = _PAGE.format(title=html.escape(f"dfkit audit: {corpus.root}"), body="\n".join(parts),
                       meta=html.escape(json.dumps(corpus.manifest.get("counts", {}))))
    path = out / "index.html"
    path.write_text(doc)
    return path


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }}
h1 {{ font-size: 1.5em; }} h2 {{ border-bottom: 1px solid #ccc; margin-top: 2em; }}
table.tbl {{ border-collapse: collapse; font-size: 0.85em; }}
table.tbl td, table.tbl th {{ padding: 2px 8px; border-bottom: 1px solid #eee; text-align: right; }}
img.plot {{ max-width: 100%; }} img.thumbs {{ max-width: 100%; }}
figure {{ margin: 0.5em 0; }} figcaption {{ font-size: 0.8em; color: #666; }}
</style></head>
<body data-images-loaded="0">
<h1>{title}</h1>
<p>Quality is dfkit's composite in [0, 1] (higher = better; see the README for what 0.7 means). Counts: {meta}</p>
{body}
<script>
window.addEventListener("load", function () {{
  var imgs = document.querySelectorAll("img");
  var ok = Array.prototype.filter.call(imgs, function (i) {{ return i.complete && i.naturalWidth > 0; }});
  document.body.setAttribute("data-images-loaded", ok.length + "/" + imgs.length);
}});
</script>
</body></html>
"""
