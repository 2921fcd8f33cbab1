"""WildDeepfake (deepfake in the wild), ``DATASETS.md`` section 9.

Layout::

    ROOT/{real train,real test,fake train,fake test}/<n>.tar.gz          as downloaded (names with spaces)
    ROOT/{real train,…}/<n>/…/<sequence>/<frame>.png                    after extracting the archives in place

Only face crops are distributed, as face sequences: every folder holding image files is one sequence
(``kind="frames"``; the images are named by frame number). Label and split come from the top folder
(``real_train``, ``real-train`` and ``real/train`` or ``train/real`` are accepted too). There are no method labels
(fakes are ``unknown``) and no identities; ``group_id`` is the top folder's first level (the archive ``<n>``, one
source video), so sequences cut from one video stay together.

Archives (``.tar``, ``.tar.gz``, ``.tgz``) are not read: extracting is left to the user. They are counted in
:attr:`archives` and :attr:`ignored_files`; when nothing but archives is found the LayoutError says so.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from dfkit.errors import LayoutError
from dfkit.ingest.base import Adapter, VideoRecord, register_adapter
from dfkit.ingest.video import IMAGE_EXTS

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
_SPLIT_NAMES = {"train": "train", "test": "test", "val": "val", "validation": "val"}


def _is_archive(p: Path) -> bool:
    return p.is_file() and p.name.lower().endswith(ARCHIVE_SUFFIXES)


@register_adapter
class WildDeepfakeAdapter(Adapter):
    name = "wilddeepfake"
    title = "WildDeepfake (face sequences from internet deepfakes)"
    expects = ("ROOT/{real train,real test,fake train,fake test}/ holding extracted face-sequence folders "
               "(<n>/…/<sequence>/<frame>.png); the <n>.tar.gz archives must be extracted first")
    options = {}

    def __init__(self, root, **options):
        super().__init__(root, **options)
        #: .tar/.tar.gz archives seen (not read)
        self.archives = 0

    def _tops(self) -> list[tuple[Path, str, str]]:
        """(folder, label, split) of each label/split folder."""
        out = []
        for p in sorted(self.root.iterdir()):
            if not p.is_dir():
                continue
            words = [w for w in re.split(r"[ _\-]+", p.name.lower()) if w]
            if len(words) == 2:
                a, b = words
                if a in ("real", "fake") and b in _SPLIT_NAMES:
                    out.append((p, a, _SPLIT_NAMES[b]))
                elif b in ("real", "fake") and a in _SPLIT_NAMES:
                    out.append((p, b, _SPLIT_NAMES[a]))
            elif len(words) == 1 and words[0] in ("real", "fake"):  # real/train/
                for q in sorted(p.iterdir()):
                    if q.is_dir() and q.name.lower() in _SPLIT_NAMES:
                        out.append((q, words[0], _SPLIT_NAMES[q.name.lower()]))
            elif len(words) == 1 and words[0] in _SPLIT_NAMES:  # train/real/
                for q in sorted(p.iterdir()):
                    if q.is_dir() and q.name.lower() in ("real", "fake"):
                        out.append((q, q.name.lower(), _SPLIT_NAMES[words[0]]))
        return out

    def check_root(self) -> None:
        super().check_root()
        if not self._tops():
            found = sorted(p.name + ("/" if p.is_dir() else "") for p in self.root.iterdir())
            raise LayoutError(
                f"wilddeepfake: no 'real train', 'real test', 'fake train' or 'fake test' folder under {self.root} "
                f"(found: {', '.join(found[:8]) or 'nothing'}{', …' if len(found) > 8 else ''}); "
                f"expected {self.expects}")

    def videos(self) -> Iterator[VideoRecord]:
        self.check_root()
        tops = self._tops()
        top_dirs = {t for t, _, _ in tops}
        for p in self.root.iterdir():
            if p not in top_dirs and not any(t.parent == p for t in top_dirs):
                if _is_archive(p):
                    self.archives += 1
                self.ignored_files += 1 if p.is_file() else sum(1 for q in p.rglob("*") if q.is_file())
        n = 0
        for top, label, split in tops:
            for rec in self._walk(top, label, split):
                n += 1
                yield rec
        if n == 0:
            where = ", ".join(f"'{t.relative_to(self.root).as_posix()}'" for t, _, _ in tops)
            if self.archives:
                raise LayoutError(
                    f"wilddeepfake: {where} under {self.root} hold {self.archives} .tar/.tar.gz archive(s) but no "
                    f"extracted face-sequence folders; dfkit does not read archives: extract them in place "
                    f"(e.g. cd '<folder>' && for f in *.tar.gz; do tar -xzf \"$f\"; done) and run again")
            raise LayoutError(f"wilddeepfake: {where} under {self.root} hold no face-sequence folders "
                              f"(folders of .png/.jpg frames); expected {self.expects}")

    def _walk(self, top: Path, label: str, split: str) -> Iterator[VideoRecord]:
        stack = [top]
        while stack:
            d = stack.pop()
            entries = sorted(d.iterdir())
            images = [p for p in entries if p.is_file() and p.suffix.lower() in IMAGE_EXTS]
            for p in entries:
                if p.is_file() and p.suffix.lower() not in IMAGE_EXTS:
                    self.archives += _is_archive(p)
                    self.ignored_files += 1
            stack.extend(reversed([p for p in entries if p.is_dir()]))
            if not images:
                continue
            if d == top:  # loose images directly in the split folder: not a sequence
                self.ignored_files += len(images)
                continue
            rel = d.relative_to(self.root).as_posix()
            first = d.relative_to(top).parts[0]
            yield VideoRecord(
                dataset=self.name, video_id=rel, path=d, rel_path=rel, label=label,
                method="real" if label == "real" else "unknown", split=split, kind="frames",
                group_id=f"wilddeepfake:{top.relative_to(self.root).as_posix()}/{first}",
                extra={"n_images": len(images)})
