"""Open-set attribution: does a fake come from a method the model never saw?

Scores (per crop; a video's score is the mean over its crops, :func:`video_scores`). **Every score is oriented so
that higher = more likely an unknown method**:

- ``msp``: ``1 - max softmax probability`` (Hendrycks & Gimpel 2017, as a rejection score);
- ``energy``: ``-logsumexp(logits)`` (Liu et al. 2020; a known class has large logits, so low energy);
- ``prototype``: ``1 - max cosine similarity`` of the crop's L2-normalised penultimate embedding to the class
  prototypes (the mean L2-normalised embedding of each class's training crops, :func:`class_prototypes`).

A run stores, beside its checkpoint (:func:`fit_run_open_set`, called by ``dfkit train``): ``prototypes.safetensors``
(``prototypes``: ``C x D``, L2-normalised, rows in class order; ``counts``: the training crops each was averaged
over, at most :data:`PROTOTYPE_CAP` per class) and ``openset.json`` (the score convention, the thresholds chosen on
the validation split: per score the value that :data:`TARGET_REJECTION` of the known validation videos exceed).
An old run without them still gets ``msp`` and ``energy`` (from its logits); ``prototype`` is then omitted.

Metrics (:func:`open_set_metrics`, on videos): for each score the AUROC of unseen (fakes of methods the model has
no class for) versus known (every video of a class it has, reals included), with a bootstrap CI over videos
(:func:`dfkit.train.scores.video_resample`); at the validation threshold, the known-class accuracy of the videos
kept (not rejected), the share of known videos rejected (the rate it actually gives on test) and of unseen videos
rejected; with >= 2 unseen methods, how their videos' mean embeddings cluster: k-means with k = the number of unseen
methods, NMI and ARI against the methods (as open-world attribution benchmarks report).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["SCORES", "SCORE_HELP", "CONVENTION", "PROTOTYPES_FILE", "OPENSET_FILE", "TARGET_REJECTION",
           "PROTOTYPE_CAP", "crop_scores", "video_scores", "class_prototypes", "choose_thresholds",
           "open_set_metrics", "cluster_scores", "forward_with_embeddings", "load_open_set", "save_open_set",
           "fit_run_open_set", "RunOpenSet"]

#: the scores, in report order
SCORES = ("msp", "energy", "prototype")
SCORE_HELP = {"msp": "1 - max softmax probability", "energy": "-logsumexp(logits)",
              "prototype": "1 - max cosine similarity to the class prototypes"}
#: the one statement of the orientation
CONVENTION = "higher = more likely an unknown method, for every score"
#: beside the checkpoint, in the run folder
PROTOTYPES_FILE = "prototypes.safetensors"
OPENSET_FILE = "openset.json"
#: the share of known validation videos the thresholds reject
TARGET_REJECTION = 0.05
#: training crops per class averaged into its prototype (a seeded sample over the class's videos)
PROTOTYPE_CAP = 200
#: the score that decides ``unknown`` in ``dfkit predict`` (the first of these the run has)
PRIMARY_ORDER = ("prototype", "msp", "energy")


# ----------------------------------------------------------------------------------------------------------------------
# scores

def _l2(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(n, 1e-12)


def crop_scores(logits: np.ndarray, embeddings: np.ndarray | None = None,
                prototypes: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per-crop scores of ``N x C`` logits (and ``N x D`` embeddings with ``C' x D`` prototypes): ``{name: N
    floats}``, higher = more likely unknown; ``prototype`` only when both embeddings and prototypes are given."""
    z = np.asarray(logits, dtype=np.float64)
    m = z.max(1, keepdims=True)
    lse = (m + np.log(np.exp(z - m).sum(1, keepdims=True)))[:, 0]
    out = {"msp": 1.0 - np.exp(m[:, 0] - lse), "energy": -lse}
    if embeddings is not None and prototypes is not None and len(prototypes):
        sim = _l2(np.asarray(embeddings, dtype=np.float64)) @ _l2(np.asarray(prototypes, dtype=np.float64)).T
        out["prototype"] = 1.0 - sim.max(1)
    return out


def video_scores(scores: dict[str, np.ndarray], video_ids: Sequence[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``(videos, {name: per-video score})``: the mean over each video's crops (eval's video-level aggregation,
    :func:`dfkit.train.scores.video_level`; videos sorted)."""
    from dfkit.train.scores import video_level

    names = list(scores)
    mat = np.stack([np.asarray(scores[n], dtype=np.float64) for n in names], 1) if names else \
        np.zeros((len(video_ids), 0))
    videos, _, _, pv = video_level(np.zeros(len(video_ids), dtype=np.int64), mat, video_ids)
    return videos, {n: pv[:, i] for i, n in enumerate(names)}


def video_means(x: np.ndarray, video_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(videos, per-video mean rows of x)`` (videos sorted, as :func:`video_scores`)."""
    from dfkit.train.scores import video_level

    videos, _, _, pv = video_level(np.zeros(len(video_ids), dtype=np.int64), np.asarray(x, np.float64), video_ids)
    return videos, pv


def class_prototypes(embeddings: np.ndarray, labels: Sequence[int], n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """``(C x D prototypes, C counts)``: per class the mean of its L2-normalised embeddings, L2-normalised (a class
    without a crop gets a zero row and count 0: it never is the nearest)."""
    e = _l2(np.asarray(embeddings, dtype=np.float64))
    y = np.asarray(labels, dtype=np.int64)
    protos = np.zeros((n_classes, e.shape[1]))
    counts = np.bincount(y[y >= 0], minlength=n_classes)[:n_classes]
    for c in range(n_classes):
        if counts[c]:
            protos[c] = e[y == c].mean(0)
    return _l2(protos) * (counts > 0)[:, None], counts


def choose_thresholds(val_scores: dict[str, np.ndarray], rate: float = TARGET_REJECTION) -> dict[str, float]:
    """Per score the threshold that ``rate`` of the (known) validation videos exceed: the ``1 - rate`` quantile
    (linear interpolation); a video is rejected when its score is ``> threshold``."""
    return {n: float(np.quantile(np.asarray(s, dtype=np.float64), 1.0 - rate)) for n, s in val_scores.items()
            if len(s)}


# ----------------------------------------------------------------------------------------------------------------------
# metrics

def cluster_scores(embeddings: np.ndarray, methods: Sequence[str], seed: int = 0) -> dict[str, Any]:
    """k-means (k = the distinct ``methods``) on the L2-normalised rows of ``embeddings`` (one per video): NMI and
    ARI of the clusters against the methods (sklearn; ``n_init=10``, ``random_state=seed``)."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    m = np.asarray([str(x) for x in methods])
    k = len(set(m))
    if k < 2 or len(m) <= k:
        raise ValueError("clustering needs >= 2 methods and more videos than methods")
    labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(_l2(np.asarray(embeddings, np.float64)))
    return {"k": int(k), "n_videos": int(len(m)), "nmi": float(normalized_mutual_info_score(m, labels)),
            "ari": float(adjusted_rand_score(m, labels)), "method": "k-means (n_init 10) on L2-normalised mean "
            "video embeddings; NMI (arithmetic) and ARI against the unseen methods"}


def open_set_metrics(scores: dict[str, np.ndarray], unseen: np.ndarray, correct: np.ndarray, *,
                     thresholds: dict[str, float] | None = None, methods: Sequence[str] | None = None,
                     embeddings: np.ndarray | None = None, n_boot: int = 1000, seed: int = 0,
                     ci_level: float = 0.95) -> dict[str, Any]:
    """Open-set metrics of per-**video** ``scores`` (``{name: V floats}``, higher = more likely unknown).

    ``unseen``: V bools, a fake of a method the model has no class for (the positives); ``correct``: V bools, the
    closed-set prediction was right (read for known videos only); ``thresholds``: the run's validation thresholds
    (``None``: no accuracy at threshold); ``methods`` / ``embeddings`` (V names / V x D): the unseen videos' methods
    and mean embeddings, for the clustering (>= 2 unseen methods). CIs: percentile bootstrap over videos, the same
    resamples for every statistic.

    Returns ``{"n_known", "n_unseen", "auroc": {score: {"value", "ci"}}, "at_threshold": {score: {"threshold",
    "known_accuracy", "known_rejected", "unseen_rejected"}}, "known_accuracy": {"value", "ci"} (no rejection),
    "clustering": {...} or None, "notes": [...]}``."""
    from dfkit.train.scores import _stat, roc_auc, video_resample

    u = np.asarray(unseen, dtype=bool)
    ok = np.asarray(correct, dtype=bool)
    known = ~u
    V = len(u)
    notes: list[str] = []
    names = [n for n in SCORES if n in scores] + [n for n in scores if n not in SCORES]
    rej = {n: np.asarray(scores[n], np.float64) > thresholds[n] for n in names if thresholds and n in thresholds}

    def stats(w: np.ndarray) -> dict[str, float]:
        wk, wu = w * known, w * u
        out = {f"auroc/{n}": roc_auc(u, scores[n], w) for n in names}
        nk, nu = wk.sum(), wu.sum()
        out["known_accuracy"] = float((wk * ok).sum() / nk) if nk > 0 else math.nan
        for n, r in rej.items():
            kept = wk * ~r
            out[f"acc/{n}"] = float((kept * ok).sum() / kept.sum()) if kept.sum() > 0 else math.nan
            out[f"krej/{n}"] = float((wk * r).sum() / nk) if nk > 0 else math.nan
            out[f"urej/{n}"] = float((wu * r).sum() / nu) if nu > 0 else math.nan
        return out

    point = stats(np.ones(V))
    boots: dict[str, np.ndarray] | None = None
    if n_boot > 0 and V:
        rng = np.random.default_rng(seed)
        boots = {k: np.empty(n_boot) for k in point}
        for b in range(n_boot):
            r = stats(video_resample(rng, V))
            for k in point:
                boots[k][b] = r[k]

    def st(key: str) -> dict[str, Any]:
        return _stat(point[key], boots[key] if boots else None, 1 - ci_level)

    res: dict[str, Any] = {"n_known": int(known.sum()), "n_unseen": int(u.sum()), "convention": CONVENTION,
                           "auroc": {n: st(f"auroc/{n}") for n in names}, "known_accuracy": st("known_accuracy")}
    if not u.any() or not known.any():
        notes.append("AUROC needs both unseen and known videos")
    res["at_threshold"] = {n: {"threshold": float(thresholds[n]), "known_accuracy": st(f"acc/{n}"),
                               "known_rejected": st(f"krej/{n}"), "unseen_rejected": st(f"urej/{n}")}
                           for n in rej}
    res["clustering"] = None
    if methods is not None and embeddings is not None:
        m = np.asarray([str(x) for x in methods])
        k = len(set(m[u]))
        if k >= 2 and u.sum() > k:
            res["clustering"] = cluster_scores(np.asarray(embeddings)[u], m[u], seed=seed)
        elif k == 1:
            notes.append("one unseen method: no clustering (it needs >= 2)")
    res["bootstrap"] = {"n_boot": int(n_boot), "seed": int(seed), "ci_level": ci_level, "unit": "video",
                        "method": "percentile"}
    res["notes"] = notes
    return res


# ----------------------------------------------------------------------------------------------------------------------
# the model side

def forward_with_embeddings(model, x):
    """``(logits, embedding or None)`` of an image batch: ``model.classify(model.embed(x))`` when the model exposes
    them (every :class:`~dfkit.train.backbones.BackboneClassifier`: the same logits as ``model(x)``), else
    ``(model(x), None)``."""
    if hasattr(model, "embed") and hasattr(model, "classify"):
        emb = model.embed(x)
        return model.classify(emb), emb
    return model(x), None


def save_open_set(run_dir: str | Path, prototypes: np.ndarray, counts: np.ndarray, record: dict[str, Any]) -> None:
    """``prototypes.safetensors`` and ``openset.json`` in ``run_dir`` (see the module docstring)."""
    import torch
    from safetensors.torch import save_file

    run = Path(run_dir)
    save_file({"prototypes": torch.from_numpy(np.ascontiguousarray(prototypes, dtype=np.float32)),
               "counts": torch.from_numpy(np.asarray(counts, dtype=np.int64))}, str(run / PROTOTYPES_FILE))
    (run / OPENSET_FILE).write_text(json.dumps(record, indent=1, allow_nan=False) + "\n")


def load_open_set(run_dir: str | Path) -> tuple[np.ndarray | None, dict[str, Any]]:
    """``(prototypes C x D or None, openset.json record or {})`` of a run (an old run has neither)."""
    run = Path(run_dir)
    rec: dict[str, Any] = {}
    if (run / OPENSET_FILE).exists():
        try:
            rec = json.loads((run / OPENSET_FILE).read_text())
        except (OSError, json.JSONDecodeError):
            rec = {}
    protos = None
    if (run / PROTOTYPES_FILE).exists():
        from safetensors.numpy import load_file

        try:
            protos = load_file(str(run / PROTOTYPES_FILE))["prototypes"].astype(np.float64)
        except Exception:  # noqa: BLE001 - a damaged file: as an old run, said by the callers' notes
            protos = None
    return protos, rec


def _infer(model, files, rows, *, device: str, batch_size: int, workers: int, crop: str):
    """``(logits N x C, embeddings N x D or None)`` of ``model`` on corpus ``rows`` (the evaluation loader)."""
    import torch

    from dfkit.train.data import make_eval_loader

    loader = make_eval_loader(files, rows, img_size=model.img_size, batch_size=batch_size, workers=workers,
                              mean=model.mean, std=model.std, device=device, crop=crop)
    lg, em = [], []
    model.eval()
    with torch.no_grad():
        for b in loader:
            lo, e = forward_with_embeddings(model, b["image"])
            lg.append(lo.float().cpu().numpy())
            if e is not None:
                em.append(e.float().cpu().numpy())
    logits = np.concatenate(lg).astype(np.float64)
    return logits, (np.concatenate(em).astype(np.float64) if em else None)


def fit_run_open_set(run_dir: str | Path, selection, *, device: str = "cpu", batch_size: int = 128,
                     workers: int = 0, crop: str = "resize", seed: int = 0, cap: int = PROTOTYPE_CAP,
                     rate: float = TARGET_REJECTION, holdout_methods: Sequence[str] | None = None,
                     train_rows=None) -> dict[str, Any]:
    """After training: the run's prototypes and validation thresholds, written beside its checkpoint.

    1. the run's best model (:func:`dfkit.train.predict.load_run`);
    2. prototypes: the embeddings of at most ``cap`` training crops per class (whole videos first, seeded:
       :func:`dfkit.train.data.subsample_by_video`), no augmentation, averaged per class (:func:`class_prototypes`);
    3. thresholds: every score on the validation crops (all of known classes), averaged per video, the
       ``1 - rate`` quantile of each (:func:`choose_thresholds`); no validation split: no thresholds (a note);
    4. ``prototypes.safetensors`` + ``openset.json``. Returns the record. ``train_rows``: the rows the run was
    trained on when not all of ``selection.train`` (the experiments' subsamples)."""
    from dfkit.train.data import subsample_by_video
    from dfkit.train.predict import load_run

    run = Path(run_dir)
    model, names, _ = load_run(run, device=device)
    tr = selection.train if train_rows is None else train_rows
    per = {int(c): min(int(cap), int(n)) for c, n in tr["target"].value_counts().items() if c >= 0}
    sample = subsample_by_video(tr, per, seed=seed)
    notes: list[str] = []
    logits, emb = _infer(model, selection.files, sample, device=device, batch_size=batch_size, workers=workers,
                         crop=crop)
    protos = counts = None
    if emb is not None:
        protos, counts = class_prototypes(emb, sample["target"].to_numpy(), len(names))
    else:
        notes.append("the model exposes no embedding: no prototypes")
    thresholds: dict[str, float] = {}
    n_val = 0
    if len(selection.val):
        vl, ve = _infer(model, selection.files, selection.val, device=device, batch_size=batch_size,
                        workers=workers, crop=crop)
        videos, vs = video_scores(crop_scores(vl, ve, protos), selection.val["video_key"].astype(str).tolist())
        n_val = len(videos)
        thresholds = choose_thresholds(vs, rate)
    else:
        notes.append("no validation crops: no rejection thresholds")
    record = {"convention": CONVENTION, "scores": {n: SCORE_HELP[n] for n in SCORES
                                                   if n != "prototype" or protos is not None},
              "class_names": names, "target_rejection": float(rate), "thresholds": thresholds,
              "n_val_videos": int(n_val), "prototype_cap": int(cap),
              "prototype_counts": {n: int(c) for n, c in zip(names, counts)} if counts is not None else None,
              "holdout_methods": list(holdout_methods or []), "checkpoint": "best", "notes": notes}
    if protos is not None:
        save_open_set(run, protos, counts, record)
    else:
        (run / PROTOTYPES_FILE).unlink(missing_ok=True)
        (run / OPENSET_FILE).write_text(json.dumps(record, indent=1, allow_nan=False) + "\n")
    return record


class RunOpenSet:
    """A run's open-set side: its prototypes (None for an old run), thresholds and the primary score.

    ``crop_scores(logits, embeddings)`` scores crops; ``video(logits, embeddings)`` answers a video:
    ``{"scores": {name: mean over its crops}, "thresholds", "exceeds": {name: bool}, "primary", "unknown"}``
    (``unknown``: the primary score exceeds its threshold; None without thresholds)."""

    def __init__(self, run_dir: str | Path) -> None:
        self.prototypes, self.record = load_open_set(run_dir)
        self.thresholds: dict[str, float] = dict(self.record.get("thresholds") or {})
        self.notes: list[str] = []
        if self.prototypes is None:
            self.notes.append(f"the run has no {PROTOTYPES_FILE} (trained before dfkit stored prototypes): no "
                              "prototype distance")
        if not self.thresholds:
            self.notes.append(f"the run has no validation thresholds ({OPENSET_FILE}): no rejection decision")
        have = [n for n in SCORES if n != "prototype" or self.prototypes is not None]
        self.score_names = have
        self.primary = next((n for n in PRIMARY_ORDER if n in have and n in self.thresholds), None)

    def crop_scores(self, logits: np.ndarray, embeddings: np.ndarray | None) -> dict[str, np.ndarray]:
        return crop_scores(logits, embeddings, self.prototypes)

    def video(self, logits: np.ndarray, embeddings: np.ndarray | None) -> dict[str, Any]:
        s = {n: float(np.mean(v)) for n, v in self.crop_scores(logits, embeddings).items()}
        exceeds = {n: bool(s[n] > t) for n, t in self.thresholds.items() if n in s}
        return {"scores": s, "thresholds": {n: t for n, t in self.thresholds.items() if n in s}, "exceeds": exceeds,
                "primary": self.primary, "unknown": exceeds.get(self.primary) if self.primary else None}

    def describe(self) -> dict[str, Any]:
        """What a predictions file says about its open-set scores."""
        return {"convention": CONVENTION, "scores": {n: SCORE_HELP[n] for n in self.score_names},
                "thresholds": self.thresholds, "target_rejection": self.record.get("target_rejection"),
                "primary": self.primary, "notes": self.notes}

    def note(self) -> str:
        """One line for the screen."""
        if not self.primary:
            return f"{', '.join(self.score_names)} ({CONVENTION}); no thresholds: " + "; ".join(self.notes)
        rate = self.record.get("target_rejection")
        return (f"{', '.join(self.score_names)} ({CONVENTION}); 'unknown' = {self.primary} above the threshold "
                f"that {rate:.0%} of known validation videos exceed")


# ----------------------------------------------------------------------------------------------------------------------
# dfkit eval

def evaluate_open_set(methods: Sequence[str], video_ids: Sequence[str], logits: np.ndarray,
                      embeddings: np.ndarray | None, class_names: Sequence[str], run_open_set: "RunOpenSet", *,
                      holdout_methods: Sequence[str] | None = None, n_boot: int = 1000,
                      seed: int = 0) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``dfkit eval``'s open-set section and the per-crop scores.

    1. per-crop scores (:meth:`RunOpenSet.crop_scores`) and their video means; a video is *unseen* when its method
       has no class in the model (:func:`dfkit.train.scores.class_targets`), *correct* when its video-level
       prediction (arg-max of the mean frame probabilities) is its class;
    2. :func:`open_set_metrics` over all videos (the unseen videos' mean L2-normalised embeddings for the
       clustering), and per unseen method against the known videos.

    Returns ``(section, crop_scores)``: ``section`` = ``{"convention", "scores", "target_rejection", "holdout_methods",
    "unseen_methods", "n_videos", "overall": open_set_metrics(...), "per_method": {method: {"n_videos", "auroc"}},
    "notes"}``."""
    from dfkit.train.predict import _softmax
    from dfkit.train.scores import class_targets

    cs = run_open_set.crop_scores(logits, embeddings)
    m = np.asarray([str(x) for x in methods])
    vids = np.asarray([str(v) for v in video_ids])
    videos, vs = video_scores(cs, vids)
    first = {v: i for i, v in reversed(list(enumerate(vids)))}
    vm = m[[first[v] for v in videos]]
    targets = class_targets(class_names, vm)
    _, pv = video_means(_softmax(np.asarray(logits, np.float64)), vids)
    unseen = targets < 0
    correct = pv.argmax(1) == targets
    emb_v = None
    if embeddings is not None:
        _, emb_v = video_means(_l2(np.asarray(embeddings, np.float64)), vids)
    notes = list(run_open_set.notes)
    overall = open_set_metrics(vs, unseen, correct, thresholds=run_open_set.thresholds or None, methods=vm,
                               embeddings=emb_v, n_boot=n_boot, seed=seed)
    per_method = {}
    for meth in sorted(set(vm[unseen])):
        sel = ~unseen | (vm == meth)
        r = open_set_metrics({n: s[sel] for n, s in vs.items()}, unseen[sel], correct[sel], n_boot=n_boot,
                             seed=seed)
        per_method[meth] = {"n_videos": int((vm == meth).sum()), "auroc": r["auroc"]}
    held = list(holdout_methods or [])
    missing = [h for h in held if h not in per_method]
    if missing:
        notes.append(f"held-out method(s) {', '.join(missing)} have no video in the evaluated crops")
    section = {"convention": CONVENTION, "scores": {n: SCORE_HELP[n] for n in cs},
               "target_rejection": run_open_set.record.get("target_rejection"),
               "thresholds": run_open_set.thresholds, "holdout_methods": held,
               "unseen_methods": sorted(per_method), "n_videos": int(len(videos)), "overall": overall,
               "per_method": per_method, "notes": notes + overall["notes"]}
    return section, cs


def _v(stat: dict[str, Any] | None) -> str:
    """``value [lo, hi]`` as every dfkit report writes it (:func:`dfkit.train.scores._fmt`)."""
    from dfkit.train.scores import _fmt

    return _fmt(stat)


def summary_text(section: dict[str, Any]) -> str:
    """One line: the AUROC of each score, the accuracy at the primary score's threshold (the one ``dfkit predict``
    decides "unknown?" by, :data:`PRIMARY_ORDER`; chosen before looking at test), the clustering."""
    o = section["overall"]
    line = (f"open set ({o['n_unseen']} unseen vs {o['n_known']} known videos): AUROC "
            + ", ".join(f"{n} {_v(s)}" for n, s in o["auroc"].items()))
    b = next((n for n in PRIMARY_ORDER if n in o["at_threshold"]), None)  # dfkit predict's decision score
    t = o["at_threshold"].get(b) if b else None
    if t:
        line += (f"; at the {b} threshold known accuracy {_v(t['known_accuracy'])} (no rejection "
                 f"{_v(o['known_accuracy'])}), known rejected {t['known_rejected']['value']:.3f}, unseen rejected "
                 f"{t['unseen_rejected']['value']:.3f}")
    if o.get("clustering"):
        c = o["clustering"]
        line += f"; unseen clusters (k={c['k']}) NMI {c['nmi']:.3f}, ARI {c['ari']:.3f}"
    return line


def _rows(section: dict[str, Any]) -> list[tuple[str, str, str, str, str, str]]:
    o = section["overall"]
    out = []
    for n, a in o["auroc"].items():
        t = o["at_threshold"].get(n)
        out.append((n, _v(a), f"{t['threshold']:.4g}" if t else "n/a", _v(t["known_accuracy"]) if t else "n/a",
                    _v(t["known_rejected"]) if t else "n/a", _v(t["unseen_rejected"]) if t else "n/a"))
    return out


_HEAD = ("score", "AUROC unseen vs known", "threshold", "known accuracy kept", "known rejected", "unseen rejected")


def markdown(section: dict[str, Any]) -> str:
    """The open-set section of eval.md."""
    o = section["overall"]
    rate = section.get("target_rejection")
    lines = ["## Open set (unknown-method detection)", "",
             f"{o['n_unseen']} videos of unseen methods ({', '.join(section['unseen_methods']) or 'none'}) vs "
             f"{o['n_known']} videos of known classes; scores: "
             + "; ".join(f"{n} = {h}" for n, h in section["scores"].items()) + f" ({CONVENTION}). Thresholds: "
             + (f"rejecting {rate:.0%} of the known validation videos." if rate is not None else "none.")
             + f" Known accuracy without rejection: {_v(o['known_accuracy'])}.", "",
             "| " + " | ".join(_HEAD) + " |", "|---" * len(_HEAD) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in _rows(section)]
    if section["per_method"]:
        lines += ["", "| unseen method | videos | " + " | ".join(f"AUROC {n}" for n in o["auroc"]) + " |",
                  "|---|---|" + "---|" * len(o["auroc"])]
        for meth, e in section["per_method"].items():
            lines.append(f"| {meth} | {e['n_videos']} | " + " | ".join(_v(e["auroc"][n]) for n in o["auroc"])
                         + " |")
    if o.get("clustering"):
        c = o["clustering"]
        lines += ["", f"Unseen videos clustered by k-means (k = {c['k']}, {c['n_videos']} videos): NMI {c['nmi']:.3f},"
                  f" ARI {c['ari']:.3f}."]
    for n in section["notes"]:
        lines.append(f"\n_Note: {n}._")
    return "\n".join(lines) + "\n"


def html_block(section: dict[str, Any]) -> str:
    """The open-set section of eval.html."""
    import html

    o = section["overall"]
    t = ("<h2>Open set (unknown-method detection)</h2>"
         f"<p>{o['n_unseen']} unseen vs {o['n_known']} known videos; {html.escape(CONVENTION)}; known accuracy "
         f"without rejection {_v(o['known_accuracy'])}</p><table><tr>"
         + "".join(f"<th>{html.escape(h)}</th>" for h in _HEAD) + "</tr>")
    for r in _rows(section):
        t += "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
    t += "</table>"
    if o.get("clustering"):
        c = o["clustering"]
        t += f"<p>unseen clusters (k-means, k = {c['k']}): NMI {c['nmi']:.3f}, ARI {c['ari']:.3f}</p>"
    for n in section["notes"]:
        t += f"<p><em>Note: {html.escape(n)}</em></p>"
    return t
