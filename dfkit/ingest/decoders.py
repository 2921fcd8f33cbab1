"""Frame decoders behind one name: ``pyav`` (PyAV), ``opencv`` (cv2.VideoCapture), ``torchcodec`` (TorchCodec on
CPU), and ``auto``, the fastest of them that is usable here.

Every decoder keeps :func:`dfkit.ingest.video.read_frames`' contract: it yields ``(index, timestamp_s, rgb uint8
HxWx3)`` for the wanted indices, in order, the index being the frame's rank in presentation order; frames come
upright (a display matrix applied); a problem with the file is a :class:`~dfkit.ingest.video.MediaError`; a stream
that ends early (a truncated file) stops quietly, the caller comparing what it got with what it asked for. A
decoder that cannot be used on this machine (its package missing, or FFmpeg's shared libraries for TorchCodec) is
a :class:`DecoderUnavailable` when named, and ``auto`` passes over it.

Measured on the 7 FF++ c23 clips at 32 sampled frames (``bench/decode.py``): all three give the same pixels and
timestamps, and PyAV is the fastest (it skips the non-reference frames it does not need, which the others decode),
so ``auto`` prefers it; see :data:`AUTO_ORDER`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from dfkit.errors import DfkitError
from dfkit.ingest import video
from dfkit.ingest.video import MediaError
from dfkit.registry import Registry

Frames = Iterator[tuple[int, float, np.ndarray]]


class DecoderUnavailable(DfkitError):
    """A decoder named by the user that cannot run on this machine (says why and what to install)."""


@dataclass(frozen=True)
class DecoderSpec:
    """``read(path, indices, skip, seek, stats)`` yields frames (see the module doc); ``missing()`` says why the
    decoder cannot be used here, None when it can; ``about`` is one line for listings."""

    name: str
    read: Callable[..., Frames]
    missing: Callable[[], str | None]
    about: str


DECODERS: Registry[DecoderSpec] = Registry("frame decoder", None, named_by="argument")

#: ``auto``'s order of preference, fastest first, from ``bench/decode.py`` on the 7 FF++ c23 clips, 32 frames each
#: (2-core machine, medians of 5): pyav 3.63 s (62 frames/s), torchcodec 4.14 s, opencv 6.54 s in one process;
#: 2.60 / 3.31 / 5.42 s in 2 processes; all three give PyAV's indices, timestamps and pixels exactly
AUTO_ORDER = ("pyav", "torchcodec", "opencv")

#: frames TorchCodec converts per call (a batch is held in memory: 8 frames of 1080p are 50 MB)
TORCHCODEC_BATCH = 8


def list_decoders() -> list[str]:
    """Every registered decoder's name (usable here or not; see :func:`decoder_status`)."""
    return DECODERS.list()


def decoder_status() -> dict[str, str | None]:
    """Each decoder's name -> why it cannot be used on this machine (None: usable)."""
    return {name: spec.missing() for name, spec in DECODERS.items()}


def resolve(name: str = "auto") -> DecoderSpec:
    """The decoder called ``name``; ``auto``: the first usable one of :data:`AUTO_ORDER`. An unknown name is an
    UnknownNameError, a known one that cannot run here a :class:`DecoderUnavailable` (both one line)."""
    if name == "auto":
        for n in AUTO_ORDER:
            if DECODERS.get(n).missing() is None:
                return DECODERS.get(n)
        raise DecoderUnavailable("no frame decoder is usable: " + "; ".join(
            f"{n}: {r}" for n, r in decoder_status().items() if r))
    spec = DECODERS.get(name)
    why = spec.missing()
    if why is not None:
        raise DecoderUnavailable(f"frame decoder {name!r} cannot be used here: {why}")
    return spec


def _one_line(e: Exception, path: Path | None = None) -> str:
    """A library's exception as a short line: its first line, without a C++ source location
    (``SingleStreamDecoder, /src/...cpp:41, ``) or the file's own path."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    msg = re.sub(r"^\w+, \S+\.(?:cpp|h|cc):\d+, ", "", lines[0] if lines else type(e).__name__)
    if path is not None:
        msg = msg.replace(f": {path}", "").replace(str(path), "the file")
    return msg


# -- pyav -------------------------------------------------------------------------------------------------------------
DECODERS.add("pyav", DecoderSpec(
    "pyav", video.read_frames_pyav, lambda: None,
    "PyAV (FFmpeg bundled in its wheel): demux index, seek to the keyframe before a far frame, non-reference "
    "frames that are not wanted skipped"))


# -- opencv -----------------------------------------------------------------------------------------------------------
def _opencv_missing() -> str | None:
    try:
        import cv2
    except ImportError as e:
        return f"OpenCV is not installed ({e}); pip install opencv-python"
    if not hasattr(cv2, "CAP_FFMPEG"):
        return "this OpenCV build has no FFmpeg video I/O"
    return None


def read_frames_opencv(path: Path, indices: list[int], skip: bool = True, seek: bool = True,
                       stats: dict | None = None) -> Frames:
    """:func:`~dfkit.ingest.video.read_frames` with OpenCV's VideoCapture (its own FFmpeg): ``grab()`` through the
    frames not wanted, ``retrieve()`` the wanted ones. When the keyframe before the next wanted frame lies past the
    position (``seek``, and the stream has a demux index), it seeks with ``CAP_PROP_POS_FRAMES``; OpenCV turns the
    frame number into a time by the average frame rate, so each landing is checked against the index's timestamp
    of that frame, and a miss (variable frame rate, say) reopens the file and grabs through from the start.
    ``stats``: ``grabbed`` counts grab() calls (OpenCV's seek decodes from the keyframe inside), ``seeks``."""
    import cv2

    path = Path(path)
    want = sorted(set(indices))
    st = stats if stats is not None else {}
    st.update(decoded=0, seeks=0)
    if not want:
        return
    index = video._presentation_index(path) if (seek and skip) else None

    def open_capture():
        level = cv2.getLogLevel()
        cv2.setLogLevel(2)  # errors only: not OpenCV's warning for each unreadable file
        try:
            cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        finally:
            cv2.setLogLevel(level)
        if not cap.isOpened():
            raise MediaError("open", "not a readable video (OpenCV cannot open it)")
        cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 0)  # turned below, the same way for every decoder
        return cap

    cap = open_capture()
    # OpenCV's orientation is clockwise, FFmpeg's display rotation (video.upright) counter-clockwise
    rotation = (-int(round(cap.get(cv2.CAP_PROP_ORIENTATION_META) or 0))) % 360
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    half_frame_ms = 500.0 / fps
    pos = -1  # the index of the last frame grabbed
    seeking = index is not None
    wanted = set(want)
    out = -1  # the index of the last frame yielded (a restart from the start grabs past it again)

    def stamp(i: int) -> float:
        if index is not None and index.times is not None and i < len(index.times):
            return index.times[i]
        return cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0

    try:
        for w in want:
            if w <= pos:
                continue
            key = index.key_before(w) if seeking else None
            if key is not None and key[0] - pos >= video.SEEK_GAP and key[0] > 0:
                cap.set(cv2.CAP_PROP_POS_FRAMES, w)
                st["seeks"] += 1
                if not cap.grab():
                    return
                st["decoded"] += 1
                landed_ms = cap.get(cv2.CAP_PROP_POS_MSEC)
                if index.times is None or abs(landed_ms - (index.times[w] - index.start) * 1000.0) > half_frame_ms:
                    cap.release()  # the seek missed its frame: grab through from the start instead
                    cap, pos, seeking = open_capture(), -1, False
                else:
                    pos = w
            while pos < w:
                if not cap.grab():
                    return  # the stream ended early (truncated)
                st["decoded"] += 1
                pos += 1
                if pos in wanted and out < pos < w:
                    ok, bgr = cap.retrieve()
                    if ok:
                        out = pos
                        yield pos, stamp(pos), video.upright(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), rotation)
            ok, bgr = cap.retrieve()
            if not ok:
                raise MediaError("decode", f"decoder error at frame {w}: OpenCV could not convert the frame")
            out = w
            yield w, stamp(w), video.upright(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), rotation)
    finally:
        cap.release()


DECODERS.add("opencv", DecoderSpec(
    "opencv", read_frames_opencv, _opencv_missing,
    "OpenCV VideoCapture (FFmpeg bundled in opencv-python): grab through, frame-checked seeks to far frames"))


# -- torchcodec -------------------------------------------------------------------------------------------------------
TORCHCODEC_HINT = ("pip install 'dfkit[decode]' (torchcodec) and FFmpeg's shared libraries "
                   "(Debian: apt-get install libavcodec59 libavformat59 libavdevice59 libavfilter8, or ffmpeg)")


@lru_cache(maxsize=1)
def _torchcodec_missing() -> str | None:
    import importlib.util

    if importlib.util.find_spec("torchcodec") is None:
        return f"torchcodec is not installed; {TORCHCODEC_HINT}"
    try:
        import torchcodec.decoders  # noqa: F401 - loads FFmpeg's shared libraries
    except Exception as e:  # noqa: BLE001 - its loader raises RuntimeError/OSError with a page of tracebacks
        return f"torchcodec cannot load FFmpeg's shared libraries ({_one_line(e)[:120]}); {TORCHCODEC_HINT}"
    return None


def read_frames_torchcodec(path: Path, indices: list[int], skip: bool = True, seek: bool = True,
                           stats: dict | None = None) -> Frames:
    """:func:`~dfkit.ingest.video.read_frames` with TorchCodec's VideoDecoder on the CPU, ``seek_mode="exact"``
    (it scans the file first, so frame indices and seeks are exact; it seeks only when the next wanted frame lies
    past the next keyframe), batches of :data:`TORCHCODEC_BATCH` frames through ``get_frames_at``. ``skip`` and
    ``seek`` are TorchCodec's own business (it always seeks as it sees fit); ``stats`` gets ``decoded`` None
    (TorchCodec does not say) and ``seeks`` None."""
    why = _torchcodec_missing()
    if why is not None:
        raise DecoderUnavailable(f"frame decoder 'torchcodec' cannot be used here: {why}")
    from torchcodec.decoders import VideoDecoder

    path = Path(path)
    want = sorted(set(indices))
    st = stats if stats is not None else {}
    st.update(decoded=None, seeks=None)
    if not want:
        return
    try:
        dec = VideoDecoder(str(path), seek_mode="exact", dimension_order="NHWC", num_ffmpeg_threads=0,
                           device="cpu")
        n = int(dec.metadata.num_frames or 0)
    except Exception as e:  # noqa: BLE001 - any decoder-library failure is a per-file problem
        raise MediaError("open", f"not a readable video ({_one_line(e, path)})") from None
    want = [w for w in want if w < n]  # frames past the scanned end: the stream ended early
    for start in range(0, len(want), TORCHCODEC_BATCH):
        chunk = want[start:start + TORCHCODEC_BATCH]
        try:
            batch = dec.get_frames_at(chunk)
        except Exception:  # noqa: BLE001 - one by one, to give the frames before the failing one
            for w in chunk:
                try:
                    f = dec.get_frame_at(w)
                except Exception as e:  # noqa: BLE001
                    raise MediaError("decode", f"decoder error at frame {w}: {_one_line(e, path)}") from None
                yield w, float(f.pts_seconds), f.data.numpy()
            continue
        data, pts = batch.data.numpy(), batch.pts_seconds.tolist()
        for k, w in enumerate(chunk):
            yield w, float(pts[k]), data[k]


DECODERS.add("torchcodec", DecoderSpec(
    "torchcodec", read_frames_torchcodec, _torchcodec_missing,
    "TorchCodec on the CPU (system FFmpeg libraries): exact-mode index, batched get_frames_at"))
