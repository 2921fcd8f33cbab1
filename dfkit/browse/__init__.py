"""``dfkit browse``: the corpus in the FiftyOne app. The work is in :mod:`dfkit.browse.core` (imported on first
use, so that the CLI starts fast); the command is in :mod:`dfkit.cli` and calls :func:`dfkit.services.browse`."""

from __future__ import annotations

from typing import Any

_CORE = ("browse", "build_dataset", "add_predictions", "mark_near_duplicates", "save_views", "serve", "default_name",
         "cache_root", "materialise", "hardness_mistakenness", "BuildStats", "import_fiftyone", "app_url")


def __getattr__(name: str) -> Any:
    if name in _CORE:
        from dfkit.browse import core

        return getattr(core, name)
    raise AttributeError(name)

