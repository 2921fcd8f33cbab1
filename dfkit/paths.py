"""Where dfkit's shipped files live (manifests/ at the repository root, installed as dfkit/_manifests)."""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent


def manifests_dir() -> Path:
    """The `manifests/` folder: per-dataset facts (method lists, official splits, taxonomy)."""
    for cand in (_PKG.parent / "manifests", _PKG / "_manifests"):
        if cand.is_dir():
            return cand
    raise FileNotFoundError("dfkit's manifests/ folder is missing from this installation")
