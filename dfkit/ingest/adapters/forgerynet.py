"""ForgeryNet image and video lists, ``DATASETS.md`` section 6.

List formats (one item per line, whitespace-separated)::

    image list:  <image_name> <binary_cls_label> <triple_cls_label> <16cls_label>
    video list:  <segment count L> <video_name> [<start frame> <frame count> <fake|real>]×L <binary> <triple> <16cls>

binary: 0 real, 1 fake; triple: 0 real, 1 identity-replaced, 2 identity-remained; 16-class: 0 Real, 1..15 the 15
methods (``manifests/forgerynet/methods.yaml``; the id table is third-party). A line's label is its binary label;
a 16-class id that contradicts it is counted in :attr:`label_disagreements` (a fake with class 0 gets method
``unknown``). Video lines keep their temporal segments in ``extra["segments"]``.

The list files' names inside the official tars are not documented, so they are found by the ``list`` option
(comma-separated, relative to ROOT or absolute) or else every ``*list*.txt`` in ROOT and its subfolders (two levels).
Each list's split comes from the ``split`` option or from its path (``train``/``training``, ``val``/``validation``,
``test``). Names are resolved against ``media_root`` or, by default, the first of the list's folder, ROOT and the
list's parent folder where the first listed names exist. Images are ``kind="image"``; a video name that is a folder
is read as frames.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from dfkit.errors import DfkitError, LayoutError
from dfkit.ingest.adapters._read import decode, lookup_problem
from dfkit.ingest.base import Adapter, VideoRecord, register_adapter
from dfkit.taxonomy import dataset_manifest

TRIPLE = {0: "real", 1: "identity_replaced", 2: "identity_remained"}
_SPLIT_WORDS = (("train", "train"), ("training", "train"), ("validation", "val"), ("val", "val"), ("test", "test"))


def class_names() -> dict[int, str]:
    """16-class id -> ForgeryNet method name (from the manifest)."""
    return {int(v["id"]): k for k, v in dataset_manifest("forgerynet")["methods"].items() if "id" in v}


def split_from_path(path: Path) -> str | None:
    for part in reversed([p.lower() for p in path.parts]):
        for word in re.split(r"[^a-z]+", part):
            for w, split in _SPLIT_WORDS:
                if word == w:
                    return split
    return None


def parse_line(line: str) -> dict | None:
    """One list line -> dict(kind, name, binary, triple, cls, segments); None for a blank line; ValueError if bad."""
    t = line.split()
    if not t:
        return None
    if len(t) == 4 and all(x.lstrip("-").isdigit() for x in t[1:]):
        return {"kind": "image", "name": t[0], "binary": int(t[1]), "triple": int(t[2]), "cls": int(t[3]),
                "segments": None}
    if t[0].isdigit():
        n = int(t[0])
        if len(t) == 5 + 3 * n and all(x.lstrip("-").isdigit() for x in t[-3:]):
            segs = [{"start": int(t[2 + 3 * i]), "count": int(t[3 + 3 * i]), "label": t[4 + 3 * i].lower()}
                    for i in range(n)]
            return {"kind": "video", "name": t[1], "binary": int(t[-3]), "triple": int(t[-2]),
                    "cls": int(t[-1]), "segments": segs}
    raise ValueError("neither '<image> <binary> <triple> <16cls>' nor "
                     "'<L> <video> [<start> <count> <fake|real>]×L <binary> <triple> <16cls>'")


@register_adapter
class ForgeryNetAdapter(Adapter):
    name = "forgerynet"
    title = "ForgeryNet (image and video lists, 15 methods)"
    expects = ("list files (image: '<image> <binary> <triple> <16cls>'; video: '<L> <video> [<start> <count> "
               "<fake/real>]xL <binary> <triple> <16cls>') under ROOT (or named by the list option) and the media "
               "they name (relative to the list's folder, ROOT, or media_root)")
    options = {
        "list": "comma-separated list files (relative to ROOT or absolute); default: every *list*.txt found",
        "split": "train, val or test for all lists (default: from each list's path)",
        "media_root": "folder the listed names are relative to (default: auto-detected per list)",
    }

    def __init__(self, root, **options):
        super().__init__(root, **options)
        sp = options.get("split")
        if sp is not None and sp not in ("train", "val", "test"):
            raise DfkitError(f"forgerynet: split must be train, val or test, got {sp!r}")
        self.label_disagreements = 0
        self.missing_count = 0
        self.lists_used: list[str] = []

    def _lists(self) -> list[Path]:
        if self.opts.get("list"):
            out = []
            for s in str(self.opts["list"]).split(","):
                p = Path(s.strip()).expanduser()
                p = p if p.is_absolute() else self.root / p
                if not p.is_file():
                    raise DfkitError(f"forgerynet: list file {p} does not exist")
                out.append(p)
            return out
        found = [p for pat in ("*list*.txt", "*/*list*.txt", "*/*/*list*.txt") for p in self.root.glob(pat)]
        return sorted(set(p for p in found if p.is_file()))

    def check_root(self) -> None:
        super().check_root()
        if not self.opts.get("list") and not self._lists():
            found = sorted(p.name + ("/" if p.is_dir() else "") for p in self.root.iterdir())
            raise LayoutError(
                f"forgerynet: no *list*.txt under {self.root} or its subfolders (found: "
                f"{', '.join(found[:8]) or 'nothing'}{', …' if len(found) > 8 else ''}); expected {self.expects}; "
                f"name the list files with --opt list=PATH[,PATH]")

    def roots(self):
        # the dataset root and every folder the lists' names were found relative to (media_root, or the list's
        # folder / its parent): names that climb out of those with '..' are refused
        return [self.root, *getattr(self, "_bases", ())]

    def _media_base(self, lst: Path, items: list[dict]) -> Path:
        base = self._find_media_base(lst, items)
        self._bases = [*getattr(self, "_bases", ()), base]
        return base

    def _find_media_base(self, lst: Path, items: list[dict]) -> Path:
        if self.opts.get("media_root"):
            return Path(self.opts["media_root"]).expanduser()
        cands = list(dict.fromkeys([lst.parent, self.root, lst.parent.parent]))
        probe = items[:20]
        for base in cands:
            if any(lookup_problem(base / it["name"]) is None and (base / it["name"]).exists() for it in probe):
                return base
        raise LayoutError(
            f"forgerynet: none of the first {len(probe)} names in {lst.name} (e.g. {probe[0]['name'][:100]!r}) exist "
            f"under {', '.join(str(c) for c in cands)}; set --opt media_root=FOLDER")

    def videos(self) -> Iterator[VideoRecord]:
        self.check_root()
        names = class_names()
        tags_seen: set[str] = set()
        for lst in self._lists():
            items = []
            try:
                text = decode(lst, self.name)
            except LayoutError as e:  # one undecodable list must not stop the others
                yield self.problem_record(lst.name, lst, str(e).removeprefix(f"{self.name}: "))
                continue
            for n, line in enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"), 1):
                try:
                    it = parse_line(line)
                except ValueError as e:
                    yield self.problem_record(f"{lst.name}:{n}", lst, f"{lst}:{n}: {e}; found "
                                              f"{line.strip()[:100]!r}")
                    continue
                if it is not None:
                    it["line"] = n
                    items.append(it)
            if not items:
                continue
            self.lists_used.append(str(lst))
            split = self.opts.get("split") or split_from_path(lst.relative_to(self.root)
                                                              if lst.is_relative_to(self.root) else lst)
            tag = split or lst.stem
            if tag in tags_seen:  # two lists of one split (image + video): keep ids apart
                tag = f"{tag}-{lst.stem}"
            tags_seen.add(tag)
            base = self._media_base(lst, items)
            for it in items:
                why = lookup_problem(base / it["name"])
                if why:
                    yield self.problem_record(f"{lst.name}:{it['line']}", lst, f"{lst}:{it['line']}: "
                                              f"{it['name'][:100]!r}: the file cannot be looked up ({why})")
                    continue
                yield self._record(it, base, split, tag, names, lst)

    def ingest_params(self) -> dict:
        return {**super().ingest_params(), "lists_used": self.lists_used}

    def _record(self, it: dict, base: Path, split, tag: str, names: dict[int, str], lst: Path) -> VideoRecord:
        label = "fake" if it["binary"] == 1 else "real"
        cls = it["cls"]
        if (cls == 0) != (label == "real"):
            self.label_disagreements += 1
        if label == "real":
            method = "Real"
        else:
            method = names.get(cls, "unknown") if cls != 0 else "unknown"
        p = base / it["name"]
        missing = not p.exists()
        self.missing_count += missing
        kind = "image" if it["kind"] == "image" else ("frames" if p.is_dir() else "video")
        rel = p.relative_to(self.root).as_posix() if p.is_relative_to(self.root) else p.as_posix()
        stem = it["name"].rsplit(".", 1)[0] if "." in Path(it["name"]).name else it["name"]
        extra = {"binary": it["binary"], "triple": TRIPLE.get(it["triple"], it["triple"]), "cls16": cls,
                 "list": lst.name}
        if it["segments"] is not None:
            extra["segments"] = it["segments"]
        return VideoRecord(dataset=self.name, video_id=f"{tag}/{stem}", path=p, rel_path=rel, label=label,
                           method=method, split=split, kind=kind, missing=missing, extra=extra)
