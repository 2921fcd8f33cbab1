"""Every frame decoder (issue 17: pyav, opencv, torchcodec) keeps read_frames' contract against PyAV: the same
indices and timestamps, the same pixels (within PIXEL_TOLERANCE), upright frames, MediaError for a missing or
unreadable file, a quiet stop at a truncated stream's end; on real FF++ clips and on constructed ones. A decoder
that cannot run on this machine is skipped with its reason; ``auto`` then falls back to one that can."""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from dfkit.ingest import decoders
from dfkit.ingest.video import MediaError, probe, read_frames, sample_indices
from dfkit.registry import UnknownNameError
from tests.conftest import FFPP_REAL, astronaut_frames, need_realdata, write_video
from tests.test_video_rotation_vfr import _stored, with_display_matrix

#: largest per-pixel difference allowed against PyAV: the decoders share FFmpeg's H.264 decoder, but each has its
#: own YUV->RGB conversion, which may round differently (bench/decode.py measured 0 on every clip here)
PIXEL_TOLERANCE = 2


@pytest.fixture(params=decoders.list_decoders())
def backend(request) -> str:
    why = decoders.decoder_status()[request.param]
    if why is not None:
        pytest.skip(f"decoder {request.param!r} unusable here: {why}")
    return request.param


def _read(path: Path, idx, backend: str, **kw):
    st: dict = {}
    out = list(read_frames(path, idx, backend=backend, stats=st, **kw))
    return out, st


def assert_same(got, ref, what=""):
    assert [i for i, _, _ in got] == [i for i, _, _ in ref], what
    for (i, t, f), (_, rt, rf) in zip(got, ref):
        assert f.dtype == np.uint8 and f.shape == rf.shape and f.flags.c_contiguous, (what, i)
        assert int(np.abs(f.astype(np.int16) - rf).max()) <= PIXEL_TOLERANCE, (what, i)
        assert abs(t - rt) < 1e-3, (what, i, t, rt)


def clip(path: Path, n: int = 300, keyint: int = 25, vfr: bool = False) -> Path:
    """``n`` frames of moving noise with a frame counter in the corner (every frame differs), a keyframe every
    ``keyint`` frames, B-frames on; ``vfr``: every third frame shown for 100 ms, the others for 20 ms."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25, options={
            "crf": "20", "preset": "fast", "threads": "1",
            "x264-params": f"keyint={keyint}:min-keyint={keyint}:scenecut=0:bframes=2"})
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        if vfr:
            s.time_base = s.codec_context.time_base = Fraction(1, 1000)
        t = 0
        for i in range(n):
            f = np.roll(base, i, axis=1).copy()
            f[:8, :8] = i % 256
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            if vfr:
                vf = vf.reformat(format="yuv420p")
                vf.pts, vf.time_base = t, Fraction(1, 1000)
                t += 20 if i % 3 else 100
            for p in s.encode(vf):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("decoders")
    return {"mp4": clip(d / "cfr.mp4"), "mkv": clip(d / "cfr.mkv"), "vfr": clip(d / "vfr.mkv", vfr=True)}


@pytest.mark.parametrize("kind", ["mp4", "mkv", "vfr"])
def test_constructed_clip_same_frames_as_pyav(backend, clips, kind):
    """Sparse, dense and unsorted requests; the variable-frame-rate MKV is where a seek by frame number x average
    rate lands on the wrong frame (OpenCV's), which must be caught, not returned."""
    p = clips[kind]
    for idx in (sample_indices(300, 12), [299, 3, 4, 5, 26, 24, 25, 150, 151, 200, 5], list(range(0, 300, 7))):
        ref, _ = _read(p, idx, "pyav", skip=False)  # sequential decode from the start: the reference
        got, _ = _read(p, idx, backend)
        assert [i for i, _, _ in got] == sorted(set(idx))
        assert_same(got, ref, (kind, backend))


def test_far_frames_are_reached_by_seeking(backend, clips):
    """A keyframe every 25 frames, 6 frames wanted over 300: the decoders that count say fewer frames went
    through than a decode from the start to the last wanted frame (TorchCodec does not count: its timing is in
    bench/decode.py)."""
    got, st = _read(clips["mp4"], [10, 60, 110, 160, 210, 260], backend)
    assert [i for i, _, _ in got] == [10, 60, 110, 160, 210, 260]
    if st["decoded"] is not None:
        assert st["seeks"] >= 4 and st["decoded"] < 200, st


def test_missing_unreadable_and_truncated_files(backend, clips, tmp_path):
    with pytest.raises(MediaError, match="does not exist") as e:
        list(read_frames(tmp_path / "absent.mp4", [0, 1], backend=backend))
    assert e.value.stage == "open"
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    with pytest.raises(MediaError, match="not a readable video") as e:
        list(read_frames(text, [0, 1], backend=backend))
    assert e.value.stage == "open" and "\n" not in str(e.value)
    data = clips["mp4"].read_bytes()  # an MP4 written in one go has its index (moov) at the end: cut, unreadable
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError) as e:
        list(read_frames(tmp_path / "cut.mp4", [0, 1], backend=backend))
    assert e.value.stage == "open"
    data = clips["mkv"].read_bytes()  # MKV has no index to lose: the first part of the stream decodes, then stops
    (tmp_path / "cut.mkv").write_bytes(data[: len(data) // 2])
    want = list(range(0, 300, 7))
    got, _ = _read(tmp_path / "cut.mkv", want, backend)
    ref, _ = _read(tmp_path / "cut.mkv", want, "pyav")
    assert 0 < len(got) < len(want) and [i for i, _, _ in got] == want[: len(got)]
    assert_same(got, ref, backend)


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation_honoured(backend, tmp_path, rotation):
    """A phone's portrait clip (stored sideways, display matrix set) comes out as PyAV gives it: upright."""
    up = astronaut_frames(12, size=(192, 144))
    stored = write_video(tmp_path / "stored.mp4", _stored(up, rotation), crf=8)
    rot = with_display_matrix(stored, tmp_path / "rot.mp4", rotation)
    got, _ = _read(rot, [0, 5, 11], backend)
    assert all(f.shape == (144, 192, 3) for _, _, f in got)
    assert_same(got, _read(rot, [0, 5, 11], "pyav")[0], backend)
    assert np.abs(got[0][2].astype(int) - up[0]).mean() < 3.0  # the upright picture, not a turned one


@pytest.mark.realdata
def test_real_ffpp_clips_same_frames_as_pyav(backend):
    need_realdata("ffpp_icpr2020dfdc")
    paths = sorted(FFPP_REAL.rglob("*.mp4"))
    assert paths
    for p in paths:
        idx = sample_indices(probe(p).n_frames, 32)
        got, _ = _read(p, idx, backend)
        assert [i for i, _, _ in got] == idx, p
        assert_same(got, _read(p, idx, "pyav")[0], (p.name, backend))


def test_names_auto_and_unusable_decoders(monkeypatch):
    assert {"pyav", "opencv", "torchcodec"} <= set(decoders.list_decoders())
    assert set(decoders.AUTO_ORDER) == set(decoders.list_decoders())
    assert decoders.resolve("auto").name == next(n for n in decoders.AUTO_ORDER if decoders.decoder_status()[n]
                                                 is None)
    with pytest.raises(UnknownNameError, match="known: opencv, pyav, torchcodec"):
        list(read_frames(Path("x.mp4"), [0], backend="ffmpeg-cli"))
    # a machine without TorchCodec's FFmpeg libraries: named, it is one clear line; auto passes over it
    entries = decoders.DECODERS._entries
    gone = "torchcodec cannot load FFmpeg's shared libraries (libavutil.so.57 missing); install them"
    monkeypatch.setitem(entries, "torchcodec", replace(entries["torchcodec"], missing=lambda: gone))
    with pytest.raises(decoders.DecoderUnavailable, match="'torchcodec' cannot be used here: torchcodec cannot"):
        list(read_frames(Path("x.mp4"), [0], backend="torchcodec"))
    monkeypatch.setattr(decoders, "AUTO_ORDER", ("torchcodec", "opencv", "pyav"))
    assert decoders.resolve("auto").name == ("opencv" if decoders.decoder_status()["opencv"] is None else "pyav")
    monkeypatch.setitem(entries, "opencv", replace(entries["opencv"], missing=lambda: "no cv2"))
    assert decoders.resolve("auto").name == "pyav"


def test_engine_default_reads_through_auto(clips):
    """read_frames without a backend (as the engine calls it) is ``auto``: the same frames as the chosen decoder."""
    idx = [0, 100, 250]
    got = list(read_frames(clips["mp4"], idx))
    assert_same(got, _read(clips["mp4"], idx, decoders.resolve("auto").name)[0])


def test_torchcodec_missing_reason_is_one_line_without_the_package(monkeypatch):
    """Without the package, the reason says what to install (the machine may have it: the check is forced)."""
    import importlib.util

    decoders._torchcodec_missing.cache_clear()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    try:
        why = decoders._torchcodec_missing()
    finally:
        decoders._torchcodec_missing.cache_clear()
    assert why is not None and "not installed" in why and "dfkit[decode]" in why and "\n" not in why


def test_ingest_decoder_option_same_crops(backend, tmp_path):
    """`dfkit ingest --decoder NAME` (IngestParams.decoder): the same crops, byte for byte, as PyAV's."""
    need_realdata("ffpp_icpr2020dfdc")
    from dfkit.corpus.reader import Corpus
    from dfkit.ingest.base import create_adapter
    from dfkit.ingest.engine import IngestParams, run_ingest

    def crops(decoder: str) -> list[np.ndarray]:
        corpus = tmp_path / f"{decoder}-{len(list(tmp_path.iterdir()))}"  # a fresh corpus each time
        run_ingest(create_adapter("ffpp", FFPP_REAL), corpus, IngestParams(frames=4, decoder=decoder), workers=1,
                   limit=1, progress=False, log=lambda m: None)
        rows = sorted(Corpus(corpus).crops(), key=lambda r: r[0]["frame_index"])
        return [img for _, img in rows]

    want = crops("pyav")
    assert len(want) == 4
    got = crops(backend)
    assert len(got) == 4 and all(np.array_equal(a, b) for a, b in zip(got, want))


def test_ingest_decoder_option_refused_before_writing(tmp_path):
    from dfkit.errors import SettingsError
    from dfkit.ingest.engine import IngestParams

    with pytest.raises(SettingsError, match="--decoder 'nope'"):
        IngestParams(decoder="nope")
