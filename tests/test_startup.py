"""Start-up of the ingest path: no torch on `dfkit ingest`'s import path, and a rerun that finds everything done
starts no worker pool and no detector."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FFPP = REPO.parent / "shared/realdata/ffpp_icpr2020dfdc"


def test_cli_import_does_not_load_torch():
    code = "import sys, dfkit.cli; print(sorted(m for m in ('torch', 'timm', 'fiftyone', 'mediapipe') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_refuse_distributed_without_torch(monkeypatch):
    from dfkit.errors import DfkitError
    from dfkit.train import launch

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(DfkitError, match="without torchrun"):
        launch.refuse_distributed("dfkit ingest")
    monkeypatch.setenv("WORLD_SIZE", "1")
    launch.refuse_distributed("dfkit ingest")  # one process: nothing to refuse


@pytest.mark.skipif(not FFPP.exists(), reason="no FF++ sample clips in ../shared")
def test_noop_rerun_starts_no_pool_and_no_detector(tmp_path, monkeypatch):
    from dfkit.ingest import engine, faces
    from dfkit.ingest.base import create_adapter

    corpus = tmp_path / "c"
    params = engine.IngestParams(frames=4)
    first = engine.run_ingest(create_adapter("ffpp", FFPP), corpus, params, workers=2, progress=False,
                              log=lambda m: None)
    assert first.processed == first.listed > 0

    def refuse(*a, **k):
        raise AssertionError("a rerun with nothing to do started work")

    monkeypatch.setattr(engine, "ProcessPoolExecutor", refuse)
    monkeypatch.setattr(faces, "FaceDetector", refuse)
    monkeypatch.setattr(engine, "_DETECTOR", None)
    again = engine.run_ingest(create_adapter("ffpp", FFPP), corpus, params, workers=2, progress=False,
                              log=lambda m: None)
    assert again.processed == 0 and again.skipped == first.listed

    # the whole command, as a user runs it: the rerun loads neither torch nor mediapipe
    code = ("import sys\nfrom dfkit.cli import main\n"
            f"sys.argv = ['dfkit', 'ingest', 'ffpp', {str(FFPP)!r}, '--corpus', {str(corpus)!r}, '-q']\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "print(sorted(m for m in ('torch', 'mediapipe') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout
