"""Reading media for the engine: probe a video, choose frames, decode only the chosen ones (PyAV / FFmpeg).

Every problem is raised as :class:`MediaError` with the pipeline ``stage`` and a human ``reason`` so that the engine
can record it in the corpus and go on.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import av
import numpy as np

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


class MediaError(Exception):
    def __init__(self, stage: str, reason: str):
        super().__init__(f"{stage}: {reason}")
        self.stage = stage
        self.reason = reason


@dataclass
class VideoInfo:
    width: int
    height: int
    fps: float
    bitrate: int | None
    codec: str
    n_frames: int
    frames_exact: bool  # n_frames counted (header or demux; True) or estimated from the duration (False)
    #: degrees counter-clockwise the stored frames are turned for display (the display matrix of a phone's portrait
    #: clip: 90, 180, 270); ``width``/``height`` are the displayed size, and :func:`read_frames` yields upright frames
    rotation: int = 0


def _quarter_turns(degrees: float | None) -> int:
    """A display rotation in degrees (FFmpeg's sign: counter-clockwise) as quarter turns 0..3."""
    return int(round((degrees or 0) / 90)) % 4


def upright(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """A stored frame turned as its display matrix says (``rotation`` from :class:`VideoInfo`)."""
    k = _quarter_turns(rotation)
    return np.ascontiguousarray(np.rot90(rgb, k)) if k else rgb


def _display_rotation(container, stream) -> int:
    """The display rotation of the first decodable frame (0 when there is none or it cannot be read)."""
    try:
        for frame in container.decode(stream):
            return _quarter_turns(getattr(frame, "rotation", 0)) * 90
    except av.error.FFmpegError:
        pass
    return 0


def _count_packets(path: Path) -> int:
    """Frames of the first video stream by demuxing only (no decoding): the exact count where the container's
    header has none (MKV/WebM, variable frame rate), 0 when the stream cannot be demuxed to the end."""
    try:
        with av.open(str(path)) as c:
            return sum(1 for p in c.demux(c.streams.video[0]) if p.size)
    except av.error.FFmpegError:
        return 0


def _ffmpeg_reason(err: Exception) -> str:
    msg = getattr(err, "strerror", None) or str(err)
    return msg.split(": '")[0].strip()


def need_file(path: Path) -> int:
    """``path``'s size; MediaError('open') when it does not exist or is empty."""
    if not path.exists():
        raise MediaError("open", "file does not exist")
    size = os.path.getsize(path)
    if size == 0:
        raise MediaError("open", "empty file (0 bytes)")
    return size


def probe(path: Path) -> VideoInfo:
    """Open a video and read its facts without decoding. Raises MediaError(stage='open'|'probe')."""
    path = Path(path)
    size = need_file(path)
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as e:
        raise MediaError("open", f"not a readable video ({_ffmpeg_reason(e)})") from None
    except Exception as e:  # noqa: BLE001 - any decoder-library failure is a per-file problem
        raise MediaError("open", f"not a readable video ({type(e).__name__}: {e})") from None
    with container:
        if not container.streams.video:
            raise MediaError("probe", "no video stream in file")
        s = container.streams.video[0]
        cc = s.codec_context
        width, height = int(cc.width or 0), int(cc.height or 0)
        if width <= 0 or height <= 0:
            raise MediaError("probe", "video stream has no frame size (corrupt header?)")
        fps = float(s.average_rate or s.guessed_rate or 0) or 25.0
        n = int(s.frames or 0) or _count_packets(path)
        exact = n > 0
        if not exact:
            dur = None
            if s.duration is not None and s.time_base is not None:
                dur = float(s.duration * s.time_base)
            elif container.duration:
                dur = container.duration / 1_000_000
            n = int(round(dur * fps)) if dur else 0
        if n <= 0:
            raise MediaError("probe", "video reports no frames and no duration")
        bitrate = int(s.bit_rate or container.bit_rate or 0) or None
        if bitrate is None and s.duration and s.time_base:
            bitrate = int(size * 8 / float(s.duration * s.time_base))
        rotation = _display_rotation(container, s)
        if rotation in (90, 270):
            width, height = height, width
        return VideoInfo(width, height, fps, bitrate, cc.name or "unknown", n, exact, rotation)


def sample_indices(n_frames: int, n: int) -> list[int]:
    """``n`` frame indices spread evenly over ``[0, n_frames)`` (all frames when the video is shorter)."""
    if n_frames <= 0 or n <= 0:
        return []
    if n >= n_frames:
        return list(range(n_frames))
    return sorted({int(round(x)) for x in np.linspace(0, n_frames - 1, n)})


@dataclass
class _Index:
    """A stream's frames from a demux-only pass: ``order`` maps a packet's pts to its frame index (its rank in
    presentation order); ``keys`` are the keyframes' (frame index, pts), in order; ``times`` each frame's
    timestamp in seconds, by index (None without a time base); ``start`` the stream's start time in seconds."""

    order: dict[int, int]
    keys: list[tuple[int, int]]
    times: list[float] | None = None
    start: float = 0.0

    def key_before(self, i: int) -> tuple[int, int] | None:
        """The last keyframe at or before frame ``i``."""
        best = None
        for k in self.keys:
            if k[0] > i:
                break
            best = k
        return best


def _presentation_index(path: Path) -> _Index | None:
    """The stream's :class:`_Index` by demuxing only (no decoding). None when the stream has packets without pts or
    repeated pts (then frames are counted as decoded)."""
    try:
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            tb, start = s.time_base, s.start_time
            packets = [(p.pts, bool(p.is_keyframe)) for p in c.demux(s) if p.size]
    except av.error.FFmpegError:
        return None  # e.g. truncated: the sequential path decodes what it can
    pts = [p for p, _ in packets]
    if not pts or any(p is None for p in pts) or len(set(pts)) != len(pts):
        return None
    ranked = sorted(pts)
    order = {p: i for i, p in enumerate(ranked)}
    keys = sorted((order[p], p) for p, key in packets if key)
    times = [float(p * tb) for p in ranked] if tb else None
    return _Index(order, keys, times, float((start or 0) * tb) if tb else 0.0)


#: seek to the keyframe before a wanted frame when it lies at least this many frames past the decoder's position
#: (a shorter gap decodes through: a seek flushes the decoder and re-reads from the keyframe)
SEEK_GAP = 2


def read_frames(path: Path, indices: list[int], skip: bool = True, seek: bool = True,
                stats: dict | None = None, backend: str = "auto") -> Iterator[tuple[int, float, np.ndarray]]:
    """Yield ``(index, timestamp_s, rgb uint8 HxWx3)`` for each wanted index, in order, decoded by ``backend``:
    ``auto`` (the fastest usable decoder, measured: PyAV), ``pyav`` (:func:`read_frames_pyav`), ``opencv`` or
    ``torchcodec`` (:mod:`dfkit.ingest.decoders`, which lists them). Every decoder gives the same indices, upright
    frames, MediaError for a bad file and a quiet stop at a truncated stream's end. An unknown or unusable
    ``backend`` raises (one line) before any file is opened.
    """
    from dfkit.ingest import decoders  # it builds on this module

    spec = decoders.resolve(backend)
    if indices:
        need_file(Path(path))
    yield from spec.read(Path(path), indices, skip=skip, seek=seek, stats=stats)


def read_frames_pyav(path: Path, indices: list[int], skip: bool = True, seek: bool = True,
                     stats: dict | None = None) -> Iterator[tuple[int, float, np.ndarray]]:
    """The ``pyav`` decoder: yield ``(index, timestamp_s, rgb uint8 HxWx3)`` for each wanted index, in order.

    Frames are decoded only as far as needed: when the keyframe before the next wanted frame lies past the
    decoder's position (a long clip sampled sparsely), the demuxer seeks to it (``seek``), so a 2-hour video
    sampled at 32 frames decodes 32 GOPs, not 2 hours; between keyframes, a non-reference frame (one no other frame
    depends on) that is not wanted is skipped by the decoder (``skip_frame=NONREF`` for its packet, about a third
    of an H.264 stream); reference frames pass through the decoder, and only wanted frames are converted to RGB.
    The frame index is the frame's rank in presentation order, from a demux-only pass, so a seek is frame-exact;
    ``skip=False`` (or a stream whose packets lack timestamps) decodes sequentially and counts decoded frames. A
    seek that lands past the wanted frame (a broken index) falls back to decoding from the start. Stops quietly
    when the stream ends early (a truncated file): the caller compares what it got with what it asked for. A
    decoder error mid-stream raises MediaError('decode') after the frames before it. Frames come upright: a
    display matrix (a phone's portrait clip) is applied, as players do. ``stats`` (a dict) receives ``decoded``
    (frames out of the decoder) and ``seeks``.
    """
    want = sorted(set(indices))
    if not want:
        return
    wanted = set(want)
    last = want[-1]
    index = _presentation_index(path) if skip else None
    st = stats if stats is not None else {}
    st.update(decoded=0, seeks=0)
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as e:
        raise MediaError("open", f"not a readable video ({_ffmpeg_reason(e)})") from None
    with container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = float(stream.average_rate or 25)

        def emit(frame, i):
            ts = float(frame.time) if frame.time is not None else i / rate
            return i, ts, upright(frame.to_ndarray(format="rgb24"), getattr(frame, "rotation", 0))

        i = 0
        try:
            if index is None:
                for frame in container.decode(stream):
                    st["decoded"] += 1
                    if i in wanted:
                        yield emit(frame, i)
                    i += 1
                    if i > last:
                        return
                return
            yield from _read_indexed(container, stream, index, want, emit, seek, st)
        except av.error.FFmpegError as e:
            raise MediaError("decode", f"decoder error after frame {st.get('pos', i)}: {_ffmpeg_reason(e)}") from None


def _read_indexed(container, stream, index: _Index, want: list[int], emit, seek: bool, st: dict):
    """:func:`read_frames` on a stream with an index: per wanted frame, seek to its keyframe when that lies past
    the decoder's position, then decode (non-reference frames that are not wanted skipped) up to it."""
    wanted, order, cc = set(want), index.order, stream.codec_context
    pos = -1  # the last frame index out of the decoder
    packets = container.demux(stream)
    fallback = False
    for w in want:
        if w <= pos:
            continue  # passed already (emitted on the way, or not there)
        key = index.key_before(w) if seek and not fallback else None
        if key is not None and key[0] - pos >= SEEK_GAP and key[0] > 0:
            container.seek(key[1], stream=stream, backward=True, any_frame=False)
            packets = container.demux(stream)
            st["seeks"] += 1
            landed = None
        else:
            landed = pos
        done = False
        for packet in packets:
            k = order.get(packet.pts) if packet.size else None
            cc.skip_frame = "DEFAULT" if k is None or k in wanted else "NONREF"
            for frame in packet.decode():
                i = order.get(frame.pts, -1)
                st["decoded"] += 1
                if landed is None:
                    landed = i
                    if i > w:  # the seek landed past the frame: decode from the start instead
                        fallback = True
                        break
                pos = max(pos, i)
                st["pos"] = pos
                if i in wanted:
                    yield emit(frame, i)
                if i >= w:
                    done = True
            if fallback or done:
                break
        if fallback:
            container.seek(0, stream=stream, backward=True, any_frame=False)
            packets = container.demux(stream)
            yield from _sequential_from_start(packets, order, wanted, w, emit, st, cc)
            return
        if not done:
            return  # the stream ended early (truncated)


def _sequential_from_start(packets, order, wanted, first, emit, st, cc):
    last = max(wanted)
    for packet in packets:
        k = order.get(packet.pts) if packet.size else None
        cc.skip_frame = "DEFAULT" if k is None or k in wanted else "NONREF"
        for frame in packet.decode():
            i = order.get(frame.pts, -1)
            st["decoded"] += 1
            if i in wanted and i >= first:
                yield emit(frame, i)
            if i >= last:
                return


def list_frame_files(folder: Path) -> list[Path]:
    """The image files of a frame folder in frame order: names compare as text with their digit runs as numbers
    (``frame_60`` before ``frame_600``, ``7.png`` before ``10.png``), so a frame's index is its place in time."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MediaError("open", "frame folder does not exist")
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS]
    if not files:
        raise MediaError("open", "no image files in frame folder")

    return sorted(files, key=natural_key)


def natural_key(p: Path) -> tuple:
    """Sort key of a file name with its digit runs compared as numbers."""
    parts = re.split(r"(\d+)", p.name)
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t.lower()) for t in parts if t) + (p.name,)


def read_image(path: Path) -> np.ndarray:
    """An image file as RGB uint8 (for frame-only datasets). Raises MediaError('open')."""
    import cv2

    path = Path(path)
    if not path.exists():
        raise MediaError("open", "file does not exist")
    if os.path.getsize(path) == 0:
        raise MediaError("open", "empty file (0 bytes)")
    img = cv2.imdecode(np.fromfile(str(path), dtype=np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise MediaError("open", "not a readable image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
