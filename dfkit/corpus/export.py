"""Exporting a view of the corpus (``dfkit export``): Hugging Face parquet, WebDataset tar shards or a folder tree.

Every format holds the same crops and the same per-crop record: the metadata columns (labels, video facts, box,
landmarks), the quality columns when ``dfkit quality`` computed them, typed as the corpus stores them
(:meth:`~dfkit.corpus.reader.Corpus.metadata_table`: a missing string is a null, not NaN), and the crop image
(``ref_crop`` is left out). The layouts:

- ``hf``: ``data/<split>-<i:05d>-of-<n:05d>.parquet`` (the Hub's layout) with the Hugging Face features in the
  schema (``image`` is a ``datasets.Image``) and a dataset card whose YAML names each split's files:
  ``datasets.load_dataset("parquet", data_dir=OUT)`` (or ``load_dataset(OUT)``) gives a ``DatasetDict``, a split per
  key, with PIL images (the crop bytes as stored: PNG unless the corpus was ingested as WebP/JPEG);
- ``webdataset``: ``<split>/shard-<i:06d>.tar``, two members per crop, ``<key>.png`` and ``<key>.json`` (the record)
  where the key is the ``sample_id`` (``dataset/video_id/frame``); ``webdataset.WebDataset(urls)`` reads them;
- ``folder``: ``<split>/<label>/<method_canonical>/<sample_id>.png`` and ``index.csv`` (``path`` + the record; list
  columns as JSON; a CSV reader guesses types) with the same rows typed in ``index.parquet``.

Path parts pass through :func:`safe_part` (a ``sample_id`` such as ``demo/original/c23/006/000004`` stays as it
is, its ``/`` making folders; characters outside ``A-Za-z0-9_.=+-`` become ``_``).

PNG members are the stored bytes when the crop is a PNG, else the decoded crop encoded as PNG (lossless: the same
pixels). Each export has ``export.json`` (corpus, filters, counts per split/label/method, files, columns) and a
``README.md`` saying the same for people.

:func:`export_view` writes into a temporary folder beside ``out`` and renames it into place at the end, so an
interrupted or failed export leaves nothing under ``out``'s name; an existing non-empty ``out`` is refused unless
``overwrite``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import secrets
import shutil
import tarfile
import time
from pathlib import Path
from typing import Any, Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from dfkit import __version__
from dfkit.corpus.codec import decode_crop, encode_crop
from dfkit.corpus.reader import Corpus, CropReader
from dfkit.errors import DfkitError

FORMATS = ("hf", "webdataset", "folder")
#: crops per output file (a parquet file of ``hf``, a tar shard of ``webdataset``)
SHARD_CROPS = 1000
#: the image column of the Hugging Face datasets (``Corpus.to_hf`` and the ``hf`` export)
HF_IMAGE_COLUMN = "image"
HF_DATA_DIR = "data"
#: rows per parquet row group in the ``hf`` export (the Hub's choice for image datasets: small random reads)
HF_ROW_GROUP = 100
EXPORT_MANIFEST = "export.json"
EXPORT_README = "README.md"
FOLDER_INDEX = "index.csv"
#: the same index, typed as the corpus stores the columns (a CSV reader guesses: ``"002"`` would become 2)
FOLDER_INDEX_PARQUET = "index.parquet"
#: the split of rows that have none (a plain view's crops without a split)
NO_SPLIT = "nosplit"
#: the order splits are written in (others after them, sorted)
SPLIT_ORDER = ("train", "val", "test")

_SAFE = re.compile(r"[^A-Za-z0-9_.=+-]")


def hf_features(schema: pa.Schema, decode: bool = True):
    """The ``datasets.Features`` of a table with ``schema``: each column's from its Arrow type, ``image`` a
    ``datasets.Image(decode=decode)``."""
    import datasets

    plain = pa.schema([f for f in schema if f.name != HF_IMAGE_COLUMN])
    feats = dict(datasets.Features.from_arrow_schema(plain))
    if HF_IMAGE_COLUMN in schema.names:
        feats[HF_IMAGE_COLUMN] = datasets.Image(decode=decode)
    return datasets.Features({n: feats[n] for n in schema.names})


def load_line(fmt: str, out: Path | str, split: str = "train") -> str:
    """The one line of Python that loads an export of format ``fmt`` at ``out`` (a WebDataset: its ``split``)."""
    if fmt == "hf":
        return f'datasets.load_dataset("parquet", data_dir="{out}")  # DatasetDict: a split per key, PIL images'
    if fmt == "webdataset":
        return (f'webdataset.WebDataset(sorted(glob.glob("{out}/{split}/*.tar")), shardshuffle=False)'
                '.decode("pil")  # dicts: __key__, png, json')
    return (f'pandas.read_parquet("{out}/{FOLDER_INDEX_PARQUET}")  # a row per crop (also {FOLDER_INDEX}); '
            f'`path` is relative to {out}')


def safe_part(name: Any) -> str:
    """``name`` as one path component: characters other than letters, digits and ``_ . = + -`` become ``_``;
    never empty, ``.`` or ``..``."""
    s = _SAFE.sub("_", str(name))
    return s if s.strip(".") else s.replace(".", "_") or "_"


def crop_key(sample_id: str) -> str:
    """The relative name (no extension) of a crop in a tar or folder export: the ``sample_id``'s parts, each a
    :func:`safe_part`; the last without dots (WebDataset splits a member's name at its base name's first dot)."""
    parts = [safe_part(p) for p in str(sample_id).split("/")]
    parts[-1] = parts[-1].replace(".", "_")
    return "/".join(parts)


def check_out(out: Path | str, overwrite: bool, corpus: Path | str | None = None) -> Path:
    """``out`` when an export may be written there, else one line: not the corpus, nor inside it or around it; an
    existing non-empty folder only with ``overwrite``; never a file."""
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise DfkitError(f"--out {out} is a file, not a folder: name a folder for the export")
    if corpus is not None:
        o, c = out.resolve(), Path(corpus).expanduser().resolve()
        if o == c or c in o.parents or o in c.parents:
            raise DfkitError(f"--out {out}: the export cannot be the corpus {corpus}, inside it or around it")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise DfkitError(f"--out {out} exists and is not empty: pass --overwrite to replace it, or name another "
                         "folder")
    return out


def _split_names(rows: pd.DataFrame) -> pd.Series:
    return rows["split"].astype(object).where(rows["split"].notna(), NO_SPLIT).astype(str)


def _ordered(rows: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """``rows`` by split (:data:`SPLIT_ORDER` first), then in shard order; and the splits in that order."""
    rows = rows.assign(_split=_split_names(rows).to_numpy())
    names = [s for s in SPLIT_ORDER if s in set(rows["_split"])]
    names += sorted(set(rows["_split"]) - set(names))
    rank = {s: i for i, s in enumerate(names)}
    rows = rows.assign(_rank=rows["_split"].map(rank).to_numpy())
    return rows.sort_values(["_rank", "_file", "_row"], kind="stable").reset_index(drop=True), names


def counts(rows: pd.DataFrame) -> dict[str, Any]:
    """Crops and videos in all, per split, and per split x label x canonical method (JSON)."""
    if rows.empty:
        return {"crops": 0, "videos": 0, "per_split": {}}
    keys = rows["dataset"].astype(str) + "/" + rows["video_id"].astype(str)
    names = _split_names(rows)
    order = [s for s in SPLIT_ORDER if s in set(names)] + sorted(set(names) - set(SPLIT_ORDER))
    per: dict[str, Any] = {}
    for s in order:
        g = rows[(names == s).to_numpy()]
        k = keys[g.index]
        per[str(s)] = {"crops": int(len(g)), "videos": int(k.nunique()), "per_class": {
            f"{lab}/{m}": int(n) for (lab, m), n in g.groupby(["label", "method_canonical"]).size().items()}}
    return {"crops": int(len(rows)), "videos": int(keys.nunique()), "per_split": per}


def _json_value(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, list):
        return [_json_value(x) for x in v]
    return v


def _png(raw: bytes, fmt: str | None) -> bytes:
    return raw if fmt == "png" else encode_crop(decode_crop(raw), "png")[0]


class _Writer:
    """One format's files inside the temporary export folder; ``add`` takes a chunk of one split."""

    def __init__(self, root: Path, schema: pa.Schema, counts_per_split: dict[str, int], shard_crops: int):
        self.root, self.schema, self.n, self.shard_crops = root, schema, counts_per_split, shard_crops
        self.files: dict[str, list[str]] = {}
        self.mtime = int(time.time())

    def add(self, split: str, i: int, meta: pa.Table, images: list[bytes]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _HF(_Writer):
    def __init__(self, *a: Any) -> None:
        import datasets

        super().__init__(*a)
        self.features = hf_features(self.schema.append(pa.field(HF_IMAGE_COLUMN, datasets.Image().pa_type)))
        (self.root / HF_DATA_DIR).mkdir()

    def add(self, split, i, meta, images):
        n = math.ceil(self.n[split] / self.shard_crops)
        rel = f"{HF_DATA_DIR}/{safe_part(split)}-{i:05d}-of-{n:05d}.parquet"
        img = pa.array([{"bytes": b, "path": None} for b in images], type=self.features.arrow_schema.field(
            HF_IMAGE_COLUMN).type)
        t = meta.append_column(HF_IMAGE_COLUMN, img).cast(self.features.arrow_schema)
        # no dictionary for the image bytes (unique per crop: it would only be tried and dropped)
        pq.write_table(t, self.root / rel, row_group_size=HF_ROW_GROUP, use_dictionary=self.schema.names)
        self.files.setdefault(split, []).append(rel)


class _Tar(_Writer):
    def add(self, split, i, meta, images):
        rel = f"{safe_part(split)}/shard-{i:06d}.tar"
        (self.root / rel).parent.mkdir(exist_ok=True)
        with tarfile.open(self.root / rel, "w", format=tarfile.PAX_FORMAT) as tar:
            for rec, raw in zip(meta.to_pylist(), images):
                key = crop_key(rec["sample_id"])
                record = json.dumps({k: _json_value(v) for k, v in rec.items()}).encode()
                for ext, data in (("png", _png(raw, rec.get("crop_format"))), ("json", record)):
                    ti = tarfile.TarInfo(f"{key}.{ext}")
                    ti.size, ti.mtime, ti.mode = len(data), self.mtime, 0o644
                    tar.addfile(ti, io.BytesIO(data))
        self.files.setdefault(split, []).append(rel)


class _Folder(_Writer):
    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        self._f = open(self.root / FOLDER_INDEX, "w", newline="")
        self._csv = csv.writer(self._f)
        self._csv.writerow(["path", *self.schema.names])
        self._paths: list[str] = []
        self._tables: list[pa.Table] = []

    def add(self, split, i, meta, images):
        for rec, raw in zip(meta.to_pylist(), images):
            rel = "/".join([safe_part(split), safe_part(rec["label"]), safe_part(rec["method_canonical"]),
                            crop_key(rec["sample_id"])]) + ".png"
            (self.root / rel).parent.mkdir(parents=True, exist_ok=True)
            (self.root / rel).write_bytes(_png(raw, rec.get("crop_format")))
            self._csv.writerow([rel, *(_csv_value(rec[c]) for c in self.schema.names)])
            self._paths.append(rel)
        self._tables.append(meta)
        self.files[split] = [f"{safe_part(split)}/"]

    def close(self) -> None:
        self._f.close()
        t = pa.concat_tables(self._tables) if self._tables else self.schema.empty_table()
        pq.write_table(t.add_column(0, "path", pa.array(self._paths, pa.string())), self.root / FOLDER_INDEX_PARQUET)


def _csv_value(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, list):
        return json.dumps(_json_value(v))
    return v


_WRITERS = {"hf": _HF, "webdataset": _Tar, "folder": _Folder}


def _chunks(rows: pd.DataFrame, splits: list[str], size: int) -> Iterator[tuple[str, int, int, int]]:
    """``(split, index within the split, start, stop)`` over ``rows`` ordered by :func:`_ordered`."""
    start = 0
    for s in splits:
        n = int((rows["_split"] == s).sum())
        for i, a in enumerate(range(0, n, size)):
            yield s, i, start + a, start + min(n, a + size)
        start += n


def _hf_card_header(files: dict[str, list[str]]) -> list[str]:
    """The dataset card's YAML block: the split of every data file (``datasets.load_dataset(OUT)`` and the Hub read
    it)."""
    lines = ["---", "configs:", "- config_name: default", "  data_files:"]
    for s in files:
        lines += [f"  - split: {s}", f"    path: {HF_DATA_DIR}/{safe_part(s)}-*"]
    return lines + ["---", ""]


def _readme(manifest: dict[str, Any]) -> str:
    head = _hf_card_header(manifest["files"]) if manifest["format"] == "hf" and manifest["files"] else []
    lines = head + [f"# dfkit export ({manifest['format']})", "",
             f"{manifest['counts']['crops']} face crops of {manifest['counts']['videos']} videos from the dfkit corpus "
             f"`{manifest['corpus']}`, exported by dfkit {manifest['dfkit_version']} on {manifest['created']}.", "",
             "Load it:", "", "```python", manifest["load"], "```", "", "Selection:", ""]
    lines += [f"- {k}: {v}" for k, v in manifest["filters"].items()] or ["- the whole view"]
    lines += ["", "| split | crops | videos |", "|---|---:|---:|"]
    lines += [f"| {s} | {c['crops']} | {c['videos']} |" for s, c in manifest["counts"]["per_split"].items()]
    lines += ["", f"Every crop's record (columns): {', '.join(manifest['columns'])}.",
              f"`{EXPORT_MANIFEST}` has the counts per split, label and method and the list of files.", ""]
    return "\n".join(lines)


def export_view(view: Corpus, fmt: str, out: Path | str, *, rows: pd.DataFrame | None = None,
                filters: dict[str, Any] | None = None, overwrite: bool = False, progress: bool = True,
                shard_crops: int = SHARD_CROPS) -> dict[str, Any]:
    """Write the crops of ``view`` (or its metadata ``rows``, e.g. a training selection's) as ``fmt`` into the folder
    ``out``; returns the manifest (also written as ``export.json``). ``filters`` is recorded in the manifest.

    1. refuse (one line, nothing written) an unknown format, an ``out`` that is a file, the corpus, or a non-empty
       folder without ``overwrite``;
    2. order the rows by split, then in shard order, and type their metadata as the shards store it;
    3. write the format's files chunk by chunk (``shard_crops`` crops each: one parquet file / tar shard) into a
       temporary folder beside ``out``, with a progress bar over the crops;
    4. write ``export.json`` and ``README.md``, then rename the folder to ``out`` (an old ``out`` goes only then);
       on any failure the temporary folder is removed."""
    if fmt not in FORMATS:
        raise DfkitError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
    if not isinstance(shard_crops, int) or shard_crops < 1:
        raise DfkitError(f"crops per shard must be a positive integer, not {shard_crops!r}")
    out = check_out(out, overwrite, view.root)
    rows = view.metadata() if rows is None else rows
    rows, splits = _ordered(rows)
    meta = view.metadata_table(rows.drop(columns=["_split", "_rank"]))
    per_split = {s: int((rows["_split"] == s).sum()) for s in splits}

    from tqdm.auto import tqdm

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        writer = _WRITERS[fmt](tmp, meta.schema, per_split, shard_crops)
        reader = CropReader(view.crop_files())
        files, rowids = rows["_file"].to_numpy(), rows["_row"].to_numpy()
        with tqdm(total=len(rows), unit="crop", desc=f"export {fmt}", disable=not progress, dynamic_ncols=True) as bar:
            try:
                for split, i, a, b in _chunks(rows, splits, shard_crops):
                    images = [reader.raw(int(f), int(r)) for f, r in zip(files[a:b], rowids[a:b])]
                    writer.add(split, i, meta.slice(a, b - a), images)
                    bar.update(b - a)
            finally:
                writer.close()
        manifest = {
            "format": fmt, "corpus": str(view.root), "dfkit_version": __version__,
            "created": time.strftime("%Y-%m-%d %H:%M:%S"), "filters": dict(filters or {}),
            "counts": counts(rows), "load": load_line(fmt, out, *splits[:1]), "files": writer.files,
            "columns": meta.schema.names + ([HF_IMAGE_COLUMN] if fmt == "hf" else []),
        }
        (tmp / EXPORT_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        (tmp / EXPORT_README).write_text(_readme(manifest))
        _swap(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _swap(tmp: Path, out: Path) -> None:
    """Rename the finished ``tmp`` to ``out``; an existing ``out`` (empty, or replaced with ``--overwrite``) is moved
    aside first and deleted after."""
    if not out.exists():
        os.replace(tmp, out)
        return
    old = out.parent / f".{out.name}.old-{secrets.token_hex(4)}"
    os.replace(out, old)
    try:
        os.replace(tmp, out)
    except BaseException:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)
