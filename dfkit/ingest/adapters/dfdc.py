"""DFDC (the full Deepfake Detection Challenge release and the Kaggle samples), ``DATASETS.md`` section 3.

Layouts accepted (any combination)::

    ROOT/dfdc_train_part_<N>/metadata.json + *.mp4     (also under ROOT/train/, DeepfakeBench's arrangement)
    ROOT/metadata.json + *.mp4                         (ROOT is one part, or Kaggle's train_sample_videos/)
    ROOT/<any folder>/metadata.json + *.mp4            (e.g. ROOT/train_sample_videos/: part number unknown)
    ROOT/{test,validation,val}/labels.csv + [videos/]*.mp4     (columns filename,label; 0 = real, 1 = fake)

``metadata.json`` is ``{"<name>.mp4": {"label": "FAKE"|"REAL", "split": "train", "original": "<name>.mp4"|null}}``;
``original`` may be absent. Entries whose file is absent are yielded as ``missing``; files that no metadata names are
ignored (counted). There is no method label (method ``unknown``) and no identity; ``group_id`` is the original's
name (a fake groups with its original), the part number goes to ``extra["part"]``. Splits: train parts ``train``,
validation ``val``, test ``test``. A fake's ``pair_video_id`` is its original (train parts only: both are DFDC videos
of the same length, the fake made on the original's frames).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from dfkit.errors import LayoutError, one_line
from dfkit.ingest.adapters._read import csv_dicts, decode, load_json, lookup_problem
from dfkit.ingest.base import Adapter, VideoRecord, register_adapter

VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm"}
_PART_RE = re.compile(r"^dfdc_train_part_(\d+)$")
EVAL_FOLDERS = {"test": "test", "validation": "val", "val": "val"}


@register_adapter
class DFDCAdapter(Adapter):
    name = "dfdc"
    title = "Deepfake Detection Challenge (DFDC full release / Kaggle)"
    expects = ("ROOT/[train/]dfdc_train_part_<N>/metadata.json + *.mp4 (or ROOT/metadata.json), and/or "
               "ROOT/{test,validation}/labels.csv (filename,label; 0 real, 1 fake) + [videos/]*.mp4")
    options = {}

    def __init__(self, root, **options):
        super().__init__(root, **options)
        #: metadata entries whose file is absent
        self.missing_count = 0
        #: entries naming a video another part already lists (kept once)
        self.repeated_entries = 0

    # -- layout -----------------------------------------------------------------------------------------------
    def _parts(self) -> list[tuple[Path, int | None]]:
        parts: list[tuple[Path, int | None]] = []
        if (self.root / "metadata.json").is_file():
            m = _PART_RE.match(self.root.name)
            parts.append((self.root, int(m.group(1)) if m else None))
        for base in (self.root, self.root / "train"):
            if not base.is_dir():
                continue
            for d in base.iterdir():
                if not d.is_dir():
                    continue
                m = _PART_RE.match(d.name)
                if m:
                    parts.append((d, int(m.group(1))))
                elif d.name not in EVAL_FOLDERS and (d / "metadata.json").is_file():
                    parts.append((d, None))  # e.g. Kaggle's train_sample_videos/
        return sorted(parts, key=lambda x: (x[1] is None, x[1] or 0, str(x[0])))

    def _eval_sets(self) -> list[tuple[Path, str]]:
        return [(self.root / n, s) for n, s in EVAL_FOLDERS.items() if (self.root / n / "labels.csv").is_file()]

    def _layout_error(self, detail: str = "") -> LayoutError:
        found = sorted(p.name + ("/" if p.is_dir() else "") for p in self.root.iterdir())
        more = f", … ({len(found)} entries)" if len(found) > 8 else ""
        return LayoutError(
            f"dfdc: no dfdc_train_part_<N>/metadata.json, metadata.json or {{test,validation}}/labels.csv under "
            f"{self.root}{detail} (found: {', '.join(found[:8]) or 'nothing'}{more}); expected {self.expects}")

    def check_root(self) -> None:
        super().check_root()
        parts = self._parts()
        if not parts and not self._eval_sets():
            raise self._layout_error()
        for d, _ in parts:
            if not (d / "metadata.json").is_file():
                raise LayoutError(f"dfdc: {d.name}/ has no metadata.json (found: "
                                  f"{', '.join(sorted(p.name for p in d.iterdir())[:8]) or 'nothing'}); every "
                                  f"dfdc_train_part_<N>/ needs its metadata.json")

    def _count_unrelated(self, parts: list[tuple[Path, int | None]], evals: list[tuple[Path, str]]) -> None:
        used = {d.resolve() for d, _ in parts} | {d.resolve() for d, _ in evals}
        for base in (self.root, self.root / "train"):
            if not base.is_dir() or base.resolve() in used:
                continue
            for p in base.iterdir():
                if p.resolve() in used or (base == self.root and p.name == "train" and p.is_dir()):
                    continue
                if p.is_dir():
                    self.ignored_files += sum(1 for q in p.rglob("*") if q.is_file())
                else:
                    self.ignored_files += 1

    # -- records ----------------------------------------------------------------------------------------------
    def videos(self) -> Iterator[VideoRecord]:
        self.check_root()
        parts = self._parts()
        evals = self._eval_sets()
        self._count_unrelated(parts, evals)
        # one file name in two parts (Kaggle's train_sample_videos/ beside the dfdc_train_part_N it was copied
        # from) is one video: the numbered part's entry is kept; two parts that disagree about it are refused
        first: dict[str, VideoRecord] = {}
        order: list[str] = []
        for d, part in parts:
            for r in self._part_records(d, part):
                if r.video_id not in first:
                    first[r.video_id] = r
                    order.append(r.video_id)
                    continue
                a = first[r.video_id]
                self.repeated_entries += 1
                if a.problem is None and r.problem is None and (a.label, a.pair_video_id) != (r.label, r.pair_video_id):
                    first[r.video_id] = self.problem_record(
                        a.video_id, a.path, f"{a.rel_path} and {r.rel_path} name one video with different facts "
                        f"(label {a.label} / {r.label}, original {a.pair_video_id} / {r.pair_video_id})")
        for vid in order:
            yield first[vid]
        for d, split in evals:
            yield from self._eval_records(d, split)

    def _rel(self, p: Path) -> str:
        return p.relative_to(self.root).as_posix() if p.is_relative_to(self.root) else p.as_posix()

    def _part_records(self, d: Path, part: int | None) -> Iterator[VideoRecord]:
        try:
            meta = load_json(d / "metadata.json", self.name, "DFDC metadata", self.root)
        except LayoutError as e:  # one broken part must not stop the others: record it and go on
            yield self.problem_record(f"{d.name}/metadata.json", d / "metadata.json",
                                      str(e).removeprefix(f"{self.name}: "))
            return
        except OSError as e:
            yield self.problem_record(f"{d.name}/metadata.json", d / "metadata.json",
                                      f"{self._rel(d / 'metadata.json')} cannot be read ({e.strerror or e})")
            return
        if not isinstance(meta, dict):
            yield self.problem_record(f"{d.name}/metadata.json", d / "metadata.json",
                                      f"{self._rel(d / 'metadata.json')}: expected a JSON object keyed by file "
                                      f"name, found {type(meta).__name__}")
            return
        names = set(meta)
        for p in d.iterdir():  # files on disk that the metadata does not name
            if p.name != "metadata.json" and p.name not in names:
                self.ignored_files += 1
        for fname, entry in sorted(meta.items()):
            entry = entry if isinstance(entry, dict) else {}
            label = str(entry.get("label", "")).strip().lower()
            if label not in ("real", "fake"):
                yield self.problem_record(f"train/{Path(fname).stem}", d / fname,
                                          f"{self._rel(d / 'metadata.json')}: entry {fname!r} has label "
                                          f"{entry.get('label')!r}; expected 'REAL' or 'FAKE'")
                continue
            p = d / fname
            why = lookup_problem(p)
            if why:
                yield self.problem_record(f"train/{Path(fname).stem}", p, f"{self._rel(d / 'metadata.json')}: "
                                          f"entry {fname[:100]!r}: the file cannot be looked up ({why})")
                continue
            missing = not p.is_file()
            self.missing_count += missing
            stem = Path(fname).stem
            original = entry.get("original")
            if original is not None and not isinstance(original, str):
                yield self.problem_record(f"train/{stem}", p, f"{self._rel(d / 'metadata.json')}: entry {fname!r} "
                                          f"has original {original!r}; expected a file name")
                continue
            ostem = Path(original).stem if original else None
            fake = label == "fake"
            extra = {"part": part, "metadata_split": entry.get("split")}
            yield VideoRecord(
                dataset=self.name, video_id=f"train/{stem}", path=p, rel_path=self._rel(p), label=label,
                method="unknown" if fake else "original", split="train", missing=missing,
                source_video_id=ostem if fake else None, target_video_id=ostem if fake else stem,
                pair_video_id=f"train/{ostem}" if fake and ostem else None,
                group_id=f"dfdc:{ostem if fake and ostem else stem}", extra=extra)

    def _eval_records(self, d: Path, split: str) -> Iterator[VideoRecord]:
        media = d / "videos" if (d / "videos").is_dir() else d
        rows = []
        problems: list[VideoRecord] = []
        text = decode(d / "labels.csv", self.name, ("utf-8-sig",), self.root)
        header, table = csv_dicts(text.splitlines(), d / "labels.csv", self.name, self.root)
        cols = {c.strip().lower(): c for c in header}
        if "filename" not in cols or "label" not in cols:
            raise LayoutError(one_line(f"dfdc: {self._rel(d / 'labels.csv')}: expected columns filename,label "
                                       f"(0 real, 1 fake), found {', '.join(header)[:200] or 'no header'}"))
        for n, row in enumerate(table, 2):
            fname = row[cols["filename"]].strip()
            lab = row[cols["label"]].strip()
            if not fname:
                continue
            why = lookup_problem(media / fname)
            try:
                label = {0: "real", 1: "fake"}[int(float(lab))]
            except (ValueError, KeyError, OverflowError):
                label = None
                why = f"label {lab[:100]!r} is not 0 (real) or 1 (fake)"
            else:
                why = why and f"{fname[:100]!r}: the file cannot be looked up ({why})"
            if why:
                label = None
                problems.append(self.problem_record(f"{split}/{Path(fname).stem}", media / fname,
                                                    f"{self._rel(d / 'labels.csv')}:{n}: {why}"))
            rows.append((fname, label))
        names = {fname for fname, _ in rows}
        for p in media.iterdir():
            if p.is_file() and p.name not in names and p.name != "labels.csv":
                self.ignored_files += 1
        yield from problems
        for fname, label in rows:
            if label is None:
                continue
            p = media / fname
            missing = not p.is_file()
            self.missing_count += missing
            stem = Path(fname).stem
            yield VideoRecord(
                dataset=self.name, video_id=f"{split}/{stem}", path=p, rel_path=self._rel(p), label=label,
                method="unknown" if label == "fake" else "original", split=split, missing=missing,
                group_id=f"dfdc:{split}:{stem}", extra={"set_folder": d.name})
