"""Distinct demo identities from the one public-domain face (``skimage.data.astronaut()``).

An identity's *look* (:class:`Look`, drawn by :func:`random_look`) changes the portrait in the ways people differ,
so that crops of two identities are not near duplicates (``dfkit splits audit``'s dHash measure), while the face
detector still finds a face:

* **face shape**: a smooth displacement field (Gaussian radial basis functions, exact at the control points) moves
  the eyes apart or together, up or down, lengthens or shortens the nose, moves and widens the mouth, widens or
  narrows the cheeks, lengthens the chin and moves the hairline;
* **skin tone** inside the face, and a **directional light** (a shading ramp across the head, random direction);
* **procedural hair and accessories**: a fringe over the forehead, a beard and/or moustache, glasses, heavier
  eyebrows -- each with its own colour, each on a share of the identities.

:func:`render_look` returns the new 512x512 portrait and its keypoints / face ellipse in the same pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

#: extra shape control points (astronaut pixels) besides the six detector keypoints
_CTRL = {
    "mouth_left": (200.0, 148.0), "mouth_right": (245.0, 149.0), "chin": (223.0, 178.0),
    "cheek_right": (183.0, 135.0), "cheek_left": (266.0, 138.0), "hairline": (224.0, 72.0),
    "brow_right": (202.0, 92.0), "brow_left": (248.0, 94.0),
}
_HAIR_COLOURS = np.array([[30, 22, 16], [60, 40, 25], [110, 75, 40], [170, 130, 80], [20, 20, 22], [120, 110, 105],
                          [90, 35, 20]], dtype=np.float32)
_FRAME_COLOURS = np.array([[15, 15, 15], [70, 40, 20], [20, 30, 80], [160, 130, 60], [120, 20, 30]], np.float32)


@dataclass
class Look:
    """The parameters of one identity's look (all in astronaut pixels / unit factors)."""

    eye_out: float = 0.0  # each eye moves outwards by this many px (negative: closer together)
    eye_dy: float = 0.0
    nose_dy: float = 0.0
    mouth_dy: float = 0.0
    mouth_wide: float = 0.0  # each mouth corner outwards
    cheek_out: float = 0.0
    chin_dy: float = 0.0
    hairline_dy: float = 0.0
    skin_gain: tuple[float, float, float] = (1.0, 1.0, 1.0)
    light_angle: float = 0.0  # radians, direction the light comes from (in the image plane)
    light_strength: float = 0.0  # relative brightness change from the lit to the dark side of the head
    fringe: bool = False
    fringe_depth: float = 0.0  # px below the hairline
    beard: bool = False
    moustache: bool = False
    glasses: bool = False
    glasses_round: bool = True
    brows: bool = False
    hair_colour: tuple[float, float, float] = (40.0, 30.0, 20.0)
    hair_tone: float = 1.0  # the portrait's own hair: brightness gain (dyed darker or lighter)
    frame_colour: tuple[float, float, float] = (15.0, 15.0, 15.0)
    texture_seed: int = 0
    extra: dict = field(default_factory=dict)


def random_look(index: int, rng: np.random.Generator) -> Look:
    """A look for identity ``index``: shape and light always vary; hair and accessories are spread over the
    identities by ``index`` (so a small demo still has a mix) with random details."""
    u = rng.uniform
    combo = index % 6  # 0 plain (or fringe), 1 fringe, 2 beard, 3 brows, 4 fringe + moustache, 5 moustache + beard
    return Look(
        eye_out=u(-3, 5), eye_dy=u(-3, 3), nose_dy=u(-4, 5), mouth_dy=u(-6, 6), mouth_wide=u(-4, 5),
        cheek_out=u(-4, 7), chin_dy=u(-4, 7), hairline_dy=u(-6, 6),
        skin_gain=tuple(float(g) for g in np.array([1.0, u(0.86, 1.0), u(0.72, 0.95)]) * u(0.6, 1.15)),
        light_angle=u(0, 2 * math.pi), light_strength=u(0.5, 0.9),
        hair_tone=float(np.exp(u(math.log(0.35), math.log(1.5)))),
        fringe=combo in (1, 4) or (combo == 0 and u() < 0.5), fringe_depth=u(10, 20),
        beard=combo in (2, 5), moustache=combo in (4, 5) or (combo == 2 and u() < 0.5),
        # glasses are drawable (``glasses=True``) but off: mediapipe's face detector misses faces with dark frames
        glasses=False, glasses_round=bool(u() < 0.5),
        brows=combo == 3 or bool(u() < 0.4),
        hair_colour=tuple(float(c) for c in _HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))] * u(0.8, 1.2)),
        frame_colour=tuple(float(c) for c in _FRAME_COLOURS[rng.integers(len(_FRAME_COLOURS))]),
        texture_seed=int(rng.integers(2 ** 31)),
    )


# --------------------------------------------------------------------------------------------------- face shape


def _controls(look: Look, keypoints: dict[str, tuple[float, float]]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    pts = {**keypoints, **_CTRL}
    d = {
        "right_eye": (-look.eye_out, look.eye_dy), "left_eye": (look.eye_out, look.eye_dy),
        "brow_right": (-look.eye_out, look.eye_dy), "brow_left": (look.eye_out, look.eye_dy),
        "nose_tip": (0.0, look.nose_dy), "mouth_center": (0.0, look.mouth_dy),
        "mouth_left": (-look.mouth_wide, look.mouth_dy), "mouth_right": (look.mouth_wide, look.mouth_dy),
        "chin": (0.0, look.chin_dy), "cheek_right": (-look.cheek_out, 0.0), "cheek_left": (look.cheek_out, 0.0),
        "right_ear_tragion": (-look.cheek_out, 0.0), "left_ear_tragion": (look.cheek_out, 0.0),
        "hairline": (0.0, look.hairline_dy),
    }
    names = list(pts)
    src = np.array([pts[n] for n in names], np.float64)
    disp = np.array([d.get(n, (0.0, 0.0)) for n in names], np.float64)
    return src, disp, names


def shape_warp(img: np.ndarray, look: Look, keypoints: dict[str, tuple[float, float]], sigma: float = 22.0):
    """Warp ``img`` (astronaut pixels) by the look's smooth displacement field. Returns the warped image and the
    moved points ``{name: (x, y)}`` (keypoints and shape controls)."""
    src, disp, names = _controls(look, keypoints)
    dst = src + disp
    # backward map: out(p) = in(p - D(p)), D an RBF interpolant with D(dst_i) = disp_i
    K = np.exp(-((dst[:, None, :] - dst[None, :, :]) ** 2).sum(-1) / (2 * sigma ** 2))
    wts = np.linalg.solve(K + 1e-6 * np.eye(len(dst)), disp)
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    x0, y0 = max(0, int(dst[:, 0].min() - 4 * sigma)), max(0, int(dst[:, 1].min() - 4 * sigma))
    x1, y1 = min(w, int(dst[:, 0].max() + 4 * sigma)), min(h, int(dst[:, 1].max() + 4 * sigma))
    px, py = xx[y0:y1, x0:x1], yy[y0:y1, x0:x1]
    dx = np.zeros_like(px)
    dy = np.zeros_like(px)
    for (cx, cy), (wx, wy) in zip(dst, wts):
        g = np.exp(-((px - cx) ** 2 + (py - cy) ** 2) / (2 * sigma ** 2)).astype(np.float32)
        dx += wx * g
        dy += wy * g
    map_x, map_y = xx.copy(), yy.copy()
    map_x[y0:y1, x0:x1] -= dx
    map_y[y0:y1, x0:x1] -= dy
    out = cv2.remap(img, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return out, {n: (float(x), float(y)) for n, (x, y) in zip(names, dst)}


# --------------------------------------------------------------------------------------------------- drawing


def _ellipse_mask(shape_hw, center, axes, feather: float, angle: float = 0.0) -> np.ndarray:
    h, w = shape_hw
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    c, s = math.cos(angle), math.sin(angle)
    x, y = xx - center[0], yy - center[1]
    r = np.sqrt(((c * x + s * y) / axes[0]) ** 2 + ((-s * x + c * y) / axes[1]) ** 2)
    edge = feather / min(axes)
    return np.clip((1.0 + edge / 2 - r) / edge, 0.0, 1.0).astype(np.float32)


def _hair_texture(shape_hw, colour, rng: np.random.Generator, vertical: bool = True) -> np.ndarray:
    """Strands: coloured noise smeared along one direction."""
    h, w = shape_hw
    n = rng.normal(0, 1, (h, w)).astype(np.float32)
    k = np.zeros((15, 15), np.float32)
    if vertical:
        k[:, 7] = 1
    else:
        k[7, :] = 1
    n = cv2.filter2D(n, -1, k / k.sum())
    n = n / (n.std() + 1e-6)
    tex = np.asarray(colour, np.float32)[None, None, :] * (1.0 + 0.25 * n[..., None])
    return np.clip(tex, 0, 255)


def _paint(img: np.ndarray, layer: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha[..., None]
    return img * (1 - a) + layer * a


def render_look(astronaut: np.ndarray, look: Look, keypoints: dict[str, tuple[float, float]],
                face_center: tuple[float, float], face_axes: tuple[float, float]):
    """The identity's portrait (512x512 RGB uint8) and its geometry.

    Returns ``(portrait, keypoints, face_center, face_axes)``: the six detector keypoints (the same names as
    ``keypoints``) and the face ellipse, moved by the shape warp."""
    img, pts = shape_warp(astronaut, look, keypoints)
    h, w = img.shape[:2]
    rng = np.random.default_rng(look.texture_seed)
    out = img.astype(np.float32)
    cx = face_center[0] + 0.0
    cy = face_center[1] + 0.5 * (look.hairline_dy + look.chin_dy)
    ax = face_axes[0] + look.cheek_out
    ay = face_axes[1] + 0.5 * (look.chin_dy - look.hairline_dy)
    face = _ellipse_mask((h, w), (cx, cy), (ax * 0.95, ay * 0.98), 12.0)
    # the portrait's own hair (the head around and above the face), dyed darker or lighter
    head = _ellipse_mask((h, w), (cx + 3, cy - 0.45 * ay), (ax * 1.9, ay * 1.35), 14.0)
    head *= np.clip((cy + 0.2 * ay - np.mgrid[0:h, 0:w][0].astype(np.float32)) / 12.0, 0, 1) * (1 - face)
    out = out * (1 + (look.hair_tone - 1) * head[..., None])
    # skin tone inside the face
    gain = np.asarray(look.skin_gain, np.float32)
    out = out * (1 - face[..., None]) + out * gain[None, None, :] * face[..., None]
    hair = np.asarray(look.hair_colour, np.float32)
    eye_d = pts["left_eye"][0] - pts["right_eye"][0]
    if look.brows:
        for side in ("brow_right", "brow_left"):
            bx, by = pts[side]
            m = _ellipse_mask((h, w), (bx, by - 2), (0.30 * eye_d, 3.2), 2.0)
            out = _paint(out, _hair_texture((h, w), hair * 0.8, rng, vertical=False), 0.85 * m)
    if look.beard:  # a chin beard below the lower lip (a full beard hides too much face from the detector)
        mx, my = pts["mouth_center"]
        chin_y = pts["chin"][1]
        m = _ellipse_mask((h, w), (mx, (my + chin_y) / 2 + 1), (0.55 * eye_d, (chin_y - my) / 2 + 1), 5.0)
        m *= np.clip((np.mgrid[0:h, 0:w][0].astype(np.float32) - (my + 7)) / 5.0, 0, 1)
        out = _paint(out, _hair_texture((h, w), hair, rng), 0.75 * m)
    if look.moustache:
        mx, my = pts["mouth_center"]
        ny = pts["nose_tip"][1]
        m = _ellipse_mask((h, w), (mx, (my + ny) / 2 + 1.5), (0.48 * eye_d, 4.5), 2.5)
        out = _paint(out, _hair_texture((h, w), hair * 0.9, rng, vertical=False), 0.9 * m)
    if look.fringe:
        top = pts["hairline"][1] - 30
        bottom = min(pts["brow_right"][1], pts["brow_left"][1]) - 22 + look.fringe_depth
        xs = np.arange(w, dtype=np.float32)
        # a wavy lower edge of the fringe
        edge = bottom + 4 * np.sin(xs / 7.0 + rng.uniform(0, 6)) + 3 * np.sin(xs / 3.1)
        yy = np.mgrid[0:h, 0:w][0].astype(np.float32)
        m = np.clip((edge[None, :] - yy) / 3.0, 0, 1) * (yy > top - 40)
        m *= _ellipse_mask((h, w), (cx, cy - 0.35 * ay), (ax * 1.25, ay * 0.95), 8.0)
        out = _paint(out, _hair_texture((h, w), hair, rng), 0.95 * m)
    if look.glasses:
        col = tuple(float(c) for c in look.frame_colour)
        layer = np.zeros((h, w, 3), np.float32)
        m = np.zeros((h, w), np.float32)
        sub = 4  # draw at 16x sub-pixel precision
        for side in ("right_eye", "left_eye"):
            ex, ey = pts[side]
            rx, ry = 0.40 * eye_d, 0.29 * eye_d
            c = (int(round(ex * 16)), int(round((ey + 1) * 16)))
            if look.glasses_round:
                cv2.ellipse(m, c, (int(rx * 16), int(ry * 16)), 0, 0, 360, 1.0, 1, cv2.LINE_AA, sub)
            else:
                p0 = (int((ex - rx) * 16), int((ey + 1 - ry) * 16))
                p1 = (int((ex + rx) * 16), int((ey + 1 + ry) * 16))
                cv2.rectangle(m, p0, p1, 1.0, 1, cv2.LINE_AA, sub)
        rx0 = pts["right_eye"][0] + 0.40 * eye_d
        lx0 = pts["left_eye"][0] - 0.40 * eye_d
        by = (pts["right_eye"][1] + pts["left_eye"][1]) / 2 - 2
        cv2.line(m, (int(rx0 * 16), int(by * 16)), (int(lx0 * 16), int(by * 16)), 1.0, 1, cv2.LINE_AA, sub)
        layer[:] = col
        out = _paint(out, layer, 0.85 * np.clip(m, 0, 1))
    # directional light over the whole portrait (the head is lit from one side)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    proj = ((xx - cx) * math.cos(look.light_angle) + (yy - cy) * math.sin(look.light_angle)) / (0.9 * ax)
    shade = 1.0 + look.light_strength * np.tanh(proj) * 0.5
    out = out * shade[..., None]
    portrait = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    kps = {n: pts[n] for n in keypoints}
    return portrait, kps, (float(cx), float(cy)), (float(ax), float(ay))
