"""Constructed fakes whose manipulated faces and frames are known: the cases a video-level label gets wrong.

:func:`make_label_noise_cases` writes a small FF++-layout dataset (``dfkit ingest ffpp ROOT`` reads it) from
``skimage.data.astronaut()``'s head and shoulders, which mediapipe's full-range detector finds (the demo's face,
:data:`dfkit.demo.synth.ASTRONAUT_FACE_BOX`):

* ``half`` -- ``Deepfakes/000_003``: one face, swapped from the middle of the clip on; the frames before are the
  original's frames (identical before encoding).
* ``bystander`` -- ``Deepfakes/001_002``: two people; only the smaller one (not the dominant track) is swapped.
* ``mask`` -- ``FaceSwap/001_002`` with ``FaceSwap/masks/videos/001_002.mp4``: the same two people, the smaller one
  swapped, and the mask video marking the swapped region (white on black).

The originals ``000`` (one face) and ``001`` (two) are written beside them. "Swapped" is a face from elsewhere
(the head mirrored and darkened) blended into an ellipse inside the face box: a change of tens of grey levels,
and still a face for the detector. The returned dict says, per case, which face box is manipulated on which frame.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dfkit.demo.synth import ASTRONAUT_FACE_BOX, CRF, FPS
from dfkit.media import write_h264

#: frame size (width, height): two people side by side
FRAME_SIZE = (512, 256)
N_FRAMES = 16
#: the head-and-shoulders square cut from the astronaut (x0, y0, side), astronaut pixels
_HEAD = (100, 10, 250)
#: head sides in frame pixels: the dominant person, the bystander (smaller: the dominant track never picks it)
BIG, SMALL = 230, 140
#: the swapped region: an ellipse with these fractions of the face box's half sides
_SWAP_AXES = (0.42, 0.5)
#: the swap darkens the mirrored face to this fraction of its brightness
_SWAP_GAIN = 0.7
COMPRESSION = "c23"


def _head(side: int, mirror: bool) -> np.ndarray:
    from skimage import data

    x0, y0, s = _HEAD
    head = cv2.resize(data.astronaut()[y0:y0 + s, x0:x0 + s], (side, side), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(head[:, ::-1]) if mirror else head


def _face_box(side: int, left: int, top: int, mirror: bool) -> list[float]:
    """The face box (x0, y0, x1, y1, frame pixels) of a head of ``side`` px pasted at ``(left, top)``."""
    x0, y0, s = _HEAD
    k = side / s
    fx0, fy0, fx1, fy1 = ((v - o) * k for v, o in zip(ASTRONAUT_FACE_BOX, (x0, y0, x0, y0)))
    if mirror:
        fx0, fx1 = side - fx1, side - fx0
    return [left + fx0, top + fy0, left + fx1, top + fy1]


def _people(n_people: int, t: int) -> tuple[np.ndarray, list[list[float]]]:
    """Frame ``t`` of a clip with one or two people (moving a pixel a frame) and their face boxes (dominant
    first)."""
    w, h = FRAME_SIZE
    frame = np.full((h, w, 3), 90, np.uint8)
    frame[:, :, 2] = 110  # a bluish wall
    left = 20 + t
    frame[h - BIG:, left:left + BIG] = _head(BIG, False)
    boxes = [_face_box(BIG, left, h - BIG, False)]
    if n_people == 2:
        right = w - SMALL - 40 - t
        frame[h - SMALL:, right:right + SMALL] = _head(SMALL, True)
        boxes.append(_face_box(SMALL, right, h - SMALL, True))
    return frame, boxes


def _swap_mask(shape: tuple[int, int], box: list[float]) -> np.ndarray:
    """The swapped region of a face box: a soft ellipse (float32 in [0, 1], frame size)."""
    x0, y0, x1, y1 = box
    m = np.zeros(shape, np.float32)
    centre = (int(round((x0 + x1) / 2)), int(round((y0 + y1) / 2)))
    axes = (int(round((x1 - x0) / 2 * _SWAP_AXES[0] * 2)), int(round((y1 - y0) / 2 * _SWAP_AXES[1] * 2)))
    cv2.ellipse(m, centre, axes, 0, 0, 360, 1.0, -1)
    return cv2.GaussianBlur(m, (0, 0), 2.0)


def _swap(frame: np.ndarray, box: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """``frame`` with the face in ``box`` swapped (mirrored, darkened, blended in an ellipse) and the region's
    mask."""
    m = _swap_mask(frame.shape[:2], box)
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    new = frame.astype(np.float32)
    new[y0:y1, x0:x1] = frame[y0:y1, x0:x1][:, ::-1].astype(np.float32) * _SWAP_GAIN
    out = frame * (1 - m[..., None]) + new * m[..., None]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8), m


#: the originals' x264 preset (the fakes': veryfast): clips encoded separately, as a dataset's are, so the untouched
#: frames of a fake differ from its original by their own compression noise (one encoder and preset would encode a
#: shared stretch of frames byte for byte)
ORIGINAL_PRESET = "medium"


def _write(root: Path, rel: str, frames: list[np.ndarray], crf: int, preset: str = "veryfast") -> str:
    write_h264(root / rel, frames, crf, fps=FPS, preset=preset)
    return rel


def make_label_noise_cases(root: str | Path, seed: int = 0) -> dict[str, Any]:
    """Write the cases (see the module doc) under ``root`` and return what an ingest should find.

    Returns ``{"root", "n_frames", "frame_size", "compression", "originals": {id: rel_path}, "cases": {name: case}}``
    where each case has ``fake`` (rel_path), ``video_id`` and ``pair_video_id`` (the ffpp adapter's ids),
    ``swapped_box`` (per frame: the manipulated face's box, frame pixels), ``other_box`` (per frame: the untouched
    face's box, or None), ``manipulated_frames`` / ``untouched_frames`` (frame indices) and, for ``mask``, ``mask``
    (rel_path of the mask video). ``seed`` is accepted for symmetry with the demo; the cases are fixed."""
    del seed  # nothing is random: the cases are the same on every call
    root = Path(root)
    crf = CRF[COMPRESSION]
    one = [_people(1, t) for t in range(N_FRAMES)]
    two = [_people(2, t) for t in range(N_FRAMES)]
    originals = {
        "000": _write(root, f"original_sequences/youtube/{COMPRESSION}/videos/000.mp4", [f for f, _ in one], crf,
                      ORIGINAL_PRESET),
        "001": _write(root, f"original_sequences/youtube/{COMPRESSION}/videos/001.mp4", [f for f, _ in two], crf,
                      ORIGINAL_PRESET),
    }
    half = N_FRAMES // 2
    frames_a = [f if t < half else _swap(f, b[0])[0] for t, (f, b) in enumerate(one)]
    swapped_b = [_swap(f, b[1]) for f, b in two]
    cases: dict[str, dict[str, Any]] = {}

    def case(name, method, stem, frames, swapped, other, manipulated, mask=None):
        rel = _write(root, f"manipulated_sequences/{method}/{COMPRESSION}/videos/{stem}.mp4", frames, crf)
        cases[name] = {"fake": rel, "video_id": f"{method}/{COMPRESSION}/{stem}",
                       "pair_video_id": f"original/{COMPRESSION}/{stem.split('_')[0]}",
                       "swapped_box": swapped, "other_box": other, "manipulated_frames": manipulated,
                       "untouched_frames": [t for t in range(N_FRAMES) if t not in manipulated]}
        if mask is not None:
            cases[name]["mask"] = _write(root, f"manipulated_sequences/{method}/masks/videos/{stem}.mp4", mask, 0)

    case("half", "Deepfakes", "000_003", frames_a, [b[0] for _, b in one], [None] * N_FRAMES,
         list(range(half, N_FRAMES)))
    case("bystander", "Deepfakes", "001_002", [f for f, _ in swapped_b], [b[1] for _, b in two],
         [b[0] for _, b in two], list(range(N_FRAMES)))
    masks = [np.repeat(((m > 0.5) * 255).astype(np.uint8)[..., None], 3, axis=2) for _, m in swapped_b]
    case("mask", "FaceSwap", "001_002", [f for f, _ in swapped_b], [b[1] for _, b in two], [b[0] for _, b in two],
         list(range(N_FRAMES)), mask=masks)
    return {"root": str(root), "n_frames": N_FRAMES, "frame_size": list(FRAME_SIZE), "compression": COMPRESSION,
            "originals": originals, "cases": cases}
