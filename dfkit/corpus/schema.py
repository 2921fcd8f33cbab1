"""The corpus schema: one row per face crop (``crops/``), one row per attempted video (``videos/``).

A corpus is a directory::

    corpus/
      manifest.json            schema version, dfkit version, ingest parameters, per-dataset counts
      crops/part-000001-<id>.parquet    face crops (+ labels, video facts, box, landmarks, encoded crop)
      videos/part-000001-<id>.parquet   one row per attempted video: status, failing stage, reason, counts
      quality/part-....parquet          per-crop quality metrics keyed by sample_id (``dfkit quality``)
      .lock                             held (flock) by the one process writing

A ``videos`` shard is the commit record of the ``crops`` shard with the same number: the writer renames the
crops shard into place first and the videos shard second, and readers ignore crops shards that have no videos
shard. So the corpus itself says which videos are done; no second state can drift from it.
"""

from __future__ import annotations

import pyarrow as pa

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
    ]
)

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
CROP_META_COLUMNS = [n for n in CROPS_SCHEMA.names if n != "crop"]


def sample_id(dataset: str, video_id: str, frame_index: int) -> str:
    """Stable id of one crop: derived from dataset, video and frame only."""
    return f"{dataset}/{video_id}/{frame_index:06d}"
