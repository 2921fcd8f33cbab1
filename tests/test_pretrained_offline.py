"""``--pretrained`` without the internet: one line naming ``--weights PATH`` within seconds (timm's own retries took
~50 s), weights already in the local cache still used, and the reachability check's own bounds. Offline by
construction: the hub endpoint / proxy is a closed loopback port, the caches are empty temporary folders."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.test_train_cli import demo_corpus  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parents[1]


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released): connecting is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def offline_env(tmp: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k.upper() not in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "HF_HUB_OFFLINE",
                                "TRANSFORMERS_OFFLINE", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE")}
    env.update(HF_ENDPOINT=f"http://127.0.0.1:{port}", HF_HOME=str(tmp / "hf"), TORCH_HOME=str(tmp / "torch"),
               FIFTYONE_DO_NOT_TRACK="true")
    return env


def _train_pretrained(backbone: str, corpus: Path, tmp: Path, port: int) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "dfkit", "train", "--corpus", str(corpus), "--backbone", backbone,
                        "--pretrained", "--img-size", "32", "--epochs", "1", "--workers", "0",
                        "--out", str(tmp / f"run-{backbone}"), "-q"], cwd=ROOT, env=offline_env(tmp, port),
                       capture_output=True, text=True, timeout=120)
    return p, time.monotonic() - t0


def test_train_pretrained_offline_fails_fast_naming_the_weights_flag(demo_corpus, tmp_path):
    from dfkit.train.backbones.registry import REACH_TIMEOUT_S

    port = closed_port()
    # the same command up to the same point without any network: tiny has no pretrained weights (its own line)
    base_p, base = _train_pretrained("tiny", demo_corpus, tmp_path, port)
    assert base_p.returncode == 2 and "--weights PATH" in base_p.stderr and "--scratch" in base_p.stderr
    p, took = _train_pretrained("efficientnet_b0", demo_corpus, tmp_path, port)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr  # no retry chatter, no traceback
    line = lines[0]
    assert line.startswith("dfkit: error: backbone efficientnet_b0: ")
    assert "--weights PATH" in line and "--scratch" in line and f"127.0.0.1:{port}" in line
    assert "weights=PATH" not in line and "pretrained=False" not in line and "pretrained=True" not in line
    # < 10 s (4.8 s on this 2-core machine; timm's retries took 51 s); on a machine so loaded that starting
    # python and torch alone takes longer, the network part may still add at most the one bounded attempt
    assert took < max(10.0, base + REACH_TIMEOUT_S + 3), f"{took:.1f} s (tiny, no network: {base:.1f} s)"
    assert not list((tmp_path / "run-efficientnet_b0").glob("*.safetensors"))


def test_url_weights_behind_an_unreachable_proxy(tmp_path, monkeypatch):
    """legacy_xception's weights come from a URL (not the hub): the check goes to the https proxy when one is set."""
    from dfkit.train.backbones import create_backbone
    from dfkit.train.backbones.registry import PretrainedWeightsError

    port = closed_port()
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    t0 = time.monotonic()
    with pytest.raises(PretrainedWeightsError) as e:
        create_backbone("legacy_xception", num_classes=2, pretrained=True, img_size=71)
    assert time.monotonic() - t0 < 10
    msg = str(e.value)
    assert f"through the proxy 127.0.0.1:{port}" in msg and "--weights PATH" in msg and "\n" not in msg


def _fake_hub_cache(cache: Path) -> dict[str, torch.Tensor]:
    """efficientnet_b0's default weights as timm would find them in the hub cache (random values, 1000 classes)."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(123)
    sd = {k: v.contiguous() for k, v in timm.create_model("efficientnet_b0", num_classes=1000).state_dict().items()}
    repo = cache / "models--timm--efficientnet_b0.ra_in1k"
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    save_file(sd, str(repo / "snapshots" / commit / "model.safetensors"))
    return sd


@pytest.mark.parametrize("how", ["unreachable", "HF_HUB_OFFLINE"])
def test_cached_weights_are_used_offline(tmp_path, monkeypatch, how):
    from huggingface_hub import constants

    from dfkit.train.backbones import create_backbone

    sd = _fake_hub_cache(tmp_path / "hub")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    if how == "unreachable":
        monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    else:  # offline mode: not even the one connection attempt
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)

        def no_network(*a, **k):
            raise AssertionError("no connection may be tried with HF_HUB_OFFLINE")

        monkeypatch.setattr(socket, "create_connection", no_network)
    m = create_backbone("efficientnet_b0", num_classes=2, pretrained=True, img_size=32)
    assert m.weights_source == "timm-pretrained"
    own = m.features.state_dict()
    assert torch.equal(own["conv_stem.weight"], sd["conv_stem.weight"])
    assert torch.equal(own["blocks.6.0.conv_pwl.weight"], sd["blocks.6.0.conv_pwl.weight"])


def test_reachability_is_one_bounded_attempt(monkeypatch):
    from dfkit.train.backbones.registry import unreachable

    for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(k, raising=False)
    with socket.socket() as srv:  # a listening port answers
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        assert unreachable(f"http://127.0.0.1:{srv.getsockname()[1]}/x", timeout=2) is None
    port = closed_port()
    why = unreachable(f"http://127.0.0.1:{port}", timeout=2)
    assert why.startswith(f"127.0.0.1:{port} cannot be reached")
    calls = []

    def hangs(*a, **k):  # a name lookup or a SYN that never returns
        calls.append(a)
        time.sleep(3)
        raise OSError("too late")

    monkeypatch.setattr(socket, "create_connection", hangs)
    t0 = time.monotonic()
    why = unreachable("https://huggingface.co", timeout=0.3)
    assert time.monotonic() - t0 < 1.5 and why == "huggingface.co:443 did not answer within 0.3 s"
    assert len(calls) == 1
