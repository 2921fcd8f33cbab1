"""Evaluation scores of predictions: frame- and video-level, with 95% bootstrap confidence intervals over videos.

:func:`evaluate` takes per-frame predictions (``y_true``: class ids, ``probs``: ``N x C`` probabilities, ``video_ids``:
one group key per frame - use dataset+video id, not a folder name) and reports, at frame level and at video level
(the mean of a video's frame probabilities):

- accuracy; balanced accuracy (mean recall over the classes present in ``y_true``); macro-F1 (mean F1 over the classes
  present in ``y_true`` or in the predictions, as scikit-learn's default); per-class recall;
- one-vs-rest AUC per class (classes absent from ``y_true``, or making up all of it, are skipped and listed) and their
  mean; in the binary case ``auc`` is the AUC of class 1 ("fake") and ``eer`` the equal error rate;
- the confusion matrix (rows: true class, columns: predicted class; arg-max prediction, ties to the lower index).

Confidence intervals are percentile bootstraps that resample **videos** with replacement (a resampled video brings
all its frames), so correlated frames do not shrink the interval; ``n_boot`` and ``seed`` are parameters and the
same resamples are used for both levels. Everything is computed with numpy (weighted counts), not by calling
scikit-learn in the bootstrap loop.

:func:`cross_dataset_attribution` evaluates a model on samples labelled with canonical methods: methods the model
knows are scored; fakes of methods it never saw are reported separately (how their predictions spread over the known
classes) instead of being counted wrong. :func:`to_markdown` renders either result; :func:`save_confusion_png` draws a
confusion matrix. :func:`paired_bootstrap` compares several models scored on the same test set (per seed): the
differences of their means over seeds, with CIs from resampling the videos and the seeds once for all models.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "evaluate",
    "eer",
    "roc_auc",
    "video_level",
    "video_resample",
    "class_targets",
    "paired_bootstrap",
    "cross_dataset_attribution",
    "to_markdown",
    "save_confusion_png",
]


# ----------------------------------------------------------------------------------------------------------------------
# weighted primitives (weights are bootstrap multiplicities; all ones for the point estimate)

class _TieGroups:
    """Scores sorted ascending and split into runs of equal value, precomputed once for many weightings."""

    def __init__(self, scores: np.ndarray) -> None:
        self.order = np.argsort(scores, kind="stable")
        s = scores[self.order]
        self.starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]]) if len(s) else np.zeros(0, dtype=int)

    def sums(self, values: np.ndarray) -> np.ndarray:
        """Per tie group (ascending score) sums of ``values``."""
        return np.add.reduceat(values[self.order], self.starts) if len(self.starts) else np.zeros(0)


def _auc_from_groups(wp: np.ndarray, wn: np.ndarray) -> float:
    """AUC (probability that a positive outscores a negative, ties count 1/2) from per-tie-group positive/negative
    weights in ascending score order."""
    tp, tn = wp.sum(), wn.sum()
    if tp <= 0 or tn <= 0:
        return math.nan
    neg_below = np.cumsum(wn) - wn
    return float(np.sum(wp * (neg_below + 0.5 * wn)) / (tp * tn))


def _eer_from_groups(wp: np.ndarray, wn: np.ndarray) -> float:
    """Equal error rate from per-tie-group weights (ascending scores); "positive" means score >= threshold.

    Walks the thresholds from the top, tracking FPR (rising 0 -> 1) and FNR (falling 1 -> 0), and interpolates
    linearly on the ROC segment where FNR - FPR changes sign."""
    tp, tn = wp.sum(), wn.sum()
    if tp <= 0 or tn <= 0:
        return math.nan
    fpr = np.r_[0.0, np.cumsum(wn[::-1]) / tn]
    fnr = np.r_[1.0, 1.0 - np.cumsum(wp[::-1]) / tp]
    d = fnr - fpr
    k = int(np.argmax(d <= 0))  # d ends at -1 <= 0, so k exists (k >= 1 because d[0] = 1)
    if d[k] == 0:
        return float(fpr[k])
    t = d[k - 1] / (d[k - 1] - d[k])
    return float(fpr[k - 1] + t * (fpr[k] - fpr[k - 1]))


def roc_auc(y_true: Sequence[int], scores: Sequence[float], weights: Sequence[float] | None = None) -> float:
    """Binary ROC AUC (``y_true`` in {0, 1}, 1 positive); nan when one class is missing."""
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=np.float64)
    g = _TieGroups(s)
    return _auc_from_groups(g.sums(w * y), g.sums(w * ~y))


def eer(y_true: Sequence[int], scores: Sequence[float], weights: Sequence[float] | None = None) -> float:
    """Equal error rate of a binary score (``y_true`` in {0, 1}, higher score = more likely 1): the rate at which the
    false-positive and false-negative rates are equal, interpolated on the ROC curve; nan when a class is missing."""
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=np.float64)
    g = _TieGroups(s)
    return _eer_from_groups(g.sums(w * y), g.sums(w * ~y))


class _Level:
    """One evaluation level (frames or videos): fixed predictions, metrics under any sample weighting."""

    def __init__(self, y: np.ndarray, probs: np.ndarray, n_classes: int) -> None:
        self.y = y
        self.C = n_classes
        self.pred = probs.argmax(1)
        self.pair = y * n_classes + self.pred
        self.onehot = np.eye(n_classes, dtype=bool)[y]
        self.groups = [_TieGroups(probs[:, c]) for c in range(n_classes)]
        # per class: "is class c" in that class's score order, so one gather of the weights serves both sums
        self.pos_sorted = [self.onehot[g.order, c].astype(np.float64) for c, g in enumerate(self.groups)]
        self.binary = n_classes == 2

    def _pos_neg(self, c: int, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        g = self.groups[c]
        ws = w[g.order]
        wp = np.add.reduceat(ws * self.pos_sorted[c], g.starts)
        return wp, np.add.reduceat(ws, g.starts) - wp

    def compute(self, w: np.ndarray) -> dict[str, Any]:
        C = self.C
        cm = np.bincount(self.pair, weights=w, minlength=C * C).reshape(C, C)
        total = cm.sum()
        tp = np.diag(cm)
        support = cm.sum(1)
        predicted = cm.sum(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            recall = np.where(support > 0, tp / support, np.nan)
            denom = 2 * tp + (predicted - tp) + (support - tp)
            f1 = np.where(denom > 0, 2 * tp / denom, np.nan)
        present = support > 0
        auc = np.full(C, np.nan)
        for c in range(C):
            if 0 < support[c] < total:
                auc[c] = _auc_from_groups(*self._pos_neg(c, w))
        out: dict[str, Any] = {
            "accuracy": float(tp.sum() / total) if total > 0 else math.nan,
            "balanced_accuracy": float(np.mean(recall[present])) if present.any() else math.nan,
            "macro_f1": float(np.nanmean(f1)) if np.isfinite(f1).any() else math.nan,
            "per_class_recall": recall,
            "per_class_auc": auc,
            "cm": cm,
            "support": support,
        }
        if self.binary:
            out["auc"] = float(auc[1])
            out["eer"] = _eer_from_groups(*self._pos_neg(1, w))
        else:
            out["auc"] = float(np.mean(auc[np.isfinite(auc)])) if np.isfinite(auc).any() else math.nan
        return out


def video_level(y_true: np.ndarray, probs: np.ndarray, video_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray,
                                                                                           np.ndarray, np.ndarray]:
    """Group frames by video: returns ``(videos, inverse, y_video, probs_video)`` where ``videos`` are the unique
    keys (sorted), ``inverse`` maps each frame to its video, and ``probs_video`` is the mean of the frames'
    probabilities. Raises if a video's frames carry different labels."""
    vids = np.asarray([str(v) for v in video_ids])
    videos, inverse = np.unique(vids, return_inverse=True)
    n_v = len(videos)
    counts = np.bincount(inverse, minlength=n_v).astype(np.float64)
    pv = np.zeros((n_v, probs.shape[1]))
    np.add.at(pv, inverse, probs)
    pv /= counts[:, None]
    y_v = np.full(n_v, -1, dtype=np.int64)
    y_v[inverse] = y_true
    bad = np.flatnonzero(np.bincount(inverse, weights=(y_true != y_v[inverse]).astype(float), minlength=n_v) > 0)
    if len(bad):
        raise ValueError(f"frames of one video carry different labels: {', '.join(videos[bad[:5]])}")
    return videos, inverse, y_v, pv


def video_resample(rng: np.random.Generator, n_videos: int) -> np.ndarray:
    """One bootstrap resample of ``n_videos`` videos drawn with replacement, as multiplicities (how often each video
    is drawn; a frame's weight is its video's). The one resampling step of every bootstrap in dfkit."""
    return np.bincount(rng.integers(0, n_videos, n_videos), minlength=n_videos).astype(np.float64)


def _jsonable(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def _stat(value: float, boots: np.ndarray | None, alpha: float) -> dict[str, Any]:
    ci = None
    if boots is not None:
        finite = boots[np.isfinite(boots)]
        if len(finite):
            lo, hi = np.percentile(finite, [100 * alpha / 2, 100 * (1 - alpha / 2)])
            ci = [float(lo), float(hi)]
    return {"value": _jsonable(value), "ci": ci}


_SCALARS = ("accuracy", "balanced_accuracy", "macro_f1", "auc")


def evaluate(
    y_true: Sequence[int],
    probs: np.ndarray,
    video_ids: Sequence[str],
    class_names: Sequence[str],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    ci_level: float = 0.95,
) -> dict[str, Any]:
    """Frame- and video-level metrics with bootstrap CIs over videos (see the module docstring).

    Args:
        y_true: ``N`` integer class ids in ``[0, C)``.
        probs: ``N x C`` class probabilities (rows need not sum to 1 exactly).
        video_ids: ``N`` group keys (e.g. ``"ffpp/000_003"``); frames with the same key form one video.
        class_names: ``C`` names, index-aligned with ``probs``' columns (binary: ``[real, fake]``).
        n_boot: bootstrap resamples of the videos (0 disables CIs).
        seed: seed of the bootstrap's random generator.
        ci_level: confidence level of the percentile intervals.

    Returns a JSON-serialisable dict: ``{"class_names", "n_frames", "n_videos", "frame": {...}, "video": {...},
    "bootstrap": {...}, "notes": [...]}``; each level holds ``{"value", "ci"}`` entries for ``accuracy``,
    ``balanced_accuracy``, ``macro_f1``, ``auc`` (and ``eer`` when binary), per-class ``recall`` and ``auc``,
    ``support`` and ``confusion_matrix`` (counts). Undefined values are ``None``.
    """
    y = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    names = [str(c) for c in class_names]
    C = len(names)
    if p.ndim != 2 or p.shape != (len(y), C):
        raise ValueError(f"probs must be N x C = {len(y)} x {C}, got {p.shape}")
    if len(video_ids) != len(y):
        raise ValueError("video_ids must have one entry per frame")
    if len(y) == 0:
        raise ValueError("nothing to evaluate (no frames)")
    if y.min() < 0 or y.max() >= C:
        raise ValueError(f"y_true must lie in [0, {C})")
    videos, inverse, y_v, p_v = video_level(y, p, video_ids)
    levels = {"frame": _Level(y, p, C), "video": _Level(y_v, p_v, C)}
    points = {"frame": levels["frame"].compute(np.ones(len(y))), "video": levels["video"].compute(np.ones(len(videos)))}

    boots: dict[str, dict[str, np.ndarray]] | None = None
    if n_boot > 0:
        rng = np.random.default_rng(seed)
        keys = list(_SCALARS) + (["eer"] if C == 2 else [])
        boots = {lv: {k: np.empty(n_boot) for k in keys} | {"recall": np.empty((n_boot, C)),
                                                             "cauc": np.empty((n_boot, C))} for lv in levels}
        n_v = len(videos)
        for b in range(n_boot):
            counts = video_resample(rng, n_v)
            for lv, w in (("frame", counts[inverse]), ("video", counts)):
                r = levels[lv].compute(w)
                for k in keys:
                    boots[lv][k][b] = r[k]
                boots[lv]["recall"][b] = r["per_class_recall"]
                boots[lv]["cauc"][b] = r["per_class_auc"]

    alpha = 1 - ci_level
    notes: list[str] = []
    result: dict[str, Any] = {
        "class_names": names,
        "n_frames": int(len(y)),
        "n_videos": int(len(videos)),
        "bootstrap": {"n_boot": int(n_boot), "seed": int(seed), "ci_level": ci_level, "unit": "video",
                      "method": "percentile"},
    }
    for lv, pt in points.items():
        bt = boots[lv] if boots else None
        out: dict[str, Any] = {"n": int(len(y) if lv == "frame" else len(videos))}
        for k in _SCALARS + (("eer",) if C == 2 else ()):
            out[k] = _stat(pt[k], bt[k] if bt else None, alpha)
        out["per_class_recall"] = {
            n: _stat(pt["per_class_recall"][c], bt["recall"][:, c] if bt else None, alpha) for c, n in enumerate(names)
        }
        out["per_class_auc"] = {
            n: _stat(pt["per_class_auc"][c], bt["cauc"][:, c] if bt else None, alpha) for c, n in enumerate(names)
        }
        out["support"] = {n: int(pt["support"][c]) for c, n in enumerate(names)}
        out["confusion_matrix"] = pt["cm"].astype(int).tolist()
        skipped = [n for c, n in enumerate(names) if not np.isfinite(pt["per_class_auc"][c])]
        out["auc_skipped"] = skipped
        if skipped and lv == "frame":
            absent = [n for c, n in enumerate(names) if pt["support"][c] == 0]
            only = [n for n in skipped if n not in absent]
            if absent:
                notes.append(f"one-vs-rest AUC skipped for classes absent from y_true: {', '.join(absent)}")
            if only:
                notes.append(f"one-vs-rest AUC skipped for classes that make up all of y_true: {', '.join(only)}")
        result[lv] = out
    absent_recall = [n for c, n in enumerate(names) if points["frame"]["support"][c] == 0]
    if absent_recall:
        notes.append("balanced accuracy averages the recall of the classes present in y_true only "
                     f"(absent: {', '.join(absent_recall)})")
    result["notes"] = notes
    return result


# ----------------------------------------------------------------------------------------------------------------------
# paired comparison of several models on the same test set

def paired_bootstrap(
    y_true: Sequence[int],
    video_ids: Sequence[str],
    arms: dict[str, Sequence[np.ndarray]],
    pairs: Sequence[tuple[str, str]],
    class_names: Sequence[str],
    *,
    metric: str = "balanced_accuracy",
    level: str = "video",
    n_boot: int = 1000,
    seed: int = 0,
    ci_level: float = 0.95,
) -> dict[str, Any]:
    """Per-arm means over seeds and **paired** differences between arms, with percentile bootstrap CIs.

    ``arms`` maps an arm name to its runs' ``N x C`` probabilities, one array per seed, every array on the same
    ``N`` frames (``y_true``, ``video_ids``) and the seeds in the same order for every arm (index ``k`` = the same
    seed). An arm's value is the mean over its seeds of ``metric`` at ``level``; a pair ``(a, b)``'s difference is
    ``value(a) - value(b)``. Each bootstrap resample draws the test **videos** with replacement
    (:func:`video_resample`) *and* the seed indices with replacement, and applies the same draw to every arm, so
    the differences are paired over both. Returns ``{"arms": {name: {"value", "ci", "per_seed"}}, "pairs":
    [{"a", "b", "value", "ci", "per_seed"}], "bootstrap": {...}}`` (``None`` where the metric is undefined)."""
    names = [str(c) for c in class_names]
    C = len(names)
    y = np.asarray(y_true, dtype=np.int64)
    if metric not in _SCALARS + ("eer",):
        raise ValueError(f"unknown metric {metric!r}")
    if level not in ("frame", "video"):
        raise ValueError("level must be frame or video")
    seeds_n = {len(v) for v in arms.values()}
    if len(seeds_n) != 1 or 0 in seeds_n:
        raise ValueError("every arm needs the same number (> 0) of runs, one per seed")
    S = seeds_n.pop()
    for a, b in pairs:
        if a not in arms or b not in arms:
            raise ValueError(f"pair ({a}, {b}) names an unknown arm")
    levels: dict[str, list[_Level]] = {}
    inverse = None
    for name, runs in arms.items():
        levels[name] = []
        for p in runs:
            p = np.asarray(p, dtype=np.float64)
            if p.shape != (len(y), C):
                raise ValueError(f"arm {name}: probs must be N x C = {len(y)} x {C}, got {p.shape}")
            videos, inverse, y_v, p_v = video_level(y, p, video_ids)
            levels[name].append(_Level(y, p, C) if level == "frame" else _Level(y_v, p_v, C))
    n_v = int(inverse.max()) + 1 if inverse is not None and len(inverse) else 0
    if n_v == 0:
        raise ValueError("nothing to compare (no frames)")

    def values(w_video: np.ndarray) -> dict[str, np.ndarray]:
        w = w_video[inverse] if level == "frame" else w_video
        return {name: np.array([lv.compute(w)[metric] for lv in lvs]) for name, lvs in levels.items()}

    point = values(np.ones(n_v))
    boot_arms = {name: np.full(n_boot, np.nan) for name in arms}
    if n_boot > 0:
        rng = np.random.default_rng(seed)
        for b in range(n_boot):
            counts = video_resample(rng, n_v)
            idx = rng.integers(0, S, S)
            vals = values(counts)
            for name in arms:
                boot_arms[name][b] = np.mean(vals[name][idx])
    alpha = 1 - ci_level
    boots = boot_arms if n_boot > 0 else None
    out_arms = {name: {**_stat(float(np.mean(point[name])), boots[name] if boots else None, alpha),
                       "per_seed": [_jsonable(v) for v in point[name]]} for name in arms}
    out_pairs = []
    for a, b in pairs:
        d = point[a] - point[b]
        out_pairs.append({"a": a, "b": b,
                          **_stat(float(np.mean(point[a]) - np.mean(point[b])),
                                  boots[a] - boots[b] if boots else None, alpha),
                          "per_seed": [_jsonable(v) for v in d]})
    return {"arms": out_arms, "pairs": out_pairs, "n_frames": int(len(y)), "n_videos": n_v, "n_seeds": S,
            "bootstrap": {"n_boot": int(n_boot), "seed": int(seed), "ci_level": ci_level, "unit": "video and seed",
                          "method": "percentile, paired (the same videos and seeds for every arm)"}}


# ----------------------------------------------------------------------------------------------------------------------
# cross-dataset attribution

def class_targets(class_names: Sequence[str], methods: Sequence[str], *, real_class: str = "real",
                  fake_class: str = "fake") -> np.ndarray:
    """Each sample's class index for a model with ``class_names``: the class of the same name as its canonical
    method; for a binary model (``fake_class`` but not the method among the classes) every non-real method maps to
    ``fake_class``; ``-1`` when the model has no class for it (an *unseen* method)."""
    index = {str(n): i for i, n in enumerate(class_names)}

    def target(method: str) -> int:
        if method in index:
            return index[method]
        if method != real_class and fake_class in index:
            return index[fake_class]
        return -1

    return np.asarray([target(str(x)) for x in methods], dtype=np.int64)


def cross_dataset_attribution(
    class_names: Sequence[str],
    methods: Sequence[str],
    probs: np.ndarray,
    video_ids: Sequence[str],
    *,
    real_class: str = "real",
    fake_class: str = "fake",
    n_boot: int = 1000,
    seed: int = 0,
    ci_level: float = 0.95,
) -> dict[str, Any]:
    """Score a model on samples labelled with canonical methods (``"real"`` for real samples).

    A sample's target is the model class of the same name; for a binary model (classes include ``fake_class`` but
    not the method) every non-real method maps to ``fake_class``. Samples whose method has no class in the model are
    *unseen*: they are not scored as wrong but reported per method - frame and video counts, the share of frames and
    videos predicted as each known class, the mean probability per class and (when the model has ``real_class``) the
    share detected as fake.

    Returns ``{"class_names", "n_frames", "n_known_frames", "n_unseen_frames", "known": evaluate(...) or None,
    "unseen_methods": [...], "unseen": {method: {...}}, "notes": [...]}``.
    """
    names = [str(c) for c in class_names]
    index = {n: i for i, n in enumerate(names)}
    m = np.asarray([str(x) for x in methods])
    p = np.asarray(probs, dtype=np.float64)
    vids = np.asarray([str(v) for v in video_ids])
    if p.shape != (len(m), len(names)) or len(vids) != len(m):
        raise ValueError("methods, probs and video_ids must describe the same N samples (probs: N x C)")

    targets = class_targets(names, m, real_class=real_class, fake_class=fake_class)
    known = targets >= 0
    notes: list[str] = []
    result: dict[str, Any] = {
        "class_names": names,
        "n_frames": int(len(m)),
        "n_known_frames": int(known.sum()),
        "n_unseen_frames": int((~known).sum()),
        "known": None,
    }
    if known.any():
        result["known"] = evaluate(targets[known], p[known], vids[known], names, n_boot=n_boot, seed=seed,
                                   ci_level=ci_level)
    else:
        notes.append("no sample belongs to a class the model knows; nothing is scored")
    unseen: dict[str, Any] = {}
    for method in sorted(set(m[~known])):
        sel = m == method
        pf = p[sel]
        videos, inverse = np.unique(vids[sel], return_inverse=True)
        pv = np.zeros((len(videos), len(names)))
        np.add.at(pv, inverse, pf)
        pv /= np.bincount(inverse, minlength=len(videos))[:, None]
        frame_pred = np.bincount(pf.argmax(1), minlength=len(names)) / len(pf)
        video_pred = np.bincount(pv.argmax(1), minlength=len(names)) / len(pv)
        entry: dict[str, Any] = {
            "n_frames": int(sel.sum()),
            "n_videos": int(len(videos)),
            "frame_predicted_as": {n: float(frame_pred[i]) for i, n in enumerate(names)},
            "video_predicted_as": {n: float(video_pred[i]) for i, n in enumerate(names)},
            "mean_prob": {n: float(pf[:, i].mean()) for i, n in enumerate(names)},
        }
        if real_class in index and method != real_class:
            r = index[real_class]
            entry["frame_detected_as_fake"] = float(1 - frame_pred[r])
            entry["video_detected_as_fake"] = float(1 - video_pred[r])
        unseen[method] = entry
    if unseen:
        notes.append(f"methods the model never saw, reported separately and not scored: {', '.join(unseen)}")
    result["unseen_methods"] = list(unseen)
    result["unseen"] = unseen
    result["notes"] = notes
    return result


# ----------------------------------------------------------------------------------------------------------------------
# rendering

def _fmt(stat: dict[str, Any] | None, digits: int = 3) -> str:
    if not stat or stat.get("value") is None:
        return "n/a"
    s = f"{stat['value']:.{digits}f}"
    if stat.get("ci"):
        lo, hi = stat["ci"]
        s += f" [{lo:.{digits}f}, {hi:.{digits}f}]"
    return s


def _eval_markdown(res: dict[str, Any], title: str | None) -> list[str]:
    lines = [f"### {title}", ""] if title else []
    ci = res["bootstrap"]
    ci_txt = (f"{int(ci['ci_level'] * 100)}% bootstrap CI over videos, {ci['n_boot']} resamples"
              if ci["n_boot"] else "no CIs")
    lines += [f"{res['n_frames']} frames, {res['n_videos']} videos ({ci_txt}).", "",
              "| metric | frame | video |", "|---|---|---|"]
    keys = list(_SCALARS) + (["eer"] if "eer" in res["frame"] else [])
    labels = {"accuracy": "accuracy", "balanced_accuracy": "balanced accuracy", "macro_f1": "macro-F1",
              "auc": "AUC" if "eer" in res["frame"] else "AUC (one-vs-rest, mean)", "eer": "EER"}
    for k in keys:
        lines.append(f"| {labels[k]} | {_fmt(res['frame'][k])} | {_fmt(res['video'][k])} |")
    lines += ["", "| class | support (frames/videos) | recall frame | recall video | AUC frame | AUC video |",
              "|---|---|---|---|---|---|"]
    for n in res["class_names"]:
        f, v = res["frame"], res["video"]
        lines.append(f"| {n} | {f['support'][n]}/{v['support'][n]} | {_fmt(f['per_class_recall'][n])} | "
                     f"{_fmt(v['per_class_recall'][n])} | {_fmt(f['per_class_auc'][n])} | "
                     f"{_fmt(v['per_class_auc'][n])} |")
    for note in res.get("notes", []):
        lines.append(f"\n_Note: {note}._")
    return lines


def to_markdown(result: dict[str, Any], title: str | None = None) -> str:
    """A Markdown report of an :func:`evaluate` or :func:`cross_dataset_attribution` result."""
    if "unseen" not in result:
        return "\n".join(_eval_markdown(result, title)) + "\n"
    lines = [f"## {title}", ""] if title else []
    lines.append(f"{result['n_frames']} frames: {result['n_known_frames']} of methods the model knows, "
                 f"{result['n_unseen_frames']} of methods it never saw.")
    lines.append("")
    if result["known"] is not None:
        lines += _eval_markdown(result["known"], "Known methods")
        lines.append("")
    if result["unseen"]:
        names = result["class_names"]
        lines += ["### Unseen methods (share of videos predicted as each known class)", "",
                  "| method | frames/videos | " + " | ".join(names) + " | detected as fake (video) |",
                  "|---|---|" + "---|" * len(names) + "---|"]
        for method, e in result["unseen"].items():
            shares = " | ".join(f"{e['video_predicted_as'][n]:.3f}" for n in names)
            det = e.get("video_detected_as_fake")
            lines.append(f"| {method} | {e['n_frames']}/{e['n_videos']} | {shares} | "
                         f"{'n/a' if det is None else f'{det:.3f}'} |")
    for note in result.get("notes", []):
        lines.append(f"\n_Note: {note}._")
    return "\n".join(lines) + "\n"


def save_confusion_png(cm: Sequence[Sequence[float]], class_names: Sequence[str], path: str | Path, *,
                       normalize: bool = True, title: str | None = None) -> Path:
    """Draw a confusion matrix (rows: true class, columns: predicted) to a PNG; ``normalize`` shows each row as
    fractions of its true class, with the counts in the cells."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state, Agg rendering by savefig

    counts = np.asarray(cm, dtype=np.float64)
    rows = counts.sum(1, keepdims=True)
    shown = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0) if normalize else counts
    n = len(class_names)
    size = max(4.0, 0.6 * n + 2.5)
    fig = Figure(figsize=(size, size * 0.9))
    ax = fig.subplots()
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    ax.set_xticks(range(n), labels=list(class_names), rotation=45, ha="right")
    ax.set_yticks(range(n), labels=list(class_names))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(n):
        for j in range(n):
            txt = f"{shown[i, j]:.2f}\n({int(counts[i, j])})" if normalize else f"{int(counts[i, j])}"
            ax.text(j, i, txt, ha="center", va="center", fontsize=8,
                    color="white" if shown[i, j] > (0.5 if normalize else shown.max() / 2) else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path
