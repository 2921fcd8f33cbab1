"""Your own data, labelled by folder names: no code needed for a new dataset.

Default layout (``levels=label/method``)::

    ROOT/real/[<method>/]…/clip.mp4           (any depth below the named levels)
    ROOT/fake/<method>/…/clip.mp4
    ROOT/fake/clip.mp4                        (a file directly in the label folder: method "unknown")

``levels`` names the folder levels under ROOT, outermost first, from ``label`` (required), ``method``, ``split``,
``group``, ``identity`` and ``skip`` (a level to step over): e.g. ``split/label/method`` for ROOT/train/fake/FSGAN/….
Label folders are matched case-insensitively against ``real_names`` / ``fake_names``; other folders at that level are
ignored and counted. ``kind`` picks what one record is: ``auto`` (default: a video file is a video, an image file an
image), ``video``, ``image``, or ``frames`` (every folder that holds images is one frame sequence). Reals without a
method level get method ``real``. ``dataset`` names the dataset in the corpus (default ``folder``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from dfkit.errors import DfkitError, LayoutError
from dfkit.ingest.base import Adapter, VideoRecord, register_adapter
from dfkit.ingest.video import IMAGE_EXTS

VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"}
REAL_NAMES = "real,reals,original,originals,pristine,genuine,bonafide,bona_fide,authentic,0"
FAKE_NAMES = "fake,fakes,manipulated,deepfake,deepfakes,synthesis,synthetic,forged,spoof,1"
SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
               "dev": "val", "test": "test", "testing": "test"}
LEVELS = ("label", "method", "split", "group", "identity", "skip")
KINDS = ("auto", "video", "image", "frames")


def _inode(p: Path) -> tuple[int, int] | None:
    """The identity of the folder ``p`` points to (``None`` when it cannot be stat-ed)."""
    try:
        st = p.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _names(s: str) -> set[str]:
    return {x.strip().lower() for x in str(s).split(",") if x.strip()}


@register_adapter
class FolderAdapter(Adapter):
    name = "folder"
    title = "Your own data, labelled by folder names"
    expects = "ROOT/<real|fake>/[<method>/]…/<video, image or frame folder> (levels are configurable)"
    options = {
        "levels": "folder levels under ROOT, outermost first, from label, method, split, group, identity, skip "
                  "(default label/method; the method level may be absent)",
        "kind": "auto (default), video, image or frames (every folder of images is one sequence)",
        "real_names": f"folder names meaning real (default {REAL_NAMES})",
        "fake_names": f"folder names meaning fake (default {FAKE_NAMES})",
        "split": "train, val or test for everything (when no split level)",
        "dataset": "dataset name recorded in the corpus (default folder)",
    }

    def __init__(self, root, **options):
        super().__init__(root, **options)
        self.levels = [x.strip() for x in str(options.get("levels") or "label/method").split("/") if x.strip()]
        bad = [x for x in self.levels if x not in LEVELS]
        if bad or "label" not in self.levels or len(set(self.levels) - {"skip"}) != len(
                [x for x in self.levels if x != "skip"]):
            raise DfkitError(f"{self.name}: levels must name label once and may add method, split, group, "
                             f"identity, skip (each once, skip any number of times); got {options.get('levels')!r}")
        self.kind = options.get("kind") or "auto"
        if self.kind not in KINDS:
            raise DfkitError(f"{self.name}: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        self.real_names = _names(options.get("real_names") or REAL_NAMES)
        self.fake_names = _names(options.get("fake_names") or FAKE_NAMES)
        sp = options.get("split")
        if sp is not None and sp not in ("train", "val", "test"):
            raise DfkitError(f"{self.name}: split must be train, val or test, got {sp!r}")
        self.fixed_split = sp
        self.dataset = options.get("dataset") or self.name
        #: folders at a label or split level whose names were not recognised
        self.unrecognized_folders: list[str] = []

    # -- walking the levels -----------------------------------------------------------------------------------
    def _count_tree(self, p: Path) -> int:
        return 1 if p.is_file() else sum(1 for q in p.rglob("*") if q.is_file())

    def _nodes(self) -> Iterator[tuple[Path, dict[str, str]]]:
        """(folder, level values) at the end of the levels (or earlier where files appear in a label folder)."""
        frontier: list[tuple[Path, dict[str, str]]] = [(self.root, {})]
        for i, level in enumerate(self.levels):
            nxt = []
            for d, vals in frontier:
                if d.is_dir() and _inode(d) is not None:
                    self._seen_dirs.add(_inode(d))
                for p in sorted(d.iterdir()) if d.is_dir() else ():
                    if p.is_dir() and _inode(p) in self._seen_dirs:  # a link back up the tree (a loop)
                        self.repeated_folders.append(p.relative_to(self.root).as_posix())
                        continue
                    if p.is_file():
                        if "label" in vals and level in ("method", "group", "identity", "skip"):
                            nxt.append((p, dict(vals)))  # a file before the optional levels
                        else:
                            self.ignored_files += 1
                        continue
                    key = p.name.lower()
                    if level == "label":
                        lab = "real" if key in self.real_names else "fake" if key in self.fake_names else None
                        if lab is None:
                            self.unrecognized_folders.append(p.relative_to(self.root).as_posix())
                            self.ignored_files += self._count_tree(p)
                            continue
                        nxt.append((p, {**vals, "label": lab}))
                    elif level == "split":
                        if key not in SPLIT_NAMES:
                            self.unrecognized_folders.append(p.relative_to(self.root).as_posix())
                            self.ignored_files += self._count_tree(p)
                            continue
                        nxt.append((p, {**vals, "split": SPLIT_NAMES[key]}))
                    elif level == "skip":
                        nxt.append((p, vals))
                    else:
                        nxt.append((p, {**vals, level: p.name}))
            frontier = nxt
        return iter(frontier)

    def videos(self) -> Iterator[VideoRecord]:
        self.check_root()
        self._seen_dirs: set[tuple[int, int]] = set()
        #: folders not listed again because they had been reached already (symlink loops), for the summary
        self.repeated_folders: list[str] = []
        nodes = list(self._nodes())
        if not nodes:
            found = sorted(p.name + ("/" if p.is_dir() else "") for p in self.root.iterdir())
            raise LayoutError(
                f"{self.name}: no {'/'.join('<' + lv + '>' for lv in self.levels)} folders under {self.root} "
                f"(found: {', '.join(found[:8]) or 'nothing'}{', …' if len(found) > 8 else ''}); label folders "
                f"are named {', '.join(sorted(self.real_names))} (real) or {', '.join(sorted(self.fake_names))} "
                f"(fake); set --opt levels=… / real_names=… / fake_names=… to match your tree")
        n = 0
        for node, vals in nodes:
            for item, kind in self._media(node):
                n += 1
                yield self._record(item, kind, vals)
        if n == 0:
            raise LayoutError(f"{self.name}: the label folders under {self.root} hold no "
                              f"{'frame folders' if self.kind == 'frames' else 'video or image files'} "
                              f"(kind={self.kind})")

    def _media(self, node: Path) -> Iterator[tuple[Path, str]]:
        if node.is_file():
            k = self._file_kind(node)
            if k:
                yield node, k
            else:
                self.ignored_files += 1
            return
        stack = [node]
        seen = self._seen_dirs
        while stack:
            d = stack.pop()
            key = _inode(d)  # a folder reached twice (a symlink loop, or two links to one folder) is listed once
            if key is None or key in seen:
                if key is not None:
                    self.repeated_folders.append(d.relative_to(self.root).as_posix())
                continue
            seen.add(key)
            entries = sorted(d.iterdir())
            stack.extend(reversed([p for p in entries if p.is_dir()]))
            files = [p for p in entries if p.is_file()]
            if self.kind == "frames":
                images = [p for p in files if p.suffix.lower() in IMAGE_EXTS]
                self.ignored_files += len(files) - len(images)
                if images:
                    yield d, "frames"
                continue
            for p in files:
                k = self._file_kind(p)
                if k:
                    yield p, k
                else:
                    self.ignored_files += 1

    def _file_kind(self, p: Path) -> str | None:
        ext = p.suffix.lower()
        if self.kind in ("auto", "video") and ext in VIDEO_EXTS:
            return "video"
        if self.kind in ("auto", "image") and ext in IMAGE_EXTS:
            return "image"
        return None

    def _record(self, p: Path, kind: str, vals: dict[str, str]) -> VideoRecord:
        rel = p.relative_to(self.root).as_posix()
        vid = rel if kind == "frames" else rel.rsplit(".", 1)[0]
        label = vals["label"]
        method = vals.get("method") or ("real" if label == "real" else "unknown")
        ident = vals.get("identity")
        return VideoRecord(
            dataset=self.dataset, video_id=vid, path=p, rel_path=rel, label=label, method=method,
            split=vals.get("split") or self.fixed_split, kind=kind,
            identity_ids=[f"{self.dataset}:{ident}"] if ident else [],
            group_id=f"{self.dataset}:{vals['group']}" if vals.get("group") else (
                f"{self.dataset}:{ident}" if ident else None))
