"""Your own data, listed in a CSV whose columns you name: no code needed for a new dataset.

::

    ROOT/labels.csv          path,label[,method,split,identity,group,video_id,pair]
    ROOT/<path>              a video, an image or a folder of frames (paths relative to ROOT; absolute paths or
                             paths leaving ROOT only with ``allow_absolute=1``)

Column names are options (defaults: ``path``, ``label``; ``method``, ``split``, ``identity``, ``group``, ``video_id``
and ``pair`` are used when present). Labels are matched case-insensitively against ``real_values`` / ``fake_values``
(defaults accept real/fake, 0/1, REAL/FAKE, original, …); splits accept train/val/test and the usual spellings. An
``identity`` cell may hold several ids separated by ``;`` or ``|`` (e.g. target;source). ``pair`` holds the video id
or path of the real video a fake was made from (another row of the CSV). Rows whose file is absent are ``missing``;
repeated rows for one path are collapsed (counted in :attr:`duplicate_rows`). ``kind`` is ``auto`` (by extension; a
folder is frames), ``video``, ``image`` or ``frames``; ``dataset`` names the dataset (default ``csv``).
"""

from __future__ import annotations

import csv as _csv
import os
import re
from pathlib import Path
from typing import Iterator

from dfkit.errors import DfkitError, LayoutError, one_line
from dfkit.ingest.adapters._read import csv_dicts, decode, lookup_problem
from dfkit.ingest.base import Adapter, VideoRecord, register_adapter
from dfkit.ingest.video import IMAGE_EXTS

REAL_VALUES = "real,0,original,pristine,genuine,bonafide,authentic,false,r"
FAKE_VALUES = "fake,1,manipulated,deepfake,spoof,forged,synthetic,true,f"
SPLIT_VALUES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                "dev": "val", "test": "test", "testing": "test"}
KINDS = ("auto", "video", "image", "frames")
COLUMN_OPTS = {"path_col": "path", "label_col": "label", "method_col": "method", "split_col": "split",
               "identity_col": "identity", "group_col": "group", "video_id_col": "video_id", "pair_col": "pair"}


def _values(s: str) -> set[str]:
    return {x.strip().lower() for x in str(s).split(",") if x.strip()}


@register_adapter
class CSVAdapter(Adapter):
    name = "csv"
    title = "Your own data, listed in a CSV"
    expects = "a CSV (ROOT/*.csv or the file option) with at least a path and a label column; paths relative to ROOT"
    options = {
        "file": "the CSV (relative to ROOT or absolute; default: the only *.csv in ROOT)",
        **{k: f"column name (default {v}{'' if k in ('path_col', 'label_col') else ', used when present'})"
           for k, v in COLUMN_OPTS.items()},
        "real_values": f"label values meaning real (default {REAL_VALUES})",
        "fake_values": f"label values meaning fake (default {FAKE_VALUES})",
        "kind": "auto (default: by extension, a folder is frames), video, image or frames",
        "split": "train, val or test for rows without a split column/value",
        "delimiter": "field separator (default: sniffed from , ; tab |)",
        "dataset": "dataset name recorded in the corpus (default csv)",
        "allow_absolute": "1: also read rows whose path is absolute or leaves ROOT with '..' (default: such rows "
                          "are refused, recorded as failed at stage list)",
    }
    confine_hint = "pass --opt allow_absolute=1 to read files outside ROOT"

    def roots(self):
        return None if self.allow_absolute else [self.root]

    def __init__(self, root, **options):
        super().__init__(root, **options)
        flag = str(options.get("allow_absolute") if options.get("allow_absolute") is not None else "0").strip().lower()
        if flag not in ("0", "1", "true", "false", "yes", "no"):
            raise DfkitError(f"csv: option allow_absolute must be 1 or 0, not {options['allow_absolute']!r}")
        self.allow_absolute = flag in ("1", "true", "yes")
        self.cols = {k: options.get(k) or v for k, v in COLUMN_OPTS.items()}
        self.explicit = {k for k in COLUMN_OPTS if options.get(k)}
        self.real_values = _values(options.get("real_values") or REAL_VALUES)
        self.fake_values = _values(options.get("fake_values") or FAKE_VALUES)
        if self.real_values & self.fake_values:
            raise DfkitError(f"csv: {', '.join(sorted(self.real_values & self.fake_values))} is in both real_values "
                             f"and fake_values")
        self.kind = options.get("kind") or "auto"
        if self.kind not in KINDS:
            raise DfkitError(f"csv: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        sp = options.get("split")
        if sp is not None and sp not in ("train", "val", "test"):
            raise DfkitError(f"csv: split must be train, val or test, got {sp!r}")
        self.fixed_split = sp
        self.dataset = options.get("dataset") or self.name
        self.duplicate_rows = 0
        self.missing_count = 0

    def _csv_path(self) -> Path:
        if self.opts.get("file"):
            p = Path(self.opts["file"]).expanduser()
            p = p if p.is_absolute() else self.root / p
            if not p.is_file():
                raise LayoutError(f"csv: {p} does not exist")
            return p
        found = sorted(self.root.glob("*.csv"))
        if len(found) != 1:
            others = sorted(p.name for p in self.root.iterdir())
            raise LayoutError(
                f"csv: {'no' if not found else len(found)} *.csv file{'s' if len(found) != 1 else ''} in {self.root} "
                f"({', '.join(p.name for p in found) if found else 'found: ' + (', '.join(others[:8]) or 'nothing')})"
                f"; name the one to read with --opt file=NAME.csv")
        return found[0]

    def _read(self, path: Path) -> tuple[list[str], list[dict[str, str]]]:
        text = decode(path, self.name, ("utf-8-sig",), self.root)
        delim = self.opts.get("delimiter")
        if delim in ("tab", "\\t"):
            delim = "\t"
        if not delim:
            try:
                delim = _csv.Sniffer().sniff(text.split("\n", 1)[0][:65536], delimiters=",;\t|").delimiter
            except _csv.Error:
                delim = ","
        if len(delim) != 1:
            raise DfkitError(f"csv: option delimiter must be one character (or tab), not {delim!r}")
        header, rows = csv_dicts(text.splitlines(), path, self.name, self.root, delimiter=delim)
        header = [h.strip() for h in header]
        rows = [{k.strip(): v.strip() for k, v in r.items()} for r in rows]
        return header, rows

    def _kind(self, p: Path) -> str:
        if self.kind != "auto":
            return self.kind
        if p.is_dir():
            return "frames"
        return "image" if p.suffix.lower() in IMAGE_EXTS else "video"

    def videos(self) -> Iterator[VideoRecord]:
        self.check_root()
        path = self._csv_path()
        header, rows = self._read(path)
        c = self.cols
        for k in ("path_col", "label_col"):
            if c[k] not in header:
                raise LayoutError(one_line(f"csv: {path.name} has no column {c[k]!r} (columns: "
                                           f"{', '.join(header)[:200] or 'none'}); name it with --opt {k}=COLUMN"))
        for k in self.explicit - {"path_col", "label_col"}:
            if c[k] not in header:
                raise LayoutError(one_line(f"csv: {path.name} has no column {c[k]!r} (columns: "
                                           f"{', '.join(header)[:200]})"))
        has = {k: c[k] in header for k in COLUMN_OPTS}
        entries: dict[str, dict] = {}
        spelled: dict[str, str] = {}  # normalised path -> the first spelling of it (./a.mp4 and a.mp4 are one file)
        facts = [k for k in ("method_col", "split_col", "video_id_col", "pair_col") if has[k]]
        bad_labels: dict[str, int] = {}
        for n, row in enumerate(rows, 2):
            rp = row.get(c["path_col"], "")
            if not rp:
                continue
            lab = row.get(c["label_col"], "").lower()
            label = "real" if lab in self.real_values else "fake" if lab in self.fake_values else None
            if label is None:
                bad_labels.setdefault(lab, n)
                continue
            norm = os.path.normpath(os.path.join(str(self.root), os.path.expanduser(rp)))
            if norm in spelled:
                first = entries[spelled[norm]]
                mine = [("label", label)] + [(c[k], row.get(c[k], "")) for k in facts]
                theirs = [("label", first["label"])] + [(c[k], first["row"].get(c[k], "")) for k in facts]
                diff = [(a[0], b[1], a[1]) for a, b in zip(mine, theirs) if a[1] != b[1]]
                if diff:  # one file, two stories: neither is believed
                    first.setdefault("conflicts", []).append(
                        f"line {n} gives it " + ", ".join(f"{k} {v!r} (line {first['line']}: {w!r})"
                                                          for k, w, v in diff))
                else:
                    self.duplicate_rows += 1
                continue
            spelled[norm] = rp
            entries[rp] = {"row": row, "label": label, "line": n}
        if bad_labels:
            shown = ", ".join(f"{v[:50]!r} (line {n})" for v, n in list(bad_labels.items())[:5])
            raise DfkitError(f"csv: {path.name}: label value(s) {shown} are neither real "
                             f"({', '.join(sorted(self.real_values))}) nor fake ({', '.join(sorted(self.fake_values))}); "
                             f"set --opt real_values=… / fake_values=…")
        if not entries:
            raise LayoutError(f"csv: {path.name} lists no rows with a {c['path_col']!r} value")
        vid_of: dict[str, str] = {}
        by_vid: set[str] = set()
        for rp, e in entries.items():
            vid = e["row"].get(c["video_id_col"], "") if has["video_id_col"] else ""
            vid = vid or re.sub(r"\.[A-Za-z0-9]{1,5}$", "", rp.replace("\\", "/").lstrip("/"))
            if vid in by_vid:
                raise DfkitError(f"csv: {path.name}:{e['line']}: video id {vid[:100]!r} is used by two different paths")
            vid_of[rp] = vid
            by_vid.add(vid)
        for rp, e in entries.items():
            row = e["row"]
            p = Path(rp).expanduser()
            p = p if p.is_absolute() else self.root / rp
            if e.get("conflicts"):
                yield self.problem_record(vid_of[rp], p, f"{path.name}: {rp!r} is listed with conflicting facts: "
                                          + "; ".join(e["conflicts"]))
                continue
            why = lookup_problem(p)
            if why:
                yield self.problem_record(vid_of[rp], p, f"{path.name}:{e['line']}: {rp[:100]!r}: the file cannot be "
                                          f"looked up ({why})")
                continue
            missing = not p.exists()
            self.missing_count += missing
            try:
                rel = p.relative_to(self.root).as_posix()
            except ValueError:
                rel = p.as_posix()
            split = None
            if has["split_col"] and row.get(c["split_col"]):
                sv = row[c["split_col"]].lower()
                if sv not in SPLIT_VALUES:
                    yield self.problem_record(vid_of[rp], p, f"{path.name}:{e['line']}: split {row[c['split_col']]!r} is "
                                              f"not one of train, val, test (or training, valid, validation, dev, "
                                              f"testing)")
                    continue
                split = SPLIT_VALUES[sv]
            method = (row.get(c["method_col"], "") if has["method_col"] else "") or \
                ("real" if e["label"] == "real" else "unknown")
            ids = [f"{self.dataset}:{x.strip()}" for x in re.split(r"[;|]", row.get(c["identity_col"], ""))
                   if x.strip()] if has["identity_col"] else []
            group = row.get(c["group_col"], "") if has["group_col"] else ""
            pair = row.get(c["pair_col"], "") if has["pair_col"] else ""
            pair = vid_of.get(pair, pair if pair in by_vid else None) if pair else None
            yield VideoRecord(
                dataset=self.dataset, video_id=vid_of[rp], path=p, rel_path=rel, label=e["label"], method=method,
                split=split or self.fixed_split, kind=self._kind(p), missing=missing, identity_ids=ids,
                group_id=f"{self.dataset}:{group}" if group else (ids[0] if ids else None),
                pair_video_id=pair if e["label"] == "fake" else None, extra={"csv_line": e["line"]})
