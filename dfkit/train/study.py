"""``dfkit study``: a grid of training runs from one YAML file, run resumably, and one report over all of them.

A **study file** (see ``manifests/studies/template.yaml`` for every key) names a corpus, an output folder, the
training settings shared by every run (``base:``, the keys of ``dfkit train --config``) and **axes** whose values
are combined in full (the grid)::

    axes:
      task: [binary, attribution]
      backbone: [tiny, efficientnet_b0]
      contrastive: [none, supcon_joint, supcon_probe]
      min_quality: [null, 0.6]                  # null (or 0): every training crop
      train_datasets: [[ffpp], [ffpp, celebdf], each, all, leave-one-out]
      seed: [0, 1, 2]

``each`` expands to one entry per dataset of the corpus, ``leave-one-out`` to one entry per dataset holding all the
others, ``all`` to every dataset. Every combination is a **cell**: an ordinary ``dfkit train`` run folder
``OUT/cells/<digest>-<slug>`` (``dfkit eval``/``dfkit train --resume`` open it as any run), whose name starts with
the digest of its resolved settings (:func:`cell_digest`). Each cell is trained, then evaluated on every dataset of
the corpus (``eval: {split: test, datasets: all}``; ``eval_<dataset>/`` in the cell).

:func:`run_study` phases:

1. load and check the study (:func:`load_study`: one line naming the YAML key on any error) and expand the grid
   (:func:`expand`), checking the datasets against the corpus;
2. ``--dry-run``: the table of cells with their training / validation / test crops (from the data selection, no
   training) and an estimated cost (:func:`estimate`, from measured steps/s), then stop;
3. for each cell: skip it when its marker (``study_cell.json``) records the same digest, a best checkpoint exists and
   every evaluation is done; continue a killed run from its ``last`` checkpoint; otherwise train it. Then evaluate
   what is missing. ``OUT/study.json`` (the index of every cell) is rewritten atomically after each cell, so a killed
   study resumes where it stopped and a finished cell is never retrained.

:func:`report_study` reads the cells' predictions and answers the study's **questions**, each as a table with 95%
bootstrap CIs and *paired* differences (the same test videos, bootstrap over videos and seeds, with
:func:`dfkit.train.experiments.paired_differences`):

- ``binary_vs_attribution``: the binary model against the attribution model read as a detector (its
  ``P(fake) = 1 - P(real)``), on the same test videos: AUC, EER and balanced accuracy;
- ``backbone_size``: each larger backbone (by parameter count) against the smallest;
- ``supcon``: each SupCon arm against no contrastive loss;
- ``quality``: each training filter against the unfiltered arm; with the study's ``equal_size: true`` every arm
  trains on the same number of crops per class (the smallest arm's, subsampled by video as ``dfkit experiment
  quality-sweep`` does), so only the quality differs;
- ``cross_dataset``: the matrix trained on -> evaluated on (mean over seeds, CI over videos and seeds), as heatmaps.

Comparisons are made between cells that differ in the compared axis only (and the seed); arms are matched seed by
seed. Outputs: ``report.json`` (every number), ``report.md``, ``report.html`` (self-contained: the plots embedded),
``cross_dataset.png`` (the heatmaps) and ``paired_<question>.png``.
"""

from __future__ import annotations

import hashlib
import html
import itertools
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from dfkit.errors import DfkitError
from dfkit.train.settings import TrainSettings

Echo = Callable[[str], None]

__all__ = ["Study", "Cell", "load_study", "study_from_dict", "expand", "cell_digest", "run_study", "estimate",
           "measure_speed", "report_study", "detector_probs", "question_pairs", "QUESTIONS", "AXES",
           "CELL_MARKER", "INDEX_FILE"]

#: the index of a study's cells, in its output folder
INDEX_FILE = "study.json"
#: a cell's marker: written once the cell is trained, updated after each evaluation
CELL_MARKER = "study_cell.json"
#: measured training speeds (the dry run's cache), in the study's output folder
SPEED_FILE = "speed.json"
#: the folder of the cells, in the study's output folder
CELLS_DIR = "cells"
#: bump when the meaning of a digest changes (every cell is then a new one)
DIGEST_VERSION = 1

#: the axes, in the order cells are combined and named (independent of the YAML file's order)
AXES = ("task", "backbone", "contrastive", "min_quality", "train_datasets", "holdout_methods", "seed")
#: the contrastive arms and the settings each sets
CONTRASTIVE = {"none": {"contrastive": None}, "supcon_joint": {"contrastive": "supcon", "contrastive_mode": "joint"},
               "supcon_probe": {"contrastive": "supcon", "contrastive_mode": "probe"}}
#: the questions the report answers (the study's ``questions:`` picks among them; default: all)
QUESTIONS = ("binary_vs_attribution", "backbone_size", "supcon", "quality", "cross_dataset")
#: settings that never change a run's result (left out of the digest): where it is written and read, how it is shown,
#: how many processes decode crops
NOT_RESULT = ("out", "corpus", "progress", "workers", "threads", "device")
#: settings only a contrastive run reads (reset to their defaults in the digest of a run without one)
CONTRASTIVE_ONLY = ("contrastive_mode", "contrastive_weight", "temperature", "probe_epochs", "projection_dim",
                    "probe_lr")
#: settings an axis sets (a study's ``base:`` may give a default; the axis wins)
AXIS_SETTINGS = {"task": ("task",), "backbone": ("backbone",), "contrastive": ("contrastive", "contrastive_mode"),
                 "min_quality": ("min_quality",), "train_datasets": ("datasets",),
                 "holdout_methods": ("holdout_methods",), "seed": ("seed",)}
_TOP_KEYS = ("name", "description", "corpus", "out", "base", "axes", "equal_size", "eval", "questions", "report")
_EVAL_KEYS = ("split", "datasets", "n_boot", "batch_size")
_REPORT_KEYS = ("metric", "level", "n_boot")
_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "auc", "eer")
_DATASET_WORDS = ("all", "each", "leave-one-out")


def _has_holdout() -> bool:
    """Whether this dfkit's :class:`TrainSettings` has ``holdout_methods`` (the axis exists only then)."""
    return "holdout_methods" in TrainSettings.keys()


# ----------------------------------------------------------------------------------------------------------------------
# the study file

@dataclass
class Study:
    """A checked study file (:func:`load_study`). ``axes`` hold checked values, in the file's order per axis;
    ``train_datasets`` entries are lists of names or one of ``all``/``each``/``leave-one-out`` (expanded against
    the corpus by :func:`expand`)."""

    name: str
    corpus: Path
    out: Path
    base: dict[str, Any]
    axes: dict[str, list[Any]]
    eval: dict[str, Any]
    questions: list[str]
    report: dict[str, Any]
    source: str = "study"
    description: str = ""
    #: the quality arms train on the same number of crops per class (see :func:`_equal_size_rows`)
    equal_size: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "corpus": str(self.corpus), "out": str(self.out),
                "base": self.base, "axes": self.axes, "equal_size": self.equal_size, "eval": self.eval,
                "questions": self.questions, "report": self.report, "source": self.source}


@dataclass
class Cell:
    """One combination of the axes: its settings (a :class:`TrainSettings`), digest and run folder."""

    axes: dict[str, Any]
    settings: TrainSettings
    digest: str
    folder: Path
    slug: str
    labels: dict[str, str] = field(default_factory=dict)  # each axis value as the tables show it
    #: with the study's ``equal_size``: the training filters of the cells that differ from this one only in
    #: ``min_quality`` (its training crops are subsampled to the smallest of them, per class)
    equal_size_over: list[Any] | None = None

    @property
    def short(self) -> str:
        return self.digest[:10]


def _err(src: str, key: str, why: str) -> DfkitError:
    return DfkitError(f"{src}: {key}: {why}")


def _as_list(v: Any) -> list[Any]:
    return list(v) if isinstance(v, (list, tuple)) else [v]


def _norm_contrastive(v: Any, src: str) -> str:
    word = "none" if v is None or v is False else str(v).strip().lower().replace("-", "_").replace(" ", "_")
    word = {"off": "none", "": "none", "supcon": "supcon_joint", "joint": "supcon_joint",
            "probe": "supcon_probe"}.get(word, word)
    if word not in CONTRASTIVE:
        raise _err(src, "axes.contrastive", f"unknown arm {v!r}: none, supcon_joint or supcon_probe")
    return word


def _norm_quality(v: Any, src: str) -> float | None:
    from dfkit.train.settings import check_quality

    if v is None or (isinstance(v, str) and v.strip().lower() in ("none", "null", "all", "")):
        return None
    try:
        q = check_quality(float(v), "axes.min_quality")
    except (TypeError, ValueError):
        raise _err(src, "axes.min_quality", f"{v!r} is not a number in [0, 1] (or null)") from None
    except DfkitError as e:
        raise _err(src, "axes.min_quality", str(e).split(": ", 1)[-1]) from None
    return None if q == 0 else q  # 0 keeps every crop: the same run as no filter


def _norm_datasets(v: Any, src: str) -> list[str] | str:
    from dfkit.train.data import parse_list

    if isinstance(v, str) and v.strip().lower() in _DATASET_WORDS:
        return v.strip().lower()
    names = parse_list(v) if isinstance(v, (str, list, tuple)) else None
    if not names or not all(isinstance(n, str) and n for n in names):
        raise _err(src, "axes.train_datasets", f"{v!r}: each entry is a list of dataset names, or one of "
                   + ", ".join(_DATASET_WORDS))
    return sorted(dict.fromkeys(names))


def _check_axis(name: str, values: list[Any], src: str) -> list[Any]:
    from dfkit.train.backbones import list_backbones
    from dfkit.train.data import TASKS, parse_list

    key = f"axes.{name}"
    if not values:
        raise _err(src, key, "needs at least one value")
    out: list[Any] = []
    for v in values:
        if name == "task":
            if v not in TASKS:
                raise _err(src, key, f"unknown task {v!r}: binary or attribution")
        elif name == "backbone":
            if v not in list_backbones():
                raise _err(src, key, f"unknown backbone {v!r}; known: {', '.join(list_backbones())}")
        elif name == "contrastive":
            v = _norm_contrastive(v, src)
        elif name == "min_quality":
            v = _norm_quality(v, src)
        elif name == "train_datasets":
            v = _norm_datasets(v, src)
        elif name == "holdout_methods":
            v = None if v is None or v == [] or (isinstance(v, str) and v.lower() in ("none", "")) else \
                sorted(dict.fromkeys(parse_list(v)))
        elif name == "seed":
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise _err(src, key, f"{v!r} is not a whole number >= 0")
        if v not in out:
            out.append(v)
    return out


def _check_section(d: Any, key: str, known: Sequence[str], src: str) -> dict[str, Any]:
    if d is None:
        return {}
    if not isinstance(d, dict):
        raise _err(src, key, "expected a mapping")
    unknown = sorted(set(map(str, d)) - set(known))
    if unknown:
        raise _err(src, f"{key}.{unknown[0]}", f"unknown key; known: {', '.join(known)}")
    return {str(k): v for k, v in d.items()}


def study_from_dict(data: dict[str, Any], *, source: str = "study", base_dir: Path | None = None,
                    corpus: str | Path | None = None, out: str | Path | None = None) -> Study:
    """A checked :class:`Study` from a mapping (a parsed study file). ``corpus``/``out`` override the file's;
    relative paths in the file are relative to ``base_dir`` (default: the current folder). Every error is one
    line naming ``source`` and the key."""
    from dfkit.config import resolve_corpus
    from dfkit.errors import SettingsError

    src = source
    unknown = sorted(set(map(str, data)) - set(_TOP_KEYS))
    if unknown:
        raise _err(src, unknown[0], f"unknown key; known: {', '.join(_TOP_KEYS)}")

    def path_of(v: Any, key: str) -> Path | None:
        if v is None:
            return None
        if not isinstance(v, (str, Path)) or not str(v):
            raise _err(src, key, f"expected a folder path, not {v!r}")
        p = Path(v).expanduser()
        return p if p.is_absolute() or base_dir is None else base_dir / p

    root = Path(corpus).expanduser() if corpus else (path_of(data.get("corpus"), "corpus") or resolve_corpus(None))
    out_dir = Path(out).expanduser() if out else path_of(data.get("out"), "out")
    if out_dir is None:
        raise _err(src, "out", "missing: the study's output folder (or pass --out)")
    base = _check_section(data.get("base"), "base", TrainSettings.keys(), src)
    for k in ("out", "corpus"):
        if k in base:
            raise _err(src, f"base.{k}", f"set the study's top-level {k!r} instead (each cell has its own folder)")
    try:
        TrainSettings.from_dict(base, source=f"{src}: base")
    except SettingsError as e:
        raise DfkitError(f"{src}: base: {str(e).split(': ', 1)[-1] if str(e).startswith(src) else e}") from None
    axes_known = [a for a in AXES if a != "holdout_methods" or _has_holdout()]
    raw_axes = data.get("axes")
    if raw_axes is None:
        raw_axes = {}
    if not isinstance(raw_axes, dict):
        raise _err(src, "axes", "expected a mapping of axis -> list of values")
    bad = sorted(set(map(str, raw_axes)) - set(axes_known))
    if bad:
        why = ("this dfkit's training settings have no holdout_methods field" if bad[0] == "holdout_methods"
               else f"unknown axis; known: {', '.join(axes_known)}")
        raise _err(src, f"axes.{bad[0]}", why)
    defaults = TrainSettings.from_dict(base)
    axes: dict[str, list[Any]] = {}
    for a in axes_known:
        if a in raw_axes:
            axes[a] = _check_axis(a, _as_list(raw_axes[a]), src)
        else:  # the base's (or the default) value: a one-value axis
            dflt = {"task": defaults.task, "backbone": defaults.backbone,
                    "contrastive": ("none" if not defaults.contrastive else f"supcon_{defaults.contrastive_mode}"),
                    "min_quality": defaults.min_quality, "train_datasets": defaults.datasets or "all",
                    "holdout_methods": getattr(defaults, "holdout_methods", None), "seed": defaults.seed}[a]
            axes[a] = _check_axis(a, [dflt], src)
    ev = _check_section(data.get("eval"), "eval", _EVAL_KEYS, src)
    ev.setdefault("split", "test")
    ev.setdefault("datasets", "all")
    ev.setdefault("n_boot", 1000)
    ev.setdefault("batch_size", 128)
    if ev["split"] not in ("train", "val", "test", "all"):
        raise _err(src, "eval.split", f"train, val, test or all, not {ev['split']!r}")
    if not (isinstance(ev["datasets"], str) and ev["datasets"] == "all"):
        try:
            ev["datasets"] = _norm_datasets(ev["datasets"], src)
        except DfkitError:
            raise _err(src, "eval.datasets", f"all, or a list of dataset names, not {ev['datasets']!r}") from None
        if isinstance(ev["datasets"], str):
            raise _err(src, "eval.datasets", f"all, or a list of dataset names, not {ev['datasets']!r}")
    for k, low in (("n_boot", 0), ("batch_size", 1)):
        if isinstance(ev[k], bool) or not isinstance(ev[k], int) or ev[k] < low:
            raise _err(src, f"eval.{k}", f"a whole number >= {low}, not {ev[k]!r}")
    q = data.get("questions")
    questions = list(QUESTIONS) if q is None else _as_list(q)
    for x in questions:
        if x not in QUESTIONS:
            raise _err(src, "questions", f"unknown question {x!r}; known: {', '.join(QUESTIONS)}")
    rep = _check_section(data.get("report"), "report", _REPORT_KEYS, src)
    rep.setdefault("metric", "balanced_accuracy")
    rep.setdefault("level", "video")
    rep.setdefault("n_boot", ev["n_boot"])
    if rep["metric"] not in _METRICS:
        raise _err(src, "report.metric", f"one of {', '.join(_METRICS)}, not {rep['metric']!r}")
    if rep["level"] not in ("video", "frame"):
        raise _err(src, "report.level", f"video or frame, not {rep['level']!r}")
    if isinstance(rep["n_boot"], bool) or not isinstance(rep["n_boot"], int) or rep["n_boot"] < 0:
        raise _err(src, "report.n_boot", f"a whole number >= 0, not {rep['n_boot']!r}")
    equal = data.get("equal_size", False)
    if not isinstance(equal, bool):
        raise _err(src, "equal_size", f"true or false, not {equal!r}")
    name = str(data.get("name") or (Path(source).stem if source != "study" else "study"))
    return Study(name=name, corpus=root, out=out_dir, base=base, axes=axes, eval=ev,
                 questions=list(dict.fromkeys(questions)), report=rep, source=source,
                 description=str(data.get("description") or ""), equal_size=equal)


def shipped_study(name: str) -> Path | None:
    """A study shipped in ``manifests/studies/`` by its name (``paper``, ``smoke``, ...), or None."""
    from dfkit.paths import manifests_dir

    try:
        p = manifests_dir() / "studies" / (name if name.endswith((".yaml", ".yml")) else f"{name}.yaml")
    except FileNotFoundError:
        return None
    return p if p.is_file() else None


def load_study(path: str | Path, *, corpus: str | Path | None = None, out: str | Path | None = None) -> Study:
    """Read and check a study file (a path, or the name of a study shipped in ``manifests/studies/``)."""
    from dfkit.config import read_yaml_mapping

    p = Path(path).expanduser()
    if not p.is_file():
        shipped = shipped_study(str(path)) if "/" not in str(path) else None
        if shipped is None:
            raise DfkitError(f"no such study file {p}")
        p = shipped
    data = read_yaml_mapping(p, "(corpus, out, base, axes, eval, questions: see manifests/studies/template.yaml)")
    return study_from_dict(data, source=str(p), base_dir=None, corpus=corpus, out=out)


# ----------------------------------------------------------------------------------------------------------------------
# the grid

def corpus_datasets(root: Path) -> list[str]:
    """The datasets of the corpus at ``root`` (sorted); one line when there is no corpus."""
    from dfkit.corpus.reader import Corpus

    if not Path(root).exists():
        raise DfkitError(f"no corpus at {root} (pass --corpus, or set corpus: in the study file)")
    return sorted(Corpus(root).metadata(columns=["dataset"])["dataset"].astype(str).unique())


def _expand_datasets(entries: list[Any], have: list[str], src: str) -> list[tuple[list[str], str]]:
    """Each ``train_datasets`` entry as (sorted names, label); ``each``/``leave-one-out`` become one per dataset."""
    out: list[tuple[list[str], str]] = []
    for e in entries:
        if e == "all":
            got = [(list(have), "all")]
        elif e == "each":
            got = [([d], d) for d in have]
        elif e == "leave-one-out":
            if len(have) < 2:
                raise _err(src, "axes.train_datasets", f"leave-one-out needs two datasets; the corpus holds "
                           f"{', '.join(have)}")
            got = [([x for x in have if x != d], f"all but {d}") for d in have]
        else:
            unknown = [d for d in e if d not in have]
            if unknown:
                raise _err(src, "axes.train_datasets", f"unknown dataset(s) {', '.join(unknown)}; the corpus "
                           f"holds: {', '.join(have)}")
            got = [(list(e), "all" if e == have else "+".join(e))]
        for g in got:
            if g[0] not in [o[0] for o in out]:
                out.append(g)
    return out


def cell_digest(s: TrainSettings, extra: dict[str, Any] | None = None) -> str:
    """The digest of the settings that change a run's result (sha1 hex): every field but :data:`NOT_RESULT`,
    lists of datasets/methods sorted, the contrastive-only fields at their defaults without a contrastive loss,
    ``img_size`` resolved to the backbone's default; of these, the fields that differ from their defaults (and
    ``img_size``). The same settings give the same digest on any machine, in any order of the study file's keys,
    and after a later dfkit adds a setting at a default that changes nothing. ``extra``: anything else that picks
    the training rows (the study's ``equal_size`` arms)."""
    from dfkit.train.backbones import backbone_spec

    d = {k: v for k, v in s.to_dict().items() if k not in NOT_RESULT}
    dflt = TrainSettings().to_dict()
    for k in ("datasets", "methods", "compression", "holdout_methods"):
        if isinstance(d.get(k), list):
            d[k] = sorted(d[k])
    if not d.get("contrastive"):
        for k in CONTRASTIVE_ONLY:
            d[k] = dflt[k]
    if d.get("img_size") is None:
        d["img_size"] = backbone_spec(s.backbone).default_img_size
    if d.get("min_quality") == 0:
        d["min_quality"] = None
    # only what differs from the defaults: a setting added to a later dfkit (at a default that changes nothing)
    # leaves every earlier digest as it was
    d = {k: v for k, v in d.items() if k == "img_size" or v != dflt.get(k)}
    doc: dict[str, Any] = {"v": DIGEST_VERSION, "settings": d}
    if extra:  # what else picks the training rows (equal_size: the arms the size is matched over)
        doc["extra"] = extra
    payload = json.dumps(doc, sort_keys=True, default=str)
    return hashlib.sha1(payload.encode()).hexdigest()


def _q_label(q: float | None) -> str:
    return "all crops" if q is None else f"q>={q:g}"


def _slug(axes: dict[str, Any], labels: dict[str, str]) -> str:
    import re

    parts = [axes["task"], axes["backbone"], axes["contrastive"].replace("_", "-"),
             "qall" if axes["min_quality"] is None else f"q{axes['min_quality']:g}",
             labels["train_datasets"].replace("all but ", "not-").replace(" ", "")]
    if axes.get("holdout_methods"):
        parts.append("hold-" + "+".join(axes["holdout_methods"]))
    parts.append(f"s{axes['seed']}")
    s = re.sub(r"[^A-Za-z0-9.+=-]+", "_", "-".join(parts))
    return s[:80]


def expand(study: Study, layout: Callable[[Cell], Path] | None = None) -> list[Cell]:
    """The cells of the grid, in the order of :data:`AXES` (the study file's key order does not matter; values keep
    their listed order). ``layout``: another folder per cell (the ``experiment cross-dataset`` shortcut keeps its
    ``OUT/<task>/<dataset>`` folders); default ``OUT/cells/<digest[:10]>-<slug>``."""
    have = corpus_datasets(study.corpus)
    ds_entries = _expand_datasets(study.axes["train_datasets"], have, study.source)
    names = [a for a in AXES if a in study.axes]
    values = [ds_entries if a == "train_datasets" else study.axes[a] for a in names]
    cells: list[Cell] = []
    seen: dict[str, Cell] = {}
    for combo in itertools.product(*values):
        ax = dict(zip(names, combo))
        ds, ds_label = ax["train_datasets"]
        ax["train_datasets"] = ds
        labels = {"task": ax["task"], "backbone": ax["backbone"], "contrastive": ax["contrastive"],
                  "min_quality": _q_label(ax["min_quality"]), "train_datasets": ds_label, "seed": str(ax["seed"])}
        if "holdout_methods" in ax:
            labels["holdout_methods"] = "+".join(ax["holdout_methods"]) if ax["holdout_methods"] else "none"
        over: dict[str, Any] = dict(study.base)
        over.update(task=ax["task"], backbone=ax["backbone"], min_quality=ax["min_quality"],
                    datasets=ds, seed=ax["seed"], corpus=str(study.corpus))
        over.update(CONTRASTIVE[ax["contrastive"]])
        if "holdout_methods" in ax:
            over["holdout_methods"] = ax["holdout_methods"]
        try:
            s = TrainSettings.from_dict(over, source=f"{study.source}: cell {ax}")
        except DfkitError as e:
            raise DfkitError(f"{study.source}: axes: {str(e).splitlines()[0]}") from None
        if s.img_size is None:
            from dfkit.train.backbones import backbone_spec

            s.img_size = backbone_spec(s.backbone).default_img_size
        over = None
        if study.equal_size and len(study.axes["min_quality"]) > 1:
            over = list(study.axes["min_quality"])
        digest = cell_digest(s, {"equal_size_over": over} if over else None)
        slug = _slug(ax, labels) + ("-eq" if over else "")
        cell = Cell(axes=ax, settings=s, digest=digest, folder=Path(), slug=slug, labels=labels,
                    equal_size_over=over)
        cell.folder = layout(cell) if layout else study.out / CELLS_DIR / f"{digest[:10]}-{slug}"
        s.out = str(cell.folder)
        if digest in seen:  # e.g. each and all on a corpus of one dataset: the same run, kept once
            continue
        seen[digest] = cell
        cells.append(cell)
    return cells


# ----------------------------------------------------------------------------------------------------------------------
# files

def _write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (a temporary file beside it, then a rename): a kill leaves the old or the new file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, allow_nan=False, default=str))
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        d = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return d if isinstance(d, dict) else None


def _eval_key(study: Study) -> dict[str, Any]:
    """What an evaluation's result depends on besides the run (a changed one is evaluated again)."""
    return {"split": study.eval["split"], "n_boot": int(study.eval["n_boot"])}


def _eval_datasets(study: Study) -> list[str]:
    have = corpus_datasets(study.corpus)
    if study.eval["datasets"] == "all":
        return have
    unknown = [d for d in study.eval["datasets"] if d not in have]
    if unknown:
        raise _err(study.source, "eval.datasets", f"unknown dataset(s) {', '.join(unknown)}; the corpus holds: "
                   f"{', '.join(have)}")
    return list(study.eval["datasets"])


def _best_exists(folder: Path) -> bool:
    from dfkit.train.checkpoint import checkpoint_paths

    return all(p.exists() for p in checkpoint_paths(folder / "best"))


def _cell_state(cell: Cell, key: dict[str, Any], datasets: list[str]) -> tuple[str, dict[str, Any] | None]:
    """``done`` (trained and evaluated), ``trained`` (evaluations missing), ``partial`` (a killed run: its ``last``
    checkpoint, no marker) or ``todo``; and the marker."""
    from dfkit.train.checkpoint import checkpoint_paths

    m = _read_json(cell.folder / CELL_MARKER)
    if m is not None and m.get("digest") == cell.digest and m.get("trained") and _best_exists(cell.folder):
        evals = m.get("evals") or {}
        ok = all((evals.get(d) or {}).get("key") == key and (
            (evals[d].get("error") is not None) or (cell.folder / evals[d]["dir"] / "eval.json").exists())
            for d in datasets)
        return ("done" if ok else "trained"), m
    extra = {"equal_size_over": cell.equal_size_over} if cell.equal_size_over else None
    if m is None and checkpoint_paths(cell.folder / "last")[1].exists() and \
            _saved_digest(cell.folder, extra) == cell.digest:
        return "partial", None  # a killed run of these very settings: continued from its last checkpoint
    return "todo", None


def _saved_digest(folder: Path, extra: dict[str, Any] | None = None) -> str | None:
    """The digest of the settings a run folder's ``config.json`` records (None when unreadable)."""
    cfg = _read_json(folder / "config.json")
    try:
        return cell_digest(TrainSettings.from_saved(cfg), extra) if cfg else None
    except DfkitError:
        return None


def _n_params(folder: Path) -> int | None:
    """Parameters of the run's model (from its best checkpoint's tensors, nothing is built)."""
    from dfkit.train.checkpoint import checkpoint_paths

    try:
        from safetensors import safe_open

        n = 0
        with safe_open(str(checkpoint_paths(folder / "best")[0]), "np") as f:
            for k in f.keys():
                if k.startswith("model.") and not k.endswith(("running_mean", "running_var", "num_batches_tracked")):
                    n += int(np.prod(f.get_slice(k).get_shape()))
        return n or None
    except Exception:  # noqa: BLE001 - a fact for the report, never a reason to fail a cell
        return None


# ----------------------------------------------------------------------------------------------------------------------
# running

def _rows_of(root: Path, ids: Sequence[str], cache: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The metadata the paired comparisons need, of the crops ``ids``."""
    from dfkit.corpus.reader import Corpus

    if "meta" not in cache:
        m = Corpus(root).metadata(columns=["sample_id", "dataset", "video_id", "label", "method_canonical"])
        cache["meta"] = m.drop(columns=["_file", "_row"]).assign(sample_id=lambda d: d["sample_id"].astype(str))
    m = cache["meta"]
    return m[m["sample_id"].isin(set(map(str, ids)))].reset_index(drop=True)


def _evaluate_cell(study: Study, cell: Cell, marker: dict[str, Any], datasets: list[str], key: dict[str, Any],
                   cache: dict, echo: Echo) -> None:
    """Evaluate the cell on each dataset not yet evaluated with ``key``; the marker records each."""
    import pyarrow.parquet as pq

    from dfkit.train.evaluation import eval_run

    evals = marker.setdefault("evals", {})
    for d in datasets:
        e = evals.get(d) or {}
        if e.get("key") == key and (e.get("error") is not None or (cell.folder / e["dir"] / "eval.json").exists()):
            continue
        sub = f"eval_{d}"
        try:
            rep = eval_run(cell.folder, corpus=study.corpus, datasets=[d], split=study.eval["split"],
                           out=cell.folder / sub, n_boot=int(study.eval["n_boot"]),
                           batch_size=int(study.eval["batch_size"]), workers=cell.settings.workers,
                           device=cell.settings.device, threads=cell.settings.threads, echo=lambda m: None)
        except DfkitError as err:  # e.g. a dataset without that split: an empty entry, not a failed study
            evals[d] = {"key": key, "dir": sub, "error": str(err)}
            echo(f"    eval on {d}: skipped ({err})")
        else:
            ids = pq.read_table(cell.folder / sub / "predictions.parquet", columns=["sample_id"]).column(
                "sample_id").to_pylist()
            _rows_of(study.corpus, ids, cache).to_parquet(cell.folder / sub / "rows.parquet", index=False)
            k = rep["overall"].get("known")
            ba = k["video"]["balanced_accuracy"]["value"] if k else None
            evals[d] = {"key": key, "dir": sub, "error": None}
            echo(f"    eval on {d}: video balanced accuracy " + ("n/a" if ba is None else f"{ba:.3f}")
                 + (f"; unseen methods: {', '.join(rep['overall']['unseen_methods'])}"
                    if rep["overall"].get("unseen_methods") else ""))
        _write_json(cell.folder / CELL_MARKER, marker)


def _train_cell(cell: Cell, state: str, echo: Echo) -> dict[str, Any]:
    """Train (or continue) the cell's run; its marker."""
    from dfkit.train.runner import train_run

    sub = (lambda m: echo("    " + m))
    s = cell.settings.copy()
    t0 = time.perf_counter()
    summary = None
    rows = _equal_size_rows(cell, echo) if cell.equal_size_over else {}
    (cell.folder / CELL_MARKER).unlink(missing_ok=True)  # a marker of other settings (a custom layout) is stale
    if state == "partial":
        try:
            summary = train_run(s, resume=True, echo=sub, **rows)
        except DfkitError as e:  # a checkpoint cut short by the kill: start the cell again
            echo(f"    cannot continue the killed run ({e}); training it again")
            s = cell.settings.copy()
    if summary is None:
        summary = train_run(s, overwrite=True, echo=sub, **rows)
    seconds = time.perf_counter() - t0
    hist = summary.get("history") or []
    batches = int(sum(int(h.get("batches") or 0) for h in hist))
    marker = {"digest": cell.digest, "trained": True, "axes": cell.axes, "labels": cell.labels,
              "settings": cell.settings.to_dict(), "class_names": summary["class_names"],
              "train_seconds": seconds, "train_batches": batches,
              # a continued run's time covers its last epochs only: no rate for the estimates
              "seconds_per_step": seconds / batches if batches and state != "partial" else None,
              "resumed": state == "partial",
              "n_params": _n_params(cell.folder), "best_epoch": summary.get("best_epoch"),
              "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "evals": {}}
    _write_json(cell.folder / CELL_MARKER, marker)
    return marker


def _selection(s: TrainSettings, min_quality: float | None = None, *, keep: bool = True):
    """The data selection a run of ``s`` trains on (with another training filter ``min_quality`` unless ``keep``)."""
    from dfkit.train.data import select_data

    extra = {"holdout_methods": s.holdout_methods} if getattr(s, "holdout_methods", None) else {}
    return select_data(s.corpus, task=s.task, datasets=s.datasets, methods=s.methods, compression=s.compression,
                       split=s.split, min_quality=s.min_quality if keep else min_quality, max_quality=s.max_quality,
                       drop_real=s.drop_real, drop_suspect=s.drop_suspect, seed=s.split_seed, **extra)


def _equal_size_rows(cell: Cell, echo: Echo) -> dict[str, Any]:
    """The study's ``equal_size``: the cell's training crops subsampled, by video and seeded by its seed
    (:func:`dfkit.train.data.subsample_by_video`), to the smallest count per class among the training filters of
    ``cell.equal_size_over`` (as ``dfkit experiment quality-sweep``), validation and test untouched. Returns
    ``train_run``'s ``selection`` and ``train_rows``."""
    from dfkit.train.data import subsample_by_video

    sel = _selection(cell.settings)
    names = sel.class_names
    per_class = {i: int((sel.train["target"] == i).sum()) for i in range(len(names))}
    for q in cell.equal_size_over or []:
        other = _selection(cell.settings, q, keep=False)
        if other.class_names != names:
            raise DfkitError(f"equal_size: training with min_quality {q} has the classes {', '.join(other.class_names)}"
                             f", with {cell.settings.min_quality} {', '.join(names)}: the sizes cannot be matched")
        counts = np.bincount(other.train["target"].to_numpy(), minlength=len(names))
        per_class = {i: min(n, int(counts[i])) for i, n in per_class.items()}
    rows = subsample_by_video(sel.train, per_class, seed=int(cell.settings.seed))
    echo(f"    equal size: {len(rows)} of {len(sel.train)} training crops ("
         + ", ".join(f"{names[i]} {n}" for i, n in per_class.items()) + ")")
    return {"selection": sel, "train_rows": rows}


def _index(study: Study, cells: list[Cell], states: dict[str, str], markers: dict[str, dict | None]) -> dict:
    return {"study": study.to_dict(), "corpus": str(study.corpus), "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "eval_key": _eval_key(study),
            "cells": [{"digest": c.digest, "folder": str(c.folder), "slug": c.slug, "axes": c.axes, "labels": c.labels,
                       "status": states[c.digest], "marker": CELL_MARKER if markers.get(c.digest) else None}
                      for c in cells]}


def _check_index(study: Study) -> None:
    """A study folder belongs to one corpus: a rerun on another one is refused before anything is written."""
    prev = _read_json(study.out / INDEX_FILE)
    if prev and prev.get("corpus") and Path(prev["corpus"]).resolve() != Path(study.corpus).resolve():
        raise DfkitError(f"{study.out / INDEX_FILE}: this study folder was run on the corpus {prev['corpus']}, not "
                         f"{study.corpus}: choose another out")


def run_study(study: Study, *, dry_run: bool = False, progress: bool = True, echo: Echo = print,
              layout: Callable[[Cell], Path] | None = None, measure: bool = True) -> dict[str, Any]:
    """Run the study (see the module docstring). Returns the index (``study.json``'s content) plus, with
    ``dry_run``, the ``estimate``."""
    from tqdm.auto import tqdm

    cells = expand(study, layout)
    datasets = _eval_datasets(study)
    key = _eval_key(study)
    _check_index(study)
    for c in cells:
        c.settings.progress = bool(progress) and c.settings.progress
    states: dict[str, str] = {}
    markers: dict[str, dict | None] = {}
    for c in cells:
        states[c.digest], markers[c.digest] = _cell_state(c, key, datasets)
    if dry_run:
        est = estimate(study, cells, states, markers, datasets, measure=measure, echo=echo)
        return {**_index(study, cells, states, markers), "estimate": est}
    study.out.mkdir(parents=True, exist_ok=True)
    _write_json(study.out / INDEX_FILE, _index(study, cells, states, markers))
    n_done = sum(v == "done" for v in states.values())
    echo(f"study {study.name}: {len(cells)} cells ({n_done} finished), evaluated on {', '.join(datasets)} "
         f"({study.eval['split']} split); folder {study.out}")
    cache: dict = {}
    bar = tqdm(total=len(cells), desc="study", unit="cell", disable=not progress, leave=False)
    try:
        for i, c in enumerate(cells, 1):
            st = states[c.digest]
            head = f"[{i}/{len(cells)}] {c.slug}"
            if st == "done":
                echo(f"{head}: skipped (finished: {c.folder})")
                bar.update(1)
                continue
            if st in ("todo", "partial"):
                echo(f"{head}: {'continuing the killed run' if st == 'partial' else 'training'} -> {c.folder}")
                markers[c.digest] = _train_cell(c, st, echo)
            else:
                echo(f"{head}: trained earlier, evaluating")
            _evaluate_cell(study, c, markers[c.digest], datasets, key, cache, echo)
            states[c.digest] = "done"
            _write_json(study.out / INDEX_FILE, _index(study, cells, states, markers))
            bar.update(1)
    finally:
        bar.close()
    echo(f"study {study.name}: {len(cells)} cells done; report: dfkit study report {study.out}")
    return _index(study, cells, states, markers)


# ----------------------------------------------------------------------------------------------------------------------
# cost estimate

def measure_speed(backbone: str, img_size: int, batch_size: int, *, device: str = "cpu", threads: int | None = None,
                  steps: int = 3, max_batch: int = 8, num_classes: int = 2) -> dict[str, Any]:
    """Training steps per second of ``backbone`` on this machine: a few forward + backward + AdamW steps on random
    images (no data loading), at ``min(batch_size, max_batch)`` images per step, scaled to ``batch_size``
    (linearly: a CPU's time per image hardly changes with the batch). Returns ``{"steps_per_s", "seconds_per_step",
    "n_params", "measured_batch", "device", "threads", "how"}``."""
    import logging

    import torch

    from dfkit.train.backbones import create_backbone

    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    lg = logging.getLogger("dfkit.train")
    level = lg.level
    lg.setLevel(logging.ERROR)
    try:
        torch.manual_seed(0)
        model = create_backbone(backbone, num_classes=num_classes, img_size=img_size).to(device).train()
        n_params = int(sum(p.numel() for p in model.parameters()))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        b = max(1, min(int(batch_size), int(max_batch)))
        x = torch.randn(b, 3, img_size, img_size, device=device)
        y = torch.randint(0, num_classes, (b,), device=device)

        def sync() -> None:
            if str(device).startswith("cuda"):
                torch.cuda.synchronize()

        t0 = 0.0
        for i in range(1 + steps):  # the first step warms up (allocations, kernels)
            if i == 1:
                sync()
                t0 = time.perf_counter()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sync()
        per = (time.perf_counter() - t0) / steps * (int(batch_size) / b)
    finally:
        lg.setLevel(level)
        torch.set_num_threads(old)
    return {"steps_per_s": 1.0 / per, "seconds_per_step": per, "n_params": n_params, "measured_batch": b,
            "batch_size": int(batch_size), "device": str(device), "threads": int(threads or old),
            "how": f"{steps} synthetic steps at batch {b}" + (f", scaled to {batch_size}" if b != batch_size else "")}


def _data_counts(cell: Cell, cache: dict) -> dict[str, int]:
    """Training / validation / test crops of the cell's selection (cached per data setting); with ``equal_size``
    the training crops are the smallest arm's."""

    def counts(q: float | None) -> dict[str, Any]:
        s = cell.settings
        k = json.dumps([s.task, s.datasets, s.methods, s.compression, s.split, q, s.max_quality, s.drop_real,
                        s.drop_suspect, s.split_seed, getattr(s, "holdout_methods", None)], default=str)
        if k not in cache:
            try:
                sel = _selection(s, q, keep=False)
                cache[k] = {"train": int(len(sel.train)), "val": int(len(sel.val)), "test": int(len(sel.test)),
                            "per_class": sel.train["class_name"].value_counts().to_dict(), "error": None}
            except DfkitError as e:
                cache[k] = {"train": 0, "val": 0, "test": 0, "per_class": {}, "error": str(e)}
        return cache[k]

    n = dict(counts(cell.settings.min_quality))
    if cell.equal_size_over and not n["error"]:  # the smallest arm's count, per class
        arms = [counts(q) for q in cell.equal_size_over]
        n["train"] = int(sum(min(a["per_class"].get(c, 0) for a in arms) for c in n["per_class"]))
    return n


def _eval_crops(cell: Cell, datasets: list[str], split: str, cache: dict) -> int:
    """Crops the cell's evaluations score: the ``split`` crops of every evaluated dataset."""
    from dfkit.train.data import select_data

    s = cell.settings
    k = ("eval", s.split, s.split_seed)
    if k not in cache:
        try:
            sel = select_data(s.corpus, task="binary", split=s.split, seed=s.split_seed)
            whole = pd.concat([sel.train, sel.val, sel.test])
            cache[k] = whole if split == "all" else whole[whole["split"] == split]
        except DfkitError:
            cache[k] = None
    df = cache[k]
    return 0 if df is None else int(df["dataset"].isin(datasets).sum())


def estimate(study: Study, cells: list[Cell], states: dict[str, str], markers: dict[str, dict | None],
             datasets: list[str], *, measure: bool = True, echo: Echo = print) -> dict[str, Any]:
    """The dry run: each cell's crops and estimated seconds, printed as a table; returns the estimate.

    A cell's cost is its training steps (``epochs`` (+ probe epochs) x training crops per epoch // batch) at the
    measured seconds per step, plus its forward passes (validation each epoch, the final evaluations) at a third of
    a training step's time per crop. Seconds per step come, in this order, from the finished cells of this study
    with the same backbone, image size and batch (their wall time per step, data loading and validation included),
    from ``OUT/speed.json`` (an earlier measurement on this machine), or from timing a few synthetic steps now
    (:func:`measure_speed`, compute only: real runs add the JPEG decoding)."""
    import torch

    from dfkit.train.data import default_workers
    from dfkit.train.runner import default_threads

    cache: dict = {}
    dev = "cuda" if torch.cuda.is_available() and cells and cells[0].settings.device in ("auto", "cuda") else "cpu"
    speeds = (_read_json(study.out / SPEED_FILE) or {}) if study.out.exists() else {}
    measured: dict[str, dict[str, Any]] = {}
    rows = []
    for c in cells:
        s = c.settings
        n = _data_counts(c, cache)
        n_eval = _eval_crops(c, datasets, study.eval["split"], cache)
        per_epoch = int(s.samples_per_epoch or n["train"])
        probe = s.contrastive and s.contrastive_mode == "probe"
        epochs = int(s.epochs) + (int(s.probe_epochs) if probe else 0)
        steps = epochs * (per_epoch // int(s.batch_size))
        sk = f"{s.backbone}|{s.img_size}|{s.batch_size}|{dev}"
        if sk not in measured:
            done = [m for m in markers.values() if m and m.get("seconds_per_step")
                    and m["settings"]["backbone"] == s.backbone and m["settings"]["img_size"] == s.img_size
                    and m["settings"]["batch_size"] == s.batch_size]
            if done:
                sps = float(np.median([m["seconds_per_step"] for m in done]))
                measured[sk] = {"seconds_per_step": sps, "steps_per_s": 1 / sps,
                                "how": f"measured on {len(done)} finished cell(s) of this study (wall time per step, "
                                       "data and validation included)", "source": "cells"}
            elif sk in speeds:
                measured[sk] = {**speeds[sk], "source": "cache",
                                "how": speeds[sk]["how"] + f" (cached in {study.out / SPEED_FILE})"}
            elif measure:
                workers = default_workers() if s.workers is None else int(s.workers)
                m = measure_speed(s.backbone, int(s.img_size), int(s.batch_size), device=dev,
                                  threads=s.threads or default_threads(workers))
                m["how"] += f", {m['threads']} thread(s) on {dev}, {time.strftime('%Y-%m-%d')}"
                speeds[sk] = m
                measured[sk] = {**m, "source": "measured now"}
            else:
                measured[sk] = {"seconds_per_step": None, "steps_per_s": None, "how": "not measured",
                                "source": None}
        sp = measured[sk]["seconds_per_step"]
        fwd = n["val"] * int(s.epochs) + n_eval
        secs = None if sp is None else steps * sp + fwd * sp / (3 * int(s.batch_size))
        if states[c.digest] == "done":
            secs_left = 0.0
        elif states[c.digest] == "trained":
            secs_left = None if sp is None else n_eval * sp / (3 * int(s.batch_size))
        else:
            secs_left = secs
        rows.append({"cell": c.slug, "digest": c.short, "folder": str(c.folder), "status": states[c.digest],
                     "train_crops": n["train"], "val_crops": n["val"], "test_crops": n["test"],
                     "eval_crops": n_eval, "steps": steps, "seconds": secs, "seconds_left": secs_left,
                     "error": n["error"], "speed": sk})
    if measure and speeds and study.out.exists():  # a dry run of a study not started yet creates nothing
        _write_json(study.out / SPEED_FILE, speeds)
    total = sum(r["seconds"] or 0 for r in rows)
    left = sum(r["seconds_left"] or 0 for r in rows)
    echo(f"study {study.name}: {len(cells)} cells; corpus {study.corpus}; folder {study.out}")
    w = max([len(r["cell"]) for r in rows] + [4])
    echo(f"{'cell':<{w}}  {'digest':<10}  {'status':<8} {'train':>7} {'val':>6} {'test':>6} {'eval':>7} "
         f"{'steps':>7} {'est.':>9}")
    for r in rows:
        echo(f"{r['cell']:<{w}}  {r['digest']:<10}  {r['status']:<8} {r['train_crops']:>7} {r['val_crops']:>6} "
             f"{r['test_crops']:>6} {r['eval_crops']:>7} {r['steps']:>7} {_hms(r['seconds_left']):>9}"
             + (f"  ({r['error']})" if r["error"] else ""))
    echo(f"estimated cost: {_hms(left)} left of {_hms(total)} in all")
    for sk, m in measured.items():
        sps = m.get("steps_per_s")
        echo(f"  {sk.replace('|', ', ')}: " + ("n/a" if sps is None else f"{sps:.3g} steps/s") + f" ({m['how']})")
    echo("  (estimate: training steps at the measured rate, plus validation and evaluation forward passes at a third "
         "of a training step per crop, summed over every evaluated dataset; synthetic steps time the model alone, "
         "without JPEG decoding or a cell's set-up, so they underestimate small models most; the rates of finished "
         "cells include everything)")
    return {"cells": rows, "speeds": measured, "seconds": total, "seconds_left": left}


def _hms(s: float | None) -> str:
    if s is None:
        return "n/a"
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


# ----------------------------------------------------------------------------------------------------------------------
# the report

def detector_probs(probs: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    """An attribution model read as a detector: ``N x 2`` probabilities ``[P(real), P(fake) = 1 - P(real)]``
    (the binary model's classes). Raises :class:`DfkitError` when the model has no ``real`` class."""
    from dfkit.train.data import REAL

    names = [str(n) for n in class_names]
    if REAL not in names:
        raise DfkitError("the model has no real class: it cannot be read as a detector")
    p = np.asarray(probs, dtype=np.float64)
    r = p[:, names.index(REAL)]
    return np.stack([r, 1.0 - r], axis=1)


def _load_cells(study_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    idx = _read_json(study_dir / INDEX_FILE)
    if idx is None:
        raise DfkitError(f"{study_dir} is not a study folder (no readable {INDEX_FILE}: run `dfkit study run` first)")
    cells = []
    for c in idx["cells"]:
        folder = Path(c["folder"])
        if not folder.exists() and (study_dir / CELLS_DIR / folder.name).exists():  # the study folder was moved
            c = {**c, "folder": str(study_dir / CELLS_DIR / folder.name)}
        m = _read_json(Path(c["folder"]) / CELL_MARKER)
        if m is None or not m.get("trained") or m.get("digest") != c["digest"]:
            continue
        cells.append({**c, "marker": m})
    return idx, cells


def _eval_of(cell: dict[str, Any], d: str) -> dict[str, Any] | None:
    e = (cell["marker"].get("evals") or {}).get(d)
    if not e or e.get("error") is not None:
        return None
    return _read_json(Path(cell["folder"]) / e["dir"] / "eval.json")


def _preds_of(cell: dict[str, Any], d: str, cache: dict) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """(rows, predictions) of the cell's evaluation on ``d``."""
    from dfkit.train.evaluation import load_predictions

    e = (cell["marker"].get("evals") or {}).get(d)
    if not e or e.get("error") is not None:
        return None
    k = (cell["folder"], d)
    if k not in cache:
        folder = Path(cell["folder"]) / e["dir"]
        cache[k] = (pd.read_parquet(folder / "rows.parquet"), load_predictions(folder / "predictions.parquet"))
    return cache[k]


def _stat_of(res: dict[str, Any] | None, level: str, metric: str) -> dict[str, Any]:
    if res is None or res.get("known") is None or metric not in res["known"][level]:
        return {"value": None, "ci": None}
    return res["known"][level][metric]


def _metrics_for(task: str) -> list[str]:
    """The paper's metrics: AUC, EER (binary only) and balanced accuracy."""
    return ["auc", "eer", "balanced_accuracy"] if task == "binary" else ["auc", "balanced_accuracy"]


def _groups(cells: list[dict[str, Any]], vary: str) -> dict[str, list[dict[str, Any]]]:
    """Cells grouped by every axis but ``vary`` and ``seed`` (a JSON key of the fixed values)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for c in cells:
        fixed = {a: c["labels"][a] for a in c["labels"] if a not in (vary, "seed")}
        out.setdefault(json.dumps(fixed, sort_keys=True), []).append(c)
    return out


def question_pairs(question: str, arms: dict[str, list[dict[str, Any]]]) -> list[tuple[str, str]]:
    """The ``(a, b)`` pairs (difference ``a - b``) a question compares among its arms (labels -> cells)."""
    names = list(arms)
    if question == "binary_vs_attribution":
        return [("attribution", "binary")] if {"attribution", "binary"} <= set(names) else []
    if question == "supcon":
        return [(a, "none") for a in names if a != "none"] if "none" in names else []
    if question == "quality":
        ref = "all crops" if "all crops" in names else (min(names, key=lambda n: float(n[3:])) if names else None)
        return [(a, ref) for a in names if a != ref] if ref else []
    if question == "backbone_size":
        size = {a: min((c["marker"].get("n_params") or math.inf) for c in arms[a]) for a in names}
        small = min(names, key=lambda a: size[a]) if names else None
        return [(a, small) for a in sorted(names, key=lambda a: size[a]) if a != small]
    raise ValueError(question)


_VARY = {"binary_vs_attribution": "task", "backbone_size": "backbone", "supcon": "contrastive",
         "quality": "min_quality"}
_ARM_WORDS = {"binary_vs_attribution": {"attribution": "the attribution model (as a detector)",
                                        "binary": "the binary model"}}


def _paired_question(question: str, cells: list[dict[str, Any]], datasets: list[str], rep: dict[str, Any],
                     cache: dict, notes: list[str]) -> list[dict[str, Any]]:
    """The question's table: per group of cells differing only in its axis, per evaluated dataset, per metric,
    each arm's value (mean over seeds, CI) and the paired differences."""
    from dfkit.train.experiments import paired_differences

    vary = _VARY[question]
    out = []
    for gkey, group in _groups(cells, vary).items():
        arms: dict[str, list[dict[str, Any]]] = {}
        for c in group:
            arms.setdefault(c["labels"][vary], []).append(c)
        if len(arms) < 2:
            continue
        pairs = question_pairs(question, arms)
        if not pairs:
            notes.append(f"{question}: no comparison for {gkey} (arms {', '.join(arms)})")
            continue
        seeds = sorted(set.intersection(*[{c["axes"]["seed"] for c in v} for v in arms.values()]))
        if not seeds:
            notes.append(f"{question}: the arms of {gkey} share no seed")
            continue
        task = json.loads(gkey).get("task")
        for d in datasets:
            runs: dict[str, dict[int, pd.DataFrame]] = {}
            test = None
            names = None
            problem = None
            for a, cs in arms.items():
                runs[a] = {}
                for c in cs:
                    if c["axes"]["seed"] not in seeds:
                        continue
                    got = _preds_of(c, d, cache)
                    if got is None:
                        problem = f"cell {c['slug']} has no evaluation on {d}"
                        break
                    rows, pr = got
                    cn = list(pr.attrs.get("class_names") or c["marker"]["class_names"])
                    if question == "binary_vs_attribution":
                        if cn != ["real", "fake"]:
                            try:
                                p = detector_probs(np.asarray(pr["probs"].tolist()), cn)
                            except DfkitError as e:
                                problem = f"cell {c['slug']}: {e}"
                                break
                            pr = pd.DataFrame({"sample_id": pr["sample_id"], "probs": list(p)})
                        cn = ["real", "fake"]
                    if names is None:
                        names = cn
                    elif cn != names:
                        problem = (f"the arms have different classes ({', '.join(names)} vs {', '.join(cn)}): "
                                   "no paired comparison")
                        break
                    test = rows if test is None else test
                    runs[a][c["axes"]["seed"]] = pr
                if problem:
                    break
            if problem:
                notes.append(f"{question}, {gkey}, on {d}: {problem}")
                continue
            metrics = _metrics_for("binary" if question == "binary_vs_attribution" else (task or "attribution"))
            for metric in metrics:
                words = _ARM_WORDS.get(question, {})
                better = {p: (words.get(p[0], p[0]), words.get(p[1], p[1])) for p in pairs}
                try:
                    res = paired_differences(test, runs, names, pairs, metric=metric, level=rep["level"],
                                             n_boot=int(rep["n_boot"]), better=better)
                except DfkitError as e:
                    notes.append(f"{question}, {gkey}, on {d}, {metric}: {e}")
                    continue
                out.append({"group": json.loads(gkey), "evaluated_on": d, "metric": metric, "level": rep["level"],
                            "seeds": seeds, "n_videos": res["n_videos"], "n_frames": res["n_frames"],
                            "arms": {a: {"value": v["value"], "ci": v["ci"], "per_seed": v["per_seed"]}
                                     for a, v in res["arms"].items()},
                            "pairs": [{k: e[k] for k in ("a", "b", "label", "value", "ci", "excludes_zero", "verdict",
                                                         "sentence", "per_seed")} for e in res["pairs"]]})
    return out


def _cross_question(cells: list[dict[str, Any]], datasets: list[str], rep: dict[str, Any], cache: dict,
                    notes: list[str]) -> list[dict[str, Any]]:
    """Per group of cells differing only in their training datasets: the matrix trained on x evaluated on, each
    entry the mean over seeds of the metric with its CI over videos and seeds."""
    from dfkit.train.experiments import paired_differences

    metric, level = rep["metric"], rep["level"]
    out = []
    for gkey, group in _groups(cells, "train_datasets").items():
        rows: dict[str, list[dict[str, Any]]] = {}
        for c in group:
            rows.setdefault(c["labels"]["train_datasets"], []).append(c)
        matrix = []
        for label, cs in rows.items():
            line = []
            for d in datasets:
                runs: dict[int, pd.DataFrame] = {}
                test = names = None
                for c in cs:
                    got = _preds_of(c, d, cache)
                    if got is None:
                        continue
                    test, pr = got
                    names = list(pr.attrs.get("class_names") or c["marker"]["class_names"])
                    runs[c["axes"]["seed"]] = pr
                entry: dict[str, Any] = {"value": None, "ci": None, "seeds": sorted(runs), "unseen_methods": []}
                if runs:
                    ev = _eval_of(cs[0], d)
                    entry["unseen_methods"] = (ev or {}).get("overall", {}).get("unseen_methods", [])
                    try:
                        res = paired_differences(test, {label: runs}, names, [], metric=metric, level=level,
                                                 n_boot=int(rep["n_boot"]))
                        entry.update(value=res["arms"][label]["value"], ci=res["arms"][label]["ci"],
                                     n_videos=res["n_videos"])
                    except DfkitError as e:  # e.g. no crop of a class the model knows
                        entry["error"] = str(e)
                line.append(entry)
            matrix.append(line)
        out.append({"group": json.loads(gkey), "rows": list(rows), "columns": datasets, "metric": metric,
                    "level": level, "matrix": matrix})
    if not out:
        notes.append("cross_dataset: no cells")
    return out


def _cell_table(cells: list[dict[str, Any]], datasets: list[str], level: str) -> list[dict[str, Any]]:
    out = []
    for c in cells:
        for d in datasets:
            ev = _eval_of(c, d)
            res = (ev or {}).get("overall")
            r = {"cell": c["slug"], "digest": c["digest"][:10], "folder": c["folder"], **c["labels"],
                 "evaluated_on": d, "n_params": c["marker"].get("n_params"),
                 "train_seconds": c["marker"].get("train_seconds")}
            for m in ("auc", "eer", "balanced_accuracy"):
                r[m] = _stat_of(res, level, m)
            r["unseen_methods"] = (res or {}).get("unseen_methods", [])
            out.append(r)
    return out


def heatmap(ax, values: np.ndarray, cis: list[list[Any]], rows: Sequence[str], cols: Sequence[str], title: str,
            vmin: float = 0.0, vmax: float = 1.0):
    """A trained-on x evaluated-on heatmap with each value (and CI) written in its square; returns the image."""
    im = ax.imshow(values, vmin=vmin, vmax=vmax, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(cols)), labels=list(cols), rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), labels=list(rows))
    ax.set_xlabel("evaluated on")
    ax.set_ylabel("trained on")
    ax.set_title(title, fontsize=9)
    for i in range(len(rows)):
        for j in range(len(cols)):
            v = values[i, j]
            txt = "n/a" if not np.isfinite(v) else f"{v:.2f}"
            if cis[i][j]:
                txt += f"\n[{cis[i][j][0]:.2f}, {cis[i][j][1]:.2f}]"
            ax.text(j, i, txt, ha="center", va="center", fontsize=7,
                    color="black" if np.isfinite(v) and v > 0.6 else "white")
    return im


def _group_text(g: dict[str, Any], varied: set[str]) -> str:
    """A group of cells as the tables name it: its values of the axes that vary in the study."""
    shown = {k: v for k, v in g.items() if k in varied}
    return ", ".join(f"{k} {v}" for k, v in shown.items()) or "(all cells)"


def _cross_png(entries: list[dict[str, Any]], path: Path) -> None:
    """Every cross-dataset matrix of the report as one figure (a heatmap per group of cells)."""
    from matplotlib.figure import Figure

    n = len(entries)
    ncol = min(n, 3)
    nrow = -(-n // ncol)
    w = max(4.0, 1.1 * max(len(e["columns"]) for e in entries) + 3)
    h = max(3.0, 0.8 * max(len(e["rows"]) for e in entries) + 2)
    fig = Figure(figsize=(w * ncol, h * nrow))
    axes = fig.subplots(nrow, ncol, squeeze=False).ravel()
    for ax, e in zip(axes, entries):
        m = np.array([[np.nan if x["value"] is None else x["value"] for x in row] for row in e["matrix"]], float)
        cis = [[x["ci"] for x in row] for row in e["matrix"]]
        im = heatmap(ax, m, cis, e["rows"], e["columns"],
                     f"{e['group_label']}\n{e['level']} {e['metric'].replace('_', ' ')}")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    for ax in axes[n:]:
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _paired_png(question: str, table: list[dict[str, Any]], path: Path) -> bool:
    from matplotlib.figure import Figure

    items = [(f"{e['label']} | {e_row['evaluated_on']} | {e_row['metric']}\n{e_row['group_label']}", e)
             for e_row in table for e in e_row["pairs"] if e["value"] is not None]
    if not items:
        return False
    fig = Figure(figsize=(8, 0.55 * len(items) + 1.4))
    ax = fig.subplots()
    for i, (_, e) in enumerate(items):
        err = [[e["value"] - e["ci"][0]], [e["ci"][1] - e["value"]]] if e["ci"] else None
        ax.errorbar([e["value"]], [i], xerr=err, fmt="o", color="C2" if e["excludes_zero"] else "C0", capsize=3)
    ax.axvline(0, color="k", lw=1)
    ax.set_yticks(range(len(items)), labels=[t for t, _ in items], fontsize=6)
    ax.invert_yaxis()
    ax.set_xlabel("paired difference (95% CI over test videos and seeds)")
    ax.set_title(question.replace("_", " "), fontsize=9)
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return True


_TITLES = {"cells": "Every cell",
           "binary_vs_attribution": "Binary vs attribution (the attribution model as a detector, "
           "P(fake) = 1 - P(real), on the same test videos)", "backbone_size": "Larger vs smaller backbone",
           "supcon": "SupCon vs no contrastive loss", "quality": "Quality arms (training filter) vs all crops",
           "cross_dataset": "Cross-dataset (rows: trained on, columns: evaluated on)"}
_NOT_APPLICABLE = {"binary_vs_attribution": "the study has no task axis with both binary and attribution",
                   "backbone_size": "the study has one backbone", "supcon": "the study has no contrastive axis",
                   "quality": "the study has no min_quality axis"}


def _fmt(st: dict[str, Any] | None, signed: bool = False) -> str:
    if not st or st.get("value") is None:
        return "n/a"
    f = "{:+.3f}" if signed else "{:.3f}"
    s = f.format(st["value"])
    if st.get("ci"):
        s += " [" + f.format(st["ci"][0]) + ", " + f.format(st["ci"][1]) + "]"
    return s


def _markdown(report: dict[str, Any]) -> str:
    lv = report["level"]
    lines = [f"# Study {report['name']}", "", f"{report['n_cells']} cells, "
             f"evaluated on {', '.join(report['datasets'])}; {lv} level, 95% bootstrap CIs over test videos (and "
             "seeds, resampled together; paired: one draw for both arms).", ""]
    t = report["tables"]
    lines += [f"## {_TITLES['cells']}", "", "| cell | evaluated on | AUC | EER | balanced accuracy | unseen |",
              "|---|---|---|---|---|---|"]
    for r in t["cells"]:
        lines.append(f"| {r['cell']} | {r['evaluated_on']} | {_fmt(r['auc'])} | {_fmt(r['eer'])} | "
                     f"{_fmt(r['balanced_accuracy'])} | {', '.join(r['unseen_methods'])} |")
    for q in report["questions"]:
        if q == "cross_dataset":
            continue
        lines += ["", f"## {_TITLES[q]}", ""]
        if not t[q]:
            lines.append(f"_{report['not_applicable'].get(q, 'no comparison')}._")
            continue
        lines += ["| cells (the other axes) | evaluated on | metric | arms (mean over seeds) | difference | 95% CI | verdict |",
                  "|---|---|---|---|---|---|---|"]
        for row in t[q]:
            arms = "; ".join(f"{a} {_fmt(v)}" for a, v in row["arms"].items())
            for e in row["pairs"]:
                ci = f"[{e['ci'][0]:+.3f}, {e['ci'][1]:+.3f}]" if e["ci"] else "n/a"
                v = "n/a" if e["value"] is None else f"{e['value']:+.3f}"
                lines.append(f"| {row['group_label']} | {row['evaluated_on']} | {row['metric']} | {arms} | "
                             f"{e['label']}: {v} | {ci} | {e['verdict']} |")
    if "cross_dataset" in report["questions"]:
        lines += ["", f"## {_TITLES['cross_dataset']}", ""]
        for e in t["cross_dataset"]:
            lines += [f"{e['group_label']} ({e['level']} {e['metric'].replace('_', ' ')}):", "",
                      "| trained on \\ evaluated on | " + " | ".join(e["columns"]) + " |",
                      "|---|" + "---|" * len(e["columns"])]
            for r, row in zip(e["rows"], e["matrix"]):
                lines.append(f"| {r} | " + " | ".join(_fmt(x) for x in row) + " |")
            lines.append("")
        if report.get("cross_png"):
            lines += [f"![cross-dataset heatmaps]({report['cross_png']})", ""]
    for n in report["notes"]:
        lines.append(f"\n_Note: {n}._")
    return "\n".join(lines) + "\n"


def _html(report: dict[str, Any], md: str, out: Path) -> str:
    """A self-contained page: the tables (from the markdown, escaped) and the plots embedded as base64."""
    import base64

    esc = html.escape
    body = []
    table: list[str] = []

    def flush() -> None:
        if table:
            cells = [[x.strip() for x in r.strip().strip("|").split("|")] for r in table]
            head, rows = cells[0], [r for r in cells[2:]]
            body.append("<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>"
                        + "".join("<tr>" + "".join(f"<td>{esc(x)}</td>" for x in r) + "</tr>" for r in rows)
                        + "</table>")
            table.clear()

    for line in md.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush()
        if line.startswith("# "):
            body.append(f"<h1>{esc(line[2:])}</h1>")
        elif line.startswith("## "):
            body.append(f"<h2>{esc(line[3:])}</h2>")
        elif line.startswith("!["):
            name = line[line.index("(") + 1:-1]
            p = out / name
            if p.exists():
                b64 = base64.b64encode(p.read_bytes()).decode()
                body.append(f"<img alt='{esc(name)}' src='data:image/png;base64,{b64}'>")
        elif line.strip():
            body.append(f"<p>{esc(line.strip('_'))}</p>")
    flush()
    for q, png in report.get("paired_png", {}).items():
        p = out / png
        if p.exists():
            body.append(f"<h2>{esc(_TITLES[q])}: paired differences</h2><img alt='{esc(png)}' "
                        f"src='data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}'>")
    style = ("<style>body{font-family:sans-serif;max-width:1400px}table{border-collapse:collapse;margin:8px 0;"
             "font-size:12px}td,th{border:1px solid #ccc;padding:3px 6px}img{max-width:100%}</style>")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>dfkit study {esc(report['name'])}</title>"
            f"{style}</head><body>" + "\n".join(body) + "</body></html>\n")


def report_study(study_dir: str | Path, out: str | Path | None = None, *, echo: Echo = print) -> dict[str, Any]:
    """The study's report (see the module docstring), written to ``out`` (default ``STUDY_DIR/report``): returns
    ``report.json``'s content plus ``out_dir``.

    1. read ``study.json`` and each finished cell's marker (cells not finished yet are left out, and said so);
    2. the table of every cell x evaluated dataset (AUC, EER, balanced accuracy with CIs, from ``eval.json``);
    3. each question of the study: the paired tables (:func:`_paired_question`) and the cross-dataset matrices;
    4. write report.json, report.md, the PNGs and report.html."""
    study_dir = Path(study_dir).expanduser()
    idx, cells = _load_cells(study_dir)
    st = idx["study"]
    out_dir = Path(out).expanduser() if out else study_dir / "report"
    rep = st.get("report") or {"metric": "balanced_accuracy", "level": "video", "n_boot": 1000}
    questions = list(st.get("questions") or QUESTIONS)
    datasets = sorted({d for c in cells for d in (c["marker"].get("evals") or {})})
    notes: list[str] = []
    missing = len(idx["cells"]) - len(cells)
    if missing:
        notes.append(f"{missing} of {len(idx['cells'])} cells are not trained yet and are left out (rerun `dfkit "
                     "study run`)")
    if not cells:
        raise DfkitError(f"{study_dir}: no finished cell yet (run `dfkit study run` first)")
    cache: dict = {}
    varied = {a for a in AXES if len({c["labels"].get(a) for c in cells}) > 1}
    tables: dict[str, Any] = {"cells": _cell_table(cells, datasets, rep["level"])}
    not_applicable = {}
    for q in questions:
        if q == "cross_dataset":
            tables[q] = _cross_question(cells, datasets, rep, cache, notes)
            continue
        vary = _VARY[q]
        if len({c["labels"][vary] for c in cells}) < 2:
            tables[q] = []
            not_applicable[q] = _NOT_APPLICABLE[q]
            continue
        tables[q] = _paired_question(q, cells, datasets, rep, cache, notes)
        if not tables[q]:
            not_applicable[q] = "no pair of finished cells differs in this axis only"
    for q in questions:
        for row in tables[q]:
            row["group_label"] = _group_text(row["group"], varied)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {"name": st.get("name", study_dir.name), "study_dir": str(study_dir), "corpus": idx.get("corpus"),
              "n_cells": len(cells), "datasets": datasets, "metric": rep["metric"], "level": rep["level"],
              "n_boot": rep["n_boot"], "questions": questions, "tables": tables, "not_applicable": not_applicable,
              "notes": notes, "paired_png": {}}
    if tables.get("cross_dataset"):
        _cross_png(tables["cross_dataset"], out_dir / "cross_dataset.png")
        report["cross_png"] = "cross_dataset.png"
    for q in questions:
        if q != "cross_dataset" and tables.get(q) and _paired_png(q, tables[q], out_dir / f"paired_{q}.png"):
            report["paired_png"][q] = f"paired_{q}.png"
    md = _markdown(report)
    (out_dir / "report.md").write_text(md)
    (out_dir / "report.html").write_text(_html(report, md, out_dir))
    _write_json(out_dir / "report.json", report)
    for q in questions:
        if q == "cross_dataset":
            continue
        for row in tables[q]:
            for e in row["pairs"]:
                echo(f"{q} [{row['group_label']}] on {row['evaluated_on']}, {row['metric']}: {e['sentence']}")
    echo(f"study report: {out_dir / 'report.html'} (+ report.md, report.json"
         + (", cross_dataset.png" if report.get("cross_png") else "")
         + (", " + ", ".join(report["paired_png"].values()) if report["paired_png"] else "") + ")")
    report["out_dir"] = str(out_dir)
    return report
