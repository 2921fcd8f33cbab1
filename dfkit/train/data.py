"""Corpus -> training data: the selection, the split, the classes, and lazily decoded crop batches.

>>> sel = select_data(corpus_root, datasets=["ffpp"], split="official", min_quality=0.7, task="attribution")
>>> sel.class_names                    # ["real", "deepfakes", "face2face", ...]
>>> train_loader, val_loader = make_loaders(sel, img_size=224, batch_size=32, workers=4, mean=m, std=s)

Selection (:func:`select_data`):

- ``datasets`` / ``methods`` / ``compression`` restrict the corpus (``Corpus.select``);
- ``split``: ``official`` is the corpus ``split`` column (the dataset's own split); ``identity`` is an
  identity-disjoint re-split: the corpus' stored scheme ``identity`` when ``dfkit splits resplit`` made one, else
  :func:`dfkit.splits.identity_split` computed here over **every video of the corpus** (unfiltered, so the split does
  not depend on ``--datasets`` or ``--min-quality``) and saved in the run folder. Any other name is a scheme stored in
  the corpus. In every mode a video is one unit: its frames never span splits (checked);
- ``min_quality`` / ``max_quality`` filter the **training** split only (the ``quality`` column of ``dfkit
  quality``); validation and test stay unfiltered, so models trained at different thresholds are compared on the
  same data;
- ``task``: ``binary`` (classes ``real``, ``fake``) or ``attribution`` (``real`` + every canonical method present in
  the training data, sorted; ``drop_real`` leaves ``real`` out). Validation rows of other classes are dropped;
- ``holdout_methods`` (leave-methods-out; names as ``methods``) removes those methods' fakes from the training and
  validation splits; the test split keeps them, so eval scores them as unseen (:mod:`dfkit.train.openset`). A name
  the selection does not have, one also in ``methods``, or a hold-out leaving < 2 classes is refused;
- ``drop_suspect`` leaves the suspect crops (:func:`dfkit.corpus.schema.suspect_mask`: fakes on which ``dfkit
  quality`` saw (almost) no change against the paired original) out of the training and validation splits; the
  test split is never filtered. :attr:`DataSelection.suspect` says how many were dropped per split and class (with
  it off: how many suspect crops the selection keeps); a corpus without the suspect column is refused
  (:func:`require_suspect_column`).

Reading (:class:`CropDataset`): metadata stays in memory, crop bytes are read from the Parquet shards on demand
(:class:`~dfkit.corpus.reader.CropReader`, one small row group at a time, cached) and decoded in the DataLoader
workers. ``__getitems__`` builds a whole batch at once: it reads each row group once, decodes with OpenCV, fits
each crop to ``img_size`` (``resize`` the whole crop, or take its ``center`` at the stored resolution) and returns one
``uint8`` tensor ``B x 3 x S x S``; :class:`BatchLoader` moves it to the target device, converts it to float and
normalises it with the backbone's mean/std there (4x less data between processes and onto the GPU than float32),
optionally in channels-last memory format. Batches are ``{"image", "label", "video_key", "index"}``, what
:func:`dfkit.train.loop.train` expects (``video_key`` = ``dataset/video_id``).

Training batches come from a :class:`~dfkit.train.sampler.ClassBalancedSampler` (seeded per epoch; sharded over the
processes of a ``torchrun`` job) and, unless
turned off, the seeded augmentations of :mod:`dfkit.train.augment` (one generator per ``(seed, epoch, index)``).
Where they run is ``augment_on`` (:data:`AUGMENT_ON`): ``item`` applies all of them per crop at the stored size,
before the resize (the former path); ``worker`` applies blur and JPEG per crop and the batch ops (flip, crop jitter,
colour jitter, channel gain: :func:`dfkit.train.augment.apply_batch`) to the fitted ``uint8`` batch in the loader
worker; ``device`` hands the batch ops' parameters over with the ``uint8`` batch (``"aug"``) and
:class:`BatchLoader` applies them on the training device, after the move and before normalising.
:func:`make_loaders` picks ``device`` for a GPU and ``item`` for the CPU: there, measured on 2 cores (one loader
worker, demo crops of 128 px), the per-item numpy path at the stored size gave 850-900 crops/s against 380-760 for
the batch ops in the worker (which run at ``img_size``, after the resize: 3x the pixels at 224 px), and the batch ops
in the training process would take cores from the model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from dfkit.corpus.codec import decode_crop
from dfkit.corpus.reader import apply_split as _corpus_apply_split
from dfkit.corpus.schema import OFFICIAL_SCHEME, SUSPECT_COLUMN, has_split_scheme, suspect_mask
from dfkit.errors import DfkitError

TASKS = ("binary", "attribution")
REAL = "real"
FAKE = "fake"
SPLITS = ("train", "val", "test")

__all__ = [
    "TASKS",
    "AUGMENT_ON",
    "DataSelection",
    "select_data",
    "split_assignment",
    "apply_split",
    "class_names_for",
    "target_names",
    "encode_targets",
    "CropDataset",
    "BatchLoader",
    "collate",
    "make_loaders",
    "make_eval_loader",
    "subsample_by_video",
    "fit_crop",
    "augment_config",
    "parse_list",
    "default_workers",
    "require_suspect_column",
    "suspect_counts",
    "resolve_holdout",
]


def parse_list(x: str | Iterable[str] | None) -> list[str] | None:
    """``"a,b"`` / ``["a", "b"]`` / ``None`` -> a list without empty entries (``None`` stays ``None``)."""
    if x is None:
        return None
    if isinstance(x, str):
        items = [v.strip() for v in x.split(",")]
    else:
        items = [str(v).strip() for v in x]
    items = [v for v in items if v]
    return items or None


def default_workers(cores: int | None = None) -> int:
    """DataLoader workers by default: of ``cores`` (default: the machine's), one stays with the training process
    (1 on a 2-core machine, at most 8)."""
    return max(1, min(8, (cores or os.cpu_count() or 1) - 1))


# ----------------------------------------------------------------------------------------------------------------------
# splits

def split_assignment(root: str | Path, mode: str, seed: int = 0) -> pd.DataFrame | None:
    """The per-video split table ``dataset, video_id, split`` for ``mode``, or ``None`` when the mode is read by the
    corpus itself (``official``, or a scheme stored in ``<corpus>/splits/``).

    ``identity`` without a stored scheme: :func:`dfkit.splits.identity_split` over every video of the corpus."""
    root = Path(root)
    if mode == OFFICIAL_SCHEME or has_split_scheme(root, mode):
        return None
    if mode != "identity":
        raise DfkitError(f"unknown split {mode!r}: use official or identity (or a scheme made by "
                         f"`dfkit splits resplit --name NAME`)")
    from dfkit.corpus.reader import Corpus
    from dfkit.splits import identity_split

    videos = Corpus(root).videos()
    if videos.empty:
        raise DfkitError(f"{root}: the corpus holds no video")
    assign = identity_split(videos, seed=seed)
    return pd.DataFrame([{"dataset": d, "video_id": v, "split": s} for (d, v), s in assign.items()])


#: one way to apply a split: the corpus's (a stored scheme is applied by ``Corpus.select(split_scheme=...)``; a
#: computed assignment by this, which also checks that no video's frames span two splits)
apply_split = _corpus_apply_split


# ----------------------------------------------------------------------------------------------------------------------
# classes

def target_names(task: str, meta: pd.DataFrame) -> pd.Series:
    """The class name of every row: ``real``/``fake`` (binary) or ``real``/canonical method (attribution)."""
    is_real = meta["label"].to_numpy() == REAL
    if task == "binary":
        return pd.Series(np.where(is_real, REAL, FAKE), index=meta.index)
    return pd.Series(np.where(is_real, REAL, meta["method_canonical"].astype(str).to_numpy()), index=meta.index)


def class_names_for(task: str, train_meta: pd.DataFrame, drop_real: bool = False) -> list[str]:
    if task == "binary":
        if drop_real:
            raise DfkitError("--drop-real applies to --task attribution only (binary needs the real class)")
        return [REAL, FAKE]
    methods = sorted(set(target_names(task, train_meta)) - {REAL})
    return ([] if drop_real else [REAL]) + methods


def encode_targets(names: pd.Series | Sequence[str], class_names: Sequence[str]) -> np.ndarray:
    """Class ids for class names; ``-1`` for names that are not classes of the model."""
    index = {n: i for i, n in enumerate(class_names)}
    return np.asarray([index.get(str(n), -1) for n in names], dtype=np.int64)


# ----------------------------------------------------------------------------------------------------------------------
# the selection

@dataclass
class DataSelection:
    """What a run trains and validates on. ``train``/``val``/``test`` are metadata frames (``_file``/``_row`` locate
    the crops) with ``target`` (class id, -1 = not a class of the model) and ``video_key`` columns."""

    root: Path
    files: list[Path]
    task: str
    class_names: list[str]
    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame
    split: str
    assignment: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)
    #: the ``--drop-suspect`` record (``data.json``): ``{"enabled": True, "dropped": {"train": C, "val": C}}``, or
    #: ``{"enabled": False}`` plus ``"kept"`` (the same counts) when the corpus has the suspect column; ``C`` is
    #: :func:`suspect_counts`'s ``{"frames", "videos", "per_class": {class: {"frames", "videos"}}}``
    suspect: dict[str, Any] = field(default_factory=lambda: {"enabled": False})
    #: the canonical methods held out of training and validation (``--holdout-methods``); in ``test`` they are unseen
    holdout_methods: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, Any]:
        """Frames and videos per split and class (JSON)."""
        out: dict[str, Any] = {}
        for name, df in (("train", self.train), ("val", self.val), ("test", self.test)):
            per = {}
            for c, g in df.groupby("class_name") if len(df) else []:
                per[str(c)] = {"frames": int(len(g)), "videos": int(g["video_key"].nunique())}
            out[name] = {"frames": int(len(df)), "videos": int(df["video_key"].nunique()) if len(df) else 0,
                         "per_class": per}
        return out


def corpus_view(root: Path, split: str, datasets: Sequence[str] | None):
    """The corpus under ``split``'s scheme -- a re-split stored in the corpus (``dfkit splits resplit``) when
    ``split`` names one, else the official split (the caller then applies a computed assignment) -- with its
    metadata, after checking that ``datasets`` exist. Returns ``(view, metadata, scheme)``."""
    from dfkit.corpus.reader import Corpus

    scheme = split if has_split_scheme(root, split) else OFFICIAL_SCHEME
    view = Corpus(root).select(split_scheme=scheme)
    meta = view.metadata()
    if meta.empty:
        raise DfkitError(f"{root}: the corpus holds no crops (run `dfkit ingest` first)")
    known = sorted(meta["dataset"].unique())
    unknown = [d for d in datasets or [] if d not in known]
    if unknown:
        raise DfkitError(f"unknown dataset(s) {', '.join(unknown)} in {root}; it holds: {', '.join(known)}")
    return view, meta, scheme


def require_suspect_column(meta: pd.DataFrame, option: str = "--drop-suspect") -> None:
    """One line (exit 2) when the corpus has no suspect column: ``dfkit quality`` writes it."""
    if SUSPECT_COLUMN not in meta.columns:
        raise DfkitError(f"{option}: this corpus has no {SUSPECT_COLUMN} column yet: run `dfkit quality` first "
                         "(it marks the fake crops on which the comparison with the original found no change)")


def suspect_counts(df: pd.DataFrame, task: str) -> dict[str, Any]:
    """Frames and videos of ``df``, in all and per class (``task``'s class names), as JSON."""
    if df.empty:
        return {"frames": 0, "videos": 0, "per_class": {}}
    keys = (df["dataset"].astype(str) + "/" + df["video_id"].astype(str)).to_numpy()
    names = target_names(task, df).to_numpy()
    per = {str(c): {"frames": int((names == c).sum()), "videos": int(len(set(keys[names == c])))}
           for c in sorted(set(names))}
    return {"frames": int(len(df)), "videos": int(len(set(keys))), "per_class": per}


def _with_targets(df: pd.DataFrame, task: str, class_names: Sequence[str]) -> pd.DataFrame:
    df = df.copy()
    df["class_name"] = target_names(task, df).to_numpy() if len(df) else []
    df["target"] = encode_targets(df["class_name"], class_names) if len(df) else np.zeros(0, np.int64)
    df["video_key"] = (df["dataset"].astype(str) + "/" + df["video_id"].astype(str)) if len(df) else []
    return df


def select_data(
    root: str | Path,
    *,
    task: str = "attribution",
    datasets: Sequence[str] | str | None = None,
    methods: Sequence[str] | str | None = None,
    compression: Sequence[str] | str | None = None,
    split: str = "official",
    holdout_methods: Sequence[str] | str | None = None,
    min_quality: float | None = None,
    max_quality: float | None = None,
    drop_real: bool = False,
    drop_suspect: bool = False,
    seed: int = 0,
    assignment: pd.DataFrame | None = None,
    class_names: Sequence[str] | None = None,
) -> DataSelection:
    """Select the training / validation / test rows of a corpus (see the module docstring).

    ``assignment``: a per-video split table to use instead of computing one (a run folder's ``splits.parquet``).
    ``class_names``: fix the classes (e.g. when resuming) instead of deriving them from the training data.
    Raises :class:`~dfkit.errors.DfkitError` for user errors (unknown dataset, no quality scores, no suspect column
    with ``drop_suspect``, empty training set).
    """
    from dfkit.corpus.reader import Filter

    if task not in TASKS:
        raise DfkitError(f"unknown task {task!r}: use binary or attribution")
    root = Path(root).expanduser()
    datasets, methods, compression = parse_list(datasets), parse_list(methods), parse_list(compression)
    whole, meta_all, scheme = corpus_view(root, split, datasets)
    if drop_suspect:
        require_suspect_column(meta_all)
    if scheme == OFFICIAL_SCHEME and split != OFFICIAL_SCHEME and assignment is None:
        assignment = split_assignment(root, split, seed)
    meta = Filter(datasets=tuple(datasets) if datasets else None,
                  compression=tuple(compression) if compression else None).apply(meta_all)
    meta = apply_split(meta.reset_index(drop=True), assignment)
    notes: list[str] = []
    if methods:
        have = set(meta["method"]) | set(meta["method_canonical"])
        unknown = [m for m in methods if m not in have]
        if unknown:
            raise DfkitError(f"unknown method(s) {', '.join(unknown)}; the selection has: "
                             f"{', '.join(sorted(set(meta['method_canonical'])))}")
    holdout_methods = parse_list(holdout_methods)
    held: list[str] = []
    if holdout_methods:
        held = resolve_holdout(meta, holdout_methods, methods)
    no_split = meta["split"].isna()
    if no_split.any():
        notes.append(f"{int(no_split.sum())} crops without a split are not used")
    train = meta[meta["split"] == "train"]
    if held:
        # leave-methods-out: the held-out fakes leave training and validation; the test split keeps them (unseen)
        def is_held(df: pd.DataFrame) -> pd.Series:
            return (df["label"] != REAL) & df["method_canonical"].isin(held)

        n_tr, n_va = int(is_held(train).sum()), int(is_held(meta[meta["split"] == "val"]).sum())
        meta = meta[~(is_held(meta) & meta["split"].isin(["train", "val"]))]
        train = meta[meta["split"] == "train"]
        notes.append(f"--holdout-methods {', '.join(held)}: {n_tr} training and {n_va} validation crops left out; "
                     "their test crops stay (unseen in eval)")
    if methods:
        # --methods restricts the methods trained on; reals stay (they are not a method to choose)
        keep = train["method"].isin(methods) | train["method_canonical"].isin(methods) | (train["label"] == REAL)
        train = train[keep]
    n_before = len(train)
    if min_quality is not None or max_quality is not None:
        train = Filter(min_quality=min_quality, max_quality=max_quality).apply(train)  # DfkitError without quality
        notes.append(f"quality filter kept {len(train)} of {n_before} training crops "
                     f"(min {min_quality}, max {max_quality}); validation and test are not filtered")
    if drop_real:
        train = train[train["label"] != REAL]
    val_rows = meta[meta["split"] == "val"]
    sus_train, sus_val = suspect_mask(train).to_numpy(bool), suspect_mask(val_rows).to_numpy(bool)
    suspect = {"train": suspect_counts(train[sus_train], task), "val": suspect_counts(val_rows[sus_val], task)}
    if drop_suspect:
        train, val_rows = train[~sus_train], val_rows[~sus_val]
        def said(c: dict[str, Any]) -> str:
            per = ", ".join(f"{k} {v['frames']}" for k, v in c["per_class"].items())
            return f"{c['frames']}" + (f" ({per})" if per else "")

        notes.append(f"--drop-suspect left out {said(suspect['train'])} suspect training crops and "
                     f"{said(suspect['val'])} suspect validation crops ({SUSPECT_COLUMN} true); the test split is "
                     "not filtered")
        sel_suspect: dict[str, Any] = {"enabled": True, "dropped": suspect}
    else:
        sel_suspect = {"enabled": False, **({"kept": suspect} if SUSPECT_COLUMN in meta.columns else {})}
        if suspect["train"]["frames"]:
            notes.append(f"{suspect['train']['frames']} training crops are suspect ({SUSPECT_COLUMN} true) and are "
                         "trained on: --drop-suspect leaves them out")
    if train.empty:
        raise DfkitError("no training crops left after the selection (datasets/methods/split/quality filters); "
                         "check `dfkit info`")
    left = sorted(set(target_names(task, train))) if len(train) else []
    if held and len(left) < 2:
        raise DfkitError(f"--holdout-methods {', '.join(held)} leaves only the class {', '.join(left) or 'none'} "
                         "to train on: at least 2 classes are needed")
    names = list(class_names) if class_names is not None else class_names_for(task, train, drop_real)
    if len(names) < 2:
        raise DfkitError(f"the training data has only one class ({', '.join(names)}): nothing to learn")
    train = _with_targets(train, task, names)
    if (train["target"] < 0).any():
        missing = sorted(set(train.loc[train["target"] < 0, "class_name"]))
        raise DfkitError(f"training data has classes the run does not know: {', '.join(missing)}")
    present = set(train["target"])
    absent = [n for i, n in enumerate(names) if i not in present]
    if absent:
        notes.append(f"no training crop for class(es) {', '.join(absent)}")
    val = _with_targets(val_rows, task, names)
    dropped = int((val["target"] < 0).sum()) if len(val) else 0
    if dropped:
        notes.append(f"{dropped} validation crops of classes the model does not have are left out")
    val = val[val["target"] >= 0] if len(val) else val
    test = _with_targets(meta[meta["split"] == "test"], task, names)
    return DataSelection(root=root, files=whole.crop_files(), task=task, class_names=names,
                         train=train.reset_index(drop=True), val=val.reset_index(drop=True),
                         test=test.reset_index(drop=True), split=split, assignment=assignment, notes=notes,
                         suspect=sel_suspect, holdout_methods=held)


def resolve_holdout(meta: pd.DataFrame, holdout: Sequence[str], methods: Sequence[str] | None = None) -> list[str]:
    """``--holdout-methods`` names (the dataset's own method names or canonical ones, as ``--methods``) -> the
    canonical methods held out (sorted). A name no fake of ``meta`` has, or one also chosen by ``--methods``, is one
    line."""
    fakes = meta[meta["label"] != REAL]
    have = set(fakes["method"].astype(str)) | set(fakes["method_canonical"].astype(str))
    unknown = [m for m in holdout if m not in have]
    if unknown:
        raise DfkitError(f"--holdout-methods: unknown method(s) {', '.join(unknown)}; the selection has: "
                         f"{', '.join(sorted(set(fakes['method_canonical'].astype(str))))}")

    def canon(names: Sequence[str]) -> set[str]:
        sel = fakes["method"].astype(str).isin(names) | fakes["method_canonical"].astype(str).isin(names)
        return set(fakes.loc[sel, "method_canonical"].astype(str))

    held = canon(holdout)
    both = sorted(held & canon(methods)) if methods else []
    if both:
        raise DfkitError(f"--holdout-methods {', '.join(both)}: also in --methods (a method is trained on or held "
                         "out, not both)")
    return sorted(held)


def subsample_by_video(meta: pd.DataFrame, per_class: dict[int, int], seed: int = 0) -> pd.DataFrame:
    """Take exactly ``per_class[c]`` frames of every class ``c``, whole videos first (in a seeded random order); the
    last video taken gives a random subset of its frames. Used to hold training-set size and class mix equal."""
    rng = np.random.default_rng(seed)
    parts = []
    for c, want in sorted(per_class.items()):
        g = meta[meta["target"] == c]
        if want > len(g):
            raise ValueError(f"class {c}: {want} frames asked, {len(g)} available")
        videos = np.array(sorted(g["video_key"].unique()))
        rng.shuffle(videos)
        left = int(want)
        for v in videos:
            if left <= 0:
                break
            rows = g[g["video_key"] == v]
            if len(rows) <= left:
                parts.append(rows)
                left -= len(rows)
            else:
                parts.append(rows.iloc[np.sort(rng.choice(len(rows), size=left, replace=False))])
                left = 0
    if not parts:
        return meta.iloc[:0]
    return pd.concat(parts).sort_values(["_file", "_row"]).reset_index(drop=True)


# ----------------------------------------------------------------------------------------------------------------------
# the torch side

INJECT_COLUMN = "inject"  # "KIND:LEVEL" on a training row: degrade the crop at load time (known-effect check)


CROP_MODES = ("resize", "center")


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    import cv2

    h, w = img.shape[:2]
    if h == size and w == size:
        return img
    interp = cv2.INTER_AREA if size < min(h, w) else cv2.INTER_LINEAR
    return cv2.resize(img, (size, size), interpolation=interp)


def fit_crop(img: np.ndarray, size: int, mode: str = "resize") -> np.ndarray:
    """``resize``: the whole crop scaled to ``size`` x ``size``. ``center``: the central ``size`` x ``size`` pixels at
    the stored resolution (pixel-level artifacts are not resampled away; a crop smaller than ``size`` is scaled up
    first)."""
    if mode == "resize":
        return _resize(img, size)
    if mode != "center":
        raise ValueError(f"crop mode must be one of {CROP_MODES}, not {mode!r}")
    h, w = img.shape[:2]
    if min(h, w) < size:
        img = _resize(img, size)
        h, w = img.shape[:2]
    y, x = (h - size) // 2, (w - size) // 2
    return img[y:y + size, x:x + size]


#: where the training augmentations run (see the module docstring)
AUGMENT_ON = ("item", "worker", "device")


def augment_config(augment: Any):
    """``True``/``False``/``None``, a dict of :class:`~dfkit.train.augment.AugmentConfig` fields (defaults for the
    rest) or an ``AugmentConfig`` -> an ``AugmentConfig`` or ``None`` (no augmentation)."""
    from dfkit.train.augment import AugmentConfig

    if augment is None or augment is False:
        return None
    if augment is True:
        return AugmentConfig()
    if isinstance(augment, AugmentConfig):
        return augment
    if isinstance(augment, dict):
        known = set(AugmentConfig().to_dict())
        unknown = sorted(set(augment) - known)
        if unknown:
            raise DfkitError(f"unknown augmentation setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        vals = {k: tuple(v) if isinstance(v, list) else v for k, v in augment.items()}
        return AugmentConfig(**vals)
    raise DfkitError(f"augment must be true/false or a mapping of augmentation settings, not {augment!r}")


class CropDataset:
    """A map-style torch dataset over corpus rows (``_file``/``_row`` locate each crop in ``files``).

    Items are ``{"image": uint8 tensor 3 x S x S, "label": int, "video_key": str, "index": int}`` (``image`` is a
    normalised float tensor instead when ``mean``/``std`` are given). ``__getitems__`` returns a whole collated batch
    (see the module docstring). ``set_epoch`` reseeds the augmentations. ``augment_on``: where they run
    (:data:`AUGMENT_ON`); with ``device`` a batch also holds ``"aug"`` (``B x len(PARAM_FIELDS)`` float32), the batch
    ops' parameters for :class:`BatchLoader`.
    """

    def __init__(self, files: Sequence[Path], meta: pd.DataFrame, img_size: int, *, augment: Any = None,
                 seed: int = 0, labels: Sequence[int] | None = None, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, crop: str = "resize", augment_on: str = "item") -> None:
        from dfkit.corpus.reader import CropReader

        self.reader = CropReader(files)
        meta = meta.reset_index(drop=True)
        self._file = meta["_file"].to_numpy(dtype=np.int64)
        self._row = meta["_row"].to_numpy(dtype=np.int64)
        if labels is None:
            labels = meta["target"].to_numpy() if "target" in meta else np.full(len(meta), -1)
        self.labels = np.asarray(labels, dtype=np.int64)
        if "video_key" in meta:
            keys = meta["video_key"].astype(str).to_numpy()
        else:
            keys = (meta["dataset"].astype(str) + "/" + meta["video_id"].astype(str)).to_numpy()
        self.video_keys = keys
        # the known-effect check (dfkit.train.known_effect): rows whose INJECT_COLUMN names a degradation are
        # degraded when loaded, exactly as they were scored; nothing is written into the corpus
        self.inject = None
        if INJECT_COLUMN in meta and meta[INJECT_COLUMN].notna().any():
            boxes = meta["crop_box"].tolist() if "crop_box" in meta else [None] * len(meta)
            self.inject = [(spec if isinstance(spec, str) else None, sid, box)
                           for spec, sid, box in zip(meta[INJECT_COLUMN].tolist(), meta["sample_id"].tolist(), boxes)]
        self.img_size = int(img_size)
        if crop not in CROP_MODES:
            raise DfkitError(f"crop must be one of {', '.join(CROP_MODES)}, not {crop!r}")
        self.crop = crop
        self.augmenter = None
        acfg = augment_config(augment)
        if acfg is not None:
            from dfkit.train.augment import Augmenter

            self.augmenter = Augmenter(acfg)
            if not self.augmenter.enabled:
                self.augmenter = None
        if augment_on not in AUGMENT_ON:
            raise DfkitError(f"augment_on must be one of {', '.join(AUGMENT_ON)}, not {augment_on!r}")
        self.augment_on = augment_on
        # the batch ops are split off only when some are on (else every augmentation is per item anyway)
        self._split = self.augmenter is not None and augment_on != "item" and self.augmenter.batch_enabled
        self.seed = int(seed)
        self.epoch = 0
        self.mean = None if mean is None else tuple(float(m) for m in mean)
        self.std = None if std is None else tuple(float(s) for s in std)

    def __len__(self) -> int:
        return len(self.labels)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _image(self, i: int, data: bytes) -> tuple[np.ndarray, np.ndarray | None]:
        """The fitted crop ``i`` (uint8 H x W x 3) and, when the batch ops are split off, their parameters."""
        img = decode_crop(data)
        if self.inject is not None and self.inject[i][0]:
            from dfkit.train.known_effect import degrade_loaded

            img = degrade_loaded(img, *self.inject[i])
        params = None
        if self.augmenter is not None:
            from dfkit.train.augment import sample_rng

            if self._split:
                img, params = self.augmenter.split(img, sample_rng(self.seed, self.epoch, i))
            else:
                img = self.augmenter(img, sample_rng(self.seed, self.epoch, i))
        return fit_crop(img, self.img_size, self.crop), params

    def _finish(self, x, params):
        """uint8 ``B x 3 x S x S`` (+ batch-op parameters) -> ``(image, params to hand over or None)``: the batch
        ops applied here (``worker``: back to uint8) or left to :class:`BatchLoader` (``device``); normalised float
        when mean/std were given."""
        import torch

        if params is not None and (self.augment_on == "worker" or self.mean is not None):
            from dfkit.train.augment import apply_batch

            x = apply_batch(x.contiguous().float(), torch.from_numpy(params))  # NCHW: faster ops on the CPU
            x = x.round_().to(torch.uint8) if self.mean is None else x
            params = None
        if self.mean is not None:
            x = normalize_batch(x, self.mean, self.std)
        return x, (None if params is None else torch.from_numpy(params))

    def __getitem__(self, i: int) -> dict[str, Any]:
        import torch

        i = int(i)
        img, params = self._image(i, self.reader.raw(int(self._file[i]), int(self._row[i])))
        x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
        x, aug = self._finish(x[None], None if params is None else params[None])
        item = {"image": x[0], "label": int(self.labels[i]), "video_key": str(self.video_keys[i]), "index": i}
        if aug is not None:
            item["aug"] = aug[0]
        return item

    def __getitems__(self, indices: Sequence[int]) -> dict[str, Any]:
        import torch

        idx = np.asarray([int(i) for i in indices], dtype=np.int64)
        s = self.img_size
        out = np.empty((len(idx), s, s, 3), dtype=np.uint8)
        params = None
        if self._split:
            from dfkit.train.augment import PARAM_FIELDS

            params = np.zeros((len(idx), len(PARAM_FIELDS)), np.float32)
        # read in shard order, so each small row group is read once per batch (the reader caches it)
        for k in np.lexsort((self._row[idx], self._file[idx])):
            i = int(idx[k])
            out[k], p = self._image(i, self.reader.raw(int(self._file[i]), int(self._row[i])))
            if params is not None:
                params[k] = p
        # a view of the NHWC array: B x 3 x S x S in channels-last memory format (BatchLoader converts it)
        x, aug = self._finish(torch.from_numpy(out).permute(0, 3, 1, 2), params)
        batch = {"image": x, "label": torch.from_numpy(self.labels[idx]),
                 "video_key": [str(self.video_keys[i]) for i in idx], "index": torch.from_numpy(idx)}
        if aug is not None:
            batch["aug"] = aug
        return batch


def normalize_batch(x, mean: Sequence[float], std: Sequence[float], channels_last: bool = False):
    """uint8 (or float in 0-255) ``B x 3 x H x W`` -> float32 ``(x / 255 - mean) / std``, contiguous (or in
    channels-last memory format)."""
    import torch

    fmt = torch.channels_last if channels_last else torch.contiguous_format
    m = torch.tensor([255.0 * v for v in mean], dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    inv = torch.tensor([1.0 / (255.0 * v) for v in std], dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    if x.dtype == torch.float32 and x.is_contiguous(memory_format=fmt):
        return (x - m).mul_(inv)
    return (x.to(dtype=torch.float32, memory_format=fmt) - m).mul_(inv)


def collate(batch: Any) -> dict[str, Any]:
    """Collate for :class:`CropDataset`: passes a batch from ``__getitems__`` through, stacks single items."""
    import torch

    if isinstance(batch, dict):
        return batch
    out = {"image": torch.stack([b["image"] for b in batch]),
           "label": torch.as_tensor([b["label"] for b in batch], dtype=torch.long),
           "video_key": [b["video_key"] for b in batch],
           "index": torch.as_tensor([b["index"] for b in batch], dtype=torch.long)}
    if batch and "aug" in batch[0]:
        out["aug"] = torch.stack([b["aug"] for b in batch])
    return out


def worker_context():
    """The multiprocessing context of the DataLoader workers: the platform default (``fork`` on Linux), or the one
    named by ``$DFKIT_WORKER_START`` (``fork``, ``forkserver``, ``spawn``; the latter two need the usual
    ``if __name__ == "__main__":`` guard in scripts)."""
    import multiprocessing as mp

    name = os.environ.get("DFKIT_WORKER_START")
    return mp.get_context(name) if name else None


class _OneCv2Thread:
    """Around the start of DataLoader workers: OpenCV in the parent set to one thread, so that the forked workers
    inherit a single-threaded OpenCV (workers are the parallelism; a pool per worker would oversubscribe the cores).
    Calling ``cv2.setNumThreads`` *inside* a forked worker is not an option: after the parent has used OpenCV's
    thread pool (e.g. the quality step earlier in ``dfkit demo``), it hangs the worker for ever."""

    def __enter__(self):
        import cv2

        self.n = cv2.getNumThreads()
        cv2.setNumThreads(1)

    def __exit__(self, *exc):
        import cv2

        cv2.setNumThreads(self.n)


class BatchLoader:
    """Iterates a DataLoader of uint8 :class:`CropDataset` batches and hands out float batches normalised with
    ``mean``/``std``, on ``device``: the uint8 batch is moved there first, then (when the batch holds ``"aug"``)
    augmented there (:func:`dfkit.train.augment.apply_batch`), converted and normalised; ``channels_last``: in that
    memory format. Exposes ``sampler``/``batch_sampler``/``dataset`` and ``len()`` so the training loop can set the
    epoch and count steps."""

    def __init__(self, loader, mean: Sequence[float], std: Sequence[float], device: str | Any = "cpu",
                 channels_last: bool = False) -> None:
        self.loader = loader
        self.mean, self.std = tuple(mean), tuple(std)
        self.device = device
        self.channels_last = bool(channels_last)

    @property
    def dataset(self):
        return self.loader.dataset

    @property
    def sampler(self):
        return self.loader.sampler

    @property
    def batch_sampler(self):
        return self.loader.batch_sampler

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        import torch

        dev = torch.device(self.device) if not isinstance(self.device, torch.device) else self.device
        if getattr(self.loader, "num_workers", 0) > 0:
            with _OneCv2Thread():
                it = iter(self.loader)  # forks the workers
        else:
            it = iter(self.loader)
        for b in it:
            x = b["image"]
            aug = b.pop("aug", None)
            if x.dtype == torch.uint8:
                x = x.to(dev, non_blocking=True)
                if aug is not None:
                    from dfkit.train.augment import apply_batch

                    x = apply_batch(x.float(), aug.to(dev, non_blocking=True))
                x = normalize_batch(x, self.mean, self.std, self.channels_last)
            b["image"] = x
            yield b


def _dataloader(ds: CropDataset, batch_size: int, workers: int, sampler=None, shuffle: bool = False,
                drop_last: bool = False, pin_memory: bool = False):
    from torch.utils.data import DataLoader

    kw: dict[str, Any] = {}
    if workers > 0:
        kw.update(prefetch_factor=4, multiprocessing_context=worker_context())
    return DataLoader(ds, batch_size=batch_size, sampler=sampler, shuffle=shuffle, drop_last=drop_last,
                      num_workers=workers, collate_fn=collate, pin_memory=pin_memory, **kw)


def make_loaders(sel: DataSelection, *, img_size: int, batch_size: int, workers: int, mean: Sequence[float],
                 std: Sequence[float], augment: bool | Any = True, balanced: bool = True, seed: int = 0,
                 device: str | Any = "cpu", train_rows: pd.DataFrame | None = None,
                 samples_per_epoch: int | None = None, crop: str = "resize", num_replicas: int = 1, rank: int = 0,
                 channels_last: bool = False, augment_on: str = "auto"):
    """``(train_loader, val_loader or None)`` for :func:`dfkit.train.loop.train`. The training loader draws
    class-balanced (``balanced``) or shuffled batches, drops the last incomplete batch (BatchNorm), augments
    (``augment``: bool, a dict of :class:`~dfkit.train.augment.AugmentConfig` fields or one), and fits each crop to
    ``img_size`` by ``crop`` (:func:`fit_crop`). ``samples_per_epoch`` fixes the crops
    drawn per epoch (default: the training set's size), e.g. to train equally many steps on sets of other sizes.

    ``num_replicas``/``rank`` (data-parallel training, :mod:`dfkit.train.distributed`): this process's share of
    every epoch (``batch_size`` is per process) and of the validation rows (every ``num_replicas``-th row from
    ``rank``; the loop gathers the predictions).

    ``augment_on``: ``auto`` (``device`` on a GPU, ``item`` on the CPU: see the module docstring) or one of :data:`AUGMENT_ON`;
    ``channels_last``: the batches in that memory format (training and validation)."""
    from dfkit.train.sampler import ClassBalancedSampler, ShuffleSampler

    rows = sel.train if train_rows is None else train_rows
    pin = str(device).startswith("cuda")
    if augment_on == "auto":
        augment_on = "device" if pin else "item"
    tr = CropDataset(sel.files, rows, img_size, augment=augment, seed=seed, crop=crop, augment_on=augment_on)
    n = int(samples_per_epoch) if samples_per_epoch else len(tr)
    bs = max(1, min(int(batch_size), -(-n // num_replicas)))
    if balanced:
        sampler = ClassBalancedSampler(tr.labels, num_samples=n, seed=seed, num_replicas=num_replicas, rank=rank)
    else:
        sampler = ShuffleSampler(len(tr), num_samples=n, seed=seed, num_replicas=num_replicas, rank=rank)
    train_dl = _dataloader(tr, bs, workers, sampler=sampler, drop_last=True, pin_memory=pin)
    val_dl = None
    if len(sel.val):
        val_rows = sel.val.iloc[rank::num_replicas] if num_replicas > 1 else sel.val
        val_dl = make_eval_loader(sel.files, val_rows, img_size=img_size, batch_size=2 * bs, workers=workers,
                                  mean=mean, std=std, device=device, crop=crop, channels_last=channels_last)
    return BatchLoader(train_dl, mean, std, device, channels_last), val_dl


def make_eval_loader(files: Sequence[Path], rows: pd.DataFrame, *, img_size: int, batch_size: int, workers: int,
                     mean: Sequence[float], std: Sequence[float], device: str | Any = "cpu",
                     crop: str = "resize", channels_last: bool = False) -> BatchLoader:
    """A loader over ``rows`` in their order (no augmentation, nothing dropped)."""
    ds = CropDataset(files, rows, img_size, augment=None, crop=crop)
    dl = _dataloader(ds, max(1, int(batch_size)), workers, shuffle=False, drop_last=False,
                     pin_memory=str(device).startswith("cuda"))
    return BatchLoader(dl, mean, std, device, channels_last)
