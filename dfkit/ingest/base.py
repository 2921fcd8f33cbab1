"""What an adapter is: it *describes* a dataset's videos (or images) with their labels; it never decodes.

An adapter is one file in ``dfkit/ingest/adapters/`` named after the dataset. It subclasses :class:`Adapter`,
decorates itself with :func:`register_adapter`, and yields :class:`VideoRecord` objects from :meth:`Adapter.videos`.
Everything else -- probing, frame sampling, decoding, face detection, tracking, cropping, writing -- lives once, in
``dfkit/ingest/engine.py``.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterator

from dfkit.errors import DfkitError
from dfkit.registry import Registry

LABELS = ("real", "fake")
SPLITS = ("train", "val", "test")


@dataclass
class VideoRecord:
    """One video (or one image / frame folder, see ``kind``) as the dataset describes it.

    ``video_id`` must be unique within ``dataset`` and stable across runs (it keys resume and ``sample_id``).
    ``content_id`` names the content regardless of compression level, so that c0/c23/c40 copies of one video
    share it. ``pair_video_id`` is the ``video_id`` of the real video this fake was made from, when the dataset
    says so (FF++ target); the engine then crops the fake on the original's frames and boxes.
    """

    dataset: str
    video_id: str
    path: Path
    rel_path: str
    label: str
    method: str
    split: str | None = None
    compression: str | None = None
    content_id: str | None = None
    source_video_id: str | None = None
    target_video_id: str | None = None
    pair_video_id: str | None = None
    identity_ids: list[str] = field(default_factory=list)
    group_id: str | None = None
    perturbation: str | None = None
    kind: str = "video"  # "video" | "image" | "frames" (a folder of frames)
    missing: bool = False  # listed by the dataset's metadata but absent on disk
    #: the dataset's metadata entry for this file is unusable (why, naming file and line); the engine records it
    #: as failed at stage "list" and the rest of the dataset goes on
    problem: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.problem is not None and self.label not in LABELS:
            self.label = "unknown"
        elif self.label not in LABELS:
            raise ValueError(f"{self.rel_path}: label must be one of {LABELS}, got {self.label!r}")
        if self.split is not None and self.split not in SPLITS:
            raise ValueError(f"{self.rel_path}: split must be one of {SPLITS} or None, got {self.split!r}")
        if self.content_id is None:
            self.content_id = self.video_id
        self.path = Path(self.path)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


class Adapter:
    """Base class of dataset adapters. Subclasses set the class attributes and implement :meth:`videos`."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    #: what the adapter expects on disk, shown by ``dfkit datasets`` and in layout errors
    expects: ClassVar[str] = ""
    #: extra keyword options the adapter accepts (name -> help), passed through ``dfkit ingest --opt k=v``
    options: ClassVar[dict[str, str]] = {}

    def __init__(self, root: str | Path, **options: Any):
        self.root = Path(root).expanduser()
        unknown = set(options) - set(self.options) - {"compression"}
        if unknown:
            raise DfkitError(f"{self.name}: unknown option(s) {', '.join(sorted(unknown))}; "
                             f"known: {', '.join(sorted(self.options)) or 'none'}")
        self.opts = options
        #: files under root that the adapter saw but does not use, counted for the summary
        self.ignored_files = 0

    def check_root(self) -> None:
        if not self.root.exists():
            raise DfkitError(f"{self.name}: dataset root {self.root} does not exist")
        if not self.root.is_dir():
            raise DfkitError(f"{self.name}: dataset root {self.root} is not a directory")

    def problem_record(self, video_id: str, path: Path, reason: str, **kw: Any) -> VideoRecord:
        """A metadata entry that cannot be used: recorded in the corpus errors table, never fatal."""
        try:
            rel = Path(path).relative_to(self.root).as_posix()
        except ValueError:
            rel = str(path)
        return VideoRecord(dataset=self.name, video_id=video_id, path=Path(path), rel_path=rel, label="unknown",
                           method="unknown", problem=f"{self.name}: {reason}", **kw)

    def roots(self) -> list[Path] | None:
        """The folders this adapter's media may come from: the dataset root, plus any root an option names
        (DeeperForensics' ``ffpp_root``). ``None``: unconfined (the user opted in, e.g. CSV ``allow_absolute=1``)."""
        return [self.root]

    def confine(self, rec: VideoRecord) -> VideoRecord:
        """``rec``, or a problem record (failed at stage ``list``, never opened) when its path leaves every root
        of :meth:`roots`. The test is lexical (``..`` and absolute paths in metadata), so folders the user
        symlinked into the root are still followed."""
        roots = self.roots()
        if roots is None or rec.problem is not None:
            return rec
        p = os.path.normpath(os.path.abspath(rec.path))
        for r in roots:
            r = os.path.normpath(os.path.abspath(Path(r).expanduser()))
            if p == r or p.startswith(r.rstrip(os.sep) + os.sep):
                # open exactly the path that was checked: the OS would resolve "link/.." from the link's target
                rec.path = Path(p)
                return rec
        where = " or ".join(str(r) for r in roots)
        return self.problem_record(rec.video_id, rec.path, f"{rec.rel_path}: the path leaves the dataset root "
                                   f"({where}); not read" + (self.confine_hint and f" ({self.confine_hint})"))

    #: how a user may allow paths outside the root for this adapter (shown when one is refused)
    confine_hint: ClassVar[str] = ""

    def methods(self) -> list[str]:
        """The dataset's own method names (from the taxonomy manifest)."""
        from dfkit.taxonomy import dataset_methods

        return dataset_methods(self.name)

    def videos(self) -> Iterator[VideoRecord]:  # pragma: no cover - abstract
        raise NotImplementedError

    def ingest_params(self) -> dict[str, Any]:
        """Adapter settings recorded in the corpus manifest."""
        return {"root": str(self.root), **{k: v for k, v in self.opts.items() if v is not None}}


#: every adapter, by its class's ``name``; the modules of ``dfkit/ingest/adapters/`` are imported on first lookup
ADAPTERS: Registry[type[Adapter]] = Registry("dataset", "dfkit.ingest.adapters", named_by="attribute")


def register_adapter(cls: type[Adapter]) -> type[Adapter]:
    """Class decorator: make an adapter available by ``cls.name`` (``dfkit ingest NAME``); a name taken by another
    adapter is refused."""
    return ADAPTERS.register(cls)


def list_adapters() -> dict[str, type[Adapter]]:
    """Every registered adapter class by name, sorted by name."""
    return dict(ADAPTERS.items())


def get_adapter(name: str) -> type[Adapter]:
    """The adapter class of dataset ``name``; :class:`~dfkit.registry.UnknownNameError` (a DfkitError) listing the
    known datasets otherwise."""
    return ADAPTERS.get(name)


def create_adapter(name: str, root: str | Path, **options: Any) -> Adapter:
    """Factory: ``create_adapter("ffpp", "/data/FaceForensics++", compression="c23")``."""
    return ADAPTERS.create(name, root, **options)
