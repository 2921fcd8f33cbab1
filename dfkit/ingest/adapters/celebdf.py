"""Celeb-DF v1 and v2, as the official download unpacks (``../shared/reference/DATASETS.md`` section 2).

Layout::

    ROOT/Celeb-real/id<k>_<NNNN>.mp4                 real, celebrity k
    ROOT/YouTube-real/<NNNNN>.mp4                    real, identity unknown
    ROOT/Celeb-synthesis/id<t>_id<s>_<NNNN>.mp4      fake: Celeb-real id<t>_<NNNN> with the face of id<s>
    ROOT/List_of_testing_videos.txt                  "<1|0> <folder>/<file>.mp4", **1 = real, 0 = fake**

Each folder may carry an extra ``videos/`` level (SelfBlendedImages, DeepfakeBench). Labels come from the folder;
the test list's own label is recorded in ``extra["list_label"]`` and checked against it (on disagreement the folder
wins and :attr:`label_disagreements` counts it). ``split`` is ``test`` for listed videos and ``train`` for the rest
(no validation list exists). When the root has no list, the copy shipped in ``manifests/celebdf/`` is used for the
detected version (v1's is reconstructed, see ``manifests/celebdf/SOURCE.md``). Listed videos absent from disk are
yielded as ``missing`` records (option ``report_missing=no`` to skip them).

Identities: ``celebdf:id<k>`` for the target and source of each fake; a fake's ``pair_video_id`` is the Celeb-real
video it was made from. The test split is not identity-disjoint (``dfkit splits audit`` shows it).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from dfkit.errors import DfkitError, LayoutError
from dfkit.ingest.adapters._read import decode
from dfkit.ingest.base import Adapter, VideoRecord, register_adapter
from dfkit.paths import manifests_dir

VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm"}
FOLDERS = {"Celeb-real": "real", "YouTube-real": "real", "Celeb-synthesis": "fake"}
LIST_NAME = "List_of_testing_videos.txt"
_REAL_RE = re.compile(r"^id(?P<t>\d+)_(?P<n>\d{4})$")
_FAKE_RE = re.compile(r"^id(?P<t>\d+)_id(?P<s>\d+)_(?P<n>\d{4})$")
_YT_RE = re.compile(r"^\d{5}$")
#: list sizes of the official test lists, used to tell the versions apart
_LIST_SIZES = {518: "v2", 100: "v1"}


def _truthy(v) -> bool:
    return str(v).strip().lower() in ("1", "true", "yes", "on", "y")


def parse_test_list(path: Path) -> dict[tuple[str, str], str]:
    """``{(folder, stem): "real"|"fake"}`` from a Celeb-DF test list (label 1 = real, 0 = fake)."""
    out: dict[tuple[str, str], str] = {}
    for n, line in enumerate(decode(path, "celebdf").replace("\r\n", "\n").replace("\r", "\n").split("\n"), 1):
        line = line.strip()
        if not line:
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or parts[0] not in ("0", "1") or "/" not in parts[1]:
            raise LayoutError(f"celebdf: {path}:{n}: expected '<1|0> <folder>/<file>.mp4' "
                              f"(1 = real, 0 = fake), found {line[:80]!r}")
        folder, _, name = parts[1].strip().partition("/")
        out[(folder, Path(name).stem)] = "real" if parts[0] == "1" else "fake"
    return out


@register_adapter
class CelebDFAdapter(Adapter):
    name = "celebdf"
    title = "Celeb-DF (v1 and v2)"
    expects = ("ROOT/{Celeb-real,YouTube-real,Celeb-synthesis}/[videos/]*.mp4 and "
               "ROOT/List_of_testing_videos.txt (1 = real, 0 = fake; dfkit's copy is used when absent)")
    options = {
        "version": "v1, v2 or auto (default): decides which shipped test list is the fallback",
        "test_list": "path of a List_of_testing_videos.txt to use instead of ROOT's or the shipped one",
        "report_missing": "yes / no: yield listed-but-absent videos as missing records (default: yes when the "
                          "list comes from ROOT, no with dfkit's shipped copy)",
    }

    def __init__(self, root, version: str | None = None, **options):
        super().__init__(root, version=version, **options)
        v = (version or "auto").lower().strip()
        v = {"1": "v1", "2": "v2"}.get(v, v)
        if v not in ("v1", "v2", "auto"):
            raise DfkitError(f"celebdf: unknown version {version!r}; use v1, v2 or auto")
        self.version_opt = v
        self.version: str | None = None
        #: listed videos whose list label disagrees with their folder (the folder wins)
        self.label_disagreements = 0
        #: listed videos not found on disk
        self.missing_count = 0
        self.test_list_used: str | None = None

    # -- layout -----------------------------------------------------------------------------------------------
    def check_root(self) -> None:
        super().check_root()
        if not any((self.root / f).is_dir() for f in FOLDERS):
            found = sorted(p.name + ("/" if p.is_dir() else "") for p in self.root.iterdir())
            more = f", … ({len(found)} entries)" if len(found) > 8 else ""
            below = [p for p in sorted(self.root.iterdir()) if p.is_dir() and any((p / f).is_dir() for f in FOLDERS)]
            hint = f"; did you mean {below[0]}?" if below else ""
            raise LayoutError(
                f"celebdf: no Celeb-real/, YouTube-real/ or Celeb-synthesis/ under {self.root} "
                f"(found: {', '.join(found[:8]) or 'nothing'}{more}); expected {self.expects}{hint}")

    def _folder_dir(self, folder: str) -> Path:
        d = self.root / folder
        return d / "videos" if (d / "videos").is_dir() else d

    def _scan(self) -> dict[tuple[str, str], Path]:
        files: dict[tuple[str, str], Path] = {}
        for entry in self.root.iterdir():
            if entry.name not in FOLDERS and entry.name != LIST_NAME:
                self.ignored_files += 1  # an unrelated file or folder next to the dataset
        for folder in FOLDERS:
            d = self.root / folder
            if not d.is_dir():
                continue
            vd = self._folder_dir(folder)
            if vd != d:
                self.ignored_files += sum(1 for p in d.iterdir() if p.name != "videos")
            for p in sorted(vd.iterdir()):
                if p.is_file() and p.suffix.lower() in VIDEO_EXTS:
                    files[(folder, p.stem)] = p
                else:
                    self.ignored_files += 1
        return files

    def _detect_version(self, root_list: dict | None, files: dict) -> str:
        if self.version_opt != "auto":
            return self.version_opt
        if root_list is not None and len(root_list) in _LIST_SIZES:
            return _LIST_SIZES[len(root_list)]
        name = self.root.name.lower()
        if "v2" in name:
            return "v2"
        if "v1" in name:
            return "v1"
        n_fake = sum(1 for k in files if k[0] == "Celeb-synthesis")
        n_real = sum(1 for k in files if k[0] != "Celeb-synthesis")
        if n_fake > 795 or n_real > 408:  # more than v1 has
            return "v2"
        return "v2"  # the common download; a v1 user can say version=v1

    def _load_list(self, files: dict) -> dict[tuple[str, str], str]:
        if self.opts.get("test_list"):
            path = Path(self.opts["test_list"]).expanduser()
            if not path.is_file():
                raise DfkitError(f"celebdf: test_list {path} does not exist")
            lst = parse_test_list(path)
            self.version = self._detect_version(lst, files)
        elif (self.root / LIST_NAME).is_file():
            path = self.root / LIST_NAME
            lst = parse_test_list(path)
            self.version = self._detect_version(lst, files)
        else:
            self.version = self._detect_version(None, files)
            fname = LIST_NAME if self.version == "v2" else "List_of_testing_videos_v1.txt"
            path = manifests_dir() / "celebdf" / fname
            lst = parse_test_list(path)
        self.test_list_used = str(path)
        return lst

    # -- records ----------------------------------------------------------------------------------------------
    def videos(self) -> Iterator[VideoRecord]:
        self.check_root()
        files = self._scan()
        if not files:
            raise LayoutError(
                f"celebdf: no videos in Celeb-real/, YouTube-real/ or Celeb-synthesis/ under {self.root} "
                f"(nor in a videos/ level inside them); expected {self.expects}")
        listed = self._load_list(files)
        # the dataset's own list names videos the user should have; dfkit's shipped copy (used when the root has
        # none, e.g. a partial download) does not, so its absent entries are only counted
        shipped = Path(self.test_list_used).parent == manifests_dir() / "celebdf"
        report_missing = _truthy(self.opts.get("report_missing", "no" if shipped else "yes"))
        for (folder, stem), p in sorted(files.items()):
            yield self._record(folder, stem, p, listed.get((folder, stem)), missing=False)
        for (folder, stem), list_label in listed.items():
            if (folder, stem) in files:
                continue
            self.missing_count += 1
            if report_missing and folder in FOLDERS:
                p = self._folder_dir(folder) / f"{stem}.mp4"
                yield self._record(folder, stem, p, list_label, missing=True)

    def ingest_params(self) -> dict:
        return {**super().ingest_params(), "version": self.version, "test_list_used": self.test_list_used}

    def _record(self, folder: str, stem: str, p: Path, list_label: str | None, missing: bool) -> VideoRecord:
        label = FOLDERS[folder]
        extra: dict = {"version": self.version}
        if list_label is not None:
            extra["list_label"] = list_label
            if list_label != label:
                self.label_disagreements += 1
                extra["list_label_disagrees"] = True
        split = "test" if list_label is not None else "train"
        vid = f"{self.version}/{folder}/{stem}"
        base = dict(dataset=self.name, video_id=vid, path=p, label=label, method=folder, split=split,
                    missing=missing)
        try:
            rel = p.relative_to(self.root).as_posix()
        except ValueError:
            rel = p.as_posix()
        if folder == "Celeb-synthesis":
            m = _FAKE_RE.match(stem)
            if m:
                t, s, n = m.group("t"), m.group("s"), m.group("n")
                return VideoRecord(
                    **base, rel_path=rel, target_video_id=f"id{t}_{n}",
                    pair_video_id=f"{self.version}/Celeb-real/id{t}_{n}",
                    identity_ids=[f"celebdf:id{t}", f"celebdf:id{s}"], group_id=f"celebdf:id{t}",
                    extra={**extra, "source_identity": f"celebdf:id{s}"})
        elif folder == "Celeb-real":
            m = _REAL_RE.match(stem)
            if m:
                t = m.group("t")
                return VideoRecord(**base, rel_path=rel, target_video_id=stem,
                                   identity_ids=[f"celebdf:id{t}"], group_id=f"celebdf:id{t}", extra=extra)
        elif _YT_RE.match(stem):  # YouTube-real: one unnamed person per video
            return VideoRecord(**base, rel_path=rel, group_id=f"celebdf:youtube:{stem}", extra=extra)
        return VideoRecord(**base, rel_path=rel, extra={**extra, "unparsed_name": True})
