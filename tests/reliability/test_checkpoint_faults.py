"""Damaged training files are one line, never a traceback (issue 13): a truncated or mismatched checkpoint on
``dfkit train --resume`` is refused naming the file and the problem (exit 2) and leaves the run folder as it was,
byte for byte; a ``--weights`` file that needs pickle, is not a state dict or does not fit is refused the same way."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

import pytest
import torch

from tests.test_train_cli import demo_corpus, run_cli  # noqa: F401 - fixture

BASE = ["--backbone", "tiny", "--img-size", "32", "--batch-size", "32", "--workers", "0", "--threads", "1", "-q"]


@pytest.fixture(scope="module")
def trained(demo_corpus, tmp_path_factory) -> Path:  # noqa: F811
    from dfkit.cli import main  # noqa: F401 - imported here so the fixture fails loudly if the CLI breaks
    import subprocess
    import sys

    run = tmp_path_factory.mktemp("ck") / "run"
    r = subprocess.run([sys.executable, "-m", "dfkit.cli", "train", "--corpus", str(demo_corpus), "--out", str(run),
                        "--epochs", "1", "--task", "attribution", *BASE], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return run


def _snapshot(run: Path) -> dict[str, str]:
    return {str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run.rglob("*")) if p.is_file()}


def _copy(run: Path, tmp_path: Path) -> Path:
    import shutil

    dst = tmp_path / "run"
    shutil.copytree(run, dst)
    return dst


def _resume(run: Path, capsys, *extra: str):
    return run_cli(["train", "--out", run, "--resume", "--epochs", "2", *extra, "-q"], capsys)


@pytest.mark.parametrize("damage,needle", [
    ("truncate-safetensors", "last.safetensors"),
    ("truncate-json", "last.json"),
    ("garbage-safetensors", "last.safetensors"),
    ("delete-safetensors", "last.safetensors"),
])
def test_a_damaged_checkpoint_on_resume_is_one_line_and_changes_nothing(trained, tmp_path, capsys, damage, needle):
    run = _copy(trained, tmp_path)
    st, js = run / "last.safetensors", run / "last.json"
    if damage == "truncate-safetensors":
        st.write_bytes(st.read_bytes()[: st.stat().st_size // 2])
    elif damage == "truncate-json":
        js.write_bytes(js.read_bytes()[: js.stat().st_size // 2])
    elif damage == "garbage-safetensors":
        st.write_bytes(os.urandom(4096))
    else:
        st.unlink()
    before = _snapshot(run)
    code, out, err = _resume(run, capsys)
    assert code == 2, (out, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert needle in err and "dfkit: error:" in err
    assert _snapshot(run) == before, "the run folder changed"


def test_a_checkpoint_of_another_class_count_is_refused_and_changes_nothing(trained, tmp_path, capsys):
    """A ``last`` checkpoint whose model has another head (another run's, copied in) is refused."""
    from dfkit.train.backbones import create_backbone
    from dfkit.train.checkpoint import read_checkpoint_meta, save_checkpoint

    run = _copy(trained, tmp_path)
    doc = read_checkpoint_meta(run / "last")
    m = create_backbone("tiny", num_classes=17, img_size=32)
    meta = dict(doc["meta"])
    meta["model"] = {**meta.get("model", {}), "backbone": "tiny", "num_classes": 17}
    save_checkpoint(run / "last", model=m, meta=meta)
    before = _snapshot(run)
    code, out, err = _resume(run, capsys)
    assert code == 2, (out, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "last.safetensors" in err and ("17" in err or "shape" in err or "classes" in err), err
    assert _snapshot(run) == before


def test_resume_with_another_backbone_is_refused_and_changes_nothing(trained, tmp_path, capsys):
    run = _copy(trained, tmp_path)
    before = _snapshot(run)
    code, out, err = _resume(run, capsys, "--backbone", "efficientnet_b0")
    assert code == 2, (out, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "last" in err
    assert _snapshot(run) == before


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/dfkit-pwned",))


@pytest.mark.parametrize("kind,needle", [
    ("pickle", "pickle"),
    ("not-a-dict", "state dict"),
    ("shapes", "no tensor matches"),
    ("garbage", "weights"),
])
def test_bad_weights_are_one_line_exit_2(demo_corpus, tmp_path, capsys, kind, needle):  # noqa: F811
    path = tmp_path / "w.pth"
    if kind == "pickle":
        with open(path, "wb") as f:
            pickle.dump({"state_dict": _Evil()}, f)
    elif kind == "not-a-dict":
        torch.save([torch.zeros(3)], path)
    elif kind == "shapes":
        torch.save({"features.0.weight": torch.zeros(1, 1, 1, 1)}, path)
    else:
        path.write_bytes(os.urandom(1000))
    out_dir = tmp_path / "r"
    code, out, err = run_cli(["train", "--corpus", demo_corpus, "--out", out_dir, "--epochs", "1",
                              "--weights", path, *BASE], capsys)
    assert code == 2, (out, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert str(path) in err and needle in err, err
    assert not Path("/tmp/dfkit-pwned").exists()
