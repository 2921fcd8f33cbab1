"""The corpus schema: one row per face crop (``crops/``), one row per attempted video (``videos/``).

A corpus is a directory::

    corpus/
      manifest.json            schema version, dfkit version, ingest parameters, per-dataset counts
      crops/part-000001-<id>.parquet    face crops (+ labels, video facts, box, landmarks, encoded crop)
      videos/part-000001-<id>.parquet   one row per attempted video: status, failing stage, reason, counts
      quality/part-....parquet          per-crop quality metrics keyed by sample_id (``dfkit quality``)
      splits/<scheme>.parquet           corpus-level re-splits: dataset, video_id, split (``dfkit splits resplit``)
      .lock                             held (flock) by the one process writing

A ``videos`` shard is the commit record of the ``crops`` shard with the same number: the writer renames the
crops shard into place first and the videos shard second, and readers ignore crops shards that have no videos
shard. So the corpus itself says which videos are done; no second state can drift from it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa

from dfkit.errors import SettingsError

SCHEMA_VERSION = 1

# Columns that come from the adapter's VideoRecord (labels) -- shared by crops and videos tables.
_LABEL_FIELDS = [
    pa.field("dataset", pa.string(), nullable=False),
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("content_id", pa.string()),
    pa.field("video_path", pa.string(), nullable=False),  # relative to the dataset root
    pa.field("label", pa.string(), nullable=False),  # real | fake
    pa.field("method", pa.string(), nullable=False),  # the dataset's own name
    pa.field("method_canonical", pa.string(), nullable=False),
    pa.field("method_family", pa.string()),
    pa.field("split", pa.string()),  # train | val | test | null
    pa.field("compression", pa.string()),  # c0 | c23 | c40 | ... | null
    pa.field("perturbation", pa.string()),
    pa.field("source_video_id", pa.string()),
    pa.field("target_video_id", pa.string()),
    pa.field("pair_video_id", pa.string()),  # video_id of the original this fake was cropped against
    pa.field("identity_ids", pa.list_(pa.string())),
    pa.field("group_id", pa.string()),  # leak-safe grouping key (e.g. FF++ YouTube id)
]

_VIDEO_FACT_FIELDS = [
    pa.field("width", pa.int32()),
    pa.field("height", pa.int32()),
    pa.field("fps", pa.float32()),
    pa.field("bitrate", pa.int64()),  # bits per second
    pa.field("codec", pa.string()),
    pa.field("n_frames", pa.int32()),
]

CROPS_SCHEMA = pa.schema(
    [pa.field("sample_id", pa.string(), nullable=False)]
    + _LABEL_FIELDS
    + [
        pa.field("frame_index", pa.int32(), nullable=False),
        pa.field("timestamp_s", pa.float32()),
    ]
    + _VIDEO_FACT_FIELDS
    + [
        pa.field("bbox", pa.list_(pa.float32())),  # x0, y0, x1, y1 in source pixels (this frame's detection)
        pa.field("det_score", pa.float32()),  # detector confidence; null when the box was interpolated/paired
        pa.field("box_source", pa.string()),  # detected | interpolated | paired
        pa.field("landmarks", pa.list_(pa.float32())),  # 6 (x, y) keypoints in source pixels, flattened
        pa.field("crop_box", pa.list_(pa.float32())),  # the square region that was cropped, source pixels
        pa.field("crop", pa.binary(), nullable=False),  # encoded image bytes
        pa.field("crop_format", pa.string(), nullable=False),  # png | webp | jpeg
        pa.field("crop_size", pa.int32(), nullable=False),  # side of the square crop, pixels
        # which face the crop follows (ingest's track choice; null in corpora made before it)
        pa.field("face_tracks", pa.int32()),  # how many face tracks the video has
        pa.field("track_choice", pa.string()),  # manipulated | dominant | mask (see TRACK_CHOICES)
        pa.field("mask_fraction", pa.float32()),  # share of the crop the dataset's mask marks; null: no mask
        # the paired original's frame cut at this crop's box, when the fake follows a face that is not the
        # original's own crop (another person): the full-reference reference; null otherwise
        pa.field("ref_crop", pa.binary()),
        pa.field("ref_crop_format", pa.string()),
    ]
)

#: ``track_choice``: the track a paired fake differs most from its original on; the dominant face (reals, fakes
#: without an original); the track the dataset's manipulation mask covers most
TRACK_CHOICES = ("manipulated", "dominant", "mask")
#: crop columns holding image bytes: never read with the metadata
CROP_IMAGE_COLUMNS = ("crop", "ref_crop")
#: crop columns added after the first corpora; a shard without them reads them as nulls
LATE_CROP_COLUMNS = ("face_tracks", "track_choice", "mask_fraction", "ref_crop", "ref_crop_format")

VIDEO_STATUSES = ("ok", "partial", "no_face", "failed", "missing")

VIDEOS_SCHEMA = pa.schema(
    _LABEL_FIELDS
    + _VIDEO_FACT_FIELDS
    + [
        pa.field("status", pa.string(), nullable=False),  # ok | partial | no_face | failed | missing
        pa.field("stage", pa.string()),  # where it went wrong: open | probe | decode | detect | crop | worker
        pa.field("reason", pa.string()),
        pa.field("n_sampled", pa.int32()),
        pa.field("n_decoded", pa.int32()),
        pa.field("n_crops", pa.int32()),
        pa.field("n_no_face", pa.int32()),  # sampled frames without a face (no crop row)
        pa.field("frame_indices", pa.list_(pa.int32())),  # the sampled frame indices
        pa.field("seconds", pa.float32()),
        pa.field("ingested_at", pa.string()),
        pa.field("extra", pa.string()),  # the adapter's extra facts as JSON (scene, mask_path, list label, ...)
    ]
)

LABEL_COLUMNS = [f.name for f in _LABEL_FIELDS]
CROP_META_COLUMNS = [n for n in CROPS_SCHEMA.names if n not in CROP_IMAGE_COLUMNS]


def sample_id(dataset: str, video_id: str, frame_index: int) -> str:
    """Stable id of one crop: derived from dataset, video and frame only."""
    return f"{dataset}/{video_id}/{frame_index:06d}"


# -- videos: which attempts gave crops ---------------------------------------------------------------------------------

#: video statuses whose crops are in the corpus (a ``partial`` video lost some frames, not all)
USABLE_STATUSES = ("ok", "partial")


def usable(videos):
    """The rows of a videos table (a pandas DataFrame, e.g. ``Corpus.videos()``) whose status gave crops."""
    return videos[videos["status"].isin(USABLE_STATUSES)]


# -- quality/: column names and Parquet metadata -----------------------------------------------------------------------
#
# A quality shard has, for every metric ``m``: ``q_<m>_raw`` (the measurement), ``q_<m>`` (its score in [0, 1]) and
# the metric's extra raw columns ``q_<m>_<extra>``; ``q_errors``; ``quality`` and ``video_quality`` (the composite);
# and full-reference columns ``fr_*`` / ``c0_*``. Its schema metadata carries the keys below.

QUALITY_PREFIX = "q_"
RAW_SUFFIX = "_raw"
#: the metrics that raised on a crop, ``"name: Error: message; ..."``
QUALITY_ERRORS_COLUMN = "q_errors"

#: metric definitions' version the shard was computed with (an int, as text)
META_QUALITY_VERSION = b"dfkit.quality.version"
#: the composite weights ``quality`` was made with (JSON, sorted keys)
META_QUALITY_WEIGHTS = b"dfkit.quality.weights"
#: the composite's form (see ``dfkit.quality.composite.FORM``)
META_QUALITY_FORM = b"dfkit.quality.form"
#: JSON list of full-reference sample_ids that were not in the corpus when the shard was computed
META_QUALITY_FR_PENDING = b"dfkit.quality.fr_pending"
#: version of the suspect-label rule the shard's ``suspect_label`` was made with (see ``dfkit.quality.suspect``)
META_SUSPECT_VERSION = b"dfkit.quality.suspect_version"


def quality_column(metric: str) -> str:
    """The score column of a metric: ``q_<metric>``."""
    return f"{QUALITY_PREFIX}{metric}"


def raw_column(metric: str) -> str:
    """The raw-measurement column of a metric: ``q_<metric>_raw``."""
    return f"{QUALITY_PREFIX}{metric}{RAW_SUFFIX}"


def extra_column(metric: str, extra: str) -> str:
    """An extra raw column of a metric: ``q_<metric>_<extra>`` (e.g. ``q_pose_yaw``)."""
    return f"{QUALITY_PREFIX}{metric}_{extra}"


def is_quality_column(column: str) -> bool:
    """A per-metric quality column (``q_*``: scores, raws, extras, ``q_errors``)."""
    return column.startswith(QUALITY_PREFIX)


def score_metric(column: str, columns=None) -> str | None:
    """The metric whose score column ``column`` is (``q_<m>`` -> ``m``), else None (a raw column, ``q_errors`` or
    not a quality column). Given the table's ``columns``, a score column is one with its ``q_<m>_raw`` beside it --
    which tells ``q_face_size`` (a score) from ``q_pose_yaw`` (an extra) without the metric registry."""
    if not is_quality_column(column) or column.endswith(RAW_SUFFIX) or column == QUALITY_ERRORS_COLUMN:
        return None
    metric = column[len(QUALITY_PREFIX):]
    if columns is not None and raw_column(metric) not in columns:
        return None
    return metric


# -- splits/: corpus-level re-splits -----------------------------------------------------------------------------------

#: the datasets' own split (the ``split`` column); every other scheme is a file ``splits/<name>.parquet``
OFFICIAL_SCHEME = "official"
SPLITS_DIR = "splits"
#: a scheme file's columns: one row per video
SPLIT_SCHEME_COLUMNS = ("dataset", "video_id", "split")


#: a split scheme's name: a file name inside ``splits/`` (letters, digits, ``_ . -``; no path, not hidden)
SCHEME_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")


def check_scheme_name(scheme: str, option: str = "--name") -> str:
    """``scheme`` when it can name a split scheme, else a one-line :class:`SettingsError` naming ``option``."""
    if not isinstance(scheme, str) or not SCHEME_NAME.fullmatch(scheme) or ".." in scheme:
        raise SettingsError(f"{option} {scheme!r}: a split scheme's name is 1-100 letters, digits, '_', '.' or '-' "
                            "(no '/', no '..', not starting with '.' or '-')")
    return scheme


def split_path(root: str | Path, scheme: str) -> Path:
    """Where split scheme ``scheme`` of the corpus at ``root`` is stored: ``<root>/splits/<scheme>.parquet`` (the
    name is checked: it can never point outside ``splits/``)."""
    return Path(root) / SPLITS_DIR / f"{check_scheme_name(scheme, 'split scheme')}.parquet"


def has_split_scheme(root: str | Path, scheme: str) -> bool:
    """Whether ``scheme`` is a re-split stored in the corpus (``official`` is not: it is the ``split`` column)."""
    if scheme == OFFICIAL_SCHEME or not isinstance(scheme, str) or not SCHEME_NAME.fullmatch(scheme) or ".." in scheme:
        return False
    return split_path(root, scheme).exists()


def check_quality(value, option: str = "--min-quality") -> float | None:
    """``None`` or a quality threshold in [0, 1] as a float; anything else is refused (one line naming ``option``)."""
    if value is None:
        return None
    try:
        q = float(value)
    except (TypeError, ValueError):
        raise SettingsError(f"{option} must be a number in [0, 1], not {value!r}") from None
    if not 0 <= q <= 1:  # NaN fails too
        raise SettingsError(f"{option} must lie in [0, 1] (quality is a score from 0 to 1), not {value}")
    return q


# -- suspect labels (quality/): fake crops that may not be manipulated -------------------------------------------------
#
# ``dfkit quality`` compares a paired fake crop with its original at the same box (``fr_*``); a fake crop on which
# (almost) nothing changed gets ``suspect_label`` = true and a one-line ``suspect_reason``. Null = not checked (a real
# crop, a fake without a paired original, or no full-reference values for that crop).

SUSPECT_COLUMN = "suspect_label"
SUSPECT_REASON_COLUMN = "suspect_reason"
# A fake crop whose surroundings (the crop outside the face box) differ from its paired original almost everywhere
# was compared with a video it was not made from (a wrong ``pair`` in the dataset's metadata): ``pair_mismatch`` =
# true with a one-line ``pair_mismatch_reason``; its full-reference values and suspect check mean nothing (the
# suspect label is left null). False where checked and consistent, null where not checked.
PAIR_MISMATCH_COLUMN = "pair_mismatch"
PAIR_MISMATCH_REASON_COLUMN = "pair_mismatch_reason"


def suspect_mask(meta):
    """Boolean Series over a metadata DataFrame: the crops flagged ``suspect_label`` (False where unchecked or when
    the corpus has no suspect column yet)."""
    import pandas as pd

    if SUSPECT_COLUMN not in meta.columns:
        return pd.Series(False, index=meta.index)
    return meta[SUSPECT_COLUMN].fillna(False).astype(bool)


def rows_to_table(rows: list[dict]):
    """Crop rows (dicts) -> a pyarrow Table with :data:`CROPS_SCHEMA`'s types where the columns exist (calibration,
    tests, benchmarks: rows cut outside an ingest)."""
    import pyarrow as pa

    names = list(dict.fromkeys(k for r in rows for k in r))
    cols = {}
    for n in names:
        vals = [r.get(n) for r in rows]
        cols[n] = pa.array(vals, type=CROPS_SCHEMA.field(n).type) if n in CROPS_SCHEMA.names else pa.array(vals)
    return pa.table(cols)
