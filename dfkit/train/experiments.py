"""``dfkit experiment``: the quality sweep and the cross-dataset matrix.

**Quality sweep** (:func:`quality_sweep`). Does training on higher-quality crops help, *at equal training-set
size*? For each threshold ``t`` the training pool is the training split's crops with ``quality >= t`` (``t = 0``:
all crops); the "low-quality only" arm takes the crops below the lowest non-zero threshold. Every arm is then
subsampled to the same number of frames **per class** - the smallest arm's - whole videos first, in a seeded
random order (:func:`dfkit.train.data.subsample_by_video`), so size and class mix are held equal and only the
quality differs. Each arm is trained once per seed and evaluated on the same, unfiltered test split (and
validated on the same unfiltered validation split). Because every arm is scored on the same test videos with the
same seeds, arms are compared **paired** (:func:`paired_differences`): each arm against the unfiltered arm
(``q>=0``) and the highest-threshold arm against the low-quality-only arm, as the difference of the mean over
seeds, with a 95% bootstrap CI that resamples the test videos and the seeds together (one draw for both arms; see
:func:`dfkit.train.scores.paired_bootstrap`), and a sentence on whether the CI excludes 0; ``conclusion`` states the
high-vs-low-only difference in one sentence. The sweep also reports the error-versus-discard curve
(:mod:`dfkit.train.edc`) of the unfiltered arm's first-seed run. With ``suspect_arm`` the sweep adds the arm
``drop suspect labels``: all training crops but the suspect ones (:func:`dfkit.corpus.schema.suspect_mask`, as
``dfkit train --drop-suspect``), held to the same size, validated and tested on the same unfiltered crops, and
compared paired with the unfiltered arm like the quality arms (``suspect_conclusion`` says it in one sentence).
Outputs: ``sweep.json``, ``sweep.md`` (arm x seed
table, the mean over seeds, the paired differences, the EDC), ``sweep.png`` (panel 1: metric vs threshold, each
seed's value with its 95% bootstrap CI over videos, the mean over seeds with its CI band over videos and seeds;
panel 2: the paired differences with their CIs and a 0 line) and ``edc.json``/``edc.png``.

**Cross-dataset** (:func:`cross_dataset`). For each task (binary, attribution) and each dataset: train on its
training split, evaluate on every dataset's test split. Attribution across datasets scores the classes shared
through the canonical taxonomy; fakes of methods the model never saw are reported apart (see ``dfkit eval``).
It is a shortcut for a study (:mod:`dfkit.train.study`, ``manifests/studies/cross-dataset.yaml``): the axes task x
training dataset, its cells kept in ``out/<task>/<dataset>`` (a rerun reuses every cell whose settings are
unchanged; ``dfkit study report OUT`` reports it with paired differences). Outputs: ``cross_dataset.json``,
``cross_dataset.md`` and ``cross_dataset.png`` (one heatmap per task, rows = trained on, columns = evaluated on),
plus the study's ``study.json``.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from dfkit.errors import DfkitError
from dfkit.train.data import (INJECT_COLUMN, DataSelection, parse_list, require_suspect_column, select_data,
                              subsample_by_video, suspect_counts)
from dfkit.train.runner import TrainSettings, train_run

Echo = Callable[[str], None]

__all__ = ["quality_sweep", "paired_differences", "sweep_markdown", "sweep_table_text", "cross_dataset",
           "parse_floats", "parse_ints"]


def parse_floats(x: str | Sequence[float]) -> list[float]:
    try:
        vals = [float(v) for v in (x.split(",") if isinstance(x, str) else x) if str(v).strip() != ""]
    except ValueError:
        raise DfkitError(f"expected comma-separated numbers, got {x!r}") from None
    if not vals:
        raise DfkitError("expected at least one number")
    return vals


def parse_ints(x: str | Sequence[int]) -> list[int]:
    try:
        vals = [int(v) for v in (x.split(",") if isinstance(x, str) else x) if str(v).strip() != ""]
    except ValueError:
        raise DfkitError(f"expected comma-separated integers, got {x!r}") from None
    if not vals:
        raise DfkitError("expected at least one integer")
    return vals


def _stat(res: dict[str, Any] | None, level: str, metric: str) -> dict[str, Any]:
    if res is None or res.get("known") is None:
        return {"value": None, "ci": None}
    return res["known"][level][metric]


def _eval_on_test(run_dir: Path, sel, n_boot: int, batch_size: int, workers: int, device: str,
                  threads: int | None = None) -> dict[str, Any]:
    """Evaluate a run on the selection's (unfiltered) test rows; writes ``eval_test.json`` in the run folder."""
    from dfkit.train.evaluation import eval_rows, save_predictions
    from dfkit.train.predict import load_run, predict_rows

    import torch

    from dfkit.train.runner import default_threads

    old = torch.get_num_threads()
    torch.set_num_threads(threads or default_threads(workers))
    try:
        model, names, cfg = load_run(run_dir, device=device)
        preds = predict_rows(model, sel.files, sel.test, names, device=device, batch_size=batch_size,
                             workers=workers, crop=cfg.get("crop", "resize"))
    finally:
        torch.set_num_threads(old)
    save_predictions(preds, run_dir / "predictions_test.parquet")
    res = eval_rows(sel.test, preds, names, n_boot=n_boot)
    (run_dir / "eval_test.json").write_text(json.dumps(res, indent=1, allow_nan=False))
    return res


def _scored_on(path: Path, test) -> bool:
    """Whether the predictions file at ``path`` exists and covers exactly the crops of ``test``."""
    import pyarrow.parquet as pq

    if not path.exists():
        return False
    ids = pq.read_table(path, columns=["sample_id"]).column("sample_id").to_pylist()
    return len(ids) == len(test) and set(ids) == set(test["sample_id"].astype(str))


def _device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _digest(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------------------------------------------------
# paired differences between arms

_METRIC_WORDS = {"accuracy": "accuracy", "balanced_accuracy": "balanced accuracy", "macro_f1": "macro-F1",
                 "auc": "AUC", "eer": "EER"}


def paired_differences(test: pd.DataFrame, runs: dict[str, dict[int, pd.DataFrame]], class_names: Sequence[str],
                       pairs: Sequence[tuple[str, str]], *, metric: str = "balanced_accuracy", level: str = "video",
                       n_boot: int = 1000, seed: int = 0,
                       better: dict[tuple[str, str], tuple[str, str]] | None = None) -> dict[str, Any]:
    """Paired differences of ``metric`` between arms evaluated on the same test crops.

    ``test``: the test metadata (``sample_id``, ``dataset``, ``video_id``, ``label``, ``method_canonical``);
    ``runs``: per arm, per seed, that run's predictions (``sample_id``, ``probs``, any row order); ``pairs``:
    ``(a, b)`` for the difference ``a - b``; ``better``: per pair, how to name ``a`` and ``b`` in the sentence.
    Raises :class:`DfkitError` when the arms were run with different seeds or scored on different test crops
    (a paired comparison would be meaningless). Returns ``{"arms": {name: {"value", "ci", "per_seed"}},
    "pairs": [{"a", "b", "label", "value", "ci", "excludes_zero", "sentence", "per_seed", ...}], "seeds",
    "n_videos", "n_frames", "bootstrap"}``."""
    from dfkit.train.data import REAL
    from dfkit.train.scores import class_targets, paired_bootstrap

    if not runs:
        raise DfkitError("paired comparison: no arms")
    names = list(runs)
    seeds = sorted(runs[names[0]])
    for a in names[1:]:
        if sorted(runs[a]) != seeds:
            raise DfkitError(f"paired comparison: arm {a} was run with seeds {sorted(runs[a])}, arm {names[0]} "
                             f"with {seeds}; the arms must share the same seeds")
    if not seeds:
        raise DfkitError("paired comparison: the arms have no runs")
    ids = test["sample_id"].astype(str).to_numpy()
    if len(set(ids)) != len(ids):
        raise DfkitError("paired comparison: the test crops' sample ids are not unique")
    keys = (test["dataset"].astype(str) + "/" + test["video_id"].astype(str)).to_numpy()
    videos = set(keys)
    probs: dict[str, list[np.ndarray]] = {}
    for a in names:
        probs[a] = []
        for k in seeds:
            pr = runs[a][k]
            got = pr["sample_id"].astype(str).to_numpy()
            if len(got) != len(ids) or set(got) != set(ids):
                pos = pd.Series(keys, index=ids)
                theirs = set(pos.reindex(got).dropna()) if len(got) else set()
                raise DfkitError(
                    f"paired comparison: arm {a} seed {k} was scored on other test crops than the test set "
                    f"({len(got)} vs {len(ids)} crops; {len(videos - theirs)} test videos missing, "
                    f"{int((~pd.Series(got).isin(ids)).sum())} crops not in it); the arms must share the "
                    "same test videos")
            p = np.asarray(pr.set_index(pr["sample_id"].astype(str))["probs"].reindex(ids).tolist(),
                           dtype=np.float64)
            probs[a].append(p)
    methods = np.where(test["label"].to_numpy() == REAL, REAL, test["method_canonical"].astype(str).to_numpy())
    t = class_targets(class_names, methods)
    known = t >= 0
    if not known.any():
        raise DfkitError("paired comparison: no test crop belongs to a class the models know")
    res = paired_bootstrap(t[known], keys[known], {a: [p[known] for p in v] for a, v in probs.items()}, pairs,
                           class_names, metric=metric, level=level, n_boot=n_boot, seed=seed)
    higher = metric != "eer"
    what = f"{level} {_METRIC_WORDS.get(metric, metric)}"
    for e in res["pairs"]:
        e["label"] = f"{e['a']} - {e['b']}"
        e["metric"] = what
        ci = e["ci"]
        e["excludes_zero"] = bool(ci is not None and (ci[0] > 0 or ci[1] < 0))
        na, nb = (better or {}).get((e["a"], e["b"]), (f"arm {e['a']}", f"arm {e['b']}"))
        if e["value"] is None or ci is None:
            words = "no CI (the metric is undefined on this test set)" if e["value"] is None else "no CI"
        elif e["excludes_zero"]:
            a_better = (e["value"] > 0) == higher
            words = f"excludes 0: {na if a_better else nb} is better"
        else:
            words = "includes 0: no difference shown at this many test videos and seeds"
        v = "n/a" if e["value"] is None else f"{e['value']:+.3f}"
        e["verdict"] = words
        e["sentence"] = f"{e['label']}: {v}" + (f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else "") + f", {words}"
    res["seeds"] = seeds
    res["metric"], res["level"] = metric, level
    res["test_videos_digest"] = _digest(sorted(set(keys[known])))
    return res


# ----------------------------------------------------------------------------------------------------------------------
# quality sweep

def check_sweep_options(metric: str, level: str, thresholds: Sequence[float]) -> list[float]:
    """The sweep's option checks (one line each); the sorted, distinct thresholds."""
    if level not in ("frame", "video"):
        raise DfkitError("--level must be frame or video")
    if metric not in ("accuracy", "balanced_accuracy", "macro_f1", "auc", "eer"):
        raise DfkitError(f"unknown metric {metric!r}: accuracy, balanced_accuracy, macro_f1, auc or eer")
    from dfkit.train.settings import check_quality

    thresholds = sorted(set(check_quality(t, "--thresholds") for t in thresholds))
    return thresholds


def quality_sweep(base: TrainSettings, *, thresholds: Sequence[float] = (0.0, 0.5, 0.6, 0.7),
                  seeds: Sequence[int] = (0, 1, 2), low_arm: bool = True, out: str | Path = "runs/quality-sweep",
                  metric: str = "balanced_accuracy", level: str = "video", n_boot: int = 1000,
                  echo: Echo = print, selection: DataSelection | None = None,
                  suspect_arm: bool = False) -> dict[str, Any]:
    """Run the sweep (see the module docstring). ``base`` holds the training settings shared by every arm (corpus,
    task, backbone, datasets, split, epochs, ...); its ``min_quality``/``seed``/``out`` are set per arm.
    ``suspect_arm``: add the arm :data:`SUSPECT_ARM` (needs the suspect column, an unfiltered arm (threshold 0)
    to compare with, and ``base.drop_suspect`` off: it would remove the suspect crops from every arm).
    ``selection``: a prepared selection of ``base``'s data to sweep instead (the known-effect check passes one whose
    training rows carry injected degradations and their scores).

    Arm runs are kept in ``out/<arm>/seed<k>``; a rerun reuses an arm whose data and settings are unchanged."""
    from dfkit.config import resolve_corpus
    from dfkit.train.data import default_workers

    t0 = time.perf_counter()
    thresholds = check_sweep_options(metric, level, thresholds)
    check_suspect_arm(suspect_arm, thresholds, base.drop_suspect)
    seeds = list(dict.fromkeys(int(s) for s in seeds))
    out = Path(out).expanduser()
    base = base.copy()  # a checked copy (the caller's object stays as it was)
    root = Path(base.corpus).expanduser() if base.corpus else resolve_corpus(None)
    base.corpus = str(root)
    workers = default_workers() if base.workers is None else int(base.workers)
    dev = _device(base.device)
    sel = selection if selection is not None else select_data(
        root, task=base.task, datasets=base.datasets, methods=base.methods, compression=base.compression,
        split=base.split, drop_real=base.drop_real, drop_suspect=base.drop_suspect, seed=base.split_seed)
    train = sel.train
    if "quality" not in train.columns:
        raise DfkitError("this corpus has no quality scores yet: run `dfkit quality` first")
    if suspect_arm:
        require_suspect_column(train, "--suspect-arm")
    if sel.test.empty:
        raise DfkitError("the selection has no test crops to evaluate the arms on")
    q = train["quality"].to_numpy(dtype=float)
    arms: list[dict[str, Any]] = []
    for t in thresholds:
        mask = np.ones(len(train), bool) if t == 0 else np.nan_to_num(q, nan=-1.0) >= t
        arms.append({"name": f"q>={t:g}", "threshold": t, "kind": "min", "mask": mask})
    nonzero = [t for t in thresholds if t > 0]
    if low_arm and nonzero:
        t_low = min(nonzero)
        arms.append({"name": f"q<{t_low:g} (low only)", "threshold": t_low, "kind": "low",
                     "mask": np.nan_to_num(q, nan=2.0) < t_low})
    if suspect_arm:
        from dfkit.corpus.schema import suspect_mask

        sus = suspect_mask(train).to_numpy(bool)
        arms.append({"name": SUSPECT_ARM, "threshold": 0.0, "kind": "suspect", "mask": ~sus,
                     "suspect_dropped": suspect_counts(train[sus], base.task)})
    C = len(sel.class_names)
    notes: list[str] = []
    active = []
    for a in arms:
        if a["kind"] == "suspect" and not a["suspect_dropped"]["frames"]:
            a["skipped"] = "no training crop is suspect (the arm would be the unfiltered one)"
            notes.append(f"arm {a['name']} skipped: {a['skipped']}")
            continue
        pool = train[a["mask"]]
        a["pool_frames"] = int(len(pool))
        a["pool_videos"] = int(pool["video_key"].nunique()) if len(pool) else 0
        per = np.bincount(pool["target"].to_numpy(), minlength=C) if len(pool) else np.zeros(C, int)
        a["pool_per_class"] = {n: int(per[i]) for i, n in enumerate(sel.class_names)}
        missing = [n for i, n in enumerate(sel.class_names) if per[i] == 0]
        if missing:
            a["skipped"] = f"no training crop of {', '.join(missing)}"
            notes.append(f"arm {a['name']} skipped: {a['skipped']} (size cannot be matched)")
        else:
            active.append(a)
    if len(active) < 2:
        raise DfkitError("fewer than two sweep arms have crops of every class: choose other --thresholds "
                         f"(training quality ranges {np.nanmin(q):.3f}-{np.nanmax(q):.3f}, median "
                         f"{np.nanmedian(q):.3f})")
    per_class = {i: min(a["pool_per_class"][n] for a in active) for i, n in enumerate(sel.class_names)}
    size = int(sum(per_class.values()))
    echo(f"quality sweep: {len(active)} arms x {len(seeds)} seeds, each trained on {size} crops "
         f"({', '.join(f'{n} {per_class[i]}' for i, n in enumerate(sel.class_names))}); test "
         f"{len(sel.test)} crops / {sel.test['video_key'].nunique()} videos (unfiltered)")
    rows: list[dict[str, Any]] = []
    for ai, a in enumerate(active):
        pool = train[a["mask"]]
        for seed in seeds:
            sub = subsample_by_video(pool, per_class, seed=seed)
            run_dir = out / f"arm{ai}" / f"seed{seed}"
            s = base.copy(seed=seed, out=str(run_dir),
                          min_quality=a["threshold"] if a["kind"] == "min" and a["threshold"] > 0 else None,
                          max_quality=a["threshold"] if a["kind"] == "low" else None,
                          drop_suspect=base.drop_suspect or a["kind"] == "suspect")
            key = _digest({"settings": {k: v for k, v in s.to_dict().items() if k not in ("progress", "workers",
                                                                                          "threads")},
                           "rows": sub["sample_id"].tolist(), "n_boot": n_boot,
                           # injected degradations (known-effect check) change the training pixels
                           "inject": (sub[INJECT_COLUMN].tolist() if INJECT_COLUMN in sub else None)})
            done = run_dir / "sweep_arm.json"
            res = None
            if done.exists():
                prev = json.loads(done.read_text())
                if prev.get("key") == key:
                    res = prev["result"]
                    echo(f"  {a['name']} seed {seed}: reused {run_dir}")
                    if not _scored_on(run_dir / "predictions_test.parquet", sel.test):
                        # the paired comparison needs this run's predictions on today's test crops
                        res = _eval_on_test(run_dir, sel, n_boot, 2 * base.batch_size, workers, dev,
                                            base.threads)["overall"]
                        done.write_text(json.dumps({"key": key, "result": res}, indent=1, allow_nan=False))
            if res is None:
                echo(f"  {a['name']} seed {seed}: training on {len(sub)} crops / {sub['video_key'].nunique()} videos "
                     f"(mean quality {np.nanmean(sub['quality'].to_numpy(float)):.3f})")
                train_run(s, overwrite=True, selection=_arm_selection(sel, a), train_rows=sub,
                          echo=lambda m: None)
                res = _eval_on_test(run_dir, sel, n_boot, 2 * base.batch_size, workers, dev, base.threads)["overall"]
                done.write_text(json.dumps({"key": key, "result": res}, indent=1, allow_nan=False))
            st = _stat(res, level, metric)
            rows.append({"arm": a["name"], "arm_index": ai, "kind": a["kind"], "threshold": a["threshold"],
                         "seed": seed, "train_frames": int(len(sub)), "train_videos": int(sub["video_key"].nunique()),
                         "train_mean_quality": float(np.nanmean(sub["quality"].to_numpy(float))),
                         "value": st["value"], "ci": st["ci"], "run": str(run_dir),
                         "frame_accuracy": _stat(res, "frame", "accuracy")["value"]})
            v = "n/a" if st["value"] is None else f"{st['value']:.3f}"
            echo(f"    {level} {metric} = {v}" + (f" [{st['ci'][0]:.3f}, {st['ci'][1]:.3f}]" if st["ci"] else ""))
    paired = _sweep_paired(active, rows, sel, metric=metric, level=level, n_boot=n_boot, notes=notes)
    summary = []
    for ai, a in enumerate(active):
        vals = [r["value"] for r in rows if r["arm_index"] == ai and r["value"] is not None]
        arm_ci = paired["arms"][a["name"]]["ci"] if paired else None
        summary.append({"arm": a["name"], "kind": a["kind"], "threshold": a["threshold"],
                        "pool_frames": a["pool_frames"], "pool_videos": a["pool_videos"], "train_frames": size,
                        "mean": float(np.mean(vals)) if vals else None,
                        "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else None, "n_seeds": len(vals),
                        "ci": arm_ci})
    edc = _sweep_edc(active, rows, sel, out, n_boot=n_boot, notes=notes, echo=echo)
    report = {"metric": metric, "level": level, "task": base.task, "backbone": base.backbone,
              "datasets": base.datasets, "split": base.split, "thresholds": thresholds, "seeds": seeds,
              "train_frames_per_arm": size, "per_class": {n: per_class[i] for i, n in enumerate(sel.class_names)},
              "test_frames": int(len(sel.test)), "test_videos": int(sel.test["video_key"].nunique()),
              "arms": [{k: v for k, v in a.items() if k != "mask"} for a in arms], "runs": rows,
              "summary": summary, "paired": paired["pairs"] if paired else [],
              "paired_bootstrap": ({k: paired[k] for k in ("bootstrap", "n_videos", "n_frames", "n_seeds", "seeds",
                                                           "test_videos_digest")} if paired else None),
              "conclusion": _conclusion(paired, metric, level, size) if paired else None,
              "suspect_arm": bool(suspect_arm),
              "suspect_conclusion": _suspect_conclusion(paired, metric, level, size) if paired else None,
              "edc": edc, "notes": notes, "settings": base.to_dict(),
              "seconds": time.perf_counter() - t0}
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.json").write_text(json.dumps(report, indent=1, allow_nan=False))
    md = sweep_markdown(report)
    (out / "sweep.md").write_text(md)
    _sweep_png(report, out / "sweep.png")
    report["out_dir"] = str(out)
    return report


#: the name of the sweep's arm without the suspect crops (``--suspect-arm``)
SUSPECT_ARM = "drop suspect labels"


def check_suspect_arm(suspect_arm: bool, thresholds: Sequence[float], drop_suspect: bool) -> None:
    """The ``--suspect-arm`` checks that need no data (one line each)."""
    if not suspect_arm:
        return
    if drop_suspect:
        raise DfkitError("--suspect-arm compares training without the suspect crops with training on all crops: "
                         "leave drop_suspect off in the sweep's settings (it would drop them from every arm)")
    if 0 not in thresholds:
        raise DfkitError("--suspect-arm is compared with the arm of all crops: include 0 in --thresholds")


def _arm_selection(sel: DataSelection, arm: dict[str, Any]) -> DataSelection:
    """The selection an arm's run records (``data.json``): the suspect arm names what it left out."""
    if arm["kind"] != "suspect":
        return sel
    from dataclasses import replace

    empty = suspect_counts(sel.val.iloc[:0], sel.task)
    return replace(sel, suspect={"enabled": True, "dropped": {"train": arm["suspect_dropped"], "val": empty}},
                   notes=sel.notes + [f"sweep arm {arm['name']}: {arm['suspect_dropped']['frames']} suspect crops "
                                      "left out of the training pool; validation and test are not filtered (the "
                                      "same for every arm)"])


def _sweep_pairs(active: list[dict[str, Any]]) -> tuple[list[tuple[str, str]], dict, dict]:
    """The comparisons: each arm against the unfiltered one (threshold 0), and the highest-threshold arm against
    the low-quality-only arm. Returns ``(pairs, kinds, names for the sentences)``."""
    pairs, kinds, better = [], {}, {}
    unf = next((a for a in active if a["kind"] == "min" and a["threshold"] == 0), None)
    if unf is not None:
        for a in active:
            if a is not unf:
                p = (a["name"], unf["name"])
                pairs.append(p)
                if a["kind"] == "suspect":
                    kinds[p] = "suspect_vs_all"
                    better[p] = ("training without the suspect crops", "training on all crops")
                else:
                    kinds[p] = "vs_unfiltered"
                    better[p] = (f"training on {a['name']}", "training on all crops")
    mins = [a for a in active if a["kind"] == "min" and a["threshold"] > 0]
    low = next((a for a in active if a["kind"] == "low"), None)
    if mins and low is not None:
        high = max(mins, key=lambda a: a["threshold"])
        p = (high["name"], low["name"])
        pairs.append(p)
        kinds[p] = "high_vs_low"
        better[p] = ("the higher-quality arm", "the low-quality-only arm")
    return pairs, kinds, better


def _sweep_paired(active, rows, sel, *, metric: str, level: str, n_boot: int, notes: list[str]) -> dict | None:
    """Paired differences of the sweep's arms from their runs' saved test predictions (see
    :func:`paired_differences`)."""
    from dfkit.train.evaluation import load_predictions

    pairs, kinds, better = _sweep_pairs(active)
    runs: dict[str, dict[int, pd.DataFrame]] = {a["name"]: {} for a in active}
    for r in rows:
        runs[r["arm"]][r["seed"]] = load_predictions(Path(r["run"]) / "predictions_test.parquet")
    if not pairs:
        notes.append("no paired comparison: the sweep has neither an unfiltered arm (threshold 0) nor a "
                     "high-threshold and a low-only arm")
    res = paired_differences(sel.test, runs, sel.class_names, pairs, metric=metric, level=level, n_boot=n_boot)
    for e in res["pairs"]:
        e["kind"] = kinds[(e["a"], e["b"])]
    if res["n_seeds"] == 1:
        notes.append("one seed: the CIs of the paired differences cover the test videos only, not the variation "
                     "between training runs")
    return res


def _conclusion(paired: dict[str, Any], metric: str, level: str, size: int) -> str | None:
    """One sentence on the high-vs-low-only difference (else the highest arm against the unfiltered one)."""
    pairs = paired["pairs"]
    e = next((p for p in pairs if p["kind"] == "high_vs_low"), None)
    if e is None:
        e = next((p for p in reversed(pairs) if p["kind"] == "vs_unfiltered" and p["a"].startswith("q>=")), None)
    if e is None:
        return None
    what = f"{level} {_METRIC_WORDS.get(metric, metric)}"
    other = (f"only on {e['b'].replace(' (low only)', '')}" if e["kind"] == "high_vs_low" else
             f"on all crops ({e['b']})")
    base = (f"Training on {e['a']} instead of {other} (the same {size} crops per arm) changes the test {what} by "
            + ("n/a" if e["value"] is None else f"{e['value']:+.3f}"))
    ci = e["ci"]
    if ci is None:
        return base + " (no CI)."
    how = (f" (95% CI {ci[0]:+.3f} to {ci[1]:+.3f}; paired bootstrap over {paired['n_videos']} test videos and "
           f"{paired['n_seeds']} seed{'s' if paired['n_seeds'] != 1 else ''})")
    higher = metric != "eer"
    if e["excludes_zero"]:
        good = (e["value"] > 0) == higher
        if e["kind"] == "high_vs_low":
            verdict = "the higher-quality arm is better" if good else "the low-quality-only arm is better"
        else:
            verdict = (f"training on {e['a']} is better than on all crops" if good
                       else "training on all crops is better")
        return base + how + f": the CI excludes 0, {verdict}."
    return base + how + ": the CI includes 0, so this sweep shows no difference."


def _suspect_conclusion(paired: dict[str, Any], metric: str, level: str, size: int) -> str | None:
    """One sentence on the suspect arm against the unfiltered one (None without a suspect arm)."""
    e = next((p for p in paired["pairs"] if p["kind"] == "suspect_vs_all"), None)
    if e is None:
        return None
    what = f"{level} {_METRIC_WORDS.get(metric, metric)}"
    text = (f"Leaving the suspect crops out of training ({e['a']}; the same {size} crops per arm) changes the test "
            f"{what} by " + ("n/a" if e["value"] is None else f"{e['value']:+.3f}"))
    ci = e["ci"]
    if ci is None:
        return text + " (no CI)."
    text += (f" (95% CI {ci[0]:+.3f} to {ci[1]:+.3f}; paired bootstrap over {paired['n_videos']} test videos and "
             f"{paired['n_seeds']} seed{'s' if paired['n_seeds'] != 1 else ''})")
    if e["excludes_zero"]:
        good = (e["value"] > 0) == (metric != "eer")
        return text + (": the CI excludes 0, " + ("training without them is better." if good else
                                                  "training on all crops is better."))
    return text + ": the CI includes 0, so this sweep shows no difference."


def _sweep_edc(active, rows, sel, out: Path, *, n_boot: int, notes: list[str], echo: Echo) -> dict | None:
    """The error-versus-discard curve of the unfiltered arm's seed-0 run (else its first seed; else the first arm's),
    written as ``out/edc.json`` and ``out/edc.png``."""
    from dfkit.train.edc import edc_from_predictions, write_edc
    from dfkit.train.evaluation import load_predictions

    arm = next((a for a in active if a["kind"] == "min" and a["threshold"] == 0), active[0])
    mine = [r for r in rows if r["arm"] == arm["name"]]
    r = next((r for r in mine if r["seed"] == 0), mine[0])
    if "quality" not in sel.test.columns or not sel.test["quality"].notna().any():
        notes.append("no EDC: the test crops have no quality scores")
        return None
    pr = load_predictions(Path(r["run"]) / "predictions_test.parquet")
    test = sel.test.reset_index(drop=True)
    pr = pr.set_index(pr["sample_id"].astype(str)).loc[test["sample_id"].astype(str)].reset_index(drop=True)
    res = edc_from_predictions(test, pr, sel.class_names, n_boot=n_boot)
    res.update({"arm": arm["name"], "seed": r["seed"], "run": r["run"]})
    out.mkdir(parents=True, exist_ok=True)
    write_edc(res, out, title=f"EDC of {arm['name']}, seed {r['seed']}")
    echo(f"  EDC of {arm['name']} seed {r['seed']}: {out / 'edc.json'}")
    return res


def sweep_markdown(report: dict[str, Any]) -> str:
    m = f"{report['level']} {report['metric'].replace('_', ' ')}"
    lines = [f"# Quality sweep ({report['task']}, {report['backbone']})", "",
             f"Every arm trains on {report['train_frames_per_arm']} crops (per class: "
             + ", ".join(f"{k} {v}" for k, v in report["per_class"].items())
             + f"), subsampled by video; all arms are tested on the same {report['test_frames']} crops / "
               f"{report['test_videos']} videos. Metric: {m} (95% bootstrap CI over videos).", "",
             "| arm | crops available | seed | train mean quality | " + m + " | frame accuracy |",
             "|---|---|---|---|---|---|"]
    pool = {a["name"]: a for a in report["arms"]}
    for r in report["runs"]:
        v = "n/a" if r["value"] is None else f"{r['value']:.3f}"
        if r["ci"]:
            v += f" [{r['ci'][0]:.3f}, {r['ci'][1]:.3f}]"
        fa = "n/a" if r["frame_accuracy"] is None else f"{r['frame_accuracy']:.3f}"
        lines.append(f"| {r['arm']} | {pool[r['arm']]['pool_frames']} | {r['seed']} | "
                     f"{r['train_mean_quality']:.3f} | {v} | {fa} |")
    lines += ["", f"| arm | mean {m} over seeds (95% CI over videos and seeds) | std | seeds |", "|---|---|---|---|"]
    for s in report["summary"]:
        mean = "n/a" if s["mean"] is None else f"{s['mean']:.3f}"
        if s.get("ci"):
            mean += f" [{s['ci'][0]:.3f}, {s['ci'][1]:.3f}]"
        std = "" if s["std"] is None else f"{s['std']:.3f}"
        lines.append(f"| {s['arm']} | {mean} | {std} | {s['n_seeds']} |")
    if report.get("paired"):
        pb = report["paired_bootstrap"]
        lines += ["", "## Paired differences", "",
                  f"Difference of the mean {m} over seeds, arm minus arm, on the same {pb['n_videos']} test videos "
                  f"and seeds {', '.join(map(str, pb['seeds']))}; 95% CI from {pb['bootstrap']['n_boot']} "
                  "bootstrap resamples of the test videos and the seeds, drawn once for both arms (paired).", "",
                  "| comparison | difference | 95% CI | in words |", "|---|---|---|---|"]
        for e in report["paired"]:
            v = "n/a" if e["value"] is None else f"{e['value']:+.3f}"
            ci = f"[{e['ci'][0]:+.3f}, {e['ci'][1]:+.3f}]" if e["ci"] else "n/a"
            lines.append(f"| {e['label']} | {v} | {ci} | {e['verdict']} |")
    if report.get("conclusion"):
        lines += ["", f"**{report['conclusion']}**"]
    if report.get("suspect_conclusion"):
        lines += ["", f"**{report['suspect_conclusion']}**"]
    if report.get("edc"):
        from dfkit.train.edc import edc_markdown

        e = report["edc"]
        lines += ["", edc_markdown(e, title=f"Error versus discard (EDC) of {e['arm']}, seed {e['seed']}").rstrip(),
                  "", "![error versus discard](edc.png)"]
    for n in report.get("notes", []):
        lines.append(f"\n_Note: {n}._")
    return "\n".join(lines) + "\n"


def sweep_table_text(report: dict[str, Any]) -> str:
    """The mean-over-seeds table as plain text (for the terminal)."""
    m = f"{report['level']} {report['metric'].replace('_', ' ')}"
    lines = [f"{'arm':<22} {'crops avail.':>12} {'trained on':>10}  {m} (mean over seeds, per-seed 95% CI)"]
    for s in report["summary"]:
        runs = [r for r in report["runs"] if r["arm"] == s["arm"]]
        cis = "; ".join(f"[{r['ci'][0]:.2f}, {r['ci'][1]:.2f}]" for r in runs if r["ci"])
        mean = "n/a" if s["mean"] is None else f"{s['mean']:.3f}"
        lines.append(f"{s['arm']:<22} {s['pool_frames']:>12} {s['train_frames']:>10}  {mean}  {cis}")
    if report.get("paired"):
        pb = report["paired_bootstrap"]
        lines.append(f"paired differences ({m}; 95% CI over {pb['n_videos']} test videos and {pb['n_seeds']} "
                     f"seed{'s' if pb['n_seeds'] != 1 else ''}, resampled together):")
        lines += [f"  {e['sentence']}" for e in report["paired"]]
    if report.get("edc"):
        from dfkit.train.edc import edc_summary_line

        lines.append(f"{report['edc']['arm']} seed {report['edc']['seed']}: " + edc_summary_line(report["edc"]))
    if report.get("conclusion"):
        lines.append(report["conclusion"])
    if report.get("suspect_conclusion"):
        lines.append(report["suspect_conclusion"])
    return "\n".join(lines)


def _sweep_png(report: dict[str, Any], path: Path) -> None:
    from matplotlib.figure import Figure

    summary = report["summary"]
    paired = report.get("paired") or []
    w1 = max(5.0, 1.3 * len(summary) + 2)
    fig = Figure(figsize=(w1 + (max(4.5, 1.1 * len(paired) + 2) if paired else 0), 4.3))
    if paired:
        ax, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [w1, max(4.5, 1.1 * len(paired) + 2)]})
    else:
        ax, ax2 = fig.subplots(), None
    xs = {s["arm"]: i for i, s in enumerate(summary)}
    seeds = report["seeds"]
    for k, seed in enumerate(seeds):
        off = (k - (len(seeds) - 1) / 2) * 0.08
        pts = [r for r in report["runs"] if r["seed"] == seed and r["value"] is not None]
        x = [xs[r["arm"]] + off for r in pts]
        y = [r["value"] for r in pts]
        lo = [r["value"] - r["ci"][0] if r["ci"] else 0 for r in pts]
        hi = [r["ci"][1] - r["value"] if r["ci"] else 0 for r in pts]
        ax.errorbar(x, y, yerr=[lo, hi], fmt="o", ms=4, capsize=3, alpha=0.7, label=f"seed {seed} (95% CI)")
    mins = [s for s in summary if s["kind"] == "min" and s["mean"] is not None]
    mx = [xs[s["arm"]] for s in mins]
    ax.plot(mx, [s["mean"] for s in mins], "k-", lw=2, label="mean over seeds")
    band = [s for s in mins if s.get("ci")]
    if band:
        ax.fill_between([xs[s["arm"]] for s in band], [s["ci"][0] for s in band], [s["ci"][1] for s in band],
                        color="k", alpha=0.12, label="mean: 95% CI (videos + seeds)")
    low = [s for s in summary if s["kind"] == "low" and s["mean"] is not None]
    for s in low:
        err = [[s["mean"] - s["ci"][0]], [s["ci"][1] - s["mean"]]] if s.get("ci") else None
        ax.errorbar([xs[s["arm"]]], [s["mean"]], yerr=err, fmt="rs", ms=8, capsize=4,
                    label="low-quality only (mean, 95% CI)")
    for s in [s for s in summary if s["kind"] == "suspect" and s["mean"] is not None]:
        err = [[s["mean"] - s["ci"][0]], [s["ci"][1] - s["mean"]]] if s.get("ci") else None
        ax.errorbar([xs[s["arm"]]], [s["mean"]], yerr=err, fmt="g^", ms=8, capsize=4,
                    label="without suspect labels (mean, 95% CI)")
    if report["metric"] in ("balanced_accuracy", "accuracy") and report.get("per_class"):
        ax.axhline(1 / len(report["per_class"]), color="gray", ls=":", lw=1, label="chance")
    ax.set_xticks(range(len(summary)), labels=[s["arm"] for s in summary], rotation=20)
    ax.set_xlabel("training crops (quality threshold); same size for every arm")
    ax.set_ylabel(f"{report['level']} {report['metric'].replace('_', ' ')} (test)")
    ax.set_ylim(0, 1.15)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", ncol=3, frameon=False)
    ax.set_title(f"quality sweep: {report['task']}, {report['train_frames_per_arm']} crops per arm", fontsize=10)
    if ax2 is not None:
        for i, e in enumerate(paired):
            if e["value"] is None:
                continue
            err = [[e["value"] - e["ci"][0]], [e["ci"][1] - e["value"]]] if e["ci"] else None
            color = "C3" if e["kind"] == "high_vs_low" else ("C2" if e["excludes_zero"] else "C0")
            ax2.errorbar([i], [e["value"]], yerr=err, fmt="o", color=color, ms=6, capsize=4)
        ax2.axhline(0, color="k", lw=1)
        ax2.set_xticks(range(len(paired)), labels=[e["label"].replace(" - ", "\n- ") for e in paired], fontsize=7)
        ax2.set_xlim(-0.6, len(paired) - 0.4)
        ax2.set_ylabel(f"difference in {report['level']} {report['metric'].replace('_', ' ')}")
        ax2.grid(alpha=0.3, axis="y")
        ax2.set_title("paired differences (95% CI over test videos and seeds)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# ----------------------------------------------------------------------------------------------------------------------
# cross-dataset

def cross_dataset(base: TrainSettings, *, datasets: Sequence[str] | str | None = None,
                  tasks: Sequence[str] = ("binary", "attribution"), out: str | Path = "runs/cross-dataset",
                  metric: str = "balanced_accuracy", level: str = "video", n_boot: int = 1000,
                  echo: Echo = print) -> dict[str, Any]:
    """Train on each dataset, evaluate on each (see the module docstring): a study (:mod:`dfkit.train.study`) with
    the axes task x training dataset (each alone), evaluated on every dataset, whose cells keep the folders
    ``out/<task>/<dataset>`` (a rerun reuses a finished cell of unchanged settings)."""
    from dfkit.config import resolve_corpus
    from dfkit.train.study import AXIS_SETTINGS, CELL_MARKER, corpus_datasets, run_study, study_from_dict

    t0 = time.perf_counter()
    out = Path(out).expanduser()
    root = Path(base.corpus).expanduser() if base.corpus else resolve_corpus(None)
    have = corpus_datasets(root)
    ds = parse_list(datasets) or have
    unknown = [d for d in ds if d not in have]
    if unknown:
        raise DfkitError(f"unknown dataset(s) {', '.join(unknown)} in {root}; it holds: {', '.join(have)}")
    tasks = parse_list(tasks) or ["binary", "attribution"]
    for t in tasks:
        if t not in ("binary", "attribution"):
            raise DfkitError(f"unknown task {t!r}: binary or attribution")
    axis_keys = {k for v in AXIS_SETTINGS.values() for k in v} | {"out", "corpus"}
    spec = {"name": "cross-dataset",
            "base": {k: v for k, v in base.to_dict().items() if k not in axis_keys},
            "axes": {"task": tasks, "backbone": [base.backbone], "min_quality": [base.min_quality],
                     "contrastive": ["none" if not base.contrastive else f"supcon_{base.contrastive_mode}"],
                     "train_datasets": [[d] for d in ds], "seed": [base.seed]},
            "eval": {"split": "test", "datasets": ds, "n_boot": int(n_boot)},
            "report": {"metric": metric, "level": level, "n_boot": int(n_boot)}}
    if getattr(base, "holdout_methods", None):
        spec["axes"]["holdout_methods"] = [base.holdout_methods]
    study = study_from_dict(spec, source="experiment cross-dataset", corpus=root, out=out)
    run_study(study, progress=False, echo=echo, layout=lambda c: out / c.axes["task"] / c.axes["train_datasets"][0])
    matrix: dict[str, list[list[dict[str, Any]]]] = {}
    runs: dict[str, dict[str, str]] = {}
    for task in tasks:
        matrix[task], runs[task] = [], {}
        for d in ds:
            run_dir = out / task / d
            runs[task][d] = str(run_dir)
            evals = json.loads((run_dir / CELL_MARKER).read_text())["evals"]
            row = []
            for e in ds:
                if evals[e].get("error") is not None:  # e.g. a dataset without a test split: one empty cell
                    row.append({"value": None, "ci": None, "n_known_frames": 0, "n_unseen_frames": 0,
                                "unseen_methods": [], "eval": None, "error": evals[e]["error"]})
                    continue
                res = json.loads((run_dir / evals[e]["dir"] / "eval.json").read_text())["overall"]
                st = _stat(res, level, metric)
                row.append({"value": st["value"], "ci": st["ci"], "n_known_frames": res["n_known_frames"],
                            "n_unseen_frames": res["n_unseen_frames"], "unseen_methods": res["unseen_methods"],
                            "eval": str(run_dir / evals[e]["dir"])})
            matrix[task].append(row)
    report = {"datasets": ds, "tasks": tasks, "metric": metric, "level": level, "matrix": matrix, "runs": runs,
              "rows": "trained on", "columns": "evaluated on", "settings": base.to_dict(),
              "seconds": time.perf_counter() - t0}
    out.mkdir(parents=True, exist_ok=True)
    (out / "cross_dataset.json").write_text(json.dumps(report, indent=1, allow_nan=False))
    _cross_png(report, out / "cross_dataset.png")
    (out / "cross_dataset.md").write_text(cross_markdown(report))
    report["out_dir"] = str(out)
    return report


def cross_markdown(report: dict[str, Any]) -> str:
    ds = report["datasets"]
    lines = [f"# Cross-dataset ({report['level']} {report['metric'].replace('_', ' ')}, rows: trained on, "
             "columns: evaluated on)", ""]
    for task in report["tasks"]:
        lines += [f"## {task}", "", "| trained on \\ evaluated on | " + " | ".join(ds) + " |",
                  "|---|" + "---|" * len(ds)]
        for d, row in zip(ds, report["matrix"][task]):
            cells = []
            for c in row:
                v = "n/a" if c["value"] is None else f"{c['value']:.3f}"
                if c["ci"]:
                    v += f" [{c['ci'][0]:.2f}, {c['ci'][1]:.2f}]"
                if c["unseen_methods"]:
                    v += f" (unseen: {', '.join(c['unseen_methods'])})"
                cells.append(v)
            lines.append(f"| {d} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _cross_png(report: dict[str, Any], path: Path) -> None:
    from matplotlib.figure import Figure

    from dfkit.train.study import heatmap

    ds, tasks = report["datasets"], report["tasks"]
    n = len(ds)
    fig = Figure(figsize=(max(4.0, 1.0 * n + 2.5) * len(tasks), max(3.5, 0.9 * n + 2)))
    axes = fig.subplots(1, len(tasks), squeeze=False)[0]
    for ax, task in zip(axes, tasks):
        m = np.array([[np.nan if c["value"] is None else c["value"] for c in row] for row in report["matrix"][task]])
        im = heatmap(ax, m, [[c["ci"] for c in row] for row in report["matrix"][task]], ds, ds,
                     f"{task}: {report['level']} {report['metric'].replace('_', ' ')}")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
