"""``dfkit demo``: the whole path on synthetic data, for users without a DeepFake dataset at hand.

Steps (each is skipped when its output already exists, so a rerun is quick and an interrupted demo resumes):

1. build a small dataset in the FF++ layout (:mod:`dfkit.demo.synth`) at two compression levels
2. ingest both levels into one corpus with the ``demo`` adapter, and print ``dfkit info``
3. measure quality (``dfkit quality``) and write the audit report (``dfkit audit``)
4. train a tiny attribution model, evaluate it, and run a small quality sweep (:mod:`dfkit.demo.train_steps`)
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from dfkit import services
from dfkit.demo.train_steps import step_eval, step_sweep, step_train

Echo = Callable[[str], None]


@dataclass
class DemoConfig:
    out: Path
    workers: int
    quick: bool

    @property
    def data(self) -> Path:
        return self.out / "data"

    @property
    def corpus(self) -> Path:
        return self.out / "corpus"

    @property
    def identities(self) -> int:
        # distinct identities (synth's looks): 10 FF++ pairs, 6 train / 2 val / 2 test; the second of every pair is
        # filmed poorly (synth.capture_plan). Many short videos rather than a few long ones (the time budget)
        return 12 if self.quick else 20

    @property
    def n_frames(self) -> int:
        return 16

    @property
    def frames(self) -> int:
        return 6 if self.quick else 8

    @property
    def synth(self) -> dict:
        """Options of :func:`dfkit.demo.synth.make_demo_dataset`: distinct identities, realistic poor capture."""
        return {"looks": True, "realistic_capture": True}

    crop_size: int = 128
    compressions: tuple[str, ...] = ("c23", "c40")
    #: the quality sweep's one-sentence result (set by step_sweep); the demo ends with it
    conclusion: str = ""


def step_build(cfg: DemoConfig, echo: Echo) -> None:
    from dfkit.demo.synth import make_demo_dataset

    marker = cfg.data / ".dfkit-demo.json"
    want = {"identities": cfg.identities, "n_frames": cfg.n_frames, "compressions": list(cfg.compressions), **cfg.synth}
    if marker.exists() and json.loads(marker.read_text()).get("params") == want:
        echo(f"[1] demo dataset already built at {cfg.data}")
        return
    echo(f"[1] building the synthetic demo dataset (FF++ layout) at {cfg.data}")
    s = make_demo_dataset(cfg.data, n_identities=cfg.identities, n_frames=cfg.n_frames,
                          compressions=cfg.compressions, progress=True, **cfg.synth)
    marker.write_text(json.dumps({"params": want, "counts": s["counts"]}, indent=2))
    echo(f"    {len(s['files'])} videos in {s['seconds']:.1f} s: methods {', '.join(s['methods'])}; "
         f"compression {', '.join(cfg.compressions)}")


def step_ingest(cfg: DemoConfig, echo: Echo) -> None:
    for c in cfg.compressions:
        echo(f"[2] dfkit ingest demo {cfg.data} --compression {c} --corpus {cfg.corpus}")
        s = services.ingest("demo", cfg.data, cfg.corpus, compression=c, frames=cfg.frames, size=cfg.crop_size,
                            workers=cfg.workers, log=lambda m: echo("    " + m))
        echo(f"    {s.processed} videos, {s.crops} crops in {s.seconds:.1f} s; status {s.status or 'all done'}")
    services.info(cfg.corpus, echo=echo)


def step_quality(cfg: DemoConfig, echo: Echo) -> None:
    echo(f"[3] dfkit quality --corpus {cfg.corpus}")
    s = services.quality(cfg.corpus, workers=cfg.workers, fullref_frames=4 if cfg.quick else 8,
                         log=lambda m: echo("    " + m))
    echo(f"    {s.crops} crops measured, {s.fullref_pairs} fake/original pairs compared, {s.seconds:.1f} s")
    n = 12 if cfg.quick else 32
    echo(f"[3b] dfkit quality calibrate --corpus {cfg.corpus} --n {n}")
    t0 = time.perf_counter()
    r = services.quality_calibrate(cfg.corpus, n=n, progress=False)
    echo(f"    {r['n_crops']} clean crops degraded in graded steps: clean median quality {r['clean']['median']:.2f}; "
         "median falls below 0.5 at " + ", ".join(f"{k} {m['0.5']}" for k, m in r["meaning"].items())
         + f"; {sum(t['ok'] for t in r['targets'])} of {len(r['targets'])} targets met "
         f"({time.perf_counter() - t0:.0f} s; {r['files']['calibration.md']})")


def step_audit(cfg: DemoConfig, echo: Echo) -> None:
    from dfkit.splits import format_audit

    echo(f"[4] dfkit audit --corpus {cfg.corpus} --out {cfg.out / 'audit'}")
    a = services.audit(cfg.corpus, out=cfg.out / "audit", progress=False)
    echo("    " + format_audit(a["leaks"]).replace("\n", "\n    "))
    echo(f"    audit report: {a['report']}")


STEPS: list[Callable[[DemoConfig, Echo], None]] = [step_build, step_ingest, step_quality, step_audit,
                                                   step_train, step_eval, step_sweep]


def run_demo(out: Path, workers: int = 2, quick: bool = False, echo: Echo = print) -> DemoConfig:
    cfg = DemoConfig(Path(out), workers, quick)
    cfg.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for step in STEPS:
        step(cfg, echo)
    echo(f"demo finished in {time.perf_counter() - t0:.0f} s; everything is under {cfg.out}")
    if cfg.conclusion:
        echo(cfg.conclusion)
    return cfg
