"""Reading adapters' metadata files (text, CSV, JSON) so that any content gives data or one clear line.

Private to the adapters (the registry skips ``_`` modules). Every failure is a :class:`~dfkit.errors.LayoutError`
naming the dataset and the file (and the line where one is known), on one line: undecodable bytes, a CSV that the
``csv`` module refuses (a field over :data:`FIELD_LIMIT`), JSON that does not parse or is nested too deeply. Callers
that record a broken file as a problem and go on catch it.
"""

from __future__ import annotations

import csv
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

from dfkit.errors import LayoutError, one_line

#: the longest CSV field read (characters); a longer one is refused with a line naming the file and line
FIELD_LIMIT = 8 << 20
_ENC_NAMES = {"utf-8-sig": "UTF-8", "utf-8": "UTF-8", "cp949": "CP949", "latin-1": "Latin-1"}


def shown(path: Path, root: Path | None = None) -> str:
    """``path`` relative to ``root`` where it lies below it, else as given."""
    if root is not None:
        try:
            return Path(path).relative_to(root).as_posix()
        except ValueError:
            pass
    return str(path)


def decode(path: Path, dataset: str, encodings: Iterable[str] = ("utf-8",), root: Path | None = None) -> str:
    """The text of ``path`` in the first of ``encodings`` that decodes it; a LayoutError naming the file and the
    line of the first undecodable byte otherwise."""
    data = Path(path).read_bytes()
    first: UnicodeDecodeError | None = None
    encodings = tuple(encodings)
    for enc in encodings:
        try:
            return data.decode(enc)
        except UnicodeDecodeError as e:
            first = first or e
    assert first is not None
    line = data.count(b"\n", 0, first.start) + 1
    names = " or ".join(dict.fromkeys(_ENC_NAMES.get(e, e) for e in encodings))
    raise LayoutError(one_line(f"{dataset}: {shown(path, root)}:{line}: not {names} text (byte "
                               f"0x{data[first.start]:02x} at offset {first.start}); save it as {names}"))


@contextmanager
def _field_limit() -> Iterator[None]:
    old = csv.field_size_limit()
    csv.field_size_limit(max(old, FIELD_LIMIT))
    try:
        yield
    finally:
        csv.field_size_limit(old)


def _csv_error(e: csv.Error, path: Path, dataset: str, line: int, root: Path | None) -> LayoutError:
    why = str(e)
    if "field larger than field limit" in why:
        why = f"a field is longer than {FIELD_LIMIT} characters"
    return LayoutError(one_line(f"{dataset}: {shown(path, root)}:{line}: not readable as CSV ({why})"))


def csv_rows(lines: Iterable[str], path: Path, dataset: str, root: Path | None = None,
             **fmt: Any) -> list[list[str]]:
    """Every row of ``csv.reader(lines, **fmt)``; a LayoutError naming the file and line on a CSV error."""
    reader = csv.reader(lines, **fmt)
    with _field_limit():
        try:
            return list(reader)
        except csv.Error as e:
            raise _csv_error(e, path, dataset, reader.line_num, root) from None


def csv_dicts(lines: Iterable[str], path: Path, dataset: str, root: Path | None = None,
              **fmt: Any) -> tuple[list[str], list[dict[str, str]]]:
    """(header, rows) of ``csv.DictReader(lines, **fmt)``: cells beyond the header are dropped, missing cells are
    ``""``; a LayoutError naming the file and line on a CSV error."""
    reader = csv.DictReader(lines, restval="", **fmt)
    with _field_limit():
        try:
            header = list(reader.fieldnames or [])
            rows = [{k: v if isinstance(v, str) else "" for k, v in r.items() if k is not None} for r in reader]
        except csv.Error as e:
            raise _csv_error(e, path, dataset, reader.line_num, root) from None
    return header, rows


def load_json(path: Path, dataset: str, what: str = "JSON", root: Path | None = None) -> Any:
    """The JSON value in ``path`` (UTF-8); a LayoutError naming the file when it does not decode, does not parse or
    is nested too deeply."""
    text = decode(path, dataset, ("utf-8-sig",), root)
    try:
        return json.loads(text)
    except RecursionError:
        raise LayoutError(f"{dataset}: {shown(path, root)} is nested too deeply to be {what}") from None
    except ValueError as e:
        raise LayoutError(one_line(f"{dataset}: {shown(path, root)} is not readable JSON ({e})")) from None


def lookup_problem(p: Path) -> str | None:
    """Why ``p`` cannot even be looked up (a name too long for the file system, a permission), or None."""
    try:
        p.exists()
    except OSError as e:
        return e.strerror or type(e).__name__
    return None
