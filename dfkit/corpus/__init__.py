"""The dfkit corpus: a directory of Parquet shards, one row per face crop (see ``schema.py``).

This package alone knows what is on disk: the layout and column conventions (``schema``), the crop codec
(``codec``), atomic writes and the lock (``store``), the writers (``writer``) and the readers (``reader``). It
imports nothing from ingest, quality, train or browse.

Attributes are imported on first use, so that ingest workers (which only need the schema) stay light.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dfkit.corpus.reader import Corpus

_LAZY = {
    "Corpus": "dfkit.corpus.reader", "CropReader": "dfkit.corpus.reader", "Filter": "dfkit.corpus.reader",
    "apply_split": "dfkit.corpus.reader",
    "CROPS_SCHEMA": "dfkit.corpus.schema", "VIDEOS_SCHEMA": "dfkit.corpus.schema",
    "SCHEMA_VERSION": "dfkit.corpus.schema", "sample_id": "dfkit.corpus.schema",
    "USABLE_STATUSES": "dfkit.corpus.schema", "usable": "dfkit.corpus.schema",
    "quality_column": "dfkit.corpus.schema", "raw_column": "dfkit.corpus.schema",
    "split_path": "dfkit.corpus.schema",
    "encode_crop": "dfkit.corpus.codec", "decode_crop": "dfkit.corpus.codec",
    "try_decode_crop": "dfkit.corpus.codec", "CropDecodeError": "dfkit.corpus.codec",
    "CorpusWriter": "dfkit.corpus.writer", "QualityWriter": "dfkit.corpus.writer",
    "write_split_scheme": "dfkit.corpus.writer",
}


def open(path: str | Path) -> "Corpus":  # noqa: A001 - mirrors the built-in on purpose: dfkit.corpus.open(path)
    """Open a corpus directory for reading (filter with ``.select(...)``)."""
    from dfkit.corpus.reader import Corpus

    return Corpus(path)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)


__all__ = ["open", *_LAZY]
