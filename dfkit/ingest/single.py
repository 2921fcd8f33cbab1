"""One file outside any dataset, cut into crops in memory exactly as ``dfkit ingest`` would (``dfkit predict``).

>>> params, notes = params_from_manifest(dfkit.corpus.open("dfkit-corpus").manifest, datasets=["ffpp"])
>>> video_row, crops = crop_file("clip.mp4", params)
>>> [c["frame_index"] for c in crops], crops[0]["crop"][:4]   # the encoded crop, as the corpus stores it

:func:`crop_file` runs :func:`dfkit.ingest.engine.process_video` -- probe, sample, decode, detect, track, crop,
encode -- on a :class:`~dfkit.ingest.base.VideoRecord` made for a standalone file (:func:`standalone_record`): label
``unknown``, no paired original, no mask video, so phase 5 cuts the dominant face track. Nothing is written. The
rows are the engine's own (``video_row`` with ``status``/``stage``/``reason``, one crop row per frame with a face,
``crop`` holding the encoded image); a bad file is a row with a status other than ok/partial, never an exception.

:func:`params_from_manifest` reads the :class:`~dfkit.ingest.engine.IngestParams` a corpus was cut with from its
manifest (``ingests[*].params``, which :func:`~dfkit.ingest.engine.run_ingest` records), so a file is cut the way
the model's training crops were.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any, Mapping, Sequence

from dfkit.ingest.base import VideoRecord
from dfkit.ingest.engine import IngestParams, VideoTask, process_video

__all__ = ["STANDALONE_DATASET", "USABLE", "standalone_record", "crop_file", "params_from_manifest"]

#: the ``dataset`` of a standalone file's rows (it belongs to no dataset)
STANDALONE_DATASET = "file"
#: the video statuses whose crops can be used (``partial``: some sampled frames did not decode)
USABLE = ("ok", "partial")
#: the IngestParams fields that decide what a crop looks like (all but the decoder: every decoder is frame-exact,
#: and the one an ingest used need not be installed where its crops are used)
PARAM_FIELDS = tuple(f.name for f in fields(IngestParams) if f.name != "decoder")


def standalone_record(path: str | Path) -> VideoRecord:
    """A record for a file that no adapter describes: label and method ``unknown``, no original, no split."""
    p = Path(path).expanduser()
    rec = VideoRecord(dataset=STANDALONE_DATASET, video_id=str(p), path=p, rel_path=p.name, label="fake",
                      method="unknown")
    rec.label = "unknown"  # after the check: a record's label is real/fake, a standalone file's is not known
    return rec


def crop_file(path: str | Path, params: IngestParams) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``(video_row, crop_rows)`` of one file cut with ``params`` by the ingest engine (see the module docstring)."""
    res = process_video(VideoTask(standalone_record(path)), params)
    return res.video_row, res.crop_rows


def params_from_manifest(manifest: Mapping[str, Any], datasets: Sequence[str] | None = None
                         ) -> tuple[IngestParams, list[str]]:
    """The parameters the corpus's crops of ``datasets`` (None: all) were cut with, and notes: the latest ingest of
    those datasets decides; a note says when earlier ingests used other values, or when the manifest lacks a field
    (its default is used). A manifest without any such ingest is a :class:`~dfkit.errors.DfkitError`."""
    from dfkit.errors import DfkitError

    runs = [r for r in manifest.get("ingests") or [] if isinstance(r, Mapping) and isinstance(r.get("params"), Mapping)
            and (not datasets or r.get("dataset") in datasets)]
    if not runs:
        what = f"dataset(s) {', '.join(datasets)}" if datasets else "any dataset"
        raise DfkitError(f"the corpus manifest records no ingest of {what}, so the crop parameters are unknown")
    used = {k: runs[-1]["params"][k] for k in PARAM_FIELDS if k in runs[-1]["params"]}
    notes = []
    missing = [k for k in PARAM_FIELDS if k not in used]
    if missing:
        notes.append(f"the corpus manifest does not record {', '.join(missing)}; the ingest default is used")
    differ = sorted({k for r in runs[:-1] for k in used if k in r["params"] and r["params"][k] != used[k]})
    if differ:
        notes.append(f"the corpus was ingested with several values of {', '.join(differ)}; those of its latest "
                     f"ingest ({runs[-1].get('dataset')}, {runs[-1].get('finished', 'time unknown')}) are used")
    return IngestParams(**used), notes
