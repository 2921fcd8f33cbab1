"""Faces for the engine: mediapipe full-range BlazeFace detection, every face track (the dominant one first), and
the per-track measures the engine chooses a fake's manipulated track with (change against the original, mask share).

The detector is mediapipe's ``solutions.face_detection`` full-range model, shipped inside the mediapipe 0.10.21
wheel (no download). The short-range model misses FF++-sized faces in 720p frames, so it is not the default.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import cv2
import numpy as np

# the crop codec is the corpus's (what is on disk); re-exported here for the engine and older callers


@dataclass
class Detection:
    box: np.ndarray  # x0, y0, x1, y1 in source pixels (float32)
    score: float
    keypoints: np.ndarray | None  # (6, 2) source pixels: right eye, left eye, nose, mouth, right ear, left ear

    @property
    def area(self) -> float:
        w, h = self.box[2] - self.box[0], self.box[3] - self.box[1]
        return float(max(w, 0) * max(h, 0))


@contextlib.contextmanager
def _quiet_stderr():
    """Silence file descriptor 2 (C++ log lines) for the duration; Python errors still propagate."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class FaceDetector:
    """All faces in an RGB frame, as :class:`Detection` in source pixels."""

    def __init__(self, min_confidence: float = 0.5, model_selection: int = 1):
        self.min_confidence = min_confidence
        os.environ.setdefault("GLOG_minloglevel", "2")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        with _quiet_stderr():  # TFLite/absl print start-up banners on the C level
            import mediapipe as mp

            self._det = mp.solutions.face_detection.FaceDetection(
                model_selection=model_selection, min_detection_confidence=min_confidence)
            self._det.process(np.zeros((64, 64, 3), dtype=np.uint8))  # first call logs too

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        h, w = rgb.shape[:2]
        res = self._det.process(np.ascontiguousarray(rgb))
        out = []
        for d in res.detections or []:
            rb = d.location_data.relative_bounding_box
            box = np.array([rb.xmin * w, rb.ymin * h, (rb.xmin + rb.width) * w, (rb.ymin + rb.height) * h],
                           dtype=np.float32)
            kps = d.location_data.relative_keypoints
            kp = np.array([[k.x * w, k.y * h] for k in kps], dtype=np.float32) if len(kps) else None
            out.append(Detection(box, float(d.score[0]) if d.score else 0.0, kp))
        return out

    def close(self) -> None:
        self._det.close()


def iou(a: np.ndarray, b: np.ndarray) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / ua) if ua > 0 else 0.0


def _close(a: np.ndarray, b: np.ndarray) -> float:
    """Link affinity of two boxes on neighbouring sampled frames: IoU, or (for fast motion between frames that
    are far apart) a centre distance under half the box size with a similar scale."""
    v = iou(a, b)
    if v > 0:
        return v
    ca, cb = (a[:2] + a[2:]) / 2, (b[:2] + b[2:]) / 2
    sa, sb = max(a[2] - a[0], a[3] - a[1]), max(b[2] - b[0], b[3] - b[1])
    if min(sa, sb) <= 0 or max(sa, sb) / min(sa, sb) > 1.6:
        return 0.0
    d = float(np.linalg.norm(ca - cb)) / max(sa, sb)
    return 0.01 * (1 - d / 0.5) if d < 0.5 else 0.0


#: a face track other than the dominant one counts (``face_tracks``) when it is detected on at least this share of
#: the sampled frames: a false detection on a frame or two is no second person
MIN_TRACK_SHARE = 0.25


def _weight(track: dict[int, Detection]) -> float:
    """How dominant a track is: the sum of ``score * sqrt(area)`` over its detections."""
    return float(sum(d.score * np.sqrt(d.area) for d in track.values()))


def _link(dets_per_frame: list[list[Detection]], min_link: float) -> list[dict[int, Detection]]:
    """Greedy linking by overlap: each frame's detections join the track whose last box is closest."""
    tracks: list[dict[int, Detection]] = []
    last: list[np.ndarray] = []
    for t, dets in enumerate(dets_per_frame):
        pairs = sorted(((_close(last[k], d.box), k, j) for k in range(len(tracks)) for j, d in enumerate(dets)),
                       reverse=True)
        used_t, used_d = set(), set()
        for aff, k, j in pairs:
            if aff <= min_link or k in used_t or j in used_d:
                continue
            tracks[k][t] = dets[j]
            last[k] = dets[j].box
            used_t.add(k)
            used_d.add(j)
        for j, d in enumerate(dets):
            if j not in used_d:
                tracks.append({t: d})
                last.append(d.box)
    return tracks


def face_tracks(dets_per_frame: list[list[Detection]], min_link: float = 0.0,
                min_share: float = MIN_TRACK_SHARE) -> list[list[Detection | None]]:
    """Every face track across the sampled frames, the dominant first (largest sum of ``score * sqrt(area)``: the
    face that is present, large and confident across the video, rather than the largest box of each frame). Each
    track is a list over the frames, ``None`` where it has no detection. Besides the dominant one, only tracks
    detected on at least ``min_share`` of the frames are kept. No detection at all: an empty list."""
    n = len(dets_per_frame)
    linked = sorted(_link(dets_per_frame, min_link), key=_weight, reverse=True)  # stable: ties keep their order
    need = max(1, int(np.ceil(min_share * n)))
    kept = linked[:1] + [tr for tr in linked[1:] if len(tr) >= need]
    return [[tr.get(t) for t in range(n)] for tr in kept]


def dominant_track(dets_per_frame: list[list[Detection]], min_link: float = 0.0) -> list[Detection | None]:
    """The dominant face track of :func:`face_tracks`; all ``None`` when no face was found."""
    tracks = face_tracks(dets_per_frame, min_link)
    return tracks[0] if tracks else [None] * len(dets_per_frame)


def luma_change(crop: np.ndarray, ref: np.ndarray) -> float:
    """Mean absolute luma difference (grey levels) of two crops of the same place: how much a fake's face track
    differs from its original there. Only a ranking of a video's tracks (which one was manipulated); the corpus's
    change measures are the full-reference ones of ``dfkit quality``."""
    a = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2GRAY).astype(np.float32)
    b = cv2.cvtColor(np.ascontiguousarray(ref), cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(np.abs(a - b).mean())


#: a mask video's pixel marks the manipulated region where its luma exceeds this
MASK_LUMA = 127


def mask_pixels(mask_rgb: np.ndarray) -> np.ndarray:
    """A mask video frame's marked pixels (bool): luma above :data:`MASK_LUMA`."""
    return cv2.cvtColor(np.ascontiguousarray(mask_rgb), cv2.COLOR_RGB2GRAY) > MASK_LUMA


def mask_share(marked: np.ndarray, box: np.ndarray) -> float | None:
    """The share of ``box`` (source pixels, rounded; the part outside the frame counts as unmarked) that a mask
    marks (:func:`mask_pixels`); None for an empty box."""
    h, w = marked.shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in box[:4])
    area = max(x1 - x0, 0) * max(y1 - y0, 0)
    if area == 0:
        return None
    return float(marked[max(y0, 0):max(min(y1, h), 0), max(x0, 0):max(min(x1, w), 0)].sum()) / area


def fill_track(track: list[Detection | None]) -> list[tuple[np.ndarray, str] | None]:
    """Boxes for every sampled frame inside the track's span: detected ones as they are, gaps between two
    detections linearly interpolated (``box_source='interpolated'``). Frames before the first or after the last
    detection have no face (``None``)."""
    idx = [i for i, d in enumerate(track) if d is not None]
    out: list[tuple[np.ndarray, str] | None] = [None] * len(track)
    if not idx:
        return out
    for i in idx:
        out[i] = (track[i].box, "detected")
    for a, b in zip(idx, idx[1:]):
        for i in range(a + 1, b):
            w = (i - a) / (b - a)
            out[i] = ((1 - w) * track[a].box + w * track[b].box, "interpolated")
    return out
