"""Impossible option values are refused before anything is written: exit 2, one line naming the option and its range
(issue 13: ``--margin -1`` used to write solid-colour crops marked ok, ``--frames 0`` failed every video at the wrong
stage, ``--size 0`` raised an OpenCV assertion, ``--frames -3`` and ``--workers 0`` were accepted)."""

from __future__ import annotations

import pytest

from dfkit.ingest.engine import IngestParams
from tests.conftest import face_video  # noqa: F401 - fixture
from tests.test_train_cli import demo_corpus, one_thread, quality_corpus, run_cli  # noqa: F401 - fixtures


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


@pytest.mark.parametrize("command", ["ingest", "audit", "train", "eval", "demo", "quality-calibrate"])
def test_an_output_folder_that_cannot_be_made_is_one_line(tmp_path, capsys, command, face_video, quality_corpus):
    """Good inputs, an output path under a file (as /proc/x): one line naming the path, exit 2, no traceback."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    bad = blocker / "sub"
    data = tmp_path / "data"
    (data / "real").mkdir(parents=True)
    (data / "real" / "v.mp4").write_bytes(face_video.read_bytes())
    run = tmp_path / "run"
    if command == "eval":
        code, _, err = run_cli(["train", "--corpus", quality_corpus, "--backbone", "tiny", "--img-size", "32",
                                "--epochs", "1", "--batch-size", "16", "--workers", "0", "--threads", "1", "--out",
                                run, "-q"], capsys)
        assert code == 0, err
    args = {"ingest": ["ingest", "folder", data, "--corpus", bad, "--frames", "2", "--workers", "1"],
            "audit": ["audit", "--corpus", quality_corpus, "--out", bad, "--no-leaks", "--thumbs", "2"],
            "train": ["train", "--corpus", quality_corpus, "--backbone", "tiny", "--img-size", "32", "--epochs", "1",
                      "--workers", "0", "--threads", "1", "--out", bad],
            "eval": ["eval", run, "--out", bad, "--workers", "0", "--threads", "1", "--n-boot", "0"],
            "demo": ["demo", "--out", bad, "--quick"],
            "quality-calibrate": ["quality", "calibrate", "--videos", data, "--per-video", "1", "--kinds", "defocus",
                                  "--out", bad]}[command]
    code, out, err = run_cli(args, capsys)
    lines = [ln for ln in err.strip().splitlines() if ln.strip() and not ln.startswith(("  ", "calibrate"))]
    assert code == 2 and "Traceback" not in err, err
    assert len(lines) == 1 and str(bad) in lines[0], lines


def test_control_characters_in_messages_cannot_forge_lines():
    from dfkit.errors import one_line, os_error_line

    assert one_line("a\nb\rc\td\x1b[31m") == "a\\nb\\rc\\td\\x1b[31m"
    e = FileNotFoundError(2, "No such file or directory", "/x/evil\nfake line")
    assert "\n" not in os_error_line(e) and "evil\\nfake line" in os_error_line(e)
