"""DFDC preview (DFDCP), ``DATASETS.md`` section 4.

Layout::

    ROOT/dataset.json                                          keyed by path relative to ROOT
    ROOT/original_videos/<target_id>/<target_id>_<ctx>_<NNN>.mp4
    ROOT/method_A/<target_id>/<target_id>_<ctx>/<swapped_id>_<target_id>_<ctx>_<NNN>.mp4
    ROOT/method_B/…

``dataset.json`` entries: ``label`` (``real``/``fake``), ``set`` (``train``/``test``; there is no validation set),
``target_id``, ``swapped_id``, ``augmentations`` (a list, recorded as ``perturbation``) and, in some copies,
``source_video``. The method is the top folder of the key (``original_videos``, ``method_A``, ``method_B``); a label
that disagrees with the folder is counted in :attr:`label_disagreements` and the folder wins. Identities
``dfdcp:<target_id>`` and ``dfdcp:<swapped_id>``; ``group_id`` is the target. A fake's ``pair_video_id`` is set only
when its entry names a ``source_video`` that is itself a key of ``dataset.json``. Entries whose file is absent (also
tried below an extra ``videos/`` level) are yielded as ``missing``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from dfkit.errors import LayoutError
from dfkit.ingest.adapters._read import load_json, lookup_problem
from dfkit.ingest.base import Adapter, VideoRecord, register_adapter

VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm"}
METHOD_FOLDERS = {"original_videos": "real", "method_A": "fake", "method_B": "fake"}
SETS = {"train": "train", "test": "test", "val": "val", "validation": "val"}


def _id(v) -> str | None:
    if v is None or v == "":
        return None
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def _vid(rel: str) -> str:
    """The video id of a dataset.json key: the key without its extension (the key itself when it has no name)."""
    try:
        return str(Path(rel).with_suffix(""))
    except ValueError:  # "", ".", "a/": no file name
        return rel


@register_adapter
class DFDCPAdapter(Adapter):
    name = "dfdcp"
    title = "DFDC preview (DFDCP)"
    expects = ("ROOT/dataset.json (keys like method_A/<id>/<id>_<ctx>/<file>.mp4) and "
               "ROOT/{original_videos,method_A,method_B}/")
    options = {}

    def __init__(self, root, **options):
        super().__init__(root, **options)
        self.label_disagreements = 0
        self.missing_count = 0

    def check_root(self) -> None:
        super().check_root()
        if not (self.root / "dataset.json").is_file():
            found = sorted(p.name + ("/" if p.is_dir() else "") for p in self.root.iterdir())
            sub = [f for f in found if f.rstrip("/") in METHOD_FOLDERS]
            hint = " (the method folders are there, but dataset.json is what labels them)" if sub else ""
            raise LayoutError(
                f"dfdcp: no dataset.json under {self.root}{hint} (found: {', '.join(found[:8]) or 'nothing'}"
                f"{', …' if len(found) > 8 else ''}); expected {self.expects}")

    def _resolve(self, key: str) -> Path:
        p = self.root / key
        if p.is_file():
            return p
        top, _, rest = key.partition("/")
        for alt in (self.root / top / "videos" / rest, self.root / "videos" / key):
            if alt.is_file():
                return alt
        return p

    def videos(self) -> Iterator[VideoRecord]:
        self.check_root()
        meta = load_json(self.root / "dataset.json", self.name, "DFDCP metadata", self.root)
        if not isinstance(meta, dict):
            raise LayoutError(f"dfdcp: dataset.json: expected an object keyed by path, found {type(meta).__name__}")
        # strip a leading "dfdc_preview_set/" if the keys carry it
        keys = {k: (k.split("/", 1)[1] if k.startswith("dfdc_preview_set/") else k) for k in meta}
        vid_of = {rel: _vid(rel) for rel in keys.values()}
        used: set[Path] = set()
        for key, rel in sorted(keys.items(), key=lambda kv: kv[1]):
            entry = meta[key] if isinstance(meta[key], dict) else {}
            top = rel.split("/", 1)[0]
            if top not in METHOD_FOLDERS:
                self.ignored_files += 1
                continue
            why = lookup_problem(self.root / rel)
            if why:
                yield self.problem_record(vid_of[rel], self.root / rel, f"dataset.json: entry {rel[:100]!r}: the file "
                                          f"cannot be looked up ({why})")
                continue
            folder_label = METHOD_FOLDERS[top]
            label = str(entry.get("label", "")).strip().lower()
            if label not in ("real", "fake"):
                label = folder_label
            if label != folder_label:
                self.label_disagreements += 1
                label = folder_label
            p = self._resolve(rel)
            missing = not p.is_file()
            self.missing_count += missing
            used.add(p)
            target, swapped = _id(entry.get("target_id")), _id(entry.get("swapped_id"))
            ids = [f"dfdcp:{x}" for x in dict.fromkeys([target, swapped]) if x]
            if label == "real":
                ids = ids[:1]
            augs = entry.get("augmentations") or []
            if not isinstance(augs, list):
                augs = [augs]
            parts = rel.split("/")
            ctx = parts[2].split("_")[1] if len(parts) > 2 and len(parts[2].split("_")) > 1 else None
            source = entry.get("source_video")
            source = source if isinstance(source, str) else None
            if isinstance(source, str) and source.startswith("dfdc_preview_set/"):
                source = source.split("/", 1)[1]
            pair = vid_of.get(source) if label == "fake" and source else None
            raw_set = str(entry.get("set", "")).strip().lower()
            yield VideoRecord(
                dataset=self.name, video_id=vid_of[rel], path=p,
                rel_path=p.relative_to(self.root).as_posix() if not missing else rel, label=label,
                method=top, split=SETS.get(raw_set), missing=missing,
                target_video_id=None, source_video_id=pair, pair_video_id=pair,
                identity_ids=ids, group_id=f"dfdcp:{target}" if target else None,
                perturbation="+".join(map(str, augs)) or None,
                extra={"set": raw_set or None, "context": ctx, "target_id": target, "swapped_id": swapped,
                       "augmentations": [str(a) for a in augs]})
        for top in METHOD_FOLDERS:
            d = self.root / top
            if d.is_dir():
                self.ignored_files += sum(1 for q in d.rglob("*") if q.is_file() and q not in used)
