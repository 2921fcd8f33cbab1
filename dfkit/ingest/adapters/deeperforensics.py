"""DeeperForensics-1.0, ``DATASETS.md`` section 5 (and the DeeperForensics Challenge 2020 test-data folders).

Layout::

    ROOT/manipulated_videos/<variant>/<target>_<source>.mp4       e.g. end_to_end/000_M101.mp4
    ROOT/lists/splits/{train,val,test}.txt                         one fake video name per line (optional)
    ROOT/lists/manipulated_videos_distortions_meta/manipulated_videos_<variant>_meta.txt   (optional)
    ROOT/source_videos/…                                           actor recordings: NOT the real class, ignored

``<target>`` is the three-digit FF++ sequence whose frames were kept, ``<source>`` the actor (``M…``/``W…``) whose face
was swapped in. One method, ``DF-VAE``; the variant (``end_to_end``, ``reenact_postprocess``, ``end_to_end_level_1..5``,
``end_to_end_random_level``, ``end_to_end_mix_{2,3,4}_distortions``) is the ``perturbation``; the distortion list of
the meta files goes to ``extra["distortions"]``. **The real class is the FF++ c23 target videos**, which the dataset
does not include: with ``ffpp_root=<FF++ root>`` the c23 originals of the targets present are yielded as real
(``method`` ``original``, missing when absent) and each fake's ``pair_video_id`` points at its target. Without it,
only fakes are listed. A real's split is its fakes' split when they agree.

Identities use FF++'s namespace for the target (``ffpp:<t>``, so leaks against an FF++ corpus show up) and
``deeperforensics:<actor>`` for the source; ``group_id`` is the target's YouTube id, as in the ``ffpp`` adapter.

A folder holding ``*groundtruth*.json`` (``{"000000.mp4": 0|1}``, 1 = fake) and its videos is read as the
DeeperForensics Challenge 2020 test data: split ``test``, methods ``real``/``unknown`` (the challenge does not say).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from dfkit.errors import DfkitError, LayoutError
from dfkit.ingest.adapters.ffpp import youtube_ids
from dfkit.ingest.adapters._read import decode, load_json, lookup_problem
from dfkit.ingest.base import Adapter, VideoRecord, register_adapter

VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm"}
VARIANTS = (
    "end_to_end", "reenact_postprocess",
    "end_to_end_level_1", "end_to_end_level_2", "end_to_end_level_3", "end_to_end_level_4", "end_to_end_level_5",
    "end_to_end_random_level",
    "end_to_end_mix_2_distortions", "end_to_end_mix_3_distortions", "end_to_end_mix_4_distortions",
)
_NAME_RE = re.compile(r"^(?P<t>\d{3})_(?P<s>[MW]\d{3})$")


@register_adapter
class DeeperForensicsAdapter(Adapter):
    name = "deeperforensics"
    title = "DeeperForensics-1.0 (reals = FF++ c23 targets)"
    expects = ("ROOT/manipulated_videos/<variant>/<target>_<actor>.mp4 (11 variants), optional "
               "ROOT/lists/splits/{train,val,test}.txt; reals from the ffpp_root option "
               "(FF++ original_sequences/youtube/c23/videos)")
    options = {
        "ffpp_root": "FaceForensics++ root: yield the c23 originals of the targets present as the real class",
        "variants": "comma-separated variants to ingest (default: all 11 that are present)",
    }

    def roots(self):
        return [self.root] + ([self.ffpp_root] if self.ffpp_root is not None else [])

    def __init__(self, root, ffpp_root: str | None = None, variants: str | None = None, **options):
        super().__init__(root, ffpp_root=ffpp_root, variants=variants, **options)
        self.ffpp_root = Path(ffpp_root).expanduser() if ffpp_root else None
        if self.ffpp_root is not None and not self.ffpp_root.is_dir():
            raise DfkitError(f"deeperforensics: ffpp_root {self.ffpp_root} is not a directory")
        if variants:
            chosen = [v.strip() for v in str(variants).split(",") if v.strip()]
            bad = [v for v in chosen if v not in VARIANTS]
            if bad:
                raise DfkitError(f"deeperforensics: unknown variant(s) {', '.join(bad)}; known: {', '.join(VARIANTS)}")
            self.variants = tuple(chosen)
        else:
            self.variants = VARIANTS
        self.missing_count = 0

    # -- layout -----------------------------------------------------------------------------------------------
    def _challenge_truth(self) -> Path | None:
        for d in (self.root, self.root / "test-data"):
            if d.is_dir():
                hits = sorted(d.glob("*groundtruth*.json"))
                if hits:
                    return hits[0]
        return None

    def check_root(self) -> None:
        super().check_root()
        if (self.root / "manipulated_videos").is_dir() or self._challenge_truth():
            return
        found = sorted(p.name + ("/" if p.is_dir() else "") for p in self.root.iterdir())
        raise LayoutError(
            f"deeperforensics: no manipulated_videos/ under {self.root} "
            f"(found: {', '.join(found[:8]) or 'nothing'}{', …' if len(found) > 8 else ''}); expected {self.expects}")

    def _splits(self) -> dict[str, str]:
        out: dict[str, str] = {}
        d = self.root / "lists" / "splits"
        for split in ("train", "val", "test"):
            f = d / f"{split}.txt"
            if f.is_file():
                for line in decode(f, self.name, root=self.root).splitlines():
                    name = line.strip()
                    if name:
                        out[Path(name.split()[0]).name.split(".")[0]] = split
        return out

    def _distortions(self) -> dict[tuple[str, str], list[str]]:
        out: dict[tuple[str, str], list[str]] = {}
        d = self.root / "lists" / "manipulated_videos_distortions_meta"
        if not d.is_dir():
            return out
        for f in d.glob("manipulated_videos_*_meta.txt"):
            variant = f.name[len("manipulated_videos_"):-len("_meta.txt")]
            for line in decode(f, self.name, root=self.root).splitlines():
                parts = line.split()
                if parts:
                    out[(variant, Path(parts[0]).stem)] = parts[1:]
        return out

    # -- records ----------------------------------------------------------------------------------------------
    def videos(self) -> Iterator[VideoRecord]:
        self.check_root()
        if not (self.root / "manipulated_videos").is_dir():
            yield from self._challenge_records(self._challenge_truth())
            return
        for p in self.root.iterdir():
            if p.name not in ("manipulated_videos", "lists", "source_videos"):
                self.ignored_files += 1
        splits = self._splits()
        dist = self._distortions()
        yt = youtube_ids()
        mdir = self.root / "manipulated_videos"
        fakes: list[VideoRecord] = []
        for vdir in sorted(mdir.iterdir()):
            if not vdir.is_dir():
                self.ignored_files += 1
                continue
            if vdir.name not in self.variants:
                if vdir.name not in VARIANTS:  # an unknown folder (a variant left out by option is not counted)
                    self.ignored_files += sum(1 for q in vdir.rglob("*") if q.is_file())
                continue
            for p in sorted(vdir.iterdir()):
                if not (p.is_file() and p.suffix.lower() in VIDEO_EXTS):
                    self.ignored_files += 1
                    continue
                fakes.append(self._fake(vdir.name, p, splits, dist, yt))
        if not fakes:
            raise LayoutError(
                f"deeperforensics: no videos in manipulated_videos/{{{','.join(self.variants[:2])},…}} under "
                f"{self.root} (variant folders present: "
                f"{', '.join(sorted(p.name for p in mdir.iterdir() if p.is_dir())) or 'none'})")
        if self.ffpp_root is not None:
            yield from self._reals(fakes, yt)
        yield from fakes

    def _fake(self, variant: str, p: Path, splits, dist, yt) -> VideoRecord:
        stem = p.stem
        rel = p.relative_to(self.root).as_posix()
        extra: dict = {}
        if (variant, stem) in dist:
            extra["distortions"] = dist[(variant, stem)]
        base = dict(dataset=self.name, video_id=f"{variant}/{stem}", content_id=stem, path=p, rel_path=rel,
                    label="fake", method="DF-VAE", split=splits.get(stem), perturbation=variant)
        m = _NAME_RE.match(stem)
        if not m:
            return VideoRecord(**base, extra={**extra, "unparsed_name": True})
        t, s = m.group("t"), m.group("s")
        return VideoRecord(
            **base, target_video_id=t, pair_video_id=f"original/c23/{t}" if self.ffpp_root else None,
            identity_ids=[f"ffpp:{t}", f"deeperforensics:{s}"], group_id=yt.get(t, t),
            extra={**extra, "source_actor": s, "actor_gender": "male" if s[0] == "M" else "female",
                   "actor_asian": s[1] == "1"})

    def _reals(self, fakes: list[VideoRecord], yt) -> Iterator[VideoRecord]:
        by_target: dict[str, set] = {}
        for r in fakes:
            if r.target_video_id:
                by_target.setdefault(r.target_video_id, set()).add(r.split)
        vdir = self.ffpp_root / "original_sequences" / "youtube" / "c23" / "videos"
        for t, split_set in sorted(by_target.items()):
            p = vdir / f"{t}.mp4"
            missing = not p.is_file()
            self.missing_count += missing
            split = next(iter(split_set)) if len(split_set) == 1 else None
            yield VideoRecord(
                dataset=self.name, video_id=f"original/c23/{t}", content_id=f"original/{t}", path=p,
                rel_path=f"<ffpp_root>/original_sequences/youtube/c23/videos/{t}.mp4", label="real", method="original",
                split=split, compression="c23", target_video_id=t, missing=missing,
                identity_ids=[f"ffpp:{t}"], group_id=yt.get(t, t), extra={"from": "ffpp_root"})

    def _challenge_records(self, truth: Path) -> Iterator[VideoRecord]:
        labels = load_json(truth, self.name, "challenge ground truth", self.root)
        if not isinstance(labels, dict):
            raise LayoutError(f"deeperforensics: {truth.name}: expected a JSON object of file name -> 0 (real) or "
                              f"1 (fake), found {type(labels).__name__}")
        d = truth.parent
        for p in d.iterdir():
            if p != truth and p.name not in labels:
                self.ignored_files += 1
        for fname, v in sorted(labels.items()):
            vid, p = f"challenge/{Path(fname).stem}", d / fname
            why = lookup_problem(p)
            if isinstance(v, (dict, list)) or str(v) not in ("0", "1"):
                why = f"label {str(v)[:50]!r}; expected 0 (real) or 1 (fake)"
            elif why:
                why = f"the file cannot be looked up ({why})"
            if why:
                yield self.problem_record(vid, p, f"{truth.name}: {fname[:100]!r}: {why}")
                continue
            label = "fake" if str(v) == "1" else "real"
            missing = not p.is_file()
            self.missing_count += missing
            yield VideoRecord(
                dataset=self.name, video_id=vid, path=p,
                rel_path=p.relative_to(self.root).as_posix() if p.is_relative_to(self.root) else p.as_posix(),
                label=label,
                method="unknown" if label == "fake" else "real", split="test", missing=missing,
                extra={"challenge_groundtruth": truth.name})
