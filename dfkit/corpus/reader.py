"""Reading a corpus: filtered metadata, split schemes, lazily decoded crops, a HF ``datasets.Dataset``.

    import dfkit.corpus
    c = dfkit.corpus.open("dfkit-corpus")
    view = c.select(datasets=["ffpp"], splits=["train"], min_quality=0.7)
    view.metadata()            # pandas DataFrame, one row per crop, no image bytes
    for row, rgb in view.crops(): ...   # (metadata row, decoded crop) in shard order
    hf = view.to_hf()          # datasets.Dataset (offline; ``image`` = datasets.Image, quality columns joined)
    view.metadata_table()      # the metadata as Arrow, typed as stored (nulls stay nulls)

The shards are plain Parquet: DuckDB (``SELECT * FROM 'corpus/crops/*.parquet'``) and polars read them as they
are (use :meth:`Corpus.crop_files` to get only committed shards). A torch dataset over a view is the training one:
``dfkit.train.data.CropDataset(view.crop_files(), view.metadata(), img_size=...)``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from dfkit.corpus.codec import decode_crop
from dfkit.corpus.schema import CROP_META_COLUMNS, CROPS_SCHEMA, OFFICIAL_SCHEME, SPLIT_SCHEME_COLUMNS, split_path
from dfkit.corpus.store import (MANIFEST, committed_shards, corrupt_shard_error, read_manifest, read_shard,
                                read_shards)
from dfkit.errors import DfkitError


def _as_list(x: str | Iterable[str] | None) -> list[str] | None:
    if x is None:
        return None
    if isinstance(x, str):
        return [v for v in x.split(",") if v]
    return list(x)


@dataclass(frozen=True)
class Filter:
    """A subset of the corpus. ``None`` means no restriction. The same options as ``dfkit train``."""

    datasets: tuple[str, ...] | None = None
    methods: tuple[str, ...] | None = None  # dataset's own or canonical names
    splits: tuple[str, ...] | None = None
    labels: tuple[str, ...] | None = None
    compression: tuple[str, ...] | None = None
    min_quality: float | None = None
    max_quality: float | None = None
    #: "official" (the dataset's split) or the name of a corpus-level re-split (``dfkit splits resplit``)
    split_scheme: str = OFFICIAL_SCHEME

    def apply(self, df: pd.DataFrame) -> pd.DataFrame:
        m = np.ones(len(df), dtype=bool)
        if self.datasets:
            m &= df["dataset"].isin(self.datasets).to_numpy()
        if self.methods:
            m &= (df["method"].isin(self.methods) | df["method_canonical"].isin(self.methods)).to_numpy()
        if self.splits:
            m &= df["split"].isin(self.splits).to_numpy()
        if self.labels:
            m &= df["label"].isin(self.labels).to_numpy()
        if self.compression:
            m &= df["compression"].isin(self.compression).to_numpy()
        if self.min_quality is not None or self.max_quality is not None:
            if "quality" not in df.columns:
                raise DfkitError("this corpus has no quality scores yet: run `dfkit quality` first")
            q = df["quality"].to_numpy(dtype=float)
            if self.min_quality is not None:
                m &= np.nan_to_num(q, nan=-1.0) >= self.min_quality
            if self.max_quality is not None:
                m &= np.nan_to_num(q, nan=2.0) < self.max_quality
        return df[m]


class Corpus:
    """An opened corpus directory. Cheap to create; tables are read when asked for."""

    def __init__(self, root: str | Path, flt: Filter | None = None):
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise DfkitError(f"no corpus at {self.root} (run `dfkit ingest` first, or pass --corpus PATH)")
        if not (self.root / MANIFEST).exists() and not (self.root / "videos").is_dir():
            raise DfkitError(f"{self.root} is not a dfkit corpus (no manifest.json or videos/)")
        self.filter = flt or Filter()
        self._meta: pd.DataFrame | None = None

    # -- raw tables -------------------------------------------------------------------------------------------
    @property
    def manifest(self) -> dict[str, Any]:
        return read_manifest(self.root)

    def crop_files(self) -> list[Path]:
        return [s.path for s in committed_shards(self.root, "crops")]

    def quality_files(self) -> list[Path]:
        return [s.path for s in committed_shards(self.root, "quality")]

    def videos(self) -> pd.DataFrame:
        """One row per attempted video (the latest attempt), with status/stage/reason and counts."""
        shards = committed_shards(self.root, "videos")
        if not shards:
            return pd.DataFrame(columns=["dataset", "video_id", "status"])
        df = read_shards([s.path for s in shards]).to_pandas()
        df = df.drop_duplicates(["dataset", "video_id"], keep="last").reset_index(drop=True)
        return self._filter_videos(df)

    def errors(self) -> pd.DataFrame:
        """The errors table: videos that failed, are missing, had no face, or were only partly decoded."""
        v = self.videos()
        if v.empty:
            return v
        return v[v["status"] != "ok"][["dataset", "video_id", "video_path", "status", "stage", "reason"]]

    def split_scheme(self, scheme: str) -> pd.DataFrame:
        """The stored re-split ``scheme``: one row per video, ``dataset, video_id, split``."""
        path = split_path(self.root, scheme)
        if scheme == OFFICIAL_SCHEME or not path.exists():
            raise DfkitError(f"no split scheme {scheme!r} in {self.root} (make it with "
                             f"`dfkit splits resplit --by identity --name {scheme}`)")
        return pq.read_table(path).to_pandas()

    def _with_scheme(self, df: pd.DataFrame) -> pd.DataFrame:
        """Replace ``split`` by the chosen re-split (the official one stays in ``split_official``)."""
        scheme = self.filter.split_scheme
        if scheme == OFFICIAL_SCHEME or df.empty:
            return df
        return apply_split(df, self.split_scheme(scheme), check=False)

    def _filter_videos(self, df: pd.DataFrame) -> pd.DataFrame:
        df = self._with_scheme(df)
        f = self.filter
        sub = Filter(datasets=f.datasets, methods=f.methods, splits=f.splits, labels=f.labels,
                     compression=f.compression, split_scheme=f.split_scheme)
        return sub.apply(df) if len(df) else df

    def quality_table(self) -> pd.DataFrame | None:
        files = self.quality_files()
        if not files:
            return None
        # shards differ in their optional columns (full-reference ones exist only where references did)
        t = read_shards(files)
        return t.to_pandas().drop_duplicates("sample_id", keep="last")

    # -- crops metadata ---------------------------------------------------------------------------------------
    def metadata(self, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """One row per crop in this view (no image bytes), with quality columns joined when computed.
        Columns ``_file`` and ``_row`` locate the crop in its shard."""
        if self._meta is None:
            self._meta = self._read_meta()
        df = self._meta
        if columns is not None:
            keep = [c for c in columns if c in df.columns] + ["_file", "_row"]
            df = df[list(dict.fromkeys(keep))]
        return df

    def _read_meta(self) -> pd.DataFrame:
        frames = []
        for i, p in enumerate(self.crop_files()):
            t = read_crop_meta(p)
            df = t.to_pandas()
            df["_file"] = i
            df["_row"] = np.arange(len(df), dtype=np.int64)
            frames.append(df)
        if not frames:
            cols = CROP_META_COLUMNS + ["_file", "_row"]
            return pd.DataFrame(columns=cols)
        df = pd.concat(frames, ignore_index=True)
        q = self.quality_table()
        if q is not None:  # the quality table repeats the crop keys (dataset, video_id): keep the crops' own
            q = q.drop(columns=[c for c in q.columns if c != "sample_id" and c in df.columns])
            df = df.merge(q, on="sample_id", how="left")
        # a video re-ingested after a failure keeps only its latest rows (no duplicates)
        df = self._with_scheme(df.drop_duplicates("sample_id", keep="last"))
        return self.filter.apply(df).reset_index(drop=True)

    def __len__(self) -> int:
        return len(self.metadata())

    def select(self, datasets=None, methods=None, splits=None, labels=None, compression=None,
               min_quality: float | None = None, max_quality: float | None = None,
               split_scheme: str | None = None) -> "Corpus":
        """A filtered view (filters combine with the current view's)."""
        f = self.filter

        def both(old, new):
            new = _as_list(new)
            if new is None:
                return old
            return tuple(v for v in new if old is None or v in old)

        nf = Filter(
            datasets=both(f.datasets, datasets), methods=both(f.methods, methods), splits=both(f.splits, splits),
            labels=both(f.labels, labels), compression=both(f.compression, compression),
            min_quality=max([v for v in (f.min_quality, min_quality) if v is not None], default=None),
            max_quality=min([v for v in (f.max_quality, max_quality) if v is not None], default=None),
            split_scheme=split_scheme or f.split_scheme)
        return Corpus(self.root, nf)

    # -- crops ------------------------------------------------------------------------------------------------
    def crops(self, rows: pd.DataFrame | None = None) -> Iterable[tuple[dict[str, Any], np.ndarray]]:
        """Iterate ``(metadata row, rgb crop)`` in shard order (sequential reads)."""
        df = self.metadata() if rows is None else rows
        reader = CropReader(self.crop_files())
        for rec in df.sort_values(["_file", "_row"]).to_dict("records"):
            yield rec, reader.get(rec["_file"], rec["_row"])

    def column_types(self) -> dict[str, pa.DataType]:
        """The Arrow type of every metadata column as the shards store it: the crops schema's, then the quality
        shards' (their union: shards differ in their optional columns), and ``split_official`` (a re-split's)."""
        types = {f.name: f.type for f in CROPS_SCHEMA}
        files = self.quality_files()
        if files:
            schemas = []
            for p in files:
                try:
                    schemas.append(pq.read_schema(p))
                except (pa.ArrowException, OSError) as e:
                    raise corrupt_shard_error(p, e) from None
            for f in pa.unify_schemas(schemas, promote_options="default"):
                types.setdefault(f.name, f.type)
        types.setdefault("split_official", pa.string())
        return types

    def metadata_table(self, rows: pd.DataFrame | None = None) -> pa.Table:
        """Metadata ``rows`` (default: this view's) as an Arrow table typed as the shards store the columns
        (:meth:`column_types`; not pandas' guess: a missing string stays a null string, an int column with gaps
        stays int); the ``_file``/``_row`` locators are left out, the order is kept."""
        return typed_table(self.metadata() if rows is None else rows, self.column_types())

    def to_hf(self, decode: bool = True):
        """A Hugging Face ``datasets.Dataset`` of this view (built in memory, no hub access), in shard order: the
        metadata columns with their stored types, the quality columns when computed, and ``image`` (a
        ``datasets.Image``: PIL images when ``decode``, else ``{"bytes", "path"}``)."""
        import datasets

        from dfkit.corpus.export import HF_IMAGE_COLUMN, hf_features

        order = self.metadata().sort_values(["_file", "_row"])
        reader = CropReader(self.crop_files())
        t = self.metadata_table(order)
        images = [{"bytes": reader.raw(f, r), "path": None} for f, r in zip(order["_file"], order["_row"])]
        t = t.append_column(HF_IMAGE_COLUMN, pa.array(images, type=datasets.Image().pa_type))
        features = hf_features(t.schema, decode=decode)
        return datasets.Dataset(t.cast(features.arrow_schema), info=datasets.DatasetInfo(features=features))


def typed_table(df: pd.DataFrame, types: dict[str, pa.DataType]) -> pa.Table:
    """The columns of ``df`` (but ``_file``/``_row`` and other ``_``-prefixed locators) as an Arrow table, each with
    its type in ``types`` (a column not there: inferred). Missing values (None, NaN, pandas' NA) become nulls."""
    cols = [c for c in df.columns if not str(c).startswith("_")]
    arrays = []
    for c in cols:
        try:
            arrays.append(pa.array(df[c], type=types.get(c), from_pandas=True))
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise DfkitError(f"column {c!r} does not convert to {types.get(c)}: {str(e).splitlines()[0]}") from None
    return pa.Table.from_arrays(arrays, names=[str(c) for c in cols])


def read_crop_meta(path: Path) -> pa.Table:
    """The metadata columns (no image bytes) of one crops shard; a column the shard predates (an older corpus)
    reads as nulls of its schema type, so every shard gives the same columns."""
    try:
        present = set(pq.read_schema(path).names)
    except (pa.ArrowException, OSError) as e:
        raise corrupt_shard_error(path, e) from None
    t = read_shard(path, columns=[c for c in CROP_META_COLUMNS if c in present])
    for c in CROP_META_COLUMNS:
        if c not in present:
            t = t.append_column(CROPS_SCHEMA.field(c).with_nullable(True), pa.nulls(len(t), CROPS_SCHEMA.field(c).type))
    return t.select(CROP_META_COLUMNS)


def apply_split(df: pd.DataFrame, assignment: pd.DataFrame | None, check: bool = True) -> pd.DataFrame:
    """``df`` (crop or video rows) with its ``split`` column replaced by ``assignment``'s (``dataset, video_id, split``,
    one row per video: a stored scheme, :meth:`Corpus.split_scheme`, or one computed by the caller); the official
    split is kept as ``split_official``. ``None`` keeps the split as it is. ``check``: raise
    :class:`~dfkit.errors.DfkitError` when a video's frames end up in several splits."""
    if assignment is not None and len(df):
        a = assignment[list(SPLIT_SCHEME_COLUMNS)].rename(columns={"split": "_assigned"})
        df = df.merge(a, on=["dataset", "video_id"], how="left")
        df["split_official"] = df["split"]
        df["split"] = df.pop("_assigned")
    if check and len(df):
        n = df.groupby(["dataset", "video_id"])["split"].nunique(dropna=False)
        bad = n[n > 1]
        if len(bad):
            ex = ", ".join(f"{d}/{v}" for d, v in bad.index[:3])
            raise DfkitError(f"frames of one video span several splits ({len(bad)} videos, e.g. {ex}): "
                             "the corpus split labels are inconsistent")
    return df


def shard_rows(files: Sequence[Path], rows: pd.DataFrame) -> Iterable[pa.Table]:
    """The full crop rows (bytes and every column) of metadata ``rows`` (with ``_file``), one table per shard,
    each shard read once."""
    import pyarrow.compute as pc

    for fi, part in rows.groupby("_file", sort=True):
        t = read_shard(files[int(fi)])
        yield t.filter(pc.is_in(t["sample_id"], value_set=pa.array(part["sample_id"].astype(str).tolist())))


class CropReader:
    """Random access to crop bytes: reads the small row group holding a crop (16 rows) and keeps a few."""

    def __init__(self, files: Sequence[Path], cache_groups: int = 64):
        self.files = list(files)
        self._pf: dict[int, pq.ParquetFile] = {}
        self._offsets: dict[int, np.ndarray] = {}
        self._cache: OrderedDict[tuple[int, int], pa.Array] = OrderedDict()
        self.cache_groups = cache_groups

    def _open(self, fi: int) -> pq.ParquetFile:
        pf = self._pf.get(fi)
        if pf is None:
            try:
                pf = pq.ParquetFile(self.files[fi], memory_map=True)
            except (pa.ArrowException, OSError) as e:
                raise corrupt_shard_error(self.files[fi], e) from None
            md = pf.metadata
            self._offsets[fi] = np.cumsum([0] + [md.row_group(i).num_rows for i in range(md.num_row_groups)])
            self._pf[fi] = pf
        return pf

    def raw(self, fi: int, row: int) -> bytes:
        pf = self._open(fi)
        offs = self._offsets[fi]
        rg = int(np.searchsorted(offs, row, side="right") - 1)
        key = (fi, rg)
        arr = self._cache.get(key)
        if arr is None:
            try:
                arr = pf.read_row_group(rg, columns=["crop"]).column(0).combine_chunks()
            except (pa.ArrowException, OSError) as e:
                raise corrupt_shard_error(self.files[fi], e) from None
            self._cache[key] = arr
            if len(self._cache) > self.cache_groups:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return arr[row - int(offs[rg])].as_py()

    def get(self, fi: int, row: int) -> np.ndarray:
        return decode_crop(self.raw(fi, row))

    def __getstate__(self) -> dict[str, Any]:  # file handles do not cross process boundaries
        return {"files": self.files, "cache_groups": self.cache_groups}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["files"], state["cache_groups"])
