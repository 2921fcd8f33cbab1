"""FaceForensics++ (with DeepFakeDetection and FaceShifter), as the official download script writes it.

Layout (see ``../shared/reference/DATASETS.md`` section 1)::

    ROOT/original_sequences/youtube/<C>/videos/000.mp4 ... 999.mp4
    ROOT/original_sequences/actors/<C>/videos/<actor>__<scene>.mp4                         (DFD reals)
    ROOT/manipulated_sequences/<Method>/<C>/videos/<target>_<source>.mp4
    ROOT/manipulated_sequences/DeepFakeDetection/<C>/videos/<t>_<s>__<scene>__<8-char id>.mp4
    ROOT/manipulated_sequences/<Method>/masks/videos/<name>.mp4                             (masks)

``<C>`` is ``raw`` (the script's name) or ``c0`` (the README's name) for lossless, ``c23`` or ``c40``. Labels come
from the folders; splits from the official pair lists (``manifests/ffpp/splits``: a fake ``a_b`` or ``b_a`` is in
its pair's split); ``group_id`` is the YouTube id from ``conversion_dict.json`` (seven YouTube videos straddle the
official splits: ``dfkit splits audit`` reports them). DFD and unknown ids have no official split (``split`` null).
Missing method folders are fine: users often download a subset. A fake's mask video, when present, is named in
``extra["mask_path"]`` (relative to the root); the engine reads it to choose the manipulated face's track and to
record each crop's ``mask_fraction`` (the adapter only describes, it never decodes).
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Iterator

from dfkit.errors import LayoutError
from dfkit.ingest.adapters._read import load_json
from dfkit.ingest.base import Adapter, VideoRecord, register_adapter
from dfkit.paths import manifests_dir

VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm"}
COMPRESSIONS = ("c0", "c23", "c40")
_FAKE_RE = re.compile(r"^(?P<t>\d{3})_(?P<s>\d{3})$")
_DFD_FAKE_RE = re.compile(r"^(?P<t>\d{2})_(?P<s>\d{2})__(?P<scene>.+)__(?P<exp>[A-Za-z0-9]{8})$")
_DFD_REAL_RE = re.compile(r"^(?P<actor>\d{2})__(?P<scene>.+)$")


@lru_cache(maxsize=None)
def official_splits(manifest: str = "ffpp") -> dict[str, str]:
    """Sequence id -> split, from the official pair lists (``[["953", "974"], ...]``). A damaged manifest is one
    LayoutError naming the file."""
    out: dict[str, str] = {}
    for split in ("train", "val", "test"):
        path = manifests_dir() / manifest / "splits" / f"{split}.json"
        pairs = load_json(path, manifest, "a split list")
        if not isinstance(pairs, list) or not all(
                isinstance(pair, list) and all(isinstance(sid, str) for sid in pair) for pair in pairs):
            raise LayoutError(f"{manifest}: dfkit's split list {path} is damaged: expected a JSON list of "
                              f"[target, source] id pairs; reinstall dfkit")
        for pair in pairs:
            for sid in pair:
                out[sid] = split
    return out


@lru_cache(maxsize=None)
def youtube_ids() -> dict[str, str]:
    """Sequence id -> YouTube id (``conversion_dict.json``: ``"000": "--b1Ua-kWJE 0"``)."""
    path = manifests_dir() / "ffpp" / "conversion_dict.json"
    ids = load_json(path, "ffpp", "conversion_dict.json")
    if not isinstance(ids, dict) or not all(isinstance(v, str) for v in ids.values()):
        raise LayoutError(f"ffpp: dfkit's {path} is damaged: expected a JSON object of sequence id -> "
                          f"'<YouTube id> <n>'; reinstall dfkit")
    return {k: v.split(" ")[0] for k, v in ids.items()}


def compression_folder_name(folder: str) -> str:
    """Normalise the lossless level: the download script writes ``raw``, the README says ``c0``."""
    return "c0" if folder == "raw" else folder


@register_adapter
class FFPPAdapter(Adapter):
    name = "ffpp"
    title = "FaceForensics++ (+ DeepFakeDetection, FaceShifter)"
    expects = ("ROOT/original_sequences/{youtube,actors}/<C>/videos/*.mp4 and "
               "ROOT/manipulated_sequences/<Method>/<C>/videos/*.mp4, <C> = raw|c0|c23|c40")
    options = {"compression": "compression level folder: c0 (= raw), c23 (default) or c40"}
    #: the split manifest folder (the demo reuses FF++'s official split ids)
    split_manifest = "ffpp"
    #: group videos by YouTube id (conversion_dict.json); the demo's ids are not real sequences
    youtube_groups = True

    def __init__(self, root, compression: str | None = None, **options):
        super().__init__(root, compression=compression, **options)
        self.compression = compression_folder_name(compression or "c23")
        if self.compression not in COMPRESSIONS:
            raise LayoutError(f"{self.name}: unknown compression {compression!r}; use raw/c0, c23 or c40")

    def ingest_params(self) -> dict:
        return {**super().ingest_params(), "compression": self.compression}

    # -- layout -----------------------------------------------------------------------------------------------
    def _level_dirs(self, parent: Path) -> list[Path]:
        """``parent/<C>/videos`` for the chosen level (both ``raw`` and ``c0`` spellings for lossless)."""
        names = ["raw", "c0"] if self.compression == "c0" else [self.compression]
        return [parent / n / "videos" for n in names if (parent / n / "videos").is_dir()]

    def check_root(self) -> None:
        super().check_root()
        if not (self.root / "original_sequences").is_dir() and not (self.root / "manipulated_sequences").is_dir():
            found = sorted(p.name for p in self.root.iterdir())[:8]
            raise LayoutError(
                f"{self.name}: no original_sequences/ or manipulated_sequences/ under {self.root} "
                f"(found: {', '.join(found) or 'nothing'}); expected {self.expects}")

    def _video_files(self, folder: Path) -> list[Path]:
        files = []
        for p in sorted(folder.iterdir()):
            if p.is_file() and p.suffix.lower() in VIDEO_EXTS:
                files.append(p)
            else:
                self.ignored_files += 1
        return files

    def known_methods(self) -> list[str]:
        return [m for m in self.methods() if m not in ("original", "DeepFakeDetection_original")]

    # -- records ----------------------------------------------------------------------------------------------
    def videos(self) -> Iterator[VideoRecord]:
        self.check_root()
        splits = official_splits(self.split_manifest)
        yt = youtube_ids() if self.youtube_groups else {}
        c = self.compression
        n = 0
        orig = self.root / "original_sequences"
        for folder in self._level_dirs(orig / "youtube"):
            for p in self._video_files(folder):
                sid = p.stem
                n += 1
                yield VideoRecord(
                    dataset=self.name, video_id=f"original/{c}/{sid}", content_id=f"original/{sid}",
                    path=p, rel_path=p.relative_to(self.root).as_posix(), label="real", method="original",
                    split=splits.get(sid), compression=c, identity_ids=[f"{self.name}:{sid}"],
                    group_id=yt.get(sid, sid), target_video_id=sid)
        for folder in self._level_dirs(orig / "actors"):
            for p in self._video_files(folder):
                m = _DFD_REAL_RE.match(p.stem)
                actor = m.group("actor") if m else p.stem
                n += 1
                yield VideoRecord(
                    dataset=self.name, video_id=f"actors/{c}/{p.stem}", content_id=f"actors/{p.stem}",
                    path=p, rel_path=p.relative_to(self.root).as_posix(), label="real",
                    method="DeepFakeDetection_original", split=None, compression=c,
                    identity_ids=[f"dfd_actor:{actor}"], group_id=f"dfd_actor:{actor}",
                    extra={"scene": m.group("scene")} if m else {})
        manip = self.root / "manipulated_sequences"
        method_dirs = sorted(p for p in manip.iterdir() if p.is_dir()) if manip.is_dir() else []
        for mdir in method_dirs:
            method = mdir.name
            for folder in self._level_dirs(mdir):
                for p in self._video_files(folder):
                    rec = self._fake_record(method, p, splits, yt)
                    n += 1
                    yield rec
        if n == 0:
            raise LayoutError(
                f"{self.name}: no videos at compression {c} under {self.root} "
                f"(looked in original_sequences/*/{c}/videos and manipulated_sequences/*/{c}/videos; "
                f"levels present: {', '.join(self.levels_present()) or 'none'})")

    def levels_present(self) -> list[str]:
        levels = set()
        for top in ("original_sequences", "manipulated_sequences"):
            for sub in (self.root / top).glob("*/*"):
                if (sub / "videos").is_dir():
                    levels.add(sub.name)
        return sorted(levels)

    def _fake_record(self, method: str, p: Path, splits: dict[str, str], yt: dict[str, str]) -> VideoRecord:
        c = self.compression
        stem = p.stem
        rel = p.relative_to(self.root).as_posix()
        base = dict(dataset=self.name, video_id=f"{method}/{c}/{stem}", content_id=f"{method}/{stem}",
                    path=p, rel_path=rel, label="fake", method=method, compression=c)
        mask = p.parents[2] / "masks" / "videos" / p.name  # <Method>/masks/videos/<name>: read by the engine
        extra = {"mask_path": mask.relative_to(self.root).as_posix()} if mask.is_file() else {}
        m = _FAKE_RE.match(stem)
        if m:
            t, s = m.group("t"), m.group("s")
            split = splits.get(t)
            if split is not None and splits.get(s) not in (None, split):
                split = None  # not an official pair: a fake mixing two splits belongs to none
            return VideoRecord(
                **base, split=split, target_video_id=t, source_video_id=s,
                pair_video_id=f"original/{c}/{t}",
                identity_ids=[f"{self.name}:{t}", f"{self.name}:{s}"], group_id=yt.get(t, t),
                extra={"source_group_id": yt.get(s, s), **extra})
        m = _DFD_FAKE_RE.match(stem)
        if m:
            t, s = m.group("t"), m.group("s")
            return VideoRecord(
                **base, split=None, target_video_id=t, source_video_id=s,
                identity_ids=[f"dfd_actor:{t}", f"dfd_actor:{s}"], group_id=f"dfd_actor:{t}",
                extra={"scene": m.group("scene"), "experiment_id": m.group("exp"), **extra})
        # A name that follows neither convention: keep it, unlabelled split, no pairing.
        return VideoRecord(**base, split=None, extra={"unparsed_name": True, **extra})
