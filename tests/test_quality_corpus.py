"""`dfkit quality` and `dfkit audit` on real corpora: the demo's videos, and the real FF++ clips when present."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import dfkit.corpus
from dfkit.corpus.store import list_shards
from dfkit.demo.synth import make_demo_dataset
from dfkit.ingest.base import create_adapter
from dfkit.ingest.engine import IngestParams, run_ingest
from tests.conftest import REPO, need_realdata

DFKIT = [sys.executable, "-m", "dfkit.cli"]
ARTIFACTS = REPO / "test-artifacts"


def run(*args):
    return subprocess.run(DFKIT + [str(a) for a in args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A demo corpus at two levels: c0 (lossless) and c23, so both kinds of full-reference apply."""
    root = tmp_path_factory.mktemp("demo")
    make_demo_dataset(root / "data", n_identities=6, n_frames=12, compressions=("c0", "c23"), progress=False)
    out = root / "corpus"
    for c in ("c0", "c23"):
        run_ingest(create_adapter("demo", root / "data", compression=c), out, IngestParams(frames=4, size=96),
                   workers=2, progress=False, log=lambda m: None)
    r = run("quality", "--corpus", out, "--quiet")
    assert r.returncode == 0, r.stderr
    assert re.search(r"quality: (\d+) of \1 shards computed", r.stdout), r.stdout
    return out


def test_every_crop_gets_metrics_and_fakes_get_fullref(corpus):
    m = dfkit.corpus.open(corpus).metadata()
    assert m["quality"].notna().all() and m["quality"].between(0, 1).all()
    for col in ("q_sharpness", "q_noise", "q_blockiness", "q_exposure", "q_face_size", "q_pose", "q_jitter",
                "video_quality"):
        assert m[col].notna().any(), col
    fakes = m[m["label"] == "fake"]
    assert fakes["fr_ssim"].notna().all() and (fakes["fr_ssim"] < 1).all()
    assert m.loc[m["label"] == "real", "fr_ssim"].isna().all()
    # the c23 crops are compared with their c0 copy; c0 crops have no c0 reference
    c23 = m[m["compression"] == "c23"]
    assert c23["c0_ssim"].notna().mean() > 0.9 and m.loc[m["compression"] == "c0", "c0_ssim"].isna().all()
    # fr of a fake is against its original's crop on the same frame
    f = fakes.iloc[0]
    assert f["fr_ref_sample_id"] == f"demo/{f['pair_video_id']}/{f['frame_index']:06d}"


def test_rerun_is_a_noop_new_weights_only_recompose_and_resume(corpus):
    before = dfkit.corpus.open(corpus).metadata().set_index("sample_id")
    r = run("quality", "--corpus", corpus, "--quiet")
    assert "quality: 0 of" in r.stdout and "0 re-weighted" in r.stdout
    r = run("quality", "--corpus", corpus, "--quiet", "--weights", "sharpness=10,face_size=0")
    assert r.returncode == 0 and "quality: 0 of" in r.stdout and re.search(r"[1-9]\d* re-weighted", r.stdout)
    after = dfkit.corpus.open(corpus).metadata().set_index("sample_id")
    assert (after["q_sharpness_raw"] == before["q_sharpness_raw"]).all()  # raws untouched
    assert not (after["quality"] == before["quality"]).all()  # composite changed
    # back to defaults; then lose one quality shard: only that one is recomputed
    assert run("quality", "--corpus", corpus, "--quiet").returncode == 0
    q = list_shards(corpus, "quality")
    n = pq.read_metadata(q[0].path).num_rows
    q[0].path.unlink()
    r = run("quality", "--corpus", corpus, "--quiet")
    assert f"quality: 1 of {len(q)} shards computed ({n} crops" in r.stdout
    m = dfkit.corpus.open(corpus).metadata().set_index("sample_id")
    assert (m["quality"].round(5) == before["quality"].round(5)).all()


def test_min_quality_filters_exactly(corpus):
    c = dfkit.corpus.open(corpus)
    m = c.metadata()
    t = float(m["quality"].median())
    assert len(c.select(min_quality=t)) == int((m["quality"] >= t).sum())
    assert 0 < len(c.select(min_quality=t)) < len(m)


def test_bad_weights_are_one_line_errors(corpus):
    r = run("quality", "--corpus", corpus, "--weights", "sharpnes=2")
    assert r.returncode == 2 and "unknown metric 'sharpnes'" in r.stderr and "Traceback" not in r.stderr


def _chromium(*args: str) -> str:
    exe = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if os.path.exists(p)), None)
    if exe is None:
        pytest.skip("chromium is not installed (.ci/run installs Debian's chromium)")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
             f"--user-data-dir={ARTIFACTS / 'chromium-profile'}"]
    r = subprocess.run([exe, *flags, *args], capture_output=True, text=True, timeout=120)
    return r.stdout


def test_audit_report_renders_in_chromium(corpus, tmp_path):
    out = tmp_path / "report"
    r = run("audit", "--corpus", corpus, "--out", out)
    assert r.returncode == 0, r.stderr
    page = out / "index.html"
    for png in ("quality_by_group.png", "quality_vs_compression.png", "fullref_by_method.png",
                "metric_scores.png", "worst_crops.png", "best_crops.png"):
        assert (out / png).stat().st_size > 5000, png
    ARTIFACTS.mkdir(exist_ok=True)
    dom = _chromium("--virtual-time-budget=5000", "--dump-dom", page.as_uri())
    m = re.search(r'data-images-loaded="(\d+)/(\d+)"', dom)
    assert m, "the page's load script did not run"
    loaded, total = int(m.group(1)), int(m.group(2))
    assert total >= 6 and loaded == total, f"{loaded} of {total} images decoded by the browser"
    for heading in ("Quality distributions", "Full-reference change per method", "Worst crops", "Split leaks"):
        assert heading in dom
    shot = ARTIFACTS / "audit-report.png"
    _chromium("--window-size=1200,3000", f"--screenshot={shot}", page.as_uri())
    assert shot.exists() and shot.stat().st_size > 50_000
    print(f"screenshot: {shot}")


def test_real_ffpp_fullref_differs_by_method_and_report_shows_it(tmp_path):
    root = need_realdata("ffpp_icpr2020dfdc")
    out = tmp_path / "c"
    run_ingest(create_adapter("ffpp", root), out, IngestParams(frames=6, size=160), workers=2, progress=False,
               log=lambda m: None)
    assert run("quality", "--corpus", out, "--quiet").returncode == 0
    m = dfkit.corpus.open(out).metadata()
    fr = m[m["fr_ssim"].notna()].groupby("method")["fr_ssim"].median()
    assert set(fr.index) == {"Deepfakes", "FaceSwap", "NeuralTextures"}  # Face2Face's original is absent
    assert fr.max() - fr.min() > 0.01 and (fr < 0.99).all()
    r = run("audit", "--corpus", out, "--out", tmp_path / "rep", "--no-leaks")
    assert r.returncode == 0, r.stderr
    page = (tmp_path / "rep" / "index.html").read_text()
    section = page.split("Full-reference change per method")[1].split("<h2>")[0]
    for method in fr.index:
        assert method in section
