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
#: the demo's identities differ mainly by colour look (channel gains, hue, gamma): colour-cast augmentation makes the
#: tiny model look at the artifacts instead; blur and JPEG are off (they erase the artifacts of these 64 px inputs)
AUGMENT = {"blur": False, "jpeg": False, "channel_gain": True}


def _run_dir(cfg) -> Path:
    return Path(cfg.out) / "runs" / "attribution-tiny"


def _workers(cfg) -> int:
    from dfkit.train.data import default_workers

    return max(0, min(int(cfg.workers), default_workers()))


def _settings(cfg, **kw: Any):
    from dfkit.train.runner import TrainSettings

    base = dict(corpus=str(cfg.corpus), task="attribution", backbone="tiny", img_size=IMG_SIZE, crop="center",
                augment=AUGMENT, batch_size=32, lr=3e-3, epochs=8 if cfg.quick else 12,
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
    from dfkit.train.runner import train_run

    run = _run_dir(cfg)
    s = _settings(cfg, out=str(run))
    conf = _write_config(cfg, s, "train-demo.yaml")
    echo(f"[5] dfkit train --corpus {cfg.corpus} --config {conf} --out {run}")
    if _same_run(run, s):
        echo(f"    already trained: {run}")
        return
    summary = train_run(s, overwrite=True, echo=lambda m: echo("    " + m))
    hist = summary["history"]
    accs = ", ".join(f"{h['val']['frame']['accuracy']:.2f}" for h in hist if h.get("val"))
    echo(f"    validation frame accuracy per epoch: {accs}")


def step_eval(cfg, echo: Echo) -> None:
    from dfkit.train.evaluation import eval_run

    run = _run_dir(cfg)
    out = Path(cfg.out) / "reports" / "eval"
    echo(f"[6] dfkit eval {run} --split test --out {out}")
    rep = eval_run(run, corpus=cfg.corpus, split="test", out=out, workers=_workers(cfg), n_boot=1000,
                   echo=lambda m: echo("    " + m))
    k = rep["overall"]["known"]
    n = len(rep["class_names"])
    bal = k["video"]["balanced_accuracy"]
    echo(f"    attribution over {n} classes (chance {1 / n:.2f}): frame accuracy {k['frame']['accuracy']['value']:.2f}"
         f", video balanced accuracy {bal['value']:.2f} [95% CI {bal['ci'][0]:.2f}-{bal['ci'][1]:.2f}]")
    echo(f"    reports: {out / 'eval.md'}, {out / 'eval.html'}, {out / 'confusion_video.png'}")


def step_sweep(cfg, echo: Echo) -> None:
    import numpy as np

    import dfkit.corpus
    from dfkit.train.experiments import quality_sweep, sweep_table_text

    out = Path(cfg.out) / "reports" / "quality-sweep"
    meta = dfkit.corpus.open(cfg.corpus).select(splits="train").metadata()
    if "quality" not in meta.columns or meta["quality"].isna().all():
        echo("[7] quality sweep skipped: the corpus has no quality scores (run `dfkit quality` first)")
        return
    # the demo's crops are all of similar quality (0.86-0.93): split the training crops at their median
    median = float(np.round(np.nanmedian(meta["quality"].to_numpy(float)), 3))
    seeds = (0,) if cfg.quick else (0, 1)
    s = _settings(cfg, epochs=4 if cfg.quick else 6, samples_per_epoch=480 if cfg.quick else 640)
    conf = _write_config(cfg, s, "sweep-demo.yaml")
    echo(f"[7] dfkit experiment quality-sweep --corpus {cfg.corpus} --config {conf} --thresholds 0,{median} "
         f"--seeds {','.join(map(str, seeds))} --out {out}")
    rep = quality_sweep(s, thresholds=(0.0, median), seeds=seeds, low_arm=True, out=out, n_boot=1000,
                        echo=lambda m: echo("    " + m))
    echo("    " + sweep_table_text(rep).replace("\n", "\n    "))
    echo(f"    sweep: {out / 'sweep.md'}, {out / 'sweep.png'}")


#: appended to :data:`dfkit.demo.run.STEPS`
STEPS = [step_train, step_eval, step_sweep]
