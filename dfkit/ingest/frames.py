"""Corpus-like crop rows cut from single frames, exactly as the ingest cuts them (calibration, tests, benchmarks).

:func:`frame_row` finds the dominant face of one RGB frame with the ingest detector (mediapipe BlazeFace, bundled
with the wheel: nothing is downloaded), cuts it with ``dfkit.corpus.geometry.square_crop_box`` / ``crop_square`` and
returns a row with the columns of a corpus crop row (bbox, det_score, landmarks, crop_box, crop bytes, video
facts); :func:`dfkit.corpus.schema.rows_to_table` turns such rows into a table with the corpus crop schema's types.
``dfkit quality calibrate --videos`` gets :func:`frame_row` from the application (``dfkit.services``): finding the
face is the ingest's job, so the quality stage does not import it. The synthetic and real-data sample builders of
the tests and benchmarks live in ``tests/quality_samples.py``.
"""

from __future__ import annotations

import numpy as np

_DETECTOR = None


def _detector():
    global _DETECTOR
    if _DETECTOR is None:
        from dfkit.ingest.faces import FaceDetector

        _DETECTOR = FaceDetector()
    return _DETECTOR


def frame_row(rgb: np.ndarray, facts: dict | None = None, crop_size: int = 256, margin: float = 1.3,
              encoding: str = "png", box=None) -> dict | None:
    """A corpus-like crop row for the dominant (largest) face of one RGB frame, or None without a face.

    ``box`` forces the crop box (a paired crop: the same region of another frame)."""
    from dfkit.corpus.codec import encode_crop
    from dfkit.corpus.geometry import crop_square, square_crop_box

    facts = dict(facts or {})
    h, w = rgb.shape[:2]
    dets = _detector().detect(rgb)
    d = max(dets, key=lambda d: d.area) if dets else None
    if box is None:
        if d is None:
            return None
        box = square_crop_box(d.box, margin)
    img = crop_square(rgb, np.asarray(box, dtype=np.float32), crop_size)
    data, fmt = encode_crop(img, encoding)
    row = {
        "sample_id": facts.pop("sample_id", "sample"), "dataset": "sample", "video_id": "sample",
        "content_id": "sample", "label": "real", "method": "original", "method_canonical": "original",
        "split": None, "compression": None, "pair_video_id": None, "frame_index": 0,
        "width": w, "height": h, "fps": 25.0, "bitrate": None, "codec": None,
        "bbox": None if d is None else [float(v) for v in d.box],
        "det_score": None if d is None else float(d.score),
        "box_source": "detected" if d is not None else "paired",
        "landmarks": None if d is None or d.keypoints is None else [float(v) for v in d.keypoints.ravel()],
        "crop_box": [float(v) for v in box], "crop": data, "crop_format": fmt, "crop_size": crop_size,
    }
    row.update(facts)
    return row
