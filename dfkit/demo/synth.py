"""A small synthetic DeepFake dataset in the exact FaceForensics++ folder layout, made offline in seconds.

The only face used is the public-domain ``skimage.data.astronaut()`` portrait. Each *identity* is that portrait
with its own colour look (hue / saturation / gamma / channel gains), optional mirror image, size and background
(other ``skimage.data`` images or a gradient), placed on a canvas that a virtual camera pans, zooms and rolls over
smoothly, so the face moves from frame to frame.

Like FF++, a fake ``<target>_<source>.mp4`` keeps the target video's frames (same camera path, same background)
and changes only the face, inside a soft elliptical face mask. Four synthetic methods leave four distinct
artifacts there:

* ``PoissonSwap``   -- the source identity's inner face (brows to chin), Poisson-blended in (``cv2.seamlessClone``)
  plus a partial direct paste: colour / identity change with a blending seam across the face.
* ``LandmarkWarp``  -- a smooth, time-varying displacement field around the eyes and mouth (``cv2.remap``).
* ``TextureRender`` -- a low-pass "re-rendered" texture: bilateral smoothing and colour quantisation.
* ``Checkerboard``  -- 3x down / nearest-neighbour up-sampling plus a periodic checkerboard (transposed-conv
  like) pattern.

Layout written under ``root`` (``C`` in ``compressions``, ids are real FF++ sequence ids taken from the official
split files so each of train / val / test gets at least one full pair)::

    original_sequences/youtube/<C>/videos/<tid>.mp4
    manipulated_sequences/<Method>/<C>/videos/<tid>_<sid>.mp4

Videos are H.264 (``libx264``, yuv420p, 25 fps) with ``crf`` 0 / 23 / 40 for ``c0`` / ``c23`` / ``c40``.
Entry point: :func:`make_demo_dataset`.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import cv2
import numpy as np

METHODS: tuple[str, ...] = ("PoissonSwap", "LandmarkWarp", "TextureRender", "Checkerboard")
CRF: dict[str, int] = {"c0": 0, "c23": 23, "c40": 40}
FPS = 25

#: Face box (x0, y0, x1, y1) and the six keypoints of ``skimage.data.astronaut()``, in its 512x512 pixels, as found
#: by mediapipe's full-range face detector (``model_selection=1``; score 0.91). :func:`detect_astronaut_face`
#: recomputes them and the tests check that they still agree.
ASTRONAUT_FACE_BOX: tuple[float, float, float, float] = (173.7, 67.8, 277.6, 171.7)
ASTRONAUT_KEYPOINTS: dict[str, tuple[float, float]] = {
    "right_eye": (202.8, 103.5),
    "left_eye": (248.0, 105.9),
    "nose_tip": (224.0, 132.3),
    "mouth_center": (222.6, 148.5),
    "right_ear_tragion": (178.6, 107.5),
    "left_ear_tragion": (271.4, 112.3),
}
#: The face ellipse (centre, semi-axes) in astronaut pixels: forehead to chin, cheek to cheek.
FACE_ELLIPSE_CENTER = (225.0, 125.0)
FACE_ELLIPSE_AXES = (45.0, 58.0)
#: PoissonSwap's inner-face ellipse: these fractions of the face ellipse's semi-axes
SWAP_AXES = (0.68, 0.62)
#: A looser ellipse around head and shoulders: where the portrait is pasted over the identity's background.
_PORTRAIT_CENTER = (232.0, 300.0)
_PORTRAIT_AXES = (200.0, 320.0)

_SPLITS = ("train", "val", "test")


# --------------------------------------------------------------------------------------------------- face / ids


def detect_astronaut_face() -> dict[str, Any]:
    """Run mediapipe's full-range face detector on ``skimage.data.astronaut()``.

    Returns ``{"score", "box": (x0, y0, x1, y1), "keypoints": {name: (x, y)}}`` in pixels. Needs mediapipe (its
    bundled model, no download); :func:`make_demo_dataset` does not call it, it uses :data:`ASTRONAUT_FACE_BOX`.
    """
    import mediapipe as mp
    from skimage import data

    img = data.astronaut()
    h, w = img.shape[:2]
    with mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5) as fd:
        res = fd.process(img)
    if not res.detections:
        raise RuntimeError("mediapipe found no face in skimage.data.astronaut()")
    det = max(res.detections, key=lambda d: d.score[0])
    bb = det.location_data.relative_bounding_box
    box = (bb.xmin * w, bb.ymin * h, (bb.xmin + bb.width) * w, (bb.ymin + bb.height) * h)
    kps = {name: (k.x * w, k.y * h) for name, k in zip(ASTRONAUT_KEYPOINTS, det.location_data.relative_keypoints)}
    return {"score": float(det.score[0]), "box": box, "keypoints": kps}


def _ffpp_split_pairs() -> dict[str, list[tuple[str, str]]]:
    from dfkit.paths import manifests_dir

    out = {}
    for split in _SPLITS:
        with open(manifests_dir() / "ffpp" / "splits" / f"{split}.json") as f:
            out[split] = [(str(a), str(b)) for a, b in json.load(f)]
    return out


def select_pairs(n_identities: int, seed: int = 0) -> dict[str, list[tuple[str, str]]]:
    """Choose ``n_identities // 2`` official FF++ pairs: about 70/15/15 % train/val/test, at least one per split.

    ``n_identities`` must be even and at least 6. Deterministic given ``seed``.
    """
    if n_identities < 6 or n_identities % 2:
        raise ValueError(f"n_identities must be an even number >= 6 (one full pair per split), got {n_identities}")
    n_pairs = n_identities // 2
    n_held = max(1, round(0.15 * n_pairs))
    counts = {"train": n_pairs - 2 * n_held, "val": n_held, "test": n_held}
    rng = np.random.default_rng(seed)
    official = _ffpp_split_pairs()
    out = {}
    for split in _SPLITS:
        pool = official[split]
        if counts[split] > len(pool):
            raise ValueError(f"n_identities={n_identities} needs {counts[split]} {split} pairs; FF++ has {len(pool)}")
        idx = rng.choice(len(pool), size=counts[split], replace=False)
        out[split] = [pool[i] for i in sorted(idx)]
    return out


# --------------------------------------------------------------------------------------------------- identities


def _soft_ellipse(shape_hw: tuple[int, int], center, axes, feather: float) -> np.ndarray:
    """Float32 mask, 1 inside the ellipse, falling smoothly to 0 over about ``feather`` pixels at its edge."""
    h, w = shape_hw
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.sqrt(((xx - center[0]) / axes[0]) ** 2 + ((yy - center[1]) / axes[1]) ** 2)
    edge = feather / min(axes)
    return np.clip((1.0 + edge / 2 - r) / edge, 0.0, 1.0).astype(np.float32)


def _recolour(img: np.ndarray, hue: float, sat: float, gamma: float, gains: np.ndarray) -> np.ndarray:
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + hue / 2.0) % 180.0  # OpenCV hue is degrees / 2
    hsv[..., 1] = np.clip(hsv[..., 1] * sat, 0, 255)
    rgb = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32) / 255.0
    rgb = np.clip((rgb ** gamma) * gains, 0.0, 1.0)
    return (rgb * 255.0 + 0.5).astype(np.uint8)


def _background(kind: int, size_wh: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """One of a few public-domain ``skimage.data`` images (no faces in them) or a gradient, cover-resized."""
    from skimage import data

    w, h = size_wh
    makers = [data.coffee, data.rocket, data.immunohistochemistry, data.brick, data.colorwheel, None,
              data.gravel, data.grass]
    maker = makers[kind % len(makers)]
    if maker is None:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        c0, c1 = rng.uniform(30, 220, 3), rng.uniform(30, 220, 3)
        t = (0.6 * xx / w + 0.4 * yy / h)[..., None]
        img = (c0 * (1 - t) + c1 * t).astype(np.uint8)
    else:
        img = maker()
        if img.ndim == 2:  # grey texture: tint it
            tint = rng.uniform(0.5, 1.0, 3)
            img = (img[..., None].astype(np.float32) * tint).astype(np.uint8)
        img = img[..., :3]
    ih, iw = img.shape[:2]
    s = max(w / iw, h / ih)
    img = cv2.resize(img, (max(w, round(iw * s)), max(h, round(ih * s))), interpolation=cv2.INTER_AREA)
    y0, x0 = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
    img = np.ascontiguousarray(img[y0:y0 + h, x0:x0 + w])
    if kind // len(makers) % 2:  # second time round: mirror it so repeats still look different
        img = img[:, ::-1].copy()
    return img


@dataclass
class _Identity:
    """One demo identity: its looks, its scene (canvas) and its camera path."""

    sid: str
    index: int
    face_rgb: np.ndarray  # the identity's 512x512 portrait (shape, skin, hair, accessories, colour; not mirrored)
    mirror: bool
    scale: float  # portrait pixels -> canvas pixels
    anchor: tuple[float, float]  # canvas point where the face-ellipse centre sits
    canvas: np.ndarray  # the rendered scene, RGB uint8
    face_mask: np.ndarray  # soft face ellipse, canvas coordinates, float32
    cam: dict[str, float]  # camera path parameters
    keypoints: dict[str, tuple[float, float]] = field(default_factory=dict)  # in portrait pixels
    face_center: tuple[float, float] = FACE_ELLIPSE_CENTER
    face_axes: tuple[float, float] = FACE_ELLIPSE_AXES
    look: Any = None
    extra_masks: dict[str, np.ndarray] = field(default_factory=dict)  # canvas masks of single methods ("swap")

    def placement(self, mirror: bool | None = None, center: tuple[float, float] | None = None) -> np.ndarray:
        """2x3 affine: portrait pixels -> canvas pixels (mirrored about the face's vertical axis if asked). With
        ``center`` (another portrait's face centre) that portrait's face lands where this one's does."""
        mirror = self.mirror if mirror is None else mirror
        cx, cy = self.face_center if center is None else center
        s, (ax, ay) = self.scale, self.anchor
        sx = -s if mirror else s
        return np.array([[sx, 0.0, ax - sx * cx], [0.0, s, ay - s * cy]], dtype=np.float64)


#: two identities' canonical face crops (:func:`_canonical_hash`) differ in at least this many of dHash's 64 bits;
#: ``dfkit splits audit`` calls crops within 4 bits near duplicates, and camera motion moves one identity's crops
#: by about 13 bits (median); 18 (14 left a few near duplicates across splits in the full demo, mostly through
#: PoissonSwap crops) keeps different identities' crops apart in practice (checked by the tests and the demo audit)
MIN_IDENTITY_DISTANCE = 18


def _canonical_hash(face_rgb: np.ndarray, face_center: tuple[float, float], mirror: bool) -> int:
    """dHash (:func:`dfkit.splits.dhash`) of the identity's face as the ingest crops it: a square of 1.3 face-box
    heights around the face, 128 px, mirrored if the identity is."""
    from dfkit.splits import dhash

    bx = (ASTRONAUT_FACE_BOX[0] + ASTRONAUT_FACE_BOX[2]) / 2 - FACE_ELLIPSE_CENTER[0] + face_center[0]
    by = (ASTRONAUT_FACE_BOX[1] + ASTRONAUT_FACE_BOX[3]) / 2 - FACE_ELLIPSE_CENTER[1] + face_center[1]
    half = 0.65 * (ASTRONAUT_FACE_BOX[3] - ASTRONAUT_FACE_BOX[1])
    crop = face_rgb[int(by - half):int(by + half), int(bx - half):int(bx + half)]
    crop = cv2.resize(crop, (128, 128), interpolation=cv2.INTER_AREA)
    return dhash(crop[:, ::-1] if mirror else crop)


def _make_identity(sid: str, index: int, frame_wh: tuple[int, int], rng: np.random.Generator,
                   astronaut: np.ndarray, taken: list[int] | None = None, looks: bool = True) -> _Identity:
    """One identity. Without ``looks``: the astronaut recoloured only (hue / saturation / gamma / gains, mirrored
    on odd indices), as the demo had it before :mod:`dfkit.demo.looks`. With ``looks``: its look is redrawn (up to 15 times) until its canonical face crop is at least
    :data:`MIN_IDENTITY_DISTANCE` dHash bits from every hash in ``taken`` (the identities made before); its hash is
    then appended to ``taken``."""
    from dfkit.demo.looks import random_look, render_look

    w, h = frame_wh
    cw, ch = int(round(1.8 * w)), int(round(1.8 * h))
    taken = [] if taken is None else taken
    best = None
    if not looks:
        hue = [0.0, 16.0, -16.0, 28.0, -28.0, 8.0][index % 6] + rng.uniform(-4, 4)
        sat, gamma, gains = rng.uniform(0.75, 1.3), rng.uniform(0.8, 1.25), rng.uniform(0.85, 1.1, 3)
        best = (64, None, _recolour(astronaut, hue, sat, gamma, gains), dict(ASTRONAUT_KEYPOINTS),
                FACE_ELLIPSE_CENTER, FACE_ELLIPSE_AXES, bool(index % 2), 0)
    for _ in range(15 if looks else 0):
        # face shape, skin tone, light, hair and accessories (dfkit.demo.looks), then a global colour look
        look = random_look(index, rng)
        portrait, kps, fc, fa = render_look(astronaut, look, ASTRONAUT_KEYPOINTS, FACE_ELLIPSE_CENTER,
                                            FACE_ELLIPSE_AXES)
        # (a small hue change only: skin tone is the look's; a green or magenta face is no face for the detector)
        hue = [0.0, 6.0, -6.0, 10.0, -10.0, 3.0][index % 6] + rng.uniform(-3, 3)
        sat = rng.uniform(0.75, 1.3)
        gamma = rng.uniform(0.8, 1.25)
        gains = rng.uniform(0.85, 1.1, 3)
        face_rgb = _recolour(portrait, hue, sat, gamma, gains)
        mirror = bool(rng.uniform() < 0.5)
        hsh = _canonical_hash(face_rgb, fc, mirror)
        dist = min((bin(hsh ^ t).count("1") for t in taken), default=64)
        if best is None or dist > best[0]:
            best = (dist, look, face_rgb, kps, fc, fa, mirror, hsh)
        if dist >= MIN_IDENTITY_DISTANCE:
            break
    _, look, face_rgb, kps, fc, fa, mirror, hsh = best
    if looks:
        taken.append(hsh)
    face_px = rng.uniform(0.36, 0.42) * min(w, h)  # face-box height in frame pixels
    scale = face_px / (ASTRONAUT_FACE_BOX[3] - ASTRONAUT_FACE_BOX[1])
    anchor = (cw / 2 + rng.uniform(-0.04, 0.04) * w, ch / 2 + rng.uniform(-0.03, 0.03) * h)
    ident = _Identity(sid, index, face_rgb, mirror, scale, anchor, np.empty(0), np.empty(0), {}, kps, fc, fa, look)

    bg = _background(index, (cw, ch), rng)
    A = ident.placement()
    person = cv2.warpAffine(face_rgb, A, (cw, ch), flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE)
    pmask = _soft_ellipse((512, 512), _PORTRAIT_CENTER, _PORTRAIT_AXES, 24.0)
    pmask = cv2.warpAffine(pmask, A, (cw, ch), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)[..., None]
    ident.canvas = (bg * (1 - pmask) + person * pmask + 0.5).astype(np.uint8)
    ident.face_mask = cv2.warpAffine(_soft_ellipse((512, 512), fc, fa, 10.0), A,
                                     (cw, ch), flags=cv2.INTER_LINEAR)
    # PoissonSwap's region: the inner face (brows to chin, cheek to cheek), as landmark-based face swaps take it, so
    # its blending boundary runs through the face crop's centre (a seam any identity shows)
    swap = _soft_ellipse((512, 512), fc, (SWAP_AXES[0] * fa[0], SWAP_AXES[1] * fa[1]), 5.0)
    ident.extra_masks = {"swap": cv2.warpAffine(swap, A, (cw, ch), flags=cv2.INTER_LINEAR)}
    ident.cam = {
        "ax": rng.uniform(0.10, 0.16) * w, "ay": rng.uniform(0.05, 0.09) * h,
        "fx": rng.uniform(0.6, 1.0), "fy": rng.uniform(0.8, 1.4),
        "px": rng.uniform(0, 2 * math.pi), "py": rng.uniform(0, 2 * math.pi), "pz": rng.uniform(0, 2 * math.pi),
        "zoom": rng.uniform(0.05, 0.10), "roll": math.radians(rng.uniform(3.0, 7.0)),
    }
    return ident


def _camera(ident: _Identity, t: int, n_frames: int, frame_wh: tuple[int, int]) -> np.ndarray:
    """2x3 affine canvas -> frame for frame ``t``: a smooth pan, zoom and roll around the face."""
    w, h = frame_wh
    c = ident.cam
    u = 2 * math.pi * t / max(n_frames, 2)
    look_x = ident.anchor[0] + c["ax"] * math.sin(c["fx"] * u + c["px"])
    look_y = ident.anchor[1] + c["ay"] * math.sin(c["fy"] * u + c["py"])
    z = 1.0 + c["zoom"] * math.sin(0.8 * u + c["pz"])
    th = c["roll"] * math.sin(0.7 * u + c["px"] + 1.0)
    R = z * np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
    tr = np.array([w / 2, h / 2]) - R @ np.array([look_x, look_y])
    return np.hstack([R, tr[:, None]])


def _apply(M: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ M[:, :2].T + M[:, 2]


# --------------------------------------------------------------------------------------------------- methods


def _roi(mask: np.ndarray, pad: int = 6) -> tuple[slice, slice]:
    ys, xs = np.nonzero(mask > 0.01)
    h, w = mask.shape
    return (slice(max(0, ys.min() - pad), min(h, ys.max() + pad + 1)),
            slice(max(0, xs.min() - pad), min(w, xs.max() + pad + 1)))


def _blend(base: np.ndarray, new: np.ndarray, m: np.ndarray) -> np.ndarray:
    return (base.astype(np.float32) * (1 - m[..., None]) + new.astype(np.float32) * m[..., None] + 0.5).astype(
        np.uint8)


def _poisson_swap(frame, mask, t, src_frame):
    """Poisson-blend the source identity's face (aligned to the target's) into the face ellipse, then add a
    partial direct paste so the source's colours (and a seam) stay visible."""
    ys, xs = _roi(mask, pad=4)
    dst, src, m = frame[ys, xs], src_frame[ys, xs], mask[ys, xs]
    gain = 1.0 + 0.04 * math.sin(2 * math.pi * t / 15.0)
    src = np.clip(src.astype(np.float32) * gain, 0, 255).astype(np.uint8)
    hard = ((m > 0.5) * 255).astype(np.uint8)
    hard[:2], hard[-2:], hard[:, :2], hard[:, -2:] = 0, 0, 0, 0
    x, y, bw, bh = cv2.boundingRect(hard)
    cloned = cv2.seamlessClone(src, dst, hard, (x + bw // 2, y + bh // 2), cv2.NORMAL_CLONE)
    mix = _blend(cloned, src, np.clip(m * 1.6 - 0.6, 0, 1) * 0.6)
    out = frame.copy()
    out[ys, xs] = _blend(dst, mix, m)
    return out


def _landmark_warp(frame, mask, t, kps):
    """Move the eyes and mouth with a smooth displacement field that changes over time (mouth opens/closes,
    eyes widen and drift)."""
    ys, xs = _roi(mask)
    m = mask[ys, xs]
    yy, xx = np.mgrid[ys, xs].astype(np.float32)
    eye_d = float(np.linalg.norm(kps["left_eye"] - kps["right_eye"]))
    dx = np.zeros_like(xx)
    dy = np.zeros_like(xx)
    phase = 2 * math.pi * t / 10.0
    # mouth: vertical stretch about the mouth centre (sample closer to it -> features move apart)
    mx, my = kps["mouth_center"]
    g = np.exp(-((xx - mx) ** 2 + (yy - my) ** 2) / (2 * (0.45 * eye_d) ** 2))
    k = 0.30 + 0.10 * math.sin(phase)
    dy += -k * (yy - my) * g
    dx += 0.10 * math.sin(phase + 1.0) * (xx - mx) * g
    # eyes: magnify, and drift sideways together
    for name in ("right_eye", "left_eye"):
        ex, ey = kps[name]
        g = np.exp(-((xx - ex) ** 2 + (yy - ey) ** 2) / (2 * (0.28 * eye_d) ** 2))
        k = 0.32 + 0.08 * math.sin(phase + 2.0)
        dx += -k * (xx - ex) * g + 0.06 * eye_d * math.sin(0.5 * phase) * g
        dy += -k * (yy - ey) * g
    map_x = (xx + dx * m).astype(np.float32)
    map_y = (yy + dy * m).astype(np.float32)
    out = frame.copy()
    out[ys, xs] = cv2.remap(frame, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return out


def _texture_render(frame, mask, t):
    """A low-pass, flat-shaded re-rendering of the face: bilateral smoothing + colour quantisation."""
    ys, xs = _roi(mask, pad=10)
    roi, m = frame[ys, xs], mask[ys, xs]
    smooth = cv2.bilateralFilter(roi, 9, 60, 5)
    smooth = cv2.bilateralFilter(smooth, 9, 60, 5)
    levels = 7 + (t // 5) % 3
    step = 255.0 / (levels - 1)
    quant = np.round(smooth.astype(np.float32) / step) * step
    quant = cv2.GaussianBlur(quant, (0, 0), 0.6)
    out = frame.copy()
    out[ys, xs] = _blend(roi, np.clip(quant, 0, 255), m * (0.9 + 0.1 * math.sin(t)))
    return out


def _checkerboard(frame, mask, t, factor: int = 3):
    """Down-sample the face ``factor``x, up-sample nearest-neighbour, and add a periodic checkerboard like the
    output of a strided transposed convolution."""
    ys, xs = _roi(mask, pad=6)
    roi, m = frame[ys, xs], mask[ys, xs]
    h, w = roi.shape[:2]
    small = cv2.resize(roi, (max(1, w // factor), max(1, h // factor)), interpolation=cv2.INTER_AREA)
    up = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST).astype(np.float32)
    # pattern fixed in frame coordinates (like a generator's output grid)
    yy, xx = np.mgrid[ys, xs]
    checker = np.where(((xx // factor) + (yy // factor)) % 2 == 0, 1.0, -1.0).astype(np.float32)
    amp = 14.0 + 3.0 * math.sin(2 * math.pi * t / 8.0)
    up += (amp * checker)[..., None]
    out = frame.copy()
    out[ys, xs] = _blend(roi, np.clip(up, 0, 255), m)
    return out


# --------------------------------------------------------------------------------------------------- video I/O


#: the kinds of poor capture a poorly filmed target gets (one each), with the range its level is drawn from -- in the
#: units of :mod:`dfkit.quality.degrade`, at severities real datasets have (FF++ / DFDC / Celeb-DF at 480p-720p)
CAPTURE: dict[str, dict[str, tuple[float, float]]] = {
    "defocus": {"defocus": (2.0, 4.0)},  # Gaussian σ, frame px: an out-of-focus webcam / phone
    "motion": {"motion": (7.0, 13.0)},  # blur length, frame px: a hand-held camera panning
    "low_light": {"under": (0.25, 0.4), "noise": (8.0, 15.0)},  # exposure gain (linear light) + sensor noise σ
    "compression": {"h264": (36.0, 40.0)},  # CRF of an earlier, heavy re-encode (an upload, a messenger)
    "low_res": {"scale": (0.25, 0.35)},  # a small camera / a zoomed-in low-resolution video, up-scaled
}


def capture_plan(poor: list[str], seed: int) -> dict[str, dict[str, float]]:
    """``{target id: {degrade kind: level}}`` for the poorly filmed targets: the kinds of :data:`CAPTURE` dealt
    round in a seeded order (so every split's few poor targets get different kinds), levels drawn in their ranges."""
    rng = np.random.default_rng([seed, 11])
    kinds = list(CAPTURE)
    order = [kinds[i] for i in rng.permutation(len(kinds))]
    plan = {}
    for k, tid in enumerate(poor):
        kind = order[k % len(order)]
        plan[tid] = {"capture": kind, **{d: float(np.round(rng.uniform(*r), 2)) for d, r in CAPTURE[kind].items()}}
    return plan


def _capture(frames: list[np.ndarray], tid: str, plan: dict[str, Any], seed: int) -> list[np.ndarray]:
    """Poor capture of one target video, with :func:`dfkit.quality.degrade.degrade`: defocus, motion blur, low
    light (under-exposure, then sensor noise), an earlier heavy H.264 encode, or low resolution. It is applied to the
    target's frames before any manipulation (as a real target video was filmed before it was faked), so the original
    is the degraded video and every fake draws its artifacts on the degraded frames; pairs stay pixel-aligned outside
    the face."""
    from dfkit.quality.degrade import degrade, h264_clip

    out = []
    for t, f in enumerate(frames):
        rng = np.random.default_rng([seed, int(tid), t, 7])
        for kind, level in plan.items():
            if kind in ("capture", "h264"):
                continue
            f = degrade(f, kind, level, rng)
        out.append(f)
    if "h264" in plan:
        out = h264_clip(out, plan["h264"])
    return out


def _capture_classic(frames: list[np.ndarray], tid: str, seed: int) -> list[np.ndarray]:
    """Poor capture conditions for one target video (its original and all its fakes alike, with the same noise,
    so pairs stay pixel-aligned outside the face): defocus blur ramping up over the clip, under-exposure and
    sensor noise. This spreads the demo's quality scores, so filtering by quality has something to filter."""
    n = len(frames)
    out = []
    for t, f in enumerate(frames):
        rng = np.random.default_rng([seed, int(tid), t, 7])
        sigma = 0.4 + 2.6 * t / max(n - 1, 1)
        g = cv2.GaussianBlur(f, (0, 0), sigma).astype(np.float32) * 0.55
        g += rng.normal(0, 5.0, g.shape).astype(np.float32)
        out.append(np.clip(g, 0, 255).astype(np.uint8))
    return out


def write_video(path: Path, frames: Iterable[np.ndarray], crf: int, fps: int = FPS) -> None:
    """Encode RGB uint8 frames as H.264 (libx264, yuv420p) with PyAV; the same frames give the same file."""
    from dfkit.media import write_h264

    # preset veryfast: about 3x faster than x264's default at the same CRF (the demo's time budget)
    write_h264(path, frames, crf, fps=fps, preset="veryfast")


# --------------------------------------------------------------------------------------------------- main


def make_demo_dataset(root: Path, n_identities: int = 6, n_frames: int = 40,
                      frame_size: tuple[int, int] = (320, 256), compressions=("c23", "c40"), seed: int = 0,
                      progress: bool = True, degrade: bool = True, looks: bool = False,
                      realistic_capture: bool = False) -> dict[str, Any]:
    """Write the synthetic demo dataset under ``root`` in FF++ layout and return a summary.

    ``frame_size`` is (width, height), both even. ``compressions`` are names from :data:`CRF`. For every chosen
    FF++ pair ``(a, b)`` this writes originals ``a`` and ``b`` and, for each of :data:`METHODS`, the fakes
    ``a_b`` (target a, source b) and ``b_a``.

    The summary has: ``root``; ``ids`` and ``pairs`` per split; ``methods``; ``compressions``; ``files``
    (absolute paths of the written videos); ``videos`` (one dict per file: rel_path, label, method,
    compression, target, source, split); ``counts``; ``face_boxes`` (target id -> per-frame face-ellipse box
    ``[x0, y0, x1, y1]`` in frame pixels, shared by the original and all its fakes); ``n_frames``,
    ``frame_size``, ``fps``, ``seed`` and ``seconds`` (build time).
    """
    t_start = time.perf_counter()
    root = Path(root)
    w, h = (int(v) for v in frame_size)
    if w % 2 or h % 2 or w < 96 or h < 96:
        raise ValueError(f"frame_size must be two even numbers >= 96, got {frame_size}")
    if n_frames < 1:
        raise ValueError("n_frames must be >= 1")
    compressions = tuple(compressions)
    bad = [c for c in compressions if c not in CRF]
    if bad or not compressions:
        raise ValueError(f"unknown compression(s) {bad}; known: {', '.join(CRF)}")
    from skimage import data

    pairs = select_pairs(n_identities, seed)
    split_of = {i: s for s, ps in pairs.items() for p in ps for i in p}
    ids = [i for s in _SPLITS for p in pairs[s] for i in p]
    rng = np.random.default_rng([seed, 1])
    astronaut = data.astronaut()
    taken: list[int] = []
    idents = {sid: _make_identity(sid, k, (w, h), rng, astronaut, taken, looks) for k, sid in enumerate(ids)}

    jobs: list[tuple[str, str, str | None]] = [("original", t, None) for t in ids]
    for split in _SPLITS:
        for a, b in pairs[split]:
            for method in METHODS:
                jobs += [(method, a, b), (method, b, a)]

    bar = None
    if progress:
        try:
            from tqdm import tqdm

            bar = tqdm(total=len(jobs), desc="demo videos", unit="video", file=sys.stderr)
        except ImportError:  # pragma: no cover
            bar = None

    # per-target geometry, computed once and shared by the original and all its fakes
    geometry: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray, dict]]] = {}
    face_boxes: dict[str, list[list[float]]] = {}
    kp_names = list(ASTRONAUT_KEYPOINTS)
    for tid, ident in idents.items():
        kp_astro = np.array([ident.keypoints[k] for k in kp_names])
        A = ident.placement()
        per_frame = []
        for t in range(n_frames):
            M = _camera(ident, t, n_frames, (w, h))
            frame = cv2.warpAffine(ident.canvas, M, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            mask = cv2.warpAffine(ident.face_mask, M, (w, h), flags=cv2.INTER_LINEAR)
            MA = np.vstack([M, [0, 0, 1]]) @ np.vstack([A, [0, 0, 1]])
            pts = _apply(MA[:2], kp_astro)
            if ident.mirror:  # the mirrored portrait's right eye is the original's left eye
                pts[[0, 1]] = pts[[1, 0]]
                pts[[4, 5]] = pts[[5, 4]]
            kps = dict(zip(kp_names, pts))
            per_frame.append((M, frame, mask, kps))
        geometry[tid] = per_frame
        boxes = []
        for _, _, mask, _ in per_frame:
            ys, xs = np.nonzero(mask > 0.5)
            boxes.append([float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)])
        face_boxes[tid] = boxes

    # the second identity of every pair is filmed badly (see _capture): each split has clean and poor videos
    poor = [b for split in _SPLITS for _, b in pairs[split]]
    if realistic_capture:
        plan = capture_plan(poor, seed) if degrade else {}
    else:  # the older ramp of blur + darkening + noise (_capture_classic)
        plan = {b: {"capture": "classic"} for b in poor} if degrade else {}
    if realistic_capture:
        # as in real datasets, the poor capture is in the target video before any manipulation: the methods work
        # on the degraded frames (their own artifacts on top of it), and the original is the degraded video itself
        for tid in plan:
            per_frame = geometry[tid]
            captured = _capture([f for _, f, _, _ in per_frame], tid, plan[tid], seed)
            geometry[tid] = [(M, f, m, k) for (M, _, m, k), f in zip(per_frame, captured)]
    videos: list[dict[str, Any]] = []
    files: list[str] = []
    for method, tid, sid in jobs:
        per_frame = geometry[tid]
        if method == "original":
            frames = [f for _, f, _, _ in per_frame]
            rel_dir, name = "original_sequences/youtube/{c}/videos", f"{tid}.mp4"
        else:
            rel_dir, name = f"manipulated_sequences/{method}/{{c}}/videos", f"{tid}_{sid}.mp4"
            if method == "PoissonSwap":
                tgt, src = idents[tid], idents[sid]
                # the source identity's portrait, placed where the target's face is (own colours, own mirroring)
                src_canvas = cv2.warpAffine(src.face_rgb, tgt.placement(mirror=src.mirror, center=src.face_center),
                                            tgt.canvas.shape[1::-1], flags=cv2.INTER_LINEAR,
                                            borderMode=cv2.BORDER_REPLICATE)
                frames = [_poisson_swap(f, cv2.warpAffine(tgt.extra_masks["swap"], M, (w, h), flags=cv2.INTER_LINEAR),
                                        t, cv2.warpAffine(src_canvas, M, (w, h), flags=cv2.INTER_LINEAR,
                                                          borderMode=cv2.BORDER_REFLECT))
                          for t, (M, f, _, _) in enumerate(per_frame)]
            elif method == "LandmarkWarp":
                frames = [_landmark_warp(f, m, t, k) for t, (_, f, m, k) in enumerate(per_frame)]
            elif method == "TextureRender":
                frames = [_texture_render(f, m, t) for t, (_, f, m, _) in enumerate(per_frame)]
            else:
                frames = [_checkerboard(f, m, t) for t, (_, f, m, _) in enumerate(per_frame)]
        if tid in plan and not realistic_capture:  # (the realistic capture is in the target's frames already)
            frames = _capture_classic(frames, tid, seed)
        for c in compressions:
            rel = f"{rel_dir.format(c=c)}/{name}"
            write_video(root / rel, frames, CRF[c])
            files.append(str(root / rel))
            videos.append({"rel_path": rel, "label": "real" if method == "original" else "fake",
                           "method": method, "compression": c, "target": tid, "source": sid,
                           "split": split_of[tid]})
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()

    per_method = {m: sum(v["method"] == m for v in videos) for m in ("original",) + METHODS}
    seconds = time.perf_counter() - t_start
    return {
        "root": str(root),
        "ids": {s: [i for p in pairs[s] for i in p] for s in _SPLITS},
        "pairs": {s: [list(p) for p in pairs[s]] for s in _SPLITS},
        "methods": list(METHODS),
        "compressions": list(compressions),
        "files": files,
        "videos": videos,
        "counts": {"identities": len(ids), "pairs": len(ids) // 2, "original": per_method["original"],
                   "fake": len(videos) - per_method["original"], "files": len(files), "per_method": per_method},
        "face_boxes": face_boxes,
        "n_frames": n_frames,
        "frame_size": [w, h],
        "fps": FPS,
        "seed": seed,
        "degraded": sorted(plan),
        "capture": plan,
        "seconds": seconds,
    }
