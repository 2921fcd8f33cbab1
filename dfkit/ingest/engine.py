"""The ingest engine: one video from its folder to its Parquet rows, and the parallel run around it.

Read :func:`process_video` top to bottom to follow a video:

1. probe the file (size, codec, frame count, fps, bitrate)             -> ``video.probe``
2. choose frames: N evenly spaced, or the paired original's frames     -> ``video.sample_indices``
3. decode only those frames                                            -> ``video.read_frames``
4. detect faces on each (mediapipe full-range BlazeFace)               -> ``faces.FaceDetector``
5. link detections into every face track (``face_tracks``) and choose
   the one to cut (``track_choice``)                                   -> ``faces.face_tracks``, :func:`_choose`

   * ``mask``: the dataset ships a manipulation-mask video (FF++/DFD ``masks/videos``, the adapter's
     ``extra["mask_path"]``): it is decoded at the same frames and the track whose face box it covers most is
     cut; every crop records ``mask_fraction``. A mask that cannot be used is a note in the video's ``reason``.
   * ``manipulated``: a paired fake (its original is in the corpus, same frame size). When the original has one
     face track -- the common FF++ case -- the fake is cut on the original's boxes, exactly as without the choice
     and with no extra decode. When it has more (DFDC, DFD: the swapped face need not be the dominant one), the
     original is decoded at the same frames and the fake's track that differs most from it at the same place
     (``faces.luma_change``) is cut.
   * ``dominant``: everything else (reals, fakes without an original): the dominant face (largest sum of
     ``score * sqrt(area)``).

   A fake cut on a face that is not its original's own crop carries the original's frame cut at the same box
   (``ref_crop``), so full-reference metrics still compare it pixel for pixel (``dfkit.quality.fullref``).
   ``DFKIT_TRACK_SELECTION=0`` turns the choice off (dominant track / original's boxes, the columns null).
6. square crop with a margin, resize, encode losslessly                -> ``corpus.geometry.crop_square`` / ``corpus.codec.encode_crop``
7. one row per crop, one row for the video (status, counts, reason)

:func:`run_ingest` lists the adapter's videos, skips those already in the corpus, schedules originals before the
fakes made from them (so a fake is cut on its original's frames and boxes, and knows its original's file and face
count), runs :func:`process_video` in worker processes, and commits results through
:class:`~dfkit.corpus.writer.CorpusWriter`.
"""

from __future__ import annotations

import json
import os
import signal
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np

from dfkit.corpus.codec import encode_crop
from dfkit.corpus.geometry import crop_square, square_crop_box
from dfkit.corpus.schema import sample_id
from dfkit.ingest import faces, video
from dfkit.ingest.base import Adapter, VideoRecord
from dfkit.taxonomy import canonical_method, method_family

RETRYABLE = ("failed", "no_face", "missing")  # statuses that left no crops, so a retry cannot duplicate rows


@dataclass(frozen=True)
class IngestParams:
    """How crops are cut. Checked at construction (before anything is written): each field's allowed range is in
    ``RANGES``; a bad value raises :class:`~dfkit.errors.SettingsError` naming the command-line option."""

    frames: int = 32
    size: int = 256
    margin: float = 1.3
    encoding: str = "png"
    min_confidence: float = 0.5
    #: the video decoder (:mod:`dfkit.ingest.decoders`; all are frame-exact, so the crops do not depend on it):
    #: ``auto`` is the fastest usable one measured (PyAV)
    decoder: str = "auto"

    #: field -> (option, low, high, integer?): margin below 1 would cut inside the face box
    RANGES: ClassVar[dict[str, tuple[str, float, float, bool]]] = {
        "frames": ("--frames", 1, 10_000, True), "size": ("--size", 16, 4096, True),
        "margin": ("--margin", 1.0, 4.0, False), "min_confidence": ("--min-confidence", 0.01, 1.0, False)}

    def __post_init__(self) -> None:
        from dfkit.errors import SettingsError

        for name, (opt, lo, hi, integer) in self.RANGES.items():
            v = getattr(self, name)
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and lo <= v <= hi
            if integer:
                ok = ok and float(v).is_integer()
            if not ok:
                kind = "an integer" if integer else "a number"
                raise SettingsError(f"{opt} must be {kind} in [{lo:g}, {hi:g}], not {v!r}")
            if integer:
                object.__setattr__(self, name, int(v))  # frozen dataclass
        try:
            encode_crop(np.zeros((2, 2, 3), np.uint8), self.encoding)
        except ValueError as e:
            raise SettingsError(f"--encoding {self.encoding!r}: {e}") from None
        from dfkit.ingest import decoders
        from dfkit.registry import UnknownNameError

        try:
            decoders.resolve(self.decoder)  # unknown or not installed here: one line, before anything is written
        except (UnknownNameError, decoders.DecoderUnavailable) as e:
            raise SettingsError(f"--decoder {self.decoder!r}: {e}") from None


@dataclass
class VideoTask:
    record: VideoRecord
    #: the paired original's ``{frame_index: crop_box}``; the fake is cut on exactly these frames (and, unless another
    #: of its faces is the manipulated one, on these boxes)
    pair_boxes: dict[int, list[float]] | None = None
    #: the original's frame size; pairing applies only when the fake's is the same (frame-aligned)
    pair_size: tuple[int, int] | None = None
    #: the original's file, decoded at the fake's frames only to compare its face tracks with the fake's
    pair_path: Path | None = None
    #: how many face tracks the original has (None: unknown, e.g. a corpus made before ``face_tracks``); only with
    #: more than one is there a track to choose
    pair_tracks: int | None = None


@dataclass
class VideoResult:
    video_row: dict[str, Any]
    crop_rows: list[dict[str, Any]] = field(default_factory=list)


#: ``DFKIT_TRACK_SELECTION=0``: every video is cut on its dominant track as before the track choice (phase 5; the
#: ingest benchmark measures the choice's cost with it); worker processes inherit it
TRACK_SELECTION_ENV = "DFKIT_TRACK_SELECTION"
#: a fake's track is the original's dominant one (cut on the original's boxes) when their crop boxes overlap this much
SAME_TRACK_IOU = 0.5


def track_selection() -> bool:
    """Whether phase 5 chooses among a video's face tracks (see :data:`TRACK_SELECTION_ENV`)."""
    return os.environ.get(TRACK_SELECTION_ENV, "1") != "0"


# -- one video ------------------------------------------------------------------------------------------------
_DETECTOR: faces.FaceDetector | None = None


def _detector(params: IngestParams) -> faces.FaceDetector:
    """The process's detector, made again when another ``min_confidence`` is asked for."""
    global _DETECTOR
    if _DETECTOR is None or getattr(_DETECTOR, "min_confidence", None) != params.min_confidence:
        _DETECTOR = faces.FaceDetector(min_confidence=params.min_confidence)
    return _DETECTOR


def _label_columns(rec: VideoRecord) -> dict[str, Any]:
    canonical = canonical_method(rec.dataset, rec.method, rec.label)
    return {
        "dataset": rec.dataset, "video_id": rec.video_id, "content_id": rec.content_id,
        "video_path": rec.rel_path, "label": rec.label, "method": rec.method,
        "method_canonical": canonical, "method_family": method_family(canonical), "split": rec.split,
        "compression": rec.compression, "perturbation": rec.perturbation,
        "source_video_id": rec.source_video_id, "target_video_id": rec.target_video_id,
        "pair_video_id": None, "identity_ids": list(rec.identity_ids), "group_id": rec.group_id,
    }


def _note(vrow: dict[str, Any], text: str) -> None:
    """Add a note to an ok video's ``reason`` (several are joined with "; ")."""
    vrow["reason"] = f"{vrow['reason']}; {text}" if vrow.get("reason") else text


Decoded = list[tuple[int, float, np.ndarray]]


@dataclass(eq=False)  # compared by identity (which candidate), never by value
class _Track:
    """One candidate face track, per decoded frame: the crop box, where it came from (``box_source``), the
    detection and the face box (detected, or interpolated between detections)."""

    crop_boxes: list[np.ndarray | None]
    sources: list[str | None]
    dets: list[faces.Detection | None]
    boxes: list[np.ndarray | None]
    #: cut on the paired original's own boxes (its crops are the fake's references)
    paired: bool = False

    @classmethod
    def empty(cls, n: int) -> "_Track":
        return cls([None] * n, [None] * n, [None] * n, [None] * n)

    def face_box(self, t: int) -> np.ndarray | None:
        return self.boxes[t] if self.boxes[t] is not None else self.crop_boxes[t]


@dataclass
class _Choice:
    """Phase 5's answer: the track the video is cut on, how it was chosen, and what goes with it."""

    track: _Track
    how: str | None  # schema.TRACK_CHOICES; None with the choice switched off
    n_tracks: int | None
    #: the original's crops at the chosen track's boxes (per decoded frame; None where not decoded), when the track
    #: is not the original's own: the fake's full-reference references (``ref_crop``)
    refs: list[np.ndarray | None] | None = None
    #: the mask video's marked pixels (bool, per decoded frame), when the dataset has one
    masks: list[np.ndarray | None] | None = None


def _probe(rec: VideoRecord) -> tuple[video.VideoInfo, np.ndarray | None, list[Path]]:
    """Phase 1: the file's facts; an image's pixels and a frame folder's files come with them."""
    if rec.kind == "image":
        image = video.read_image(rec.path)
        return video.VideoInfo(image.shape[1], image.shape[0], 0.0, None, "image", 1, True), image, []
    if rec.kind == "frames":  # a folder of frame images (face-sequence datasets): index = sorted position
        files = video.list_frame_files(rec.path)
        first = video.read_image(files[0])
        return video.VideoInfo(first.shape[1], first.shape[0], 0.0, None, "frames", len(files), True), None, files
    return video.probe(rec.path), None, []


def _decode(rec: VideoRecord, indices: list[int], image: np.ndarray | None, frame_files: list[Path],
            decoder: str = "auto") -> tuple[Decoded, video.MediaError | None]:
    """Phase 3: the frames at ``indices``; frames decoded before a mid-stream error are kept (the video becomes
    partial, not failed)."""
    if rec.kind == "image":
        return [(0, 0.0, image)], None
    decoded: Decoded = []
    problem = None
    if rec.kind == "frames":
        for i in indices:
            try:
                decoded.append((i, float(i), video.read_image(frame_files[i])))
            except video.MediaError as e:
                problem = video.MediaError("decode", f"{frame_files[i].name}: {e.reason}")
        return decoded, problem
    try:
        for fr in video.read_frames(rec.path, indices, backend=decoder):
            decoded.append(fr)
    except video.MediaError as e:
        problem = e
    return decoded, problem


def _frames_at(path: Path, decoded: Decoded, size: tuple[int, int], keep: Callable[[int, np.ndarray], Any],
               decoder: str = "auto") -> tuple[list[Any], str | None]:
    """Another video's frames (an original, a mask) at the decoded frames' indices, or why not: per decoded frame
    ``keep(t, rgb)`` (what is needed of it, so that no second set of full frames is held), None where that video has
    no such frame. A video of another frame size is no frame-aligned companion."""
    try:
        info = video.probe(path)
        if (info.width, info.height) != size:
            return [], f"its frame size {info.width}x{info.height} differs from {size[0]}x{size[1]}"
        at = {fi: t for t, (fi, _, _) in enumerate(decoded)}
        out: list[Any] = [None] * len(decoded)
        for i, _, rgb in video.read_frames(path, list(at), backend=decoder):
            out[at[i]] = keep(at[i], rgb)
    except video.MediaError as e:
        return [], f"{e.stage}: {e.reason}"
    return out, None


def _candidates(detections: list[list[faces.Detection]], decoded: Decoded, task: VideoTask, paired: bool,
                params: IngestParams) -> tuple[list[_Track], int]:
    """Every face track as a candidate (dominant first), and how many the video has. For a paired fake, the track
    on the original's dominant face -- the fake's track whose boxes overlap the original's, or the first (dominant)
    when only one is asked for -- is cut on the original's boxes and listed first."""
    tracks = faces.face_tracks(detections)
    cands = []
    for tr in tracks:
        filled = faces.fill_track(tr)
        cands.append(_Track([None if f is None else square_crop_box(f[0], params.margin) for f in filled],
                            [None if f is None else f[1] for f in filled], list(tr),
                            [None if f is None else f[0] for f in filled]))
    if not paired:
        return cands, len(tracks)
    boxes = [np.asarray(task.pair_boxes[fi], dtype=np.float32) if fi in task.pair_boxes else None
             for fi, _, _ in decoded]
    same = _same_track(cands, boxes) if (task.pair_tracks or 1) > 1 else (0 if cands else None)
    face = cands[same] if same is not None else _Track.empty(len(decoded))
    own = _Track(boxes, ["paired"] * len(boxes), face.dets, face.boxes, paired=True)
    return [own] + [c for k, c in enumerate(cands) if k != same], len(tracks)


def _same_track(cands: list[_Track], boxes: list[np.ndarray | None]) -> int | None:
    """The candidate whose crop boxes overlap ``boxes`` most (mean IoU over shared frames, at least
    :data:`SAME_TRACK_IOU`), or None."""
    best, best_v = None, SAME_TRACK_IOU
    for k, c in enumerate(cands):
        v = [faces.iou(a, b) for a, b in zip(c.crop_boxes, boxes) if a is not None and b is not None]
        if v and float(np.mean(v)) >= best_v:
            best, best_v = k, float(np.mean(v))
    return best


def _mean(values) -> float:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else -1.0


def _by_mask(cands: list[_Track], masks: list[np.ndarray | None]) -> int:
    """The candidate whose face boxes the mask covers most."""
    return int(np.argmax([_mean(faces.mask_share(m, c.face_box(t)) for t, m in enumerate(masks) if m is not None)
                          for c in cands]))


def _by_change(cands: list[_Track], decoded: Decoded, refs: list[list[np.ndarray | None] | None],
               size: int) -> int:
    """The candidate on which the fake differs most from its original at the same place (``refs[t][k]``: the
    original's crop of candidate ``k`` on frame ``t``)."""
    def change(k: int, c: _Track) -> float:
        return _mean(faces.luma_change(crop_square(rgb, c.crop_boxes[t], size), refs[t][k])
                     for t, (_, _, rgb) in enumerate(decoded) if refs[t] is not None and refs[t][k] is not None)

    return int(np.argmax([change(k, c) for k, c in enumerate(cands)]))


def _mask_path(rec: VideoRecord) -> Path | None:
    """The dataset's manipulation-mask video of this fake (``extra["mask_path"]``, relative to the dataset root)."""
    rel = rec.extra.get("mask_path") if rec.extra else None
    own = rec.path.as_posix()
    if not rel or ".." in Path(rel).parts or not own.endswith("/" + rec.rel_path):
        return None
    return Path(own[:-len(rec.rel_path)]) / rel


def _choose(task: VideoTask, detections: list[list[faces.Detection]], decoded: Decoded, paired: bool,
            info: video.VideoInfo, params: IngestParams, vrow: dict[str, Any]) -> _Choice:
    """Phase 5: the face track to cut. A mask video marks it (``mask``); else, for a paired fake whose original
    has more than one face, the track the fake differs most from its original on (``manipulated``; the original
    is decoded at the same frames); else a paired fake keeps its original's boxes (``manipulated``: its one face)
    and everything else its dominant face (``dominant``)."""
    rec = task.record
    cands, n_tracks = _candidates(detections, decoded, task, paired, params)
    if not track_selection():
        return _Choice(cands[0] if cands else _Track.empty(len(decoded)), None, None)
    if not cands:
        return _Choice(_Track.empty(len(decoded)), "dominant", n_tracks)
    size = (info.width, info.height)
    masks = None
    mask = _mask_path(rec) if rec.label == "fake" else None
    if mask is not None:
        masks, why = _frames_at(mask, decoded, size, lambda t, rgb: faces.mask_pixels(rgb), params.decoder)
        if why:
            _note(vrow, f"mask {rec.extra['mask_path']} not used: {why}")
            masks = None
    choice = _Choice(cands[0], "manipulated" if paired else "dominant", n_tracks, masks=masks)
    refs = None
    if masks is not None and any(m is not None for m in masks):
        choice.track, choice.how = cands[_by_mask(cands, masks)], "mask"
    elif paired and len(cands) > 1 and (task.pair_tracks or 1) > 1 and task.pair_path is not None:
        refs = _original_crops(task, decoded, size, cands, params, vrow)
        if refs is not None:
            choice.track = cands[_by_change(cands, decoded, refs, params.size)]
    if paired and not choice.track.paired and task.pair_path is not None:  # its references: the original here
        refs = refs or _original_crops(task, decoded, size, cands, params, vrow)
        k = cands.index(choice.track)
        choice.refs = None if refs is None else [None if r is None else r[k] for r in refs]
    return choice


def _original_crops(task: VideoTask, decoded: Decoded, size: tuple[int, int], cands: list[_Track],
                    params: IngestParams, vrow: dict[str, Any]) -> list[list[np.ndarray | None] | None] | None:
    """The paired original cut on every candidate's boxes: per decoded frame, one crop per candidate."""
    def cut(t: int, rgb: np.ndarray) -> list[np.ndarray | None]:
        return [None if c.crop_boxes[t] is None else crop_square(rgb, c.crop_boxes[t], params.size) for c in cands]

    refs, why = _frames_at(task.pair_path, decoded, size, cut, params.decoder)
    if why:
        _note(vrow, f"original {task.pair_path.name} not compared: {why}")
        return None
    return refs


def _crop_rows(rec: VideoRecord, labels: dict[str, Any], info: video.VideoInfo, decoded: Decoded,
               choice: _Choice, params: IngestParams) -> list[dict[str, Any]]:
    """Phase 6: one row per decoded frame on which the chosen track has a box."""
    tr = choice.track
    rows = []
    for t, (fi, ts, rgb) in enumerate(decoded):
        crop_box, d = tr.crop_boxes[t], tr.dets[t]
        if crop_box is None:
            continue  # no face on this frame: counted, no row
        data, fmt = encode_crop(crop_square(rgb, crop_box, params.size), params.encoding)
        ref, ref_fmt = None, None
        if choice.refs is not None and choice.refs[t] is not None:
            ref, ref_fmt = encode_crop(choice.refs[t], params.encoding)
        mask = choice.masks[t] if choice.masks is not None else None
        bbox = tr.boxes[t]
        rows.append({
            "sample_id": sample_id(rec.dataset, rec.video_id, fi), **labels,
            "frame_index": fi, "timestamp_s": ts,
            "width": info.width, "height": info.height, "fps": info.fps, "bitrate": info.bitrate,
            "codec": info.codec, "n_frames": info.n_frames,
            "bbox": None if bbox is None else [float(v) for v in bbox],
            "det_score": d.score if d is not None else None,
            "box_source": tr.sources[t],
            "landmarks": None if d is None or d.keypoints is None else d.keypoints.ravel().tolist(),
            "crop_box": [float(v) for v in crop_box], "crop": data, "crop_format": fmt,
            "crop_size": params.size,
            "face_tracks": choice.n_tracks, "track_choice": choice.how,
            "mask_fraction": None if mask is None else faces.mask_share(mask, crop_box),
            "ref_crop": ref, "ref_crop_format": ref_fmt,
        })
    return rows


def process_video(task: VideoTask, params: IngestParams) -> VideoResult:
    """Everything the engine does to one video. Never raises for a bad file: the problem goes in the result."""
    rec = task.record
    t0 = time.perf_counter()
    labels = _label_columns(rec)
    vrow: dict[str, Any] = {**labels, "status": "ok", "stage": None, "reason": None, "n_sampled": 0,
                            "n_decoded": 0, "n_crops": 0, "n_no_face": 0, "frame_indices": [],
                            "ingested_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                            "extra": json.dumps(rec.extra, sort_keys=True, default=str) if rec.extra else None}

    def finish(status: str | None = None, stage: str | None = None, reason: str | None = None,
               crops: list[dict[str, Any]] | None = None) -> VideoResult:
        if status:
            vrow.update(status=status, stage=stage, reason=reason)
        vrow["seconds"] = time.perf_counter() - t0
        return VideoResult(vrow, crops or [])

    if rec.problem:
        return finish("failed", "list", rec.problem)
    if rec.missing:
        return finish("missing", "list", "listed in the dataset's metadata but the file is absent")
    try:
        # 1. probe
        info, image, frame_files = _probe(rec)
        vrow.update(width=info.width, height=info.height, fps=info.fps, bitrate=info.bitrate,
                    codec=info.codec, n_frames=info.n_frames)

        # 2. choose frames: a paired fake takes its original's frames (those that exist in the fake)
        paired = bool(task.pair_boxes) and task.pair_size == (info.width, info.height)
        if task.pair_boxes and not paired:
            vrow["reason"] = (f"not paired: frame size {info.width}x{info.height} differs from the original's "
                              f"{task.pair_size[0]}x{task.pair_size[1]}" if task.pair_size else None)
        if paired:
            indices = sorted(i for i in task.pair_boxes if i < info.n_frames)
            labels["pair_video_id"] = vrow["pair_video_id"] = rec.pair_video_id
        else:
            indices = video.sample_indices(info.n_frames, params.frames)
        vrow["n_sampled"] = len(indices)
        vrow["frame_indices"] = indices

        # 3. decode only those frames
        decoded, decode_problem = _decode(rec, indices, image, frame_files, params.decoder)
        vrow["n_decoded"] = len(decoded)
        if not decoded:
            e = decode_problem or video.MediaError("decode", "no frame could be decoded")
            return finish("failed", e.stage, e.reason)

        # 4. detect all faces on each decoded frame
        det = _detector(params)
        detections = [det.detect(rgb) for _, _, rgb in decoded]

        # 5. every face track; the one to cut (mask, change against the original, or the dominant face)
        choice = _choose(task, detections, decoded, paired, info, params, vrow)

        # 6. crop on the chosen track (+ the original's crop at the same box when it is not the original's own)
        crops = _crop_rows(rec, labels, info, decoded, choice, params)

        # 7. the video's own row
        vrow["n_crops"] = len(crops)
        vrow["n_no_face"] = len(decoded) - len(crops)
        if not crops:
            return finish("no_face", "detect", f"no face found on any of {len(decoded)} sampled frames")
        if len(decoded) < len(indices):
            missing = len(indices) - len(decoded)
            why = (decode_problem.reason if decode_problem else
                   f"stream ended after frame {decoded[-1][0]} of {info.n_frames} announced (truncated file?)")
            return finish("partial", "decode", f"{missing} of {len(indices)} sampled frames not decoded: {why}",
                          crops)
        return finish(crops=crops)
    except video.MediaError as e:
        return finish("failed", e.stage, e.reason)
    except Exception as e:  # noqa: BLE001 - one bad video must never stop the run
        return finish("failed", "engine", f"{type(e).__name__}: {e}")


# -- the run --------------------------------------------------------------------------------------------------
def _init_worker(params: IngestParams, parent: int | None = None) -> None:
    from dfkit.procs import init_worker

    # the parent handles Ctrl-C/SIGTERM and commits what is done; the worker dies with it (even on kill -9)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if parent is not None:
        init_worker(parent)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _detector(params)


def _worker(task: VideoTask, params: IngestParams) -> VideoResult:
    return process_video(task, params)


@dataclass
class IngestSummary:
    dataset: str
    listed: int = 0
    skipped: int = 0
    processed: int = 0
    status: dict[str, int] = field(default_factory=dict)
    crops: int = 0
    seconds: float = 0.0
    ignored_files: int = 0
    interrupted: bool = False
    #: interrupted by SIGTERM (rather than Ctrl-C); committed the same way
    terminated: bool = False
    errors: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["errors"] = d["errors"][:50]
        return d


def _size(p: Path) -> int:
    try:
        return p.stat().st_size
    except OSError:
        return 0


def _track_counts(corpus: Path, dataset: str, video_ids: set[str]) -> dict[str, int]:
    """``video_id -> face_tracks`` of videos already in the corpus (shards made before the column say nothing)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from dfkit.corpus.store import committed_shards, read_shard

    out: dict[str, int] = {}
    cols = ["dataset", "video_id", "face_tracks"]
    for sh in committed_shards(corpus, "crops"):
        if "face_tracks" not in pq.read_schema(sh.path).names:
            continue
        t = read_shard(sh.path, cols)
        t = t.filter(pc.and_(pc.equal(t["dataset"], dataset), pc.is_in(t["video_id"], pa.array(sorted(video_ids)))))
        for v, n in zip(t["video_id"].to_pylist(), t["face_tracks"].to_pylist()):
            if n is not None:
                out[v] = n
    return out


def _fake_task(fake: VideoRecord, boxes: dict[int, list[float]] | None, size: tuple[int, int] | None,
               original: VideoRecord | None, n_tracks: int | None) -> VideoTask:
    return VideoTask(fake, boxes or None, size, original.path if original is not None else None, n_tracks)


def plan_tasks(records: list[VideoRecord], corpus: Path, listed: list[VideoRecord] | None = None
               ) -> tuple[list[VideoTask], dict[str, list[VideoRecord]]]:
    """Split records into tasks to run now and fakes waiting for an original of this run.

    A fake whose original is in this run waits for it; one whose original is already in the corpus gets the
    original's boxes and face-track count from the shards (and its file from ``listed``, the adapter's whole
    listing); one without its original is processed on its own.
    """
    from dfkit.corpus.writer import video_crop_boxes

    in_run = {r.video_id for r in records}
    waiting: dict[str, list[VideoRecord]] = {}
    ready: list[VideoTask] = []
    from_corpus: list[VideoRecord] = []
    for r in records:
        if r.pair_video_id and r.pair_video_id in in_run:
            waiting.setdefault(r.pair_video_id, []).append(r)
        elif r.pair_video_id:
            from_corpus.append(r)
        else:
            ready.append(VideoTask(r))
    if from_corpus:
        ids = {r.pair_video_id for r in from_corpus}
        boxes, sizes = video_crop_boxes(corpus, from_corpus[0].dataset, ids)
        counts = _track_counts(corpus, from_corpus[0].dataset, ids)
        originals = {r.video_id: r for r in listed or [] if r.video_id in ids}
        ready.extend(_fake_task(r, boxes.get(r.pair_video_id), sizes.get(r.pair_video_id),
                                originals.get(r.pair_video_id), counts.get(r.pair_video_id)) for r in from_corpus)
    # longest chains first (an original and the fakes waiting for it count together), so that no long video
    # starts last and leaves the other workers idle
    def cost(t: VideoTask) -> int:  # the longest chain a task starts: itself, then its slowest fake
        fakes = waiting.get(t.record.video_id, [])
        return _size(t.record.path) + max((_size(f.path) for f in fakes), default=0)

    ready.sort(key=cost, reverse=True)
    return ready, waiting


def _listing(adapter: Adapter) -> list[VideoRecord]:
    """Every record the adapter lists, confined to its roots (nothing outside the dataset root is read). An adapter
    that trips over malformed metadata it did not anticipate stops with one line naming the dataset, not a
    traceback (per-entry problems are the adapter's to record and go on)."""
    from dfkit.errors import DfkitError, LayoutError

    try:
        return [adapter.confine(r) for r in adapter.videos()]
    except (DfkitError, OSError, KeyboardInterrupt):
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError) as e:
        raise LayoutError(f"{adapter.name}: the dataset's metadata under {adapter.root} could not be read "
                          f"({type(e).__name__}: {e})") from None


def _unique(records: list[VideoRecord], log: Callable[[str], None] | None) -> list[VideoRecord]:
    """The records with each ``(dataset, video_id)`` once (the first kept): a second entry for one id would write
    duplicate crop rows that a rerun keeps. Adapters resolve their own duplicates; this is the engine's guard."""
    seen: dict[tuple[str, str], VideoRecord] = {}
    dropped: list[str] = []
    for r in records:
        k = (r.dataset, r.video_id)
        if k in seen:
            kept, other = (r, seen[k]) if seen[k].problem and not r.problem else (seen[k], r)  # a usable one wins
            seen[k] = kept
            dropped.append(f"{other.rel_path!r} (id {r.video_id!r}, as {kept.rel_path!r})")
        else:
            seen[k] = r
    if dropped and log:
        log(f"{len(dropped)} listed entr{'y repeats' if len(dropped) == 1 else 'ies repeat'} a video id listed "
            f"before, kept once: " + ", ".join(dropped[:3]) + (" …" if len(dropped) > 3 else ""))
    return list(seen.values())


def run_ingest(adapter: Adapter, corpus: str | Path, params: IngestParams, workers: int | None = None,
               limit: int | None = None, retry_failed: bool = False, progress: bool = True,
               log: Callable[[str], None] = print, scheduler: str | None = None) -> IngestSummary:
    """Ingest one dataset into a corpus (resumable: videos already committed are skipped).

    Videos run in ``workers`` local processes, or on a Dask cluster when ``scheduler`` is given (an address, or
    ``local``); either way this process alone writes the corpus."""
    from tqdm import tqdm

    from dfkit.corpus.writer import CorpusWriter, done_videos

    corpus = Path(corpus).expanduser()
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        from dfkit.errors import SettingsError

        raise SettingsError(f"--workers must be a whole number of at least 1, not {workers!r}")
    workers = workers or os.cpu_count() or 1
    summary = IngestSummary(dataset=adapter.name)
    t0 = time.perf_counter()
    records = _listing(adapter)
    records = _unique(records, log)
    summary.ignored_files = adapter.ignored_files
    summary.listed = len(records)
    from dfkit.procs import final_commit

    with final_commit() as hold, CorpusWriter(corpus) as writer:
        done = done_videos(corpus, RETRYABLE if retry_failed else ())
        todo = [r for r in records if (r.dataset, r.video_id) not in done]
        summary.skipped = len(records) - len(todo)
        if limit is not None:
            todo = todo[:limit]
        if summary.skipped:
            log(f"resuming: {summary.skipped} of {len(records)} videos already in {corpus}")
        ready, waiting = plan_tasks(todo, corpus, records)
        total = len(todo)
        bar = tqdm(total=total, unit="video", desc=f"ingest {adapter.name}", disable=not progress,
                   dynamic_ncols=True, smoothing=0.1)
        t_run = time.perf_counter()
        from dfkit.procs import InterruptGuard

        guard = InterruptGuard()  # SIGTERM like Ctrl-C; neither cuts a result's hand-over to the writer in half

        def on_result(task: VideoTask, res: VideoResult) -> list[VideoTask]:
            with guard.critical():
                return _on_result(task, res)

        def _on_result(task: VideoTask, res: VideoResult) -> list[VideoTask]:
            v = res.video_row
            writer.add(v, res.crop_rows)
            summary.processed += 1
            summary.status[v["status"]] = summary.status.get(v["status"], 0) + 1
            summary.crops += len(res.crop_rows)
            if v["status"] != "ok" or v.get("reason"):  # an ok video's reason is a note (e.g. "not paired: ...")
                summary.errors.append({k: v.get(k) for k in ("video_path", "status", "stage", "reason")})
            el = max(time.perf_counter() - t_run, 1e-9)
            bar.set_postfix_str(f"{summary.crops / el:.1f} crops/s, {summary.status.get('ok', 0)} ok, "
                                f"{summary.processed - summary.status.get('ok', 0)} not ok", refresh=False)
            bar.update(1)
            # fakes waiting for this original can start now, on its frames and boxes
            fakes = waiting.pop(task.record.video_id, [])
            boxes = {r["frame_index"]: r["crop_box"] for r in res.crop_rows}
            n_tracks = res.crop_rows[0].get("face_tracks") if res.crop_rows else None
            return [_fake_task(f, boxes, (v.get("width"), v.get("height")), task.record, n_tracks) for f in fakes]

        try:
            with guard.installed():
                if scheduler:
                    _run_dask(ready, params, workers, on_result, scheduler)
                elif workers == 1:
                    queue = list(ready)
                    while queue:
                        task = queue.pop(0)
                        queue.extend(on_result(task, process_video(task, params)))
                else:
                    _run_pool(ready, params, workers, on_result)
        except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (dfkit.procs.TerminatedError)
            from dfkit.procs import TerminatedError

            summary.interrupted = True
            summary.terminated = isinstance(e, TerminatedError)
        finally:
            hold.hold()  # the last commit is not cut short by a second Ctrl-C / SIGTERM
            bar.close()
            # fakes whose original never completed (interrupt) stay for the next run
            summary.seconds = time.perf_counter() - t0
            writer.record_ingest(adapter.name, {**adapter.ingest_params(), **asdict(params)}, {
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "interrupted": summary.interrupted,
                **({"terminated": True} if summary.terminated else {}),
                "processed": summary.processed, "status": summary.status, "crops": summary.crops,
                "seconds": round(summary.seconds, 2)})
    return summary


def _failed(task: VideoTask, stage: str, reason: str) -> VideoResult:
    """The result of a task that produced nothing (its worker died, or the cluster gave up on it)."""
    row = {**_label_columns(task.record), "status": "failed", "stage": stage, "reason": reason, "n_sampled": 0,
           "n_decoded": 0, "n_crops": 0, "n_no_face": 0, "frame_indices": [],
           "ingested_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "seconds": 0.0}
    return VideoResult(row)


OnResult = Callable[[VideoTask, VideoResult], list[VideoTask]]


def _drive(submit: Callable[[VideoTask], Future], queue: list[VideoTask], on_result: OnResult, window: int,
           inflight: dict[Future, VideoTask],
           on_error: Callable[[VideoTask, BaseException], VideoResult] | None = None) -> None:
    """Keep ``window`` tasks in flight; hand each result to ``on_result`` and queue the tasks it releases
    (fakes waiting for their original). ``inflight`` is the caller's, so it can see what was running when an
    executor broke. ``on_error`` turns a task's exception into its result, or raises to stop the run: the other
    results that arrived with it are handed over first (committed, so a rerun does not do them again), and each
    result is handed over once."""
    while queue or inflight:
        while queue and len(inflight) < window:
            t = queue.pop(0)
            inflight[submit(t)] = t
        done, _ = wait(inflight, return_when=FIRST_COMPLETED)
        stop: BaseException | None = None
        for fut in done:
            try:
                res = fut.result()
            except BrokenProcessPool:
                raise  # the task stays in `inflight` for the caller's retry
            except Exception as e:  # noqa: BLE001
                if on_error is None:
                    raise
                try:
                    res = on_error(inflight[fut], e)
                except Exception as err:  # noqa: BLE001 - raised after the results that arrived with it
                    inflight.pop(fut)
                    stop = stop or err
                    continue
            task = inflight.pop(fut)
            queue.extend(on_result(task, res))
        if stop is not None:
            raise stop


def _run_pool(ready: list[VideoTask], params: IngestParams, workers: int, on_result: OnResult) -> None:
    """Run tasks in worker processes; follow-up tasks (waiting fakes) are submitted as originals finish.
    A crashed worker (e.g. a decoder segfault) breaks the pool: the pool is rebuilt and the tasks that were in
    flight are retried once; a task in flight during a second crash is recorded as failed."""
    ctx = get_context("spawn")
    queue = list(ready)
    attempts: dict[str, int] = {}
    while queue:
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                                   initargs=(params, os.getpid()))
        inflight: dict[Future, VideoTask] = {}
        try:
            _drive(lambda t: pool.submit(_worker, t, params), queue, on_result, workers * 2, inflight)
        except BrokenProcessPool:
            for task in inflight.values():
                vid = task.record.video_id
                attempts[vid] = attempts.get(vid, 0) + 1
                if attempts[vid] >= 2:
                    res = _failed(task, "worker", "the worker process crashed while processing this video (twice)")
                    queue.extend(on_result(task, res))
                else:
                    queue.insert(0, task)
            pool.shutdown(wait=False, cancel_futures=True)
            continue
        except KeyboardInterrupt:  # also SIGTERM: stop the workers now, the caller commits what is done
            from dfkit.procs import kill_workers

            kill_workers(pool)
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)


def _dask_video(task: VideoTask, params: IngestParams) -> VideoResult:
    """:func:`process_video` on a Dask worker. A file the client listed that this worker cannot open means ROOT is
    not visible here at the same path: a :class:`~dfkit.errors.DfkitError` naming the worker and the path stops the
    run (recording every video as failed would fill the corpus with a cluster's misconfiguration)."""
    rec = task.record
    if not rec.problem and not rec.missing:
        try:
            if rec.path.is_dir():
                os.listdir(rec.path)
            else:
                with open(rec.path, "rb"):
                    pass
        except OSError as e:
            from distributed import get_worker

            from dfkit.errors import DfkitError

            try:
                where = get_worker().address
            except ValueError:  # not on a worker (called directly)
                where = "?"
            own = rec.path.as_posix()
            root = own[:-len(rec.rel_path)].rstrip("/") if own.endswith("/" + rec.rel_path) else str(rec.path.parent)
            raise DfkitError(f"Dask worker {where} cannot read {rec.path} ({e.strerror or e}): ROOT {root} must be "
                             "readable at the same path on every worker") from None
    return process_video(task, params)


def _dask_on_error(scheduler: str) -> Callable[[VideoTask, BaseException], VideoResult]:
    """What a Dask task's exception means. ``KilledWorker``: the video's workers died while running it as many
    times as the scheduler allows (``distributed.scheduler.allowed-failures``; a worker killed once has its tasks
    rescheduled by Dask, not reported) -- the video is recorded as failed, as a local worker that crashes on it
    twice. A :class:`~dfkit.errors.DfkitError` (a worker cannot read ROOT) stops the run. Anything else means the
    cluster was lost: the run stops with one line (the finished videos are committed; a rerun does the rest) rather
    than recording videos that never ran as failed."""
    from distributed import KilledWorker

    from dfkit.errors import DfkitError

    def on_error(task: VideoTask, e: BaseException) -> VideoResult:
        if isinstance(e, KilledWorker):
            return _failed(task, "worker", f"the Dask workers running this video died repeatedly ({e})")
        if isinstance(e, DfkitError):
            raise e
        raise DfkitError(f"lost the Dask cluster at {scheduler} ({type(e).__name__}: {e}): every finished video is "
                         "committed; rerun the same command to resume") from None

    return on_error


def _run_dask(ready: list[VideoTask], params: IngestParams, workers: int, on_result: OnResult,
              scheduler: str) -> None:
    """Run tasks on a Dask cluster: ``scheduler`` is a scheduler address (``tcp://host:8786``; the dataset root
    must be readable at the same path on every worker) or ``local`` for a LocalCluster of ``workers`` processes
    on 127.0.0.1. A worker that dies has its tasks rescheduled by Dask (each result is committed once, by this
    process); see :func:`_dask_on_error` for what is not retried."""
    with dask_client(scheduler, workers) as client:
        ex = client.get_executor(pure=False)
        slots = sum(client.nthreads().values()) or workers
        _drive(lambda t: ex.submit(_dask_video, t, params), list(ready), on_result, slots * 2, {},
               on_error=_dask_on_error(scheduler))


@contextmanager
def dask_client(scheduler: str, workers: int):
    """A Dask client of the scheduler at ``scheduler``, or of a LocalCluster of ``workers`` single-threaded processes
    bound to 127.0.0.1 (``local``; no dashboard); closed (with the LocalCluster) on leaving. An unreachable scheduler
    is a :class:`~dfkit.errors.DfkitError`."""
    from distributed import Client, LocalCluster

    cluster = None
    if scheduler == "local":  # the cluster's own logs only when critical: dfkit reports each failure in one line
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address=None, silence_logs=50)
        client = Client(cluster)
    else:
        try:
            client = Client(scheduler, timeout=30)
        except (OSError, TimeoutError, ValueError) as e:
            from dfkit.errors import DfkitError

            raise DfkitError(f"cannot reach the Dask scheduler at {scheduler}: {e}") from None
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
