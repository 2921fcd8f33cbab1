"""Error-versus-discard curves (:mod:`dfkit.train.edc`): constructed cases with known curves and areas, and
``dfkit eval --edc`` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.test_train_cli import demo_corpus, one_thread, quality_corpus, run_cli  # noqa: F401 - fixtures


def confident(y: np.ndarray, wrong: np.ndarray, n_classes: int = 2) -> np.ndarray:
    pred = np.where(wrong, (y + 1) % n_classes, y)
    return np.where(pred[:, None] == np.arange(n_classes)[None, :], 0.9, 0.1 / (n_classes - 1))


def test_edc_low_quality_crops_wrong_drops_to_zero():
    from dfkit.train.edc import edc, edc_summary_line

    # 50 videos x 4 crops, classes alternate; a video's crops have quality i/50 (+ a jitter below the spacing),
    # and exactly the 10 lowest-quality videos (20% of crops and videos, 5 per class) are predicted wrong
    n_v, per = 50, 4
    vi = np.repeat(np.arange(n_v), per)
    y = vi % 2
    q = vi / n_v + np.tile(np.arange(per), n_v) * 1e-3
    wrong = vi < 10
    rng = np.random.default_rng(3)
    perm = rng.permutation(len(y))  # row order must not matter
    res = edc(y[perm], confident(y, wrong)[perm], [f"v{i:02d}" for i in vi[perm]], q[perm], n_boot=200, seed=1)
    fr = np.array(res["fractions"])
    assert fr[0] == 0 and fr[-1] == pytest.approx(0.8) and len(fr) == 17
    for lv in ("frame", "video"):
        e = res["levels"][lv]
        qc = np.array(e["quality"])
        assert qc[0] == pytest.approx(0.2)
        # after discarding f < 20%: (0.2 - f) / (1 - f) of what remains is wrong (frames: exactly; videos: balanced
        # error, nearly); from 20% on nothing is
        expect = np.clip((0.2 - fr) / (1 - fr), 0, None)
        assert qc == pytest.approx(expect, abs=1e-9 if lv == "frame" else 5e-3)
        assert qc[fr >= 0.2 - 1e-9].max() == pytest.approx(0.0, abs=1e-9)
        # random discards keep the error near 20%
        assert np.array(e["random"]) == pytest.approx(0.2, abs=0.03)
        lo, hi = np.array(e["random_band"]).T
        assert (lo <= 0.2 + 1e-9).all() and (hi >= 0.2 - 1e-9).all()
        # the area between the curves: 0.2 x 0.8 minus the quality curve's area (~0.018)
        a = e["area"]
        assert a["value"] == pytest.approx(0.16 - np.sum((expect[1:] + expect[:-1]) / 2 * np.diff(fr)), abs=0.01)
        assert a["value"] > 0.12 and a["ci"][0] > 0.05 and e["excludes_zero"]
        assert all(c[0] <= v + 1e-9 and v - 1e-9 <= c[1] for c, v in zip(e["quality_ci"], qc))
    assert res["levels"]["frame"]["n"] == 200 and res["levels"]["video"]["n"] == 50
    line = edc_summary_line(res)
    assert line.startswith("EDC (discarding up to 80% lowest quality): frame error 0.200 -> 0.000")


def test_edc_quality_independent_of_correctness_area_includes_zero():
    from dfkit.train.edc import edc

    rng = np.random.default_rng(0)
    n_v, per = 150, 2
    vi = np.repeat(np.arange(n_v), per)
    y = vi % 3
    wrong = rng.random(len(y)) < 0.3
    q = rng.random(len(y))
    res = edc(y, confident(y, wrong, 3), [f"v{i}" for i in vi], q, n_boot=200, seed=0)
    for lv in ("frame", "video"):
        e = res["levels"][lv]
        lo, hi = e["area"]["ci"]
        assert lo < 0 < hi and not e["excludes_zero"]
        assert abs(e["area"]["value"]) < 0.05


def test_edc_missing_scores_and_bad_input():
    from dfkit.errors import DfkitError
    from dfkit.train.edc import edc

    y = np.array([0, 1, 0, 1])
    p = confident(y, np.array([True, False, False, False]))
    q = np.array([np.nan, 0.5, 0.6, 0.7])
    res = edc(y, p, ["a", "b", "c", "d"], q, n_boot=0, step=0.25, max_discard=0.5)
    assert res["fractions"] == [0.0, 0.25, 0.5]
    assert res["levels"]["frame"]["quality"] == pytest.approx([0.25, 0.0, 0.0])  # the unscored crop goes first
    assert res["levels"]["frame"]["area"]["ci"] is None and "no quality score" in res["notes"][0]
    with pytest.raises(DfkitError, match="quality"):
        edc(y, p, ["a", "b", "c", "d"], np.full(4, np.nan), n_boot=0)
    with pytest.raises(DfkitError, match="max discard"):
        edc(y, p, ["a", "b", "c", "d"], q, n_boot=0, max_discard=1.0)


def test_eval_edc_end_to_end(quality_corpus, demo_corpus, tmp_path, capsys):
    run = tmp_path / "run"
    code, out, err = run_cli(["train", "--corpus", quality_corpus, "--backbone", "tiny", "--img-size", "32",
                              "--epochs", "1", "--batch-size", "16", "--workers", "0", "--threads", "1",
                              "--out", run, "-q"], capsys)
    assert code == 0, err
    ev = tmp_path / "eval"
    code, out, err = run_cli(["eval", run, "--edc", "--out", ev, "--n-boot", "50", "--workers", "0",
                              "--threads", "1"], capsys)
    assert code == 0, err
    rep = json.loads((ev / "edc.json").read_text())
    assert set(rep["levels"]) == {"frame", "video"} and rep["max_discard"] == pytest.approx(0.8)
    ev_json = json.loads((ev / "eval.json").read_text())
    k = ev_json["overall"]["known"]
    assert rep["levels"]["frame"]["n"] == k["n_frames"] and rep["levels"]["video"]["n"] == k["n_videos"]
    # no discard: the plain error of the eval
    assert rep["levels"]["frame"]["quality"][0] == pytest.approx(1 - k["frame"]["accuracy"]["value"])
    assert rep["levels"]["video"]["quality"][0] == pytest.approx(1 - k["video"]["balanced_accuracy"]["value"])
    assert rep["levels"]["frame"]["area"]["ci"] is not None
    assert ev_json["files"]["edc_png"] == "edc.png" and (ev / "edc.png").read_bytes()[:4] == b"\x89PNG"
    assert "EDC (discarding up to 80% lowest quality)" in out
    assert "Error versus discard" in (ev / "eval.html").read_text() and "edc.png" in (ev / "eval.html").read_text()
    assert "Error versus discard" in (ev / "eval.md").read_text()
    # the audit report includes it (the curve re-plotted into the report), and refuses what is not one
    import dfkit.corpus
    from dfkit.errors import DfkitError
    from dfkit.quality.audit import build_report
    from dfkit.train.edc import edc_report_block, load_edc

    title, res = load_edc(ev)
    assert title == "eval" and res == rep
    html = build_report(dfkit.corpus.open(quality_corpus), tmp_path / "audit", n_thumbs=2,
                        edc_blocks=[edc_report_block(title, res)]).read_text()
    assert "Does quality matter to a model?" in html and "<h3>eval</h3>" in html and "area" in html
    assert "No curve given" in build_report(dfkit.corpus.open(quality_corpus), tmp_path / "audit0",
                                            n_thumbs=2).read_text()
    code, out, err = run_cli(["audit", "--corpus", quality_corpus, "--out", tmp_path / "audit2", "--no-leaks",
                              "--thumbs", "2", "--edc", ev], capsys)
    assert code == 0, err
    assert "<h3>eval</h3>" in (tmp_path / "audit2" / "index.html").read_text()
    code, out, err = run_cli(["audit", "--corpus", quality_corpus, "--out", tmp_path / "audit3", "--edc",
                              tmp_path / "nothing"], capsys)
    assert code == 2 and "--edc" in err and "no edc.json" in err and not (tmp_path / "audit3").exists()
    (tmp_path / "not.json").write_text("{]")
    for bad, why in [(tmp_path / "nothing", "no edc.json"), (tmp_path / "not.json", "not readable"),
                     (ev / "eval.json", "not an error-versus-discard")]:
        with pytest.raises(DfkitError, match=why):
            load_edc(bad)
    # bad input: one line, exit 2
    code, out, err = run_cli(["eval", run, "--edc", "--edc-max-discard", "1.5", "--out", ev], capsys)
    assert code == 2 and "--edc-max-discard" in err and "Traceback" not in err
    code, out, err = run_cli(["eval", run, "--edc", "--corpus", demo_corpus, "--out", tmp_path / "e2",
                              "--n-boot", "0", "--workers", "0"], capsys)
    assert code == 2 and "--edc needs quality scores" in err and "Traceback" not in err
