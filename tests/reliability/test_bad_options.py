"""Impossible option values are refused before anything is written: exit 2, one line naming the option and its range
(issue 13: ``--margin -1`` used to write solid-colour crops marked ok, ``--frames 0`` failed every video at the wrong
stage, ``--size 0`` raised an OpenCV assertion, ``--frames -3`` and ``--workers 0`` were accepted)."""

from __future__ import annotations

import pytest

from dfkit.ingest.engine import IngestParams
from tests.test_train_cli import run_cli


@pytest.mark.parametrize("args, option", [
    (["--margin", "-1"], "--margin"), (["--margin", "0.5"], "--margin"), (["--frames", "0"], "--frames"),
    (["--frames", "-3"], "--frames"), (["--size", "0"], "--size"), (["--size", "100000"], "--size"),
    (["--workers", "0"], "--workers"), (["--encoding", "gif"], "--encoding"),
    (["--min-confidence", "0"], "--min-confidence"), (["--min-confidence", "1.5"], "--min-confidence")])
def test_ingest_refuses_impossible_values_before_writing(tmp_path, capsys, args, option):
    data = tmp_path / "data"
    data.mkdir()
    corpus = tmp_path / "corpus"
    code, out, err = run_cli(["ingest", "folder", data, "--corpus", corpus, *args], capsys)
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code == 2, err
    assert len(lines) == 1 and option in lines[0] and "Traceback" not in err, err
    assert not corpus.exists()


def test_ingest_params_ranges_hold_in_the_library_too():
    from dfkit.errors import SettingsError

    assert IngestParams(frames=4.0).frames == 4 and isinstance(IngestParams(frames=4.0).frames, int)
    for kw in ({"frames": True}, {"frames": 2.5}, {"margin": float("nan")}, {"size": "256"}):
        with pytest.raises(SettingsError):
            IngestParams(**kw)
    assert IngestParams() == IngestParams(frames=32, size=256, margin=1.3, encoding="png", min_confidence=0.5)
