"""The command line as a user meets it: help everywhere, one-line errors with exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

DFKIT = [sys.executable, "-m", "dfkit.cli"]


def run(*args, env=None, cwd=None):
    return subprocess.run(DFKIT + list(map(str, args)), capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})})


def commands() -> list[list[str]]:
    from typer.main import get_command

    from dfkit.cli import app

    root = get_command(app)
    out = []
    for name, cmd in root.commands.items():
        out.append([name])
        for sub in getattr(cmd, "commands", {}) or {}:
            out.append([name, sub])
    return out


def test_every_command_explains_itself():
    r = run("--help")
    assert r.returncode == 0 and "ingest" in r.stdout and "quality" in r.stdout
    cmds = commands()
    assert {"ingest", "info", "datasets", "demo", "quality", "audit", "splits"} <= {c[0] for c in cmds}
    for c in cmds:
        r = run(*c, "--help")
        assert r.returncode == 0, (c, r.stderr)
        assert "Usage:" in r.stdout and len(r.stdout) > 200, c
        # an on/off flag is shown as a flag, not as an option taking a <bool> value
        assert "<bool>" not in r.stdout, (c, [ln for ln in r.stdout.splitlines() if "<bool>" in ln])


def test_flags_show_no_value_but_options_keep_their_type():
    r = run("ingest", "--help", env={"COLUMNS": "200"})
    rows = {ln.split()[1]: ln for ln in r.stdout.splitlines() if ln.startswith("│ --")}
    assert "<int>" in rows["--limit"] and "<float>" in rows["--margin"]
    assert "<" not in rows["--retry-failed"].split("Try")[0] and "<" not in rows["--quiet"].split("No progress")[0]


def test_version_is_the_installed_one():
    from importlib.metadata import version

    r = run("--version")
    assert r.returncode == 0 and r.stdout.startswith(f"dfkit {version('dfkit')} (Python "), r
    import dfkit

    assert version("dfkit") == dfkit.__version__  # spelled once (pyproject reads it from dfkit/__init__.py)


@pytest.mark.parametrize("args, message", [
    (["ingest", "nosuchset", "/tmp"], "unknown dataset 'nosuchset'"),
    (["ingest", "ffpp", "/no/such/root"], "dataset root /no/such/root does not exist"),
    (["ingest", "ffpp", "/tmp", "--encoding", "gif"], "unknown crop encoding 'gif'"),
    (["ingest", "ffpp", "/tmp", "--opt", "nokey"], "--opt expects KEY=VALUE"),
    (["info", "--corpus", "/no/such/corpus"], "no corpus at /no/such/corpus"),
])
def test_bad_input_is_one_line_and_exit_code_2(args, message):
    r = run(*args)
    assert r.returncode == 2, r
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_roots_and_corpus_from_environment_and_config(tmp_path):
    r = run("ingest", "ffpp", env={"DFKIT_ROOT_FFPP": str(tmp_path / "x")})
    assert r.returncode == 2 and f"dataset root {tmp_path / 'x'} does not exist" in r.stderr
    (tmp_path / "dfkit.yaml").write_text(f"corpus: {tmp_path / 'c'}\nroots:\n  ffpp: {tmp_path / 'y'}\n")
    r = run("ingest", "ffpp", cwd=tmp_path)
    assert r.returncode == 2 and f"dataset root {tmp_path / 'y'} does not exist" in r.stderr
    r = run("info", cwd=tmp_path)
    assert f"no corpus at {tmp_path / 'c'}" in r.stderr
    r = run("ingest", "ffpp", cwd="/")
    assert "no root given for ffpp: pass ROOT, set DFKIT_ROOT_FFPP" in r.stderr


def test_rerun_that_skips_failed_videos_names_retry_failed(tmp_path, face_video):
    import shutil

    root = tmp_path / "root" / "real"
    root.mkdir(parents=True)
    shutil.copy(face_video, root / "good.mp4")
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video")
    corpus = tmp_path / "corpus"
    first = run("ingest", "folder", tmp_path / "root", "--corpus", corpus, "--workers", "1", "-q")
    assert first.returncode == 0 and "failed 1" in first.stdout and "--retry-failed" not in first.stdout, first
    again = run("ingest", "folder", tmp_path / "root", "--corpus", corpus, "--workers", "1", "-q")
    assert "2 already in the corpus, 0 processed" in again.stdout, again.stdout
    hint = [ln for ln in again.stdout.splitlines() if "--retry-failed" in ln]
    assert len(hint) == 1 and hint[0].strip().startswith("1 folder videos"), again.stdout
    retry = run("ingest", "folder", tmp_path / "root", "--corpus", corpus, "--workers", "1", "-q", "--retry-failed")
    assert "1 processed" in retry.stdout and "add --retry-failed" not in retry.stdout, retry.stdout
