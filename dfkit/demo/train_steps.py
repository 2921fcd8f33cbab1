"""Demo steps for training, evaluation and the quality sweep (appended to :data:`dfkit.demo.run.STEPS`).

All use the ``tiny`` backbone on the central 64 px of the demo corpus' 128 px crops (``--crop center``: the
artifacts stay at full resolution; classes real + the four synthetic methods; the FF++ official split of the demo
ids), one DataLoader worker and one torch thread per free core, so the whole ``dfkit demo`` stays within a few
minutes on two CPU cores. The settings are written to ``train-demo.yaml`` / ``sweep-demo.yaml`` beside the corpus,
so the printed commands reproduce the steps. The training step reuses its run when it exists with the same
settings, the sweep its arms.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

Echo = Callable[[str], None]

IMG_SIZE = 64
#: the demo's identities differ in colour look (channel gains, hue, gamma) besides face shape, skin, light and hair:
#: colour-cast augmentation makes the tiny model look at the artifacts instead; blur and JPEG are off (they erase the
#: artifacts of these 64 px inputs)
AUGMENT = {"blur": False, "jpeg": False, "channel_gain": True}


def _run_dir(cfg) -> Path:
    return Path(cfg.out) / "runs" / "attribution-tiny"


def _workers(cfg) -> int:
    from dfkit.train.data import default_workers

    return max(0, min(int(cfg.workers), default_workers()))


def _settings(cfg, **kw: Any):
    from dfkit.train.runner import TrainSettings

    base = dict(corpus=str(cfg.corpus), task="attribution", backbone="tiny", img_size=IMG_SIZE, crop="center",
                augment=AUGMENT, batch_size=32, lr=3e-3, epochs=8 if cfg.quick else 14,
                samples_per_epoch=960 if cfg.quick else 1280, seed=0, workers=_workers(cfg), progress=False)
    base.update(kw)
    return TrainSettings.from_dict(base)


def _same_run(run: Path, s) -> bool:
    p = run / "config.json"
    if not p.exists() or not (run / "best.json").exists():
        return False
    saved = json.loads(p.read_text())
    keys = ("task", "backbone", "img_size", "crop", "augment", "batch_size", "lr", "epochs", "samples_per_epoch",
            "seed", "split", "min_quality")
    return all(saved.get(k) == getattr(s, k) for k in keys)


_CONFIG_KEYS = ("task", "backbone", "img_size", "crop", "augment", "batch_size", "lr", "epochs", "samples_per_epoch",
                "seed")


def _write_config(cfg, s, name: str) -> Path:
    """The demo's training settings as a ``--config`` file (so the printed command reproduces the step)."""
    import yaml

    path = Path(cfg.out) / name
    path.write_text(yaml.safe_dump({k: getattr(s, k) for k in _CONFIG_KEYS}, sort_keys=False))
    return path


def step_train(cfg, echo: Echo) -> None:
    from dfkit import services

    run = _run_dir(cfg)
    s = _settings(cfg, out=str(run))
    conf = _write_config(cfg, s, "train-demo.yaml")
    echo(f"[5] dfkit train --corpus {cfg.corpus} --config {conf} --out {run}")
    if _same_run(run, s):
        echo(f"    already trained: {run}")
        return
    summary = services.train(s, overwrite=True, echo=lambda m: echo("    " + m))
    hist = summary["history"]
    accs = ", ".join(f"{h['val']['frame']['accuracy']:.2f}" for h in hist if h.get("val"))
    echo(f"    validation frame accuracy per epoch: {accs}")


def step_eval(cfg, echo: Echo) -> None:
    from dfkit import services

    run = _run_dir(cfg)
    out = Path(cfg.out) / "reports" / "eval"
    echo(f"[6] dfkit eval {run} --split test --out {out}")
    rep = services.evaluate(run, corpus=cfg.corpus, split="test", out=out, workers=_workers(cfg), n_boot=1000,
                            echo=lambda m: echo("    " + m))
    k = rep["overall"]["known"]
    n = len(rep["class_names"])
    bal = k["video"]["balanced_accuracy"]
    echo(f"    attribution over {n} classes (chance {1 / n:.2f}): frame accuracy {k['frame']['accuracy']['value']:.2f}"
         f", video balanced accuracy {bal['value']:.2f} [95% CI {bal['ci'][0]:.2f}-{bal['ci'][1]:.2f}]")
    echo(f"    reports: {out / 'eval.md'}, {out / 'eval.html'}, {out / 'confusion_video.png'}")


def _sentence(rep: dict[str, Any]) -> str:
    """One sentence on the quality effect: the report's own ``conclusion`` when it has one, else built from its
    summary (high-quality arm vs low-quality-only arm, mean over seeds, and whether every seed agrees)."""
    if rep.get("conclusion"):
        return str(rep["conclusion"])
    m = f"{rep['level']} {rep['metric'].replace('_', ' ')}"
    hi = next((s for s in rep["summary"] if s["kind"] == "min"), None)
    lo = next((s for s in rep["summary"] if s["kind"] == "low"), None)
    if hi is None or lo is None or hi["mean"] is None or lo["mean"] is None:
        return "The quality sweep could not compare a high-quality arm with a low-quality-only arm."
    diffs = []
    for seed in rep["seeds"]:
        v = {r["kind"]: r["value"] for r in rep["runs"] if r["seed"] == seed and r["arm"] in (hi["arm"], lo["arm"])}
        if v.get("min") is not None and v.get("low") is not None:
            diffs.append(v["min"] - v["low"])
    d = hi["mean"] - lo["mean"]
    n = len(diffs)
    agree = n > 1 and (all(x > 0 for x in diffs) or all(x < 0 for x in diffs))
    what = (f"training on the high-quality crops ({hi['arm']}) gave test {m} {hi['mean']:.2f} against "
            f"{lo['mean']:.2f} for the low-quality crops ({lo['arm']}) at equal training size "
            f"({rep['train_frames_per_arm']} crops), a difference of {d:+.2f} over {n} seed(s)")
    if agree and abs(d) >= 0.05:
        return f"Quality effect: {what}, with every seed pointing the same way."
    return f"No clear quality effect: {what}, which the seeds do not consistently support."


def step_sweep(cfg, echo: Echo) -> None:
    import numpy as np

    import dfkit.corpus
    from dfkit import services

    out = Path(cfg.out) / "reports" / "quality-sweep"
    meta = dfkit.corpus.open(cfg.corpus).select(splits="train").metadata()
    if "quality" not in meta.columns or meta["quality"].isna().all():
        echo("[7] quality sweep skipped: the corpus has no quality scores (run `dfkit quality` first)")
        return
    # The threshold is the median quality of the training crops, fixed before any arm is trained: it splits the
    # training pool into two halves of equal size (so the equal-size arms use all the data they can), and it does
    # not depend on where the composite's absolute scale happens to sit while that scale is being recalibrated.
    # Half of the training targets are filmed poorly by construction (synth.capture_plan), so the median separates
    # poor from clean capture to the extent the quality score does -- which is what the sweep then tests.
    median = float(np.round(np.nanmedian(meta["quality"].to_numpy(float)), 3))
    seeds = (0,) if cfg.quick else (0, 1, 2)
    s = _settings(cfg, epochs=4 if cfg.quick else 6, samples_per_epoch=480)
    conf = _write_config(cfg, s, "sweep-demo.yaml")
    echo(f"[7] dfkit experiment quality-sweep --corpus {cfg.corpus} --config {conf} --thresholds {median} "
         f"--low-arm --seeds {','.join(map(str, seeds))} --out {out}")
    # prints the sweep's table and files as the command does, indented
    rep = services.quality_sweep(s, thresholds=(median,), seeds=seeds, low_arm=True, out=out, n_boot=1000,
                                 echo=lambda m: echo("    " + m.replace("\n", "\n    ")))
    cfg.conclusion = _sentence(rep)  # run_demo ends with it


#: appended to :data:`dfkit.demo.run.STEPS`
STEPS = [step_train, step_eval, step_sweep]
