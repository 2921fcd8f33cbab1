"""Shared fixtures: real media (../shared/realdata when present) and small real videos made from
skimage's public-domain astronaut photograph."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
REALDATA = Path(os.environ.get("DFKIT_REALDATA", REPO.parent / "shared" / "realdata"))
FFPP_REAL = REALDATA / "ffpp_icpr2020dfdc"


def need_realdata(sub: str = "") -> Path:
    p = REALDATA / sub
    if not p.exists():
        pytest.skip(f"real sample data not present at {p} (a fresh clone has no ../shared/realdata)")
    return p


def write_video(path: Path, frames: list[np.ndarray], fps: int = 25, crf: int = 18) -> Path:
    from dfkit.media import write_h264

    write_h264(path, frames, crf, fps=fps, preset="ultrafast")
    return path


def astronaut_frames(n: int = 12, size: tuple[int, int] = (320, 240), shift: int = 4) -> list[np.ndarray]:
    """The astronaut's face panning slowly across a grey frame."""
    import cv2
    from skimage.data import astronaut

    img = astronaut()[20:260, 120:360]  # 240x240 around the face
    w, h = size
    face = cv2.resize(img, (h * 3 // 4, h * 3 // 4))
    out = []
    for i in range(n):
        f = np.full((h, w, 3), 120, np.uint8)
        x = 10 + i * shift
        y = (h - face.shape[0]) // 2
        f[y:y + face.shape[0], x:x + face.shape[1]] = face
        out.append(f)
    return out


def noise_frames(n: int = 12, size: tuple[int, int] = (160, 120), seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    w, h = size
    base = np.linspace(0, 255, w, dtype=np.uint8)[None, :, None].repeat(h, 0).repeat(3, 2)
    return [np.clip(base.astype(int) + rng.integers(-20, 20, base.shape), 0, 255).astype(np.uint8)
            for _ in range(n)]


@pytest.fixture(scope="session")
def face_video(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("media") / "face.mp4", astronaut_frames())


def touch(root: Path, *rels: str) -> None:
    """Stand-in files at the given paths (adapters never decode, so one byte will do)."""
    for rel in rels:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"\x00")
