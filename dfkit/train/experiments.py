"""``dfkit experiment``: the quality sweep and the cross-dataset matrix.

**Quality sweep** (:func:`quality_sweep`). Does training on higher-quality crops help, *at equal training-set
size*? For each threshold ``t`` the training pool is the training split's crops with ``quality >= t`` (``t = 0``:
all crops); the "low-quality only" arm takes the crops below the lowest non-zero threshold. Every arm is then
subsampled to the same number of frames **per class** - the smallest arm's - whole videos first, in a seeded
random order (:func:`dfkit.train.data.subsample_by_video`), so size and class mix are held equal and only the
quality differs. Each arm is trained once per seed and evaluated on the same, unfiltered test split (and
validated on the same unfiltered validation split). Outputs: ``sweep.json``, ``sweep.md`` (arm x seed table and
the mean over seeds) and ``sweep.png`` (metric vs threshold: each seed's value with its 95% bootstrap CI over
videos, and the mean over seeds).

**Cross-dataset** (:func:`cross_dataset`). For each task (binary, attribution) and each dataset: train on its
training split, evaluate on every dataset's test split. Attribution across datasets scores the classes shared
through the canonical taxonomy; fakes of methods the model never saw are reported apart (see ``dfkit eval``).
Outputs: ``cross_dataset.json`` and ``cross_dataset.png`` (one heatmap per task, rows = trained on, columns =
evaluated on).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from dfkit.errors import DfkitError
from dfkit.train.data import parse_list, select_data, subsample_by_video
from dfkit.train.runner import TrainSettings, train_run

Echo = Callable[[str], None]

__all__ = ["quality_sweep", "cross_dataset", "parse_floats", "parse_ints"]


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


def _device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _digest(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------------------------------------------------
# quality sweep

def quality_sweep(base: TrainSettings, *, thresholds: Sequence[float] = (0.0, 0.5, 0.6, 0.7),
                  seeds: Sequence[int] = (0, 1, 2), low_arm: bool = True, out: str | Path = "runs/quality-sweep",
                  metric: str = "balanced_accuracy", level: str = "video", n_boot: int = 1000,
                  echo: Echo = print) -> dict[str, Any]:
    """Run the sweep (see the module docstring). ``base`` holds the training settings shared by every arm (corpus,
    task, backbone, datasets, split, epochs, ...); its ``min_quality``/``seed``/``out`` are set per arm.

    Arm runs are kept in ``out/<arm>/seed<k>``; a rerun reuses an arm whose data and settings are unchanged."""
    from dfkit.config import resolve_corpus
    from dfkit.train.data import default_workers

    t0 = time.perf_counter()
    if level not in ("frame", "video"):
        raise DfkitError("--level must be frame or video")
    if metric not in ("accuracy", "balanced_accuracy", "macro_f1", "auc", "eer"):
        raise DfkitError(f"unknown metric {metric!r}: accuracy, balanced_accuracy, macro_f1, auc or eer")
    thresholds = sorted(set(float(t) for t in thresholds))
    if any(not 0 <= t <= 1 for t in thresholds):
        raise DfkitError("quality thresholds lie in [0, 1]")
    seeds = list(dict.fromkeys(int(s) for s in seeds))
    out = Path(out).expanduser()
    base = TrainSettings.from_dict(base.to_dict())
    base.validate()
    root = Path(base.corpus).expanduser() if base.corpus else resolve_corpus(None)
    base.corpus = str(root)
    workers = default_workers() if base.workers is None else int(base.workers)
    dev = _device(base.device)
    sel = select_data(root, task=base.task, datasets=base.datasets, methods=base.methods,
                      compression=base.compression, split=base.split, drop_real=base.drop_real,
                      seed=base.split_seed)
    train = sel.train
    if "quality" not in train.columns:
        raise DfkitError("this corpus has no quality scores yet: run `dfkit quality` first")
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
    C = len(sel.class_names)
    notes: list[str] = []
    active = []
    for a in arms:
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
            s = base.merged({"seed": seed, "out": str(run_dir)})
            s.min_quality = a["threshold"] if a["kind"] == "min" and a["threshold"] > 0 else None
            s.max_quality = a["threshold"] if a["kind"] == "low" else None
            key = _digest({"settings": {k: v for k, v in s.to_dict().items() if k not in ("progress", "workers",
                                                                                          "threads")},
                           "rows": sub["sample_id"].tolist(), "n_boot": n_boot})
            done = run_dir / "sweep_arm.json"
            res = None
            if done.exists():
                prev = json.loads(done.read_text())
                if prev.get("key") == key:
                    res = prev["result"]
                    echo(f"  {a['name']} seed {seed}: reused {run_dir}")
            if res is None:
                echo(f"  {a['name']} seed {seed}: training on {len(sub)} crops / {sub['video_key'].nunique()} videos "
                     f"(mean quality {np.nanmean(sub['quality'].to_numpy(float)):.3f})")
                train_run(s, overwrite=True, selection=sel, train_rows=sub, echo=lambda m: None)
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
    summary = []
    for ai, a in enumerate(active):
        vals = [r["value"] for r in rows if r["arm_index"] == ai and r["value"] is not None]
        summary.append({"arm": a["name"], "kind": a["kind"], "threshold": a["threshold"],
                        "pool_frames": a["pool_frames"], "pool_videos": a["pool_videos"], "train_frames": size,
                        "mean": float(np.mean(vals)) if vals else None,
                        "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else None, "n_seeds": len(vals)})
    report = {"metric": metric, "level": level, "task": base.task, "backbone": base.backbone,
              "datasets": base.datasets, "split": base.split, "thresholds": thresholds, "seeds": seeds,
              "train_frames_per_arm": size, "per_class": {n: per_class[i] for i, n in enumerate(sel.class_names)},
              "test_frames": int(len(sel.test)), "test_videos": int(sel.test["video_key"].nunique()),
              "arms": [{k: v for k, v in a.items() if k != "mask"} for a in arms], "runs": rows,
              "summary": summary, "notes": notes, "settings": base.to_dict(),
              "seconds": time.perf_counter() - t0}
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.json").write_text(json.dumps(report, indent=1, allow_nan=False))
    md = sweep_markdown(report)
    (out / "sweep.md").write_text(md)
    _sweep_png(report, out / "sweep.png")
    report["out_dir"] = str(out)
    return report


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
    lines += ["", f"| arm | mean {m} over seeds | std | seeds |", "|---|---|---|---|"]
    for s in report["summary"]:
        mean = "n/a" if s["mean"] is None else f"{s['mean']:.3f}"
        std = "" if s["std"] is None else f"{s['std']:.3f}"
        lines.append(f"| {s['arm']} | {mean} | {std} | {s['n_seeds']} |")
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
    return "\n".join(lines)


def _sweep_png(report: dict[str, Any], path: Path) -> None:
    from matplotlib.figure import Figure

    summary = report["summary"]
    fig = Figure(figsize=(max(5.0, 1.3 * len(summary) + 2), 4))
    ax = fig.subplots()
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
    ax.plot([xs[s["arm"]] for s in mins], [s["mean"] for s in mins], "k-", lw=2, label="mean over seeds")
    low = [s for s in summary if s["kind"] == "low" and s["mean"] is not None]
    if low:
        ax.plot([xs[s["arm"]] for s in low], [s["mean"] for s in low], "rs", ms=8, label="low-quality only (mean)")
    if report["metric"] in ("balanced_accuracy", "accuracy") and report.get("per_class"):
        ax.axhline(1 / len(report["per_class"]), color="gray", ls=":", lw=1, label="chance")
    ax.set_xticks(range(len(summary)), labels=[s["arm"] for s in summary], rotation=20)
    ax.set_xlabel("training crops (quality threshold); same size for every arm")
    ax.set_ylabel(f"{report['level']} {report['metric'].replace('_', ' ')} (test)")
    ax.set_ylim(0, 1.15)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", ncol=3, frameon=False)
    ax.set_title(f"quality sweep: {report['task']}, {report['train_frames_per_arm']} crops per arm")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# ----------------------------------------------------------------------------------------------------------------------
# cross-dataset

def cross_dataset(base: TrainSettings, *, datasets: Sequence[str] | str | None = None,
                  tasks: Sequence[str] = ("binary", "attribution"), out: str | Path = "runs/cross-dataset",
                  metric: str = "balanced_accuracy", level: str = "video", n_boot: int = 1000,
                  echo: Echo = print) -> dict[str, Any]:
    """Train on each dataset, evaluate on each (see the module docstring)."""
    from dfkit.config import resolve_corpus
    from dfkit.corpus.reader import Corpus
    from dfkit.train.evaluation import eval_run

    t0 = time.perf_counter()
    out = Path(out).expanduser()
    root = Path(base.corpus).expanduser() if base.corpus else resolve_corpus(None)
    have = sorted(Corpus(root).metadata(columns=["dataset"])["dataset"].unique())
    ds = parse_list(datasets) or have
    unknown = [d for d in ds if d not in have]
    if unknown:
        raise DfkitError(f"unknown dataset(s) {', '.join(unknown)} in {root}; it holds: {', '.join(have)}")
    tasks = parse_list(tasks) or ["binary", "attribution"]
    for t in tasks:
        if t not in ("binary", "attribution"):
            raise DfkitError(f"unknown task {t!r}: binary or attribution")
    matrix: dict[str, list[list[dict[str, Any]]]] = {}
    runs: dict[str, dict[str, str]] = {}
    for task in tasks:
        matrix[task] = []
        runs[task] = {}
        for d in ds:
            run_dir = out / task / d
            s = base.merged({"task": task, "datasets": [d], "out": str(run_dir), "corpus": str(root)})
            echo(f"[{task}] train on {d} -> {run_dir}")
            train_run(s, overwrite=True, echo=lambda m: echo("    " + m))
            runs[task][d] = str(run_dir)
            row = []
            for e in ds:
                try:
                    rep = eval_run(run_dir, corpus=root, datasets=[e], split="test", out=run_dir / f"eval_{e}",
                                   n_boot=n_boot, workers=base.workers, device=base.device,
                                   threads=base.threads, echo=lambda m: None)
                except DfkitError as err:  # e.g. a dataset without a test split: one empty cell, not a failed run
                    row.append({"value": None, "ci": None, "n_known_frames": 0, "n_unseen_frames": 0,
                                "unseen_methods": [], "eval": None, "error": str(err)})
                    echo(f"    eval on {e}: skipped ({err})")
                    continue
                res = rep["overall"]
                st = _stat(res, level, metric)
                row.append({"value": st["value"], "ci": st["ci"], "n_known_frames": res["n_known_frames"],
                            "n_unseen_frames": res["n_unseen_frames"], "unseen_methods": res["unseen_methods"],
                            "eval": str(run_dir / f"eval_{e}")})
                v = "n/a" if st["value"] is None else f"{st['value']:.3f}"
                echo(f"    eval on {e}: {level} {metric} {v}"
                     + (f"; unseen methods: {', '.join(res['unseen_methods'])}" if res["unseen_methods"] else ""))
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

    ds, tasks = report["datasets"], report["tasks"]
    n = len(ds)
    fig = Figure(figsize=(max(4.0, 1.0 * n + 2.5) * len(tasks), max(3.5, 0.9 * n + 2)))
    axes = fig.subplots(1, len(tasks), squeeze=False)[0]
    for ax, task in zip(axes, tasks):
        m = np.array([[np.nan if c["value"] is None else c["value"] for c in row] for row in report["matrix"][task]])
        im = ax.imshow(m, vmin=0, vmax=1, cmap="viridis")
        ax.set_xticks(range(n), labels=ds, rotation=45, ha="right")
        ax.set_yticks(range(n), labels=ds)
        ax.set_xlabel("evaluated on")
        ax.set_ylabel("trained on")
        ax.set_title(f"{task}: {report['level']} {report['metric'].replace('_', ' ')}", fontsize=9)
        for i in range(n):
            for j in range(n):
                c = report["matrix"][task][i][j]
                txt = "n/a" if c["value"] is None else f"{c['value']:.2f}"
                if c["ci"]:
                    txt += f"\n[{c['ci'][0]:.2f}, {c['ci'][1]:.2f}]"
                ax.text(j, i, txt, ha="center", va="center", fontsize=7,
                        color="black" if (c["value"] or 0) > 0.6 else "white")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
