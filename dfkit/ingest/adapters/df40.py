"""DF40: 40 generation methods distributed as already-cropped face frames, ``DATASETS.md`` section 7.

Layouts (both under one ROOT, e.g. ``DF40/`` = the test download or ``DF40_train/``)::

    ROOT/<method>/{ff,cdf}/[frames/]<video>/<frame>.png      methods built on FF++ / Celeb-DF (fake only)
    ROOT/<method>/{fake,real}/[frames/]…                      the 9 "unknown" methods that carry their reals

``ffpp``/``cdfv2`` (the spelling of DF40's own loader) are accepted for ``ff``/``cdf``. A folder holding image files
below the domain folder is one face sequence (``kind="frames"``); images lying directly in the domain folder (or its
``frames/``) are single images (``kind="image"``). Option ``images_as`` forces one or the other. Every record has
``extra["precropped"] = True``: the engine still detects (bbox/score), but the crop is the whole DF40 image.

Method = the method folder, matched case-insensitively against ``manifests/df40/methods.yaml`` (and its aliases) so
that ``pixart`` and ``PixArt`` are one method; unknown method folders keep their name. ``real/`` folders give label
real, method ``real``. Domain ``ff``/``cdf`` goes to ``extra["domain"]``; ``split`` is ``train`` when ROOT's name
contains "train" (``DF40_train``) and ``test`` otherwise, unless the ``split`` option says. Video folders named like
FF++ (``000_003``) or Celeb-DF (``id0_id16_0000``) get the identities of those datasets (``ffpp:000`` /
``celebdf:id0``), so an audit sees DF40 fakes made from FF++/Celeb-DF test videos.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from dfkit.errors import DfkitError, LayoutError
from dfkit.ingest.base import Adapter, VideoRecord, register_adapter
from dfkit.ingest.video import IMAGE_EXTS
from dfkit.taxonomy import dataset_manifest

DOMAINS = {"ff": "ff", "ffpp": "ff", "ff++": "ff", "cdf": "cdf", "cdfv2": "cdf", "celebdf": "cdf"}
LABEL_FOLDERS = {"fake": "fake", "real": "real"}
_FF_RE = re.compile(r"^(?P<t>\d{3})_(?P<s>\d{3})$")
_FF_REAL_RE = re.compile(r"^(?P<t>\d{3})$")
_CDF_FAKE_RE = re.compile(r"^id(?P<t>\d+)_id(?P<s>\d+)_(?P<n>\d{4})$")
_CDF_REAL_RE = re.compile(r"^id(?P<t>\d+)_(?P<n>\d{4})$")


def method_lookup() -> dict[str, str]:
    """lower-cased folder name or alias -> the manifest's spelling."""
    man = dataset_manifest("df40")
    out = {k.lower(): k for k in man.get("methods", {})}
    for alias, target in (man.get("aliases") or {}).items():
        out.setdefault(alias.lower(), target)
    return out


def _identities(name: str) -> tuple[list[str], str | None]:
    m = _FF_RE.match(name)
    if m:
        return [f"ffpp:{m.group('t')}", f"ffpp:{m.group('s')}"], f"ffpp:{m.group('t')}"
    m = _FF_REAL_RE.match(name)
    if m:
        return [f"ffpp:{m.group('t')}"], f"ffpp:{m.group('t')}"
    m = _CDF_FAKE_RE.match(name)
    if m:
        return [f"celebdf:id{m.group('t')}", f"celebdf:id{m.group('s')}"], f"celebdf:id{m.group('t')}"
    m = _CDF_REAL_RE.match(name)
    if m:
        return [f"celebdf:id{m.group('t')}"], f"celebdf:id{m.group('t')}"
    return [], None


@register_adapter
class DF40Adapter(Adapter):
    name = "df40"
    title = "DF40 (40 methods, pre-cropped face frames)"
    expects = "ROOT/<method>/{ff,cdf}/[frames/]<video>/*.png and/or ROOT/<method>/{fake,real}/[frames/]…"
    options = {
        "split": "train, val, test or none (default: train if ROOT's name contains 'train', else test)",
        "images_as": "auto (default), frames (every image folder is a sequence) or image (every file on its own)",
    }

    def __init__(self, root, **options):
        super().__init__(root, **options)
        sp = options.get("split")
        if sp is not None and sp not in ("train", "val", "test", "none"):
            raise DfkitError(f"df40: split must be train, val, test or none, got {sp!r}")
        ia = options.get("images_as") or "auto"
        if ia not in ("auto", "frames", "image"):
            raise DfkitError(f"df40: images_as must be auto, frames or image, got {ia!r}")
        self.images_as = ia
        if sp is None:
            self.split = "train" if "train" in self.root.name.lower() else "test"
        else:
            self.split = None if sp == "none" else sp

    def _subsets(self) -> list[tuple[Path, str, str, str]]:
        """(folder, method folder, domain or label folder, label) for every method/subset pair found."""
        out = []
        for mdir in sorted(self.root.iterdir()):
            if not mdir.is_dir():
                continue
            for sub in sorted(mdir.iterdir()):
                key = sub.name.lower()
                if sub.is_dir() and key in DOMAINS:
                    out.append((sub, mdir.name, DOMAINS[key], "fake"))
                elif sub.is_dir() and key in LABEL_FOLDERS:
                    out.append((sub, mdir.name, key, LABEL_FOLDERS[key]))
        return out

    def check_root(self) -> None:
        super().check_root()
        if not self._subsets():
            found = sorted(p.name + ("/" if p.is_dir() else "") for p in self.root.iterdir())
            raise LayoutError(
                f"df40: no <method>/ff/, <method>/cdf/, <method>/fake/ or <method>/real/ under {self.root} "
                f"(found: {', '.join(found[:8]) or 'nothing'}{', …' if len(found) > 8 else ''}); "
                f"expected {self.expects}")

    def videos(self) -> Iterator[VideoRecord]:
        self.check_root()
        subsets = self._subsets()
        used_methods = {m for _, m, _, _ in subsets}
        used_subs = {sub for sub, _, _, _ in subsets}
        for p in self.root.iterdir():
            if p.is_file() or p.name not in used_methods:
                self.ignored_files += 1
            else:  # other things inside a method folder
                self.ignored_files += sum(1 for q in p.iterdir() if q not in used_subs)
        lookup = method_lookup()
        n = 0
        for sub, mfolder, tag, label in subsets:
            method = "real" if label == "real" else lookup.get(mfolder.lower(), mfolder)
            for rec in self._walk(sub, mfolder, method, tag, label):
                n += 1
                yield rec
        if n == 0:
            raise LayoutError(f"df40: the method folders under {self.root} hold no image files "
                              f"({', '.join(sorted({f'{m}/{t}' for _, m, t, _ in subsets})[:6])}…)")

    def _walk(self, sub: Path, mfolder: str, method: str, tag: str, label: str) -> Iterator[VideoRecord]:
        top = sub / "frames" if (sub / "frames").is_dir() else sub
        stack = [top]
        while stack:
            d = stack.pop()
            entries = sorted(d.iterdir())
            images = [p for p in entries if p.is_file() and p.suffix.lower() in IMAGE_EXTS]
            self.ignored_files += sum(1 for p in entries if p.is_file() and p.suffix.lower() not in IMAGE_EXTS)
            stack.extend(reversed([p for p in entries if p.is_dir()]))
            if not images:
                continue
            as_frames = self.images_as == "frames" or (self.images_as == "auto" and d != top)
            if as_frames:
                yield self._record(d, d, mfolder, method, tag, label, "frames")
            else:
                for img in images:
                    yield self._record(img, d, mfolder, method, tag, label, "image")

    def _record(self, p: Path, folder: Path, mfolder: str, method: str, tag: str, label: str,
                kind: str) -> VideoRecord:
        rel = p.relative_to(self.root).as_posix()
        vid = rel.rsplit(".", 1)[0] if kind == "image" else rel
        name = p.stem if kind == "image" else p.name
        ids, group = _identities(name if kind == "frames" else folder.name)
        extra = {"precropped": True, "method_folder": mfolder}
        if tag in ("ff", "cdf"):
            extra["domain"] = tag
        return VideoRecord(dataset=self.name, video_id=vid, path=p, rel_path=rel, label=label, method=method,
                           split=self.split, kind=kind, identity_ids=ids, group_id=group, extra=extra)
