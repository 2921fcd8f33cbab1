"""FakeAVCeleb (v1.2), ``DATASETS.md`` section 8 (all third-party: ``meta_data.csv`` is not public).

Layout::

    ROOT/meta_data.csv
    ROOT/<type>/<race>/<gender>/<id>/<file>.mp4
        <type> = RealVideo-RealAudio (A), RealVideo-FakeAudio (B), FakeVideo-RealAudio (C), FakeVideo-FakeAudio (D)

``meta_data.csv``'s header (``source,target1,target2,method,category,type,race,gender,path,``) is shifted against its
rows, so rows are read **by position**: ``source, target1, target2, method, category, type, race, gender, <file name>,
<directory>``, the directory starting with ``FakeAVCeleb/`` (dropped: it is the name of the download's top folder).

dfkit labels the **video**: categories A (RealVideo-RealAudio) and B (RealVideo-FakeAudio, method ``rtvc`` = voice
cloning) are ``real`` (their frames are untouched; the audio label goes to ``extra["audio_label"]``), C and D fakes. The
folder (``type``) decides; a ``category`` letter that disagrees is counted in :attr:`label_disagreements`. Rows naming
the same file more than once are collapsed (first row wins, other methods in ``extra["alt_methods"]``) and counted in
:attr:`duplicate_rows`. No official split (``split`` null). Identities are VoxCeleb2 ids (``voxceleb2:idNNNNN``) of
``source``, ``target1``, ``target2``; ``group_id`` is the source. Fakes are not paired with a real video: the metadata
does not link them and the frame alignment of the swaps is not documented.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from dfkit.errors import LayoutError
from dfkit.ingest.adapters._read import csv_rows, decode, lookup_problem
from dfkit.ingest.base import Adapter, VideoRecord, register_adapter

TYPES = ("RealVideo-RealAudio", "RealVideo-FakeAudio", "FakeVideo-RealAudio", "FakeVideo-FakeAudio")
CATEGORIES = {"A": TYPES[0], "B": TYPES[1], "C": TYPES[2], "D": TYPES[3]}
COLUMNS = ("source", "target1", "target2", "method", "category", "type", "race", "gender", "file", "dir")
VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm"}


def _open_text(path: Path) -> list[str]:
    return decode(path, "fakeavceleb", ("utf-8-sig", "latin-1")).splitlines()  # latin-1 decodes any bytes


@register_adapter
class FakeAVCelebAdapter(Adapter):
    name = "fakeavceleb"
    title = "FakeAVCeleb (audio-video deepfakes; video label)"
    expects = ("ROOT/meta_data.csv and ROOT/{RealVideo-RealAudio,RealVideo-FakeAudio,FakeVideo-RealAudio,"
               "FakeVideo-FakeAudio}/<race>/<gender>/<id>/*.mp4")
    options = {"metadata": "path of meta_data.csv (default: ROOT/meta_data.csv)"}

    def __init__(self, root, **options):
        super().__init__(root, **options)
        self.duplicate_rows = 0
        self.conflicting_duplicates = 0
        self.label_disagreements = 0
        self.missing_count = 0

    def _csv_path(self) -> Path:
        if self.opts.get("metadata"):
            p = Path(self.opts["metadata"]).expanduser()
            return p if p.is_absolute() else self.root / p
        return self.root / "meta_data.csv"

    def check_root(self) -> None:
        super().check_root()
        csv_path = self._csv_path()
        if not csv_path.is_file():
            found = sorted(p.name + ("/" if p.is_dir() else "") for p in self.root.iterdir())
            raise LayoutError(
                f"fakeavceleb: no {csv_path.name} at {csv_path.parent} (found: {', '.join(found[:8]) or 'nothing'}"
                f"{', …' if len(found) > 8 else ''}); expected {self.expects}")

    def _rows(self) -> list[dict]:
        path = self._csv_path()
        rows = csv_rows(_open_text(path), path, self.name, self.root)
        if not rows:
            raise LayoutError(f"fakeavceleb: {path.name} is empty")
        header = [h.strip().lower() for h in rows[0]]
        if "source" not in header:
            raise LayoutError(f"fakeavceleb: {path.name}: expected a header starting 'source,target1,target2,"
                              f"method,category,type,race,gender,path,', found {','.join(rows[0])[:100]!r}")
        off = header.index("source")  # a leading index column (pandas re-save) shifts everything by one
        out = []
        for n, row in enumerate(rows[1:], 2):
            if not any(c.strip() for c in row):
                continue
            vals = [c.strip() for c in row[off:off + 10]]
            if len(vals) < 10:
                raise LayoutError(f"fakeavceleb: {path.name}:{n}: expected 10 values (source, target1, target2, "
                                  f"method, category, type, race, gender, file, directory), found {len(vals)}")
            out.append(dict(zip(COLUMNS, vals), line=n))
        return out

    def _resolve(self, directory: str, fname: str) -> tuple[Path, str]:
        parts = [p for p in directory.replace("\\", "/").split("/") if p]
        while parts and parts[0] not in TYPES:  # drop "FakeAVCeleb/" (or a renamed top folder)
            parts = parts[1:]
        rel = "/".join(parts + [fname]) if parts else f"{directory}/{fname}"
        return self.root / rel, rel

    def videos(self) -> Iterator[VideoRecord]:
        self.check_root()
        entries: dict[str, dict] = {}
        for row in self._rows():
            p, rel = self._resolve(row["dir"], row["file"])
            if rel in entries:
                self.duplicate_rows += 1
                first = entries[rel]
                if row["method"].lower() != first["method"].lower():
                    self.conflicting_duplicates += 1
                    first.setdefault("alt_methods", []).append(row["method"])
                continue
            entries[rel] = {**row, "path": p, "rel": rel}
        listed = {e["path"] for e in entries.values()}
        for entry in self.root.iterdir():
            if entry.name in TYPES and entry.is_dir():
                self.ignored_files += sum(1 for q in entry.rglob("*") if q.is_file() and q not in listed)
            elif entry != self._csv_path():
                self.ignored_files += 1
        for rel, e in entries.items():
            yield self._record(e)

    def _record(self, e: dict) -> VideoRecord:
        rel = e["rel"]
        vid = rel.rsplit(".", 1)[0]
        name = self._csv_path().name
        folder_type = rel.split("/", 1)[0] if rel.split("/", 1)[0] in TYPES else None
        vtype = folder_type or (e["type"] if e["type"] in TYPES else CATEGORIES.get(e["category"].upper()))
        if vtype is None:
            return self.problem_record(vid, e["path"], f"{name}:{e['line']}: cannot tell the category of "
                                       f"{rel[:100]!r} (category {e['category'][:20]!r}, type {e['type'][:40]!r})")
        why = lookup_problem(e["path"])
        if why:
            return self.problem_record(vid, e["path"], f"{name}:{e['line']}: {rel[:100]!r}: the file cannot be "
                                       f"looked up ({why})")
        if CATEGORIES.get(e["category"].upper()) != vtype or (e["type"] and e["type"] != vtype):
            self.label_disagreements += 1
        label = "real" if vtype.startswith("RealVideo") else "fake"
        method = e["method"].lower() or ("real" if label == "real" else "unknown")
        if label == "fake" and method in ("real", "rtvc"):
            self.label_disagreements += 1
            method = "unknown"
        ids = list(dict.fromkeys(f"voxceleb2:{x}" for x in (e["source"], e["target1"], e["target2"])
                                 if x and x != "-"))
        missing = not e["path"].is_file()
        self.missing_count += missing
        extra = {"category": e["category"], "type": vtype, "audio_label": "fake" if vtype.endswith("FakeAudio")
                 else "real", "race": e["race"], "gender": e["gender"]}
        if e.get("alt_methods"):
            extra["alt_methods"] = e["alt_methods"]
        base = Path(e["file"]).stem.split("_")[0]
        if base.isdigit():
            extra["base_video"] = base
        return VideoRecord(
            dataset=self.name, video_id=vid, path=e["path"], rel_path=rel, label=label,
            method=method, split=None, missing=missing, identity_ids=ids,
            group_id=f"voxceleb2:{e['source']}" if e["source"] and e["source"] != "-" else None, extra=extra)
