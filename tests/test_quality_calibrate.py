"""The quality instrument against known answers: graded real degradations (calibration targets on the FF++ clips
of ../shared/realdata), the composite's form, and the degradation units themselves."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dfkit.errors import DfkitError
from dfkit.quality import calibrate as cal
from dfkit.quality.base import list_metrics
from dfkit.quality.composite import DEFAULT_WEIGHTS, composite, quality_of, resolve_weights, weakest
from dfkit.quality.degrade import (DEGRADATIONS, degrade, degrade_crop, get_degradation, h264_clip,
                                   list_degradations, parse_injection)

from conftest import FFPP_REAL, need_realdata

WEIGHTED = [n for n, w in DEFAULT_WEIGHTS.items() if w > 0]


# ---------------------------------------------------------------------------------------------- the composite's form


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(WEIGHTED), st.floats(0, 1), min_size=len(WEIGHTED), max_size=len(WEIGHTED)),
       st.sampled_from(WEIGHTED), st.floats(0, 1))
def test_weighted_minimum_is_monotone_and_bounded(scores, which, new):
    q0 = quality_of(scores)
    up = dict(scores, **{which: max(scores[which], new)})
    down = dict(scores, **{which: min(scores[which], new)})
    assert 0.0 <= q0 <= 1.0
    assert quality_of(up) >= q0 - 1e-12
    assert quality_of(down) <= q0 + 1e-12


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from(WEIGHTED), st.floats(0.01, 1), min_size=len(WEIGHTED),
                       max_size=len(WEIGHTED)), st.floats(0.05, 0.95))
def test_threshold_reads_as_a_floor_on_every_weighted_score(scores, t):
    """quality >= t exactly when every weighted score s_i >= t ** (1 / w_i)."""
    w = resolve_weights()
    every = all(scores[n] >= t ** (1 / w[n]) for n in WEIGHTED)
    assert (quality_of(scores) >= t) == every


def test_one_ruined_property_sets_quality():
    good = {n: 0.95 for n in WEIGHTED}
    for n in WEIGHTED:
        bad = dict(good, **{n: 0.1})
        assert quality_of(bad) == pytest.approx(min(0.95 ** min(DEFAULT_WEIGHTS[x] for x in WEIGHTED),
                                                    0.1 ** DEFAULT_WEIGHTS[n]))
        assert weakest({k: np.array([v]) for k, v in bad.items()})[0] == n


def test_unknown_scores_left_out_and_too_few_give_nan():
    s = {n: np.array([0.9, np.nan]) for n in WEIGHTED}
    s["sharpness"] = np.array([0.3, 0.3])
    q = composite(s)
    assert q[0] == pytest.approx(0.3) and math.isnan(q[1])  # row 2 knows only sharpness: < half of the weight


def test_weights_and_order_live_on_the_metric_class():
    from dfkit.quality.base import create_metric

    for n in list_metrics():
        assert DEFAULT_WEIGHTS[n] == create_metric(n).weight
    orders = [create_metric(n).order for n in list_metrics()]
    assert orders == sorted(orders)


# ---------------------------------------------------------------------------------------------- degradations


@pytest.fixture(scope="module")
def face():
    from skimage.data import astronaut

    return np.ascontiguousarray(astronaut()[40:296, 110:366])


@pytest.mark.parametrize("kind", list_degradations())
def test_every_degradation_changes_the_image_more_with_the_level(kind, face):
    d = get_degradation(kind)
    errs = [float(np.abs(degrade(face, kind, lv, np.random.default_rng(0)).astype(float) - face).mean())
            for lv in d.ordered()]
    assert errs[0] > 0.05
    assert all(b >= a * 0.98 for a, b in zip(errs, errs[1:])), errs


def test_h264_clip_round_trip_keeps_frames_and_shape(face):
    out = h264_clip([face[:255, :253]] * 4, 30)
    assert len(out) == 4 and out[0].shape == (255, 253, 3)


def test_degrade_crop_works_on_the_source_grid(face):
    """A crop cut from a 64-px source square and enlarged to 256: blurring by σ = 2 SOURCE px blurs the crop by
    σ ≈ 8 crop px, so its Laplacian falls more than a σ = 2 blur of the crop's own grid would make it."""
    import cv2

    src = cv2.resize(face, (64, 64), interpolation=cv2.INTER_AREA)
    crop = cv2.resize(src, (256, 256), interpolation=cv2.INTER_CUBIC)
    row = {"crop_box": [10.0, 10.0, 74.0, 74.0]}
    a = degrade_crop(crop, row, "defocus", 2.0)
    b = degrade(crop, "defocus", 2.0)
    lap = lambda x: cv2.Laplacian(cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).astype(np.float32), cv2.CV_32F).var()  # noqa
    assert lap(a) < 0.5 * lap(b)
    assert a.shape == crop.shape


@pytest.mark.parametrize("spec, msg", [("blur:3", "unknown kind"), ("defocus", "KIND:LEVEL"),
                                       ("defocus:x:0.5", "numbers"), ("defocus:3:1.5", "FRACTION"),
                                       ("jpeg:150:0.5", "1..100"), ("scale:2:0.5", "below 1"),
                                       ("noise:-1:0.5", "positive"), ("over:0.5", "above 1"),
                                       ("motion:1", "at least 2"), ("jpeg:15.9", "whole number")])
def test_bad_injection_specs_are_one_clear_error(spec, msg):
    with pytest.raises(DfkitError, match=msg):
        parse_injection(spec)


def test_injection_spec():
    i = parse_injection("defocus:3:0.25")
    assert (i.kind, i.level, i.fraction) == ("defocus", 3.0, 0.25)
    assert parse_injection("jpeg:15").fraction == 0.5


# ---------------------------------------------------------------------------------------------- calibration targets


@pytest.fixture(scope="module")
def calibration(tmp_path_factory):
    """The calibration of the shipped weights on the real FF++ c23 clips (4 frames per clip)."""
    need_realdata("ffpp_icpr2020dfdc")
    from quality_samples import ffpp_meta

    from dfkit.ingest.frames import frame_row

    paths = sorted(FFPP_REAL.rglob("*.mp4"))
    src = cal.sources_from_videos(paths, frame_row, per_video=4, meta=ffpp_meta)
    assert len(src) >= 20
    out = tmp_path_factory.mktemp("cal")
    keep: list = []
    s = cal.calibrate(src, out, keep=keep)
    return s, keep[0], out


@pytest.mark.realdata
def test_calibration_writes_table_plot_and_json(calibration):
    s, df, out = calibration
    for f in cal.FILES:
        assert (out / f).stat().st_size > 0
    assert cal.load(out)["n_crops"] == s["n_crops"]
    md = (out / "calibration.md").read_text()
    assert "| defocus | 3 σ source px |" in md and "quality 0.7" in md
    assert set(df["kind"]) == {"clean"} | set(DEGRADATIONS)


@pytest.mark.realdata
def test_clean_real_crops_score_high(calibration):
    s, _, _ = calibration
    assert s["clean"]["median"] >= cal.CLEAN_TARGET


@pytest.mark.realdata
@pytest.mark.parametrize("kind, level", [("defocus", 3.0), ("defocus", 5.0), ("jpeg", 15.0), ("noise", 10.0),
                                         ("noise", 20.0), ("scale", 0.25), ("scale", 0.125), ("h264", 40.0),
                                         ("h264", 48.0)])
def test_strong_degradations_score_below_one_half(calibration, kind, level):
    s, _, _ = calibration
    p = next(p for p in s["kinds"][kind]["levels"] if p["level"] == level)
    assert p["median"] < cal.DEGRADED_TARGET


@pytest.mark.realdata
@pytest.mark.parametrize("kind", ["defocus", "motion", "jpeg", "noise", "scale", "under", "over", "h264"])
def test_median_quality_falls_with_the_level(calibration, kind):
    """Over the graded levels the median never rises, and the strongest level is far below the clean crops. The
    step from clean to the mildest level may rise a little for noise σ 2 and over-exposure 1.5 (a little noise hides
    the c23 codec's blocking; a brighter copy of a dim face is better exposed): measured, reported in the README."""
    s, _, _ = calibration
    med = [p["median"] for p in s["kinds"][kind]["levels"]]
    assert all(b <= a + cal.MONOTONE_TOL for a, b in zip(med, med[1:])), med
    assert med[-1] < s["clean"]["median"] - 0.2
    assert med[0] <= s["clean"]["median"] + 0.05


@pytest.mark.realdata
def test_per_crop_monotone_share_does_not_regress(calibration):
    """The per-crop target (>= 95 %) is met for JPEG only; quality version 3 measured 75-96 % for every kind (version
    2: 43 % for noise, 57 % over-exposure, 61 % H.264). This floor keeps a change from bringing the masking back
    unnoticed; the README reports the values and what is left."""
    s, _, _ = calibration
    shares = {k: e["monotone"] for k, e in s["kinds"].items()}
    assert min(shares.values()) >= 0.7, shares
    assert shares["jpeg"] >= cal.MONOTONE_TARGET and shares["noise"] >= 0.8, shares


@pytest.mark.realdata
def test_calibration_through_the_cli_on_a_clip(tmp_path, capsys):
    need_realdata("ffpp_icpr2020dfdc")
    from tests.test_train_cli import run_cli

    clip = FFPP_REAL / "original_sequences" / "youtube" / "c23" / "videos" / "634.mp4"
    code, out, err = run_cli(["quality", "calibrate", "--videos", clip, "--per-video", "2", "--kinds", "defocus,jpeg",
                              "--out", tmp_path / "c", "--quiet"], capsys)
    assert code == 0, err
    s = cal.load(tmp_path / "c")
    assert set(s["kinds"]) == {"defocus", "jpeg"} and s["n_crops"] == 2
    assert "What a threshold means" in out
    code, _, err = run_cli(["quality", "calibrate", "--videos", tmp_path / "nothing"], capsys)
    assert code == 2 and "no such file" in err


def test_threshold_crossings():
    # levels [first, l1, l2, ...] with the clean median first
    assert cal._crossing([1, 1, 2, 3, 5], [0.45, 0.55, 0.4, 0.3, 0.2], 0.5, False) == "below at clean"
    assert cal._crossing([1, 1, 2, 3, 5], [0.9, 0.8, 0.6, 0.4, 0.2], 0.5, False) == "2.5"
    assert cal._crossing([1, 1, 2, 3, 5], [0.9, 0.4, 0.3, 0.2, 0.1], 0.5, False) == "< 1"
    assert cal._crossing([1, 1, 2], [0.9, 0.8, 0.7], 0.5, False) == "not below at 2"


def test_clip_ids_keep_folders_apart(tmp_path):
    a, b = tmp_path / "c23" / "videos" / "000.mp4", tmp_path / "c40" / "videos" / "000.mp4"
    assert cal._clip_id(a, [a, b]) == "c23/videos/000" and cal._clip_id(b, [a, b]) == "c40/videos/000"


def test_group_options_before_the_subcommand_are_refused(tmp_path, capsys):
    from tests.test_train_cli import run_cli

    code, _, err = run_cli(["quality", "--corpus", tmp_path, "calibrate"], capsys)
    assert code == 2 and "after the subcommand" in err and "--corpus" in err
    assert not (tmp_path / "calibration").exists()
