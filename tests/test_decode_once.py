"""Issue 17: each crop is decoded once for all quality metrics and the full-reference passes, by the fast PNG
decoder when installed, with the very pixels OpenCV decodes; metric intermediates shared by two metrics are
computed once per crop and give the values computed alone."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

import quality_samples as samples  # tests/quality_samples.py: real crops cut as the ingest cuts them
from dfkit.corpus import codec
from dfkit.corpus.codec import CropDecodeError, DecodedCrops, decode_crop, encode_crop
from dfkit.quality.compute import compute_quality
from dfkit.quality.metrics.blockiness import _source_grid, source_grid
from dfkit.quality.metrics.noise import face_sigma, immerkaer_sigma
from dfkit.quality.view import CropView


def _opencv(data: bytes) -> np.ndarray:
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def test_fast_png_path_gives_opencv_pixels_on_real_crops():
    pytest.importorskip("pyspng")
    rows = samples.sample_rows(12)
    assert rows
    for r in rows:
        fast = codec._fast_png(r["crop"])
        assert fast is not None, "pyspng is installed but the PNG crop was not decoded by it"
        assert fast.dtype == np.uint8 and fast.shape == (r["crop_size"], r["crop_size"], 3)
        assert np.array_equal(fast, _opencv(r["crop"]))


@pytest.mark.parametrize("encoding", ["png", "webp", "jpeg:90"])
def test_every_stored_format_round_trips_through_decode_crop(encoding):
    rgb = np.ascontiguousarray(np.random.default_rng(0).integers(0, 256, (48, 40, 3), dtype=np.uint8))
    data, fmt = encode_crop(rgb, encoding)
    out = decode_crop(data)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    if fmt in ("png", "webp"):
        assert np.array_equal(out, rgb)  # lossless


def test_grey_and_rgba_pngs_fall_back_to_three_channel_rgb():
    g = np.random.default_rng(1).integers(0, 256, (20, 30), dtype=np.uint8)
    ok, buf = cv2.imencode(".png", g)
    out = decode_crop(buf.tobytes())
    assert out.shape == (20, 30, 3) and np.array_equal(out[:, :, 0], g)
    rgba = np.random.default_rng(2).integers(0, 256, (20, 30, 4), dtype=np.uint8)
    ok, buf = cv2.imencode(".png", rgba)
    assert decode_crop(buf.tobytes()).shape == (20, 30, 3)


def test_truncated_png_is_a_decode_error_not_a_crash():
    data, _ = encode_crop(np.full((64, 64, 3), 128, np.uint8))
    with pytest.raises(CropDecodeError):
        decode_crop(data[: len(data) // 3])
    with pytest.raises(CropDecodeError):
        decode_crop(b"")


def test_decoded_crops_decodes_each_id_once_and_respects_its_bound():
    data, _ = encode_crop(np.full((32, 32, 3), 7, np.uint8))
    d = DecodedCrops()
    a, b = d.get("x", data), d.get("x", data)
    assert a is b and d.decodes == 1 and not a.flags.writeable
    d.get(None, data)
    d.get(None, data)
    assert d.decodes == 3  # no id: never kept
    small = DecodedCrops(max_bytes=32 * 32 * 3)
    small.get("a", data), small.get("b", data), small.get("b", data)
    assert small.decodes == 3 and small.bytes == 32 * 32 * 3  # "b" did not fit: decoded each time
    assert d.get("bad", b"not an image") is None


def _same(a, b) -> None:
    import pandas.testing as pdt

    assert a.schema.equals(b.schema)
    pdt.assert_frame_equal(a.to_pandas(), b.to_pandas())  # NaN == NaN here (pa.Table.equals says no)


def test_quality_and_fullref_passes_decode_each_crop_once():
    pytest.importorskip("piq")
    from dfkit.quality.fullref import compute_fullref

    fakes, refs = samples.paired_rows(2)
    if not fakes:
        pytest.skip("the FF++ sample clips in ../shared/realdata are absent")
    ft, rt = samples.rows_to_table(fakes), samples.rows_to_table(refs)
    d = DecodedCrops()
    alone = compute_quality(ft)
    shared = compute_quality(ft, decoded=d)
    _same(shared, alone)
    after_quality = d.decodes
    assert after_quality == len({r["sample_id"] for r in fakes})
    fr_shared = compute_fullref(ft, rt, on="pair", decoded=d)
    distinct_refs = {r["sample_id"] for r in refs}
    assert d.decodes == after_quality + len(distinct_refs)  # fakes not decoded again; each reference once
    fr_alone = compute_fullref(ft, rt, on="pair")
    _same(fr_shared, fr_alone)


def test_shared_intermediates_equal_the_values_computed_alone():
    rows = samples.sample_rows(6)
    for r in rows:
        rgb = decode_crop(r["crop"])
        v = CropView(rgb, r)
        assert face_sigma(v) == pytest.approx(immerkaer_sigma(CropView(rgb, r).face_f32), rel=1e-6)  # int path = float path
        g1, g2 = source_grid(v), _source_grid(CropView(rgb, r))
        if g2 is None:
            assert g1 is None
            continue
        assert source_grid(v) is g1  # computed once per view
        assert np.array_equal(g1[0], g2[0]) and g1[1:] == g2[1:]
