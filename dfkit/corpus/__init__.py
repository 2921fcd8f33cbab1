"""The dfkit corpus: a directory of Parquet shards, one row per face crop (see ``schema.py``)."""

from __future__ import annotations

from pathlib import Path

from dfkit.corpus.reader import Corpus, CorpusTorchDataset, CropReader, Filter
from dfkit.corpus.schema import CROPS_SCHEMA, SCHEMA_VERSION, VIDEOS_SCHEMA, sample_id


def open(path: str | Path) -> Corpus:  # noqa: A001 - mirrors the built-in on purpose: dfkit.corpus.open(path)
    """Open a corpus directory for reading (filter with ``.select(...)``)."""
    return Corpus(path)


__all__ = ["open", "Corpus", "CorpusTorchDataset", "CropReader", "Filter", "CROPS_SCHEMA", "VIDEOS_SCHEMA",
           "SCHEMA_VERSION", "sample_id"]
