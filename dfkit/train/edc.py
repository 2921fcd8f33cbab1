"""Error-versus-discard curves (EDC): does discarding low-quality crops lower a model's error faster than chance?

The standard test of a face-image-quality score (ISO/IEC 29794-5, OFIQ): order the test samples by quality, discard
the lowest ``f`` of them for ``f = 0, 5%, 10%, ...`` and plot the error on what remains. A useful score makes the
curve fall faster than the same curve for **random** discards (the average of many random orders, with the 95% band
of single orders). Two levels:

- ``frame``: the unit is a crop, ordered by its ``quality``; error = 1 - accuracy of the remaining crops;
- ``video``: the unit is a whole video, ordered by its ``video_quality`` (the median crop quality, as ``dfkit
  quality`` defines it; computed here when the column is absent); error = 1 - balanced accuracy of the remaining
  videos (a video's prediction is the mean of its frame probabilities, as in ``dfkit eval``).

The summary is the **area between** the random and the quality curve over the discard range (trapezoids; positive =
quality-ordered discarding lowers the error faster), with a 95% percentile bootstrap CI that resamples the test
**videos** (:func:`dfkit.train.scores.video_resample`; each resample recomputes the quality curve and the random
curve under the same weights, the random one from ``n_random_boot`` of the random orders). A discard that cuts
through a unit's weight (a bootstrap duplicate, or ``f x N`` not whole) keeps the rest of that unit's weight.

The curve stops at ``max_discard`` (80% by default): beyond it the remaining set is a fifth of the test set or less,
so the error is measured on few videos (classes may vanish, balanced accuracy then averages fewer classes) and the
tail is noise rather than evidence; a score that helps shows it well before.

:func:`edc` computes from arrays; :func:`edc_from_predictions` from an eval's metadata + predictions;
:func:`write_edc` adds ``edc.json`` and ``edc.png``; :func:`edc_summary_line`, :func:`edc_markdown` and
:func:`edc_html` render it.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from dfkit.errors import DfkitError

__all__ = ["edc", "edc_from_predictions", "write_edc", "edc_summary_line", "edc_markdown", "edc_html",
           "save_edc_png"]

_LEVELS = {"frame": ("crop", "quality", "1 - accuracy"), "video": ("video", "video_quality", "1 - balanced accuracy")}


def _fractions(max_discard: float, step: float) -> np.ndarray:
    if not 0 < step <= 1:
        raise DfkitError("EDC step must lie in (0, 1]")
    if not 0 < max_discard < 1:
        raise DfkitError("EDC max discard must lie in (0, 1): something has to remain")
    k = int(np.floor(max_discard / step + 1e-9))
    return np.round(np.arange(k + 1) * step, 10)


class _Curve:
    """Units (crops or videos) with fixed correctness and class: the error left after discarding a weight ``f x
    total`` in a given order, for all fractions at once (cumulative sums, no per-fraction loop)."""

    def __init__(self, correct: np.ndarray, y: np.ndarray, n_classes: int, balanced: bool) -> None:
        self.balanced = balanced
        if balanced:  # per class: weight, correct weight
            onehot = np.eye(n_classes)[y].T
            self.values = np.vstack([onehot, onehot * correct[None, :]])
        else:
            self.values = np.vstack([np.ones(len(y)), correct.astype(np.float64)])
        self.C = n_classes

    def prepare(self, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """An order with the units' values gathered in it (reused by every bootstrap resample)."""
        return order, self.values[:, order]

    def error(self, order: np.ndarray | tuple[np.ndarray, np.ndarray], w: np.ndarray,
              fractions: np.ndarray) -> np.ndarray:
        order, v = order if isinstance(order, tuple) else self.prepare(order)
        ws = w[order]
        cw = np.cumsum(ws)
        total = cw[-1]
        cuts = np.round(fractions * total, 9)
        vals = v * ws[None, :]  # K x N weighted values in discard order
        cv = np.cumsum(vals, axis=1)
        idx = np.searchsorted(cw, cuts, side="right")  # units [0, idx) are discarded whole
        idx_c = np.minimum(idx, len(ws) - 1)
        before = np.where(idx > 0, cw[np.maximum(idx - 1, 0)], 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            part = np.where((idx < len(ws)) & (ws[idx_c] > 0), (cuts - before) / ws[idx_c], 0.0)
        disc = np.where(idx > 0, cv[:, np.maximum(idx - 1, 0)], 0.0) + part[None, :] * vals[:, idx_c]
        kept = cv[:, -1:] - disc  # K x F
        with np.errstate(invalid="ignore", divide="ignore"):
            if self.balanced:
                sup, cor = kept[: self.C], kept[self.C:]
                present = sup > 1e-9
                rec = np.where(present, cor / np.where(present, sup, 1), np.nan)
                n_present = present.sum(0)
                acc = np.where(n_present > 0, np.nansum(rec, 0) / np.maximum(n_present, 1), np.nan)
            else:
                acc = np.where(kept[0] > 1e-9, kept[1] / np.where(kept[0] > 1e-9, kept[0], 1), np.nan)
        return 1.0 - acc


def _quality_order(q: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Ascending quality (the discard order); ties in a random order, missing scores first."""
    qq = np.where(np.isfinite(q), q, -np.inf)
    return np.lexsort((rng.random(len(qq)), qq))


def _trapz(y: np.ndarray, x: np.ndarray) -> float:
    y = np.asarray(y, dtype=np.float64)
    return float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)))


def _ci(boots: np.ndarray, ci_level: float) -> list[float] | None:
    from dfkit.train.scores import _stat

    return _stat(0.0, boots, 1 - ci_level)["ci"]


def _j(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def edc(y_true: Sequence[int], probs: np.ndarray, video_ids: Sequence[str], quality: Sequence[float], *,
        video_quality: dict[str, float] | None = None, max_discard: float = 0.8, step: float = 0.05,
        n_random: int = 200, n_random_boot: int = 10, n_boot: int = 1000, seed: int = 0,
        ci_level: float = 0.95) -> dict[str, Any]:
    """Error-versus-discard curves at frame and video level (see the module docstring).

    Args:
        y_true: ``N`` class ids; probs: ``N x C`` probabilities; video_ids: ``N`` video keys; quality: ``N`` crop
            quality scores (higher = better; ``nan`` = unscored, discarded first).
        video_quality: per video key its score (default: the median crop quality of the video).
        max_discard, step: the discarded fractions ``0, step, ..., <= max_discard``.
        n_random: random discard orders for the random curve and its band; n_random_boot: the first this many of
            them make each bootstrap resample's random curve (the orders do not depend on the resample).
        n_boot: bootstrap resamples of the test videos (0: no CIs).
    """
    from dfkit.train.scores import video_level, video_resample

    y = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    q = np.asarray(quality, dtype=np.float64)
    if len(y) == 0:
        raise DfkitError("EDC: no crops to evaluate")
    if p.shape[0] != len(y) or len(q) != len(y) or len(video_ids) != len(y):
        raise ValueError("y_true, probs, video_ids and quality must describe the same N crops")
    if not np.isfinite(q).any():
        raise DfkitError("EDC needs quality scores, and no evaluated crop has one: run `dfkit quality` first")
    C = p.shape[1]
    fr = _fractions(max_discard, step)
    videos, inverse, y_v, p_v = video_level(y, p, video_ids)
    n_v = len(videos)
    if video_quality is None:
        vq = pd.Series(q).groupby(inverse).median().reindex(range(n_v)).to_numpy(dtype=np.float64)
    else:
        vq = np.array([video_quality.get(str(v), np.nan) for v in videos], dtype=np.float64)
    rng = np.random.default_rng(seed)
    units = {"frame": (_Curve(p.argmax(1) == y, y, C, balanced=False), q, len(y)),
             "video": (_Curve(p_v.argmax(1) == y_v, y_v, C, balanced=True), vq, n_v)}
    orders = {lv: units[lv][0].prepare(_quality_order(sc, rng)) for lv, (_, sc, _) in units.items()}
    rand = {lv: [rng.permutation(n) for _ in range(max(1, n_random))] for lv, (_, _, n) in units.items()}
    n_rb = max(1, min(n_random_boot, n_random))
    rand_boot = {lv: [units[lv][0].prepare(o) for o in rand[lv][:n_rb]] for lv in units}
    notes: list[str] = []
    n_missing = int((~np.isfinite(q)).sum())
    if n_missing:
        notes.append(f"{n_missing} crops have no quality score; they are discarded first")

    def curves(w_video: np.ndarray, boot: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        res = {}
        for lv, (cv, _, _) in units.items():
            w = w_video[inverse] if lv == "frame" else w_video
            qc = cv.error(orders[lv], w, fr)
            res[lv] = (qc, np.array([cv.error(o, w, fr) for o in (rand_boot[lv] if boot else rand[lv])]))
        return res

    point = curves(np.ones(n_v), False)
    boot_q = {lv: np.full((n_boot, len(fr)), np.nan) for lv in units}
    boot_area = {lv: np.full(n_boot, np.nan) for lv in units}
    for b in range(n_boot):
        c = curves(video_resample(rng, n_v), True)
        for lv, (qc, rc) in c.items():
            boot_q[lv][b] = qc
            boot_area[lv][b] = _trapz(np.nanmean(rc, 0) - qc, fr)
    alpha = 1 - ci_level
    levels: dict[str, Any] = {}
    for lv, (qc, rc) in point.items():
        unit, by, err = _LEVELS[lv]
        with np.errstate(invalid="ignore"):
            rmean = np.nanmean(rc, 0)
            band = np.nanpercentile(rc, [100 * alpha / 2, 100 * (1 - alpha / 2)], axis=0)
        area = _trapz(rmean - qc, fr)
        ci = _ci(boot_area[lv], ci_level) if n_boot else None
        q_ci = [_ci(boot_q[lv][:, i], ci_level) for i in range(len(fr))] if n_boot else None
        levels[lv] = {
            "unit": unit, "ordered_by": by, "error": err, "n": int(units[lv][2]),
            "quality": [_j(v) for v in qc], "quality_ci": q_ci,
            "random": [_j(v) for v in rmean], "random_band": [[_j(band[0, i]), _j(band[1, i])] for i in range(len(fr))],
            "area": {"value": _j(area), "ci": ci},
            "area_per_unit_discard": _j(area / fr[-1]) if fr[-1] > 0 else None,
            "excludes_zero": bool(ci is not None and (ci[0] > 0 or ci[1] < 0)),
        }
    return {"fractions": [float(f) for f in fr], "max_discard": float(fr[-1]), "step": float(step),
            "n_random": int(n_random), "n_random_boot": int(n_rb), "levels": levels,
            "bootstrap": {"n_boot": int(n_boot), "seed": int(seed), "ci_level": ci_level, "unit": "video",
                          "method": "percentile"},
            "n_frames": int(len(y)), "n_videos": int(n_v), "notes": notes,
            "area_definition": "integral over the discard fraction of (random-discard error - quality-discard "
                               "error); positive = discarding by quality lowers the error faster than at random"}


def edc_from_predictions(meta: pd.DataFrame, preds: pd.DataFrame, class_names: Sequence[str], **kw) -> dict[str, Any]:
    """:func:`edc` of predictions ``preds`` (``sample_id``, ``probs``; same row order as ``meta``) on the crops of
    ``meta`` (``dataset``, ``video_id``, ``label``, ``method_canonical``, ``quality``, optional ``video_quality``).
    Only crops of classes the model knows are used (unseen methods have no right answer)."""
    from dfkit.train.data import REAL
    from dfkit.train.scores import class_targets

    if "quality" not in meta.columns:
        raise DfkitError("--edc needs quality scores: run `dfkit quality` on the corpus first")
    if len(meta) != len(preds) or (meta["sample_id"].astype(str).to_numpy()
                                   != preds["sample_id"].astype(str).to_numpy()).any():
        raise ValueError("predictions and metadata are not aligned")
    methods = np.where(meta["label"].to_numpy() == REAL, REAL, meta["method_canonical"].astype(str).to_numpy())
    t = class_targets(class_names, methods)
    known = t >= 0
    if not known.any():
        raise DfkitError("EDC: no evaluated crop belongs to a class the model knows")
    keys = (meta["dataset"].astype(str) + "/" + meta["video_id"].astype(str)).to_numpy()
    probs = np.asarray(preds["probs"].tolist(), dtype=np.float64)
    vq = None
    if "video_quality" in meta.columns and meta["video_quality"].notna().any():
        vq = {str(k): float(v) for k, v in zip(keys, meta["video_quality"].to_numpy(float))}
    res = edc(t[known], probs[known], keys[known], meta["quality"].to_numpy(float)[known], video_quality=vq, **kw)
    res["video_quality_source"] = "video_quality column" if vq is not None else "median crop quality"
    if (~known).any():
        res["notes"].append(f"{int((~known).sum())} crops of methods the model never saw are left out")
    return res


def edc_summary_line(res: dict[str, Any]) -> str:
    """One line: per level, the error at 0% and at the largest discard (random at the same point) and the area."""
    parts = []
    for lv, e in res["levels"].items():
        a = e["area"]
        ci = f" [{a['ci'][0]:+.3f}, {a['ci'][1]:+.3f}]" if a.get("ci") else ""
        last = e["quality"][-1]
        parts.append(f"{lv} error {_num(e['quality'][0])} -> {_num(last)} (random {_num(e['random'][-1])}), "
                     f"area {_num(a['value'], '+.3f')}{ci}")
    return f"EDC (discarding up to {res['max_discard']:.0%} lowest quality): " + "; ".join(parts)


def _num(x: float | None, fmt: str = ".3f") -> str:
    return "n/a" if x is None else format(x, fmt)


def _verdict(e: dict[str, Any]) -> str:
    ci = e["area"].get("ci")
    if ci is None:
        return "no CI"
    if ci[0] > 0:
        return "CI excludes 0: discarding by quality lowers the error faster than at random"
    if ci[1] < 0:
        return "CI excludes 0: discarding by quality lowers the error slower than at random"
    return "CI includes 0: not distinguishable from random discarding"


def edc_markdown(res: dict[str, Any], title: str = "Error versus discard (EDC)") -> str:
    lines = [f"## {title}", "",
             f"Lowest-quality test units discarded in steps of {res['step']:.0%} up to {res['max_discard']:.0%}; "
             f"random curve = mean of {res['n_random']} random orders (95% band of single orders); area = "
             "random minus quality curve (positive: quality helps), 95% bootstrap CI over test videos.", ""]
    for lv, e in res["levels"].items():
        a = e["area"]
        ci = f" [{a['ci'][0]:+.4f}, {a['ci'][1]:+.4f}]" if a.get("ci") else ""
        lines.append(f"- **{lv}** ({e['n']} {e['unit']}s by {e['ordered_by']}, error = {e['error']}): area "
                     f"{_num(a['value'], '+.4f')}{ci}; {_verdict(e)}.")
    lines += ["", "| discarded | " + " | ".join(f"{lv} quality (95% CI) | {lv} random (95% band)"
                                              for lv in res["levels"]) + " |",
              "|---|" + "---|---|" * len(res["levels"])]
    for i, f in enumerate(res["fractions"]):
        cells = []
        for e in res["levels"].values():
            qci = e["quality_ci"][i] if e.get("quality_ci") else None
            band = e["random_band"][i]
            cells.append(_num(e["quality"][i]) + (f" [{qci[0]:.3f}, {qci[1]:.3f}]" if qci else ""))
            cells.append(_num(e["random"][i]) + (f" [{band[0]:.3f}, {band[1]:.3f}]" if band[0] is not None else ""))
        lines.append(f"| {f:.0%} | " + " | ".join(cells) + " |")
    for n in res.get("notes", []):
        lines.append(f"\n_Note: {n}._")
    return "\n".join(lines) + "\n"


def edc_html(res: dict[str, Any], png: str | None = "edc.png") -> str:
    items = "".join(f"<li><b>{html.escape(lv)}</b> ({e['n']} {e['unit']}s by {html.escape(e['ordered_by'])}): area "
                    f"{html.escape(_num(e['area']['value'], '+.4f'))}"
                    + (f" [{e['area']['ci'][0]:+.4f}, {e['area']['ci'][1]:+.4f}]" if e["area"].get("ci") else "")
                    + f"; {html.escape(_verdict(e))}</li>" for lv, e in res["levels"].items())
    img = f"<p><img src='{html.escape(png)}' alt='error versus discard'></p>" if png else ""
    return (f"<h2>Error versus discard (EDC)</h2><p>{html.escape(edc_summary_line(res))}</p><ul>{items}</ul>{img}")


def save_edc_png(res: dict[str, Any], path: str | Path, title: str | None = None) -> Path:
    """Quality-ordered error curve (with its bootstrap CI) and the random curve with its 95% band, per level."""
    from matplotlib.figure import Figure

    fr = np.asarray(res["fractions"]) * 100
    lvs = list(res["levels"])
    fig = Figure(figsize=(5 * len(lvs), 4))
    axes = fig.subplots(1, len(lvs), squeeze=False)[0]
    nan = lambda xs: np.array([np.nan if x is None else x for x in xs], dtype=float)  # noqa: E731
    for ax, lv in zip(axes, lvs):
        e = res["levels"][lv]
        band = np.array([[np.nan if v is None else v for v in b] for b in e["random_band"]], dtype=float)
        ax.fill_between(fr, band[:, 0], band[:, 1], color="gray", alpha=0.25, label="random (95% band)")
        ax.plot(fr, nan(e["random"]), color="gray", ls="--", lw=1.5, label="random (mean)")
        if e.get("quality_ci"):
            ci = np.array([[np.nan, np.nan] if c is None else c for c in e["quality_ci"]], dtype=float)
            ax.fill_between(fr, ci[:, 0], ci[:, 1], color="C0", alpha=0.2, label="by quality (95% CI)")
        ax.plot(fr, nan(e["quality"]), "o-", color="C0", ms=3, lw=2, label="by quality")
        a = e["area"]
        txt = f"area {_num(a['value'], '+.3f')}" + (f" [{a['ci'][0]:+.3f}, {a['ci'][1]:+.3f}]" if a.get("ci") else "")
        ax.set_title(f"{lv} level ({e['n']} {e['unit']}s): {txt}", fontsize=9)
        ax.set_xlabel(f"{e['unit']}s of the lowest {e['ordered_by'].replace('_', ' ')} discarded (%)")
        ax.set_ylabel(f"error ({e['error']})")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def write_edc(res: dict[str, Any], out_dir: str | Path, title: str | None = None) -> dict[str, str]:
    """Write ``edc.json`` and ``edc.png`` into ``out_dir``; returns their file names."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    from dfkit.corpus.store import atomic_write_bytes

    atomic_write_bytes(out / "edc.json", json.dumps(res, indent=1, allow_nan=False).encode())
    save_edc_png(res, out / "edc.png", title=title)
    return {"edc_json": "edc.json", "edc_png": "edc.png"}


def load_edc(path: str | Path) -> tuple[str, dict[str, Any]]:
    """An error-versus-discard result written by ``dfkit eval RUN --edc``: its folder or its ``edc.json``. Returns
    ``(title, result)``, the title being the folder's name; a :class:`~dfkit.errors.DfkitError` naming the file when
    it is not one."""
    p = Path(path).expanduser()
    f = p / "edc.json" if p.is_dir() else p
    if not f.is_file():
        raise DfkitError(f"--edc {path}: no edc.json there (write one with `dfkit eval RUN --edc --out DIR`)")
    try:
        res = json.loads(f.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DfkitError(f"--edc {f}: not readable as JSON ({e})") from None
    if not isinstance(res, dict) or not isinstance(res.get("levels"), dict) or not res.get("fractions"):
        raise DfkitError(f"--edc {f}: not an error-versus-discard result (no levels / fractions)")
    return f.resolve().parent.name, res


def edc_report_block(title: str, res: dict[str, Any]) -> str:
    """One result as a self-contained HTML block (the plot embedded), for ``dfkit audit``'s report."""
    import base64
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        png = save_edc_png(res, Path(d) / "edc.png", title=f"{title}: error versus discard")
        b64 = base64.b64encode(png.read_bytes()).decode()
    body = edc_html(res, png=None).replace("<h2>Error versus discard (EDC)</h2>", f"<h3>{html.escape(title)}</h3>")
    return body + f"<p><img class='plot' src='data:image/png;base64,{b64}' alt='error versus discard'></p>"
