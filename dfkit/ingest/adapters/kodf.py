"""KoDF (Korean DeepFake Detection Dataset), ``DATASETS.md`` section 10 (layout third-party: DeepGuard's scripts).

Metadata: four CSVs, found in ROOT or up to two folder levels below it::

    원본영상_training_메타데이터.csv      original (real) videos, training
    변조영상_training_메타데이터.csv      manipulated (fake) videos, training
    원본영상_validation_메타데이터.csv    original, validation
    변조영상_validation_메타데이터.csv    manipulated, validation

Columns used: ``영상ID`` (video id, with or without ``.mp4``), ``타겟영상`` (target: the original the fake was made
from) and ``변조모델`` (model code: ``dfl``, ``dffs``, ``fsgan``, ``fo``, ``audio-driven``). Videos are found anywhere
under ROOT by file name (the archive layout is not documented); a listed id with no file is ``missing``. Splits:
training ``train``, validation ``val`` (the test part is not in the CSVs). ``group_id`` is the original video, so a
fake groups with its source. Identities need a participant column, which the public description does not name: pass
it with ``identity_col``. Fakes are not paired by default (fakes are ~15 s cut from ~90 s originals at an undocumented
offset); ``pair=yes`` pairs them with their target anyway.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Iterator

from dfkit.errors import DfkitError, LayoutError, one_line
from dfkit.ingest.adapters._read import csv_dicts, decode
from dfkit.ingest.base import Adapter, VideoRecord, register_adapter

VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm"}
ORIGINAL, MANIPULATED = "원본영상", "변조영상"
COL_ID, COL_TARGET, COL_MODEL = "영상ID", "타겟영상", "변조모델"
SPLITS = {"training": "train", "validation": "val", "test": "test"}


def _nfc(s: str) -> str:
    """Korean file names unpacked on macOS come out decomposed (NFD); compare them composed."""
    return unicodedata.normalize("NFC", s)


def _truthy(v) -> bool:
    return str(v).strip().lower() in ("1", "true", "yes", "on", "y")


def read_csv(path: Path) -> list[dict[str, str]]:
    """The rows of a KoDF metadata CSV (UTF-8 or CP949); a LayoutError naming the file when it is neither or is not
    readable as CSV."""
    text = decode(path, "kodf", ("utf-8-sig", "cp949"), path.parent)
    _, rows = csv_dicts(text.splitlines(), path, "kodf", path.parent)
    return [{_nfc(k).strip(): v.strip() for k, v in r.items()} for r in rows]


def _stem(video_id: str) -> str:
    name = Path(video_id).name
    return name[: -len(Path(name).suffix)] if Path(name).suffix.lower() in VIDEO_EXTS else name


@register_adapter
class KoDFAdapter(Adapter):
    name = "kodf"
    title = "KoDF (Korean DeepFake Detection Dataset)"
    expects = ("ROOT/{원본영상,변조영상}_{training,validation}_메타데이터.csv (columns 영상ID, 타겟영상, 변조모델) "
               "and the .mp4 files anywhere under ROOT")
    options = {
        "identity_col": "CSV column holding the participant id (fills identity_ids)",
        "pair": "yes / no (default): pair each fake with its target original for cropping",
    }

    def __init__(self, root, **options):
        super().__init__(root, **options)
        self.missing_count = 0
        self.csvs_used: list[str] = []

    def _csvs(self) -> list[tuple[Path, str, str]]:
        """(path, 'real'|'fake', split) of each metadata CSV."""
        out = []
        for pat in ("*.csv", "*/*.csv", "*/*/*.csv"):
            for p in sorted(self.root.glob(pat)):
                name = _nfc(p.name)
                if "메타데이터" not in name:
                    continue
                kind = "real" if name.startswith(ORIGINAL) else "fake" if name.startswith(MANIPULATED) else None
                split = next((s for k, s in SPLITS.items() if k in name.lower()), None)
                if kind:
                    out.append((p, kind, split))
        return out

    def check_root(self) -> None:
        super().check_root()
        if not self._csvs():
            found = sorted(p.name + ("/" if p.is_dir() else "") for p in self.root.iterdir())
            raise LayoutError(
                f"kodf: no {ORIGINAL}_*_메타데이터.csv or {MANIPULATED}_*_메타데이터.csv under {self.root} "
                f"(found: {', '.join(found[:8]) or 'nothing'}{', …' if len(found) > 8 else ''}); "
                f"expected {self.expects}")

    def videos(self) -> Iterator[VideoRecord]:
        self.check_root()
        csvs = self._csvs()
        files: dict[str, Path] = {}
        n_files = 0
        for p in self.root.rglob("*"):
            if p.is_file() and p.suffix.lower() in VIDEO_EXTS:
                files.setdefault(_nfc(p.stem), p)
                n_files += 1
            elif p.is_file() and p.suffix.lower() != ".csv":
                self.ignored_files += 1
        id_col = self.opts.get("identity_col")
        pair = _truthy(self.opts.get("pair", "no"))
        seen: set[str] = set()
        for path, kind, split in csvs:
            rows = read_csv(path)
            self.csvs_used.append(path.name)
            cols = set(rows[0]) if rows else set()
            need = [COL_ID] + ([COL_TARGET, COL_MODEL] if kind == "fake" else [])
            if rows and not all(c in cols for c in need):
                raise LayoutError(one_line(f"kodf: {path.name}: expected column(s) {', '.join(need)}, found "
                                           f"{', '.join(sorted(cols))[:200]}"))
            if id_col and rows and id_col not in cols:
                raise DfkitError(one_line(f"kodf: identity_col {id_col!r} is not a column of {path.name} "
                                          f"(columns: {', '.join(sorted(cols))[:200]})"))
            for row in rows:
                vid = _nfc(_stem(row[COL_ID]))
                if not vid or vid in seen:
                    continue
                seen.add(vid)
                yield self._record(row, vid, kind, split, files, id_col, pair, path.name)
        self.ignored_files += max(0, n_files - sum(1 for s in seen if s in files))

    def ingest_params(self) -> dict:
        return {**super().ingest_params(), "csvs_used": self.csvs_used}

    def _record(self, row, vid, kind, split, files, id_col, pair, csv_name) -> VideoRecord:
        p = files.get(vid)
        missing = p is None
        self.missing_count += missing
        if p is None:
            p = self.root / f"{vid}.mp4"
        rel = p.relative_to(self.root).as_posix()
        ident = row.get(id_col) if id_col else None
        ids = [f"kodf:{ident}"] if ident else []
        if kind == "real":
            return VideoRecord(dataset=self.name, video_id=vid, path=p, rel_path=rel, label="real",
                               method="original", split=split, missing=missing, identity_ids=ids,
                               target_video_id=vid, group_id=f"kodf:{vid}", extra={"csv": csv_name})
        target = _nfc(_stem(row.get(COL_TARGET, ""))) or None
        model = row.get(COL_MODEL, "").strip() or "unknown"
        return VideoRecord(dataset=self.name, video_id=vid, path=p, rel_path=rel, label="fake", method=model,
                           split=split, missing=missing, identity_ids=ids, target_video_id=target,
                           pair_video_id=target if pair and target else None,
                           group_id=f"kodf:{target or vid}", extra={"csv": csv_name})
