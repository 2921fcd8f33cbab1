"""Head pose: a coarse yaw / pitch / roll from the 6 BlazeFace keypoints, and the deviation from frontal.

Keypoints (source pixels): 0 right eye, 1 left eye, 2 nose tip, 3 mouth centre, 4 right ear tragion, 5 left ear
tragion (the subject's right: on the image's left for a frontal face).

* roll = angle of the eye line (keypoint 0 -> 1) against the image x axis; the points are then de-rotated by it.
* yaw from a cylinder head model: seen from the front the ear tragions sit at ±w and ~b behind the eyes, the nose
  tip d in front; turning by ψ puts the nose at (d + b)·sin ψ from the ears' midpoint while the ears span
  2w·cos ψ, so tan ψ = (nose_x - ears_mid_x) / (half ear span · (d + b) / w), with (d + b) / w ≈ 1.5 (adult head
  anthropometry). Positive = nose towards the image's right.
* pitch from where the nose tip falls between the eye line and the mouth: p = (nose_y - eyes_y) / (mouth_y -
  eyes_y) is ≈ 0.55 when frontal (median over FF++ newsreader frames) and grows by ≈ 0.28·tan θ when the head
  tilts down (the nose tip protrudes more than the mouth); pitch = atan((p - 0.55) / 0.28). Positive = looking
  down.

raw = sqrt(yaw² + pitch²) in degrees: the deviation from frontal (roll is not a quality loss: the face is all there,
only rotated). These are coarse (±10-15°): BlazeFace keypoints are not a landmark model, and the far ear is guessed
at large yaw. Extras: ``yaw``, ``pitch``, ``roll`` (degrees).
"""

from __future__ import annotations

import math

import numpy as np

from dfkit.quality.base import NAN, Logistic, Metric, register_metric

EAR_DEPTH_RATIO = 1.5
PITCH_P0 = 0.55
PITCH_GAIN = 0.28


def head_pose(landmarks) -> tuple[float, float, float]:
    """``(yaw, pitch, roll)`` in degrees from 12 floats (6 keypoints x, y); NaNs when unusable."""
    if landmarks is None:
        return NAN, NAN, NAN
    try:
        k = np.asarray(list(landmarks), dtype=np.float64)
    except (TypeError, ValueError):
        return NAN, NAN, NAN
    if k.size < 12 or not np.all(np.isfinite(k[:12])):
        return NAN, NAN, NAN
    k = k[:12].reshape(6, 2)
    re, le, nose, mouth, rt, lt = k
    d = le - re
    eye_dist = math.hypot(d[0], d[1])
    if eye_dist < 1e-6:
        return NAN, NAN, NAN
    roll = math.atan2(d[1], d[0])
    c, s = math.cos(-roll), math.sin(-roll)
    rot = np.array([[c, -s], [s, c]])
    p = (k - (re + le) / 2) @ rot.T  # eye midpoint at origin, eye line horizontal
    re, le, nose, mouth, rt, lt = p
    half_span = abs(lt[0] - rt[0]) / 2
    if half_span > 1e-6:
        ears_mid = (lt[0] + rt[0]) / 2
        yaw = math.atan2(nose[0] - ears_mid, half_span * EAR_DEPTH_RATIO)
    else:
        yaw = NAN
    em = mouth[1]  # eyes at y = 0
    if abs(em) > 1e-6:
        pr = nose[1] / em
        pitch = math.atan((pr - PITCH_P0) / PITCH_GAIN)
    else:
        pitch = NAN
    return math.degrees(yaw), math.degrees(pitch), math.degrees(roll)


@register_metric
class Pose(Metric):
    name = "pose"
    description = "deviation from a frontal head pose, sqrt(yaw² + pitch²), from the 6 detector keypoints."
    unit = "degrees"
    direction = "lower"
    needs_pixels = False
    score_map = Logistic(x50=45.0, x90=20.0)
    weight = 0.5
    order = 80
    extras = ("yaw", "pitch", "roll")

    def measure(self, view) -> float:
        yaw, pitch, _ = head_pose(view.row.get("landmarks"))
        if math.isnan(yaw) and math.isnan(pitch):
            return NAN
        return math.hypot(0.0 if math.isnan(yaw) else yaw, 0.0 if math.isnan(pitch) else pitch)

    def measure_extras(self, view) -> dict:
        yaw, pitch, roll = head_pose(view.row.get("landmarks"))
        return {"yaw": yaw, "pitch": pitch, "roll": roll}
