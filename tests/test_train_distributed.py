"""Data-parallel training under torchrun (gloo on the CPU): sharded sampling, gradient averaging, gathered SupCon
embeddings and validation, rank-0-only run folders."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from dfkit.train.sampler import ClassBalancedSampler, ShuffleSampler
from tests.test_train_cli import demo_corpus  # noqa: F401 - the shared session fixture

HERE = Path(__file__).parent
TORCHRUN = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
needs_torchrun = pytest.mark.skipif(TORCHRUN is None, reason="torchrun is not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(HERE) + os.pathsep + env.get("PYTHONPATH", ""))
    return env


def _torchrun(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    cmd = [TORCHRUN, "--nproc_per_node=2", "--master_addr=127.0.0.1", f"--master_port={_free_port()}", *args]
    return subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)


# ----------------------------------------------------------------------------------------------------------------------
# sharded samplers

@pytest.mark.parametrize("make", [
    lambda world, rank: ClassBalancedSampler([0] * 30 + [1] * 7 + [2] * 13, num_samples=45, seed=5,
                                             num_replicas=world, rank=rank),
    lambda world, rank: ShuffleSampler(50, num_samples=45, seed=5, num_replicas=world, rank=rank),
], ids=["balanced", "shuffle"])
def test_shards_interleave_into_the_single_process_order(make):
    single = make(1, 0)
    for epoch in (0, 3):
        single.set_epoch(epoch)
        order = list(single)
        assert len(order) == 45
        for world in (2, 3, 4):
            shards = []
            for r in range(world):
                s = make(world, r)
                s.set_epoch(epoch)
                shards.append(list(s))
                assert len(shards[-1]) == len(s) == -(-45 // world)  # equal shares (padded to a multiple)
            # position i of rank r is global position i * world + r: batches of B per rank together form the
            # single process's batch of world * B
            merged = [shards[i % world][i // world] for i in range(45)]
            assert merged == order
    a, b = make(1, 0), make(1, 0)
    b.set_epoch(1)
    assert list(a) != list(b)  # each epoch draws anew


def test_shuffle_sampler_covers_every_index_once_per_pass():
    s = ShuffleSampler(20, num_samples=50, seed=0)
    idx = list(s)
    assert sorted(idx[:20]) == list(range(20)) and sorted(idx[20:40]) == list(range(20))
    with pytest.raises(ValueError):
        ShuffleSampler(10, num_replicas=2, rank=2)


# ----------------------------------------------------------------------------------------------------------------------
# two processes with batch B == one process with batch 2B

def _params(path: Path) -> dict[str, np.ndarray]:
    t = load_file(str(path))
    return {k: v.float().numpy() for k, v in t.items() if k.split(".")[0] in ("model", "projection")}


def _mean_abs_diff(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    return float(np.concatenate([np.abs(a[k] - b[k]).ravel() for k in a]).mean())


@needs_torchrun
@pytest.mark.parametrize("mode", ["ce", "joint", "probe"])
def test_two_processes_train_exactly_like_one_with_twice_the_batch(demo_corpus, tmp_path, mode):  # noqa: F811
    job = str(HERE / "ddp_job.py")
    r = _torchrun([job, str(demo_corpus), str(tmp_path / "ddp"), mode, "8"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    r1 = subprocess.run([sys.executable, job, str(demo_corpus), str(tmp_path / "one"), mode, "16"], cwd=tmp_path,
                        env=_env(), capture_output=True, text=True, timeout=300)
    assert r1.returncode == 0, r1.stderr[-3000:]
    r2 = subprocess.run([sys.executable, job, str(demo_corpus), str(tmp_path / "one8"), mode, "8"], cwd=tmp_path,
                        env=_env(), capture_output=True, text=True, timeout=300) if mode == "ce" else None

    info = json.loads((tmp_path / "ddp" / "job.json").read_text())
    assert info == {"world": 2, "checkpoint_is_model": True, "epochs_done": 3 if mode == "probe" else 2}
    ddp, one = _params(tmp_path / "ddp" / "last.safetensors"), _params(tmp_path / "one" / "last.safetensors")
    assert set(ddp) == set(one) and len(ddp) >= (10 if mode != "ce" else 6)
    # float summation order differs, and Adam enlarges that a little where gradients are ~0: the weights agree to
    # ~1e-8 on average (seen up to ~1e-6 on a busy machine), while a real difference in the batches (the control
    # below: one process with batch 8) moves them by ~4e-3 on average
    for k in ddp:
        np.testing.assert_allclose(ddp[k], one[k], atol=1e-3, rtol=1e-3, err_msg=k)
    assert _mean_abs_diff(ddp, one) < 2e-5
    h_ddp = json.loads((tmp_path / "ddp" / "history.json").read_text())
    h_one = json.loads((tmp_path / "one" / "history.json").read_text())
    for a, b in zip(h_ddp, h_one, strict=True):
        assert a["samples"] == b["samples"] == 96  # the epoch statistics are summed over the processes
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert (a.get("val") is None) == (b.get("val") is None)
        if a.get("val"):  # validation was sharded and gathered: the same metrics
            assert a["val"]["video"] == pytest.approx(b["val"]["video"], rel=1e-5)
            assert a["val"]["frame"]["accuracy"] == pytest.approx(b["val"]["frame"]["accuracy"])
    if r2 is not None:  # the comparison can fail: the batch really matters to the result
        assert r2.returncode == 0, r2.stderr[-3000:]
        other = _params(tmp_path / "one8" / "last.safetensors")
        assert _mean_abs_diff(other, one) > 1e-3


# ----------------------------------------------------------------------------------------------------------------------
# the command line

@needs_torchrun
def test_torchrun_dfkit_train_writes_one_run_and_resumes(demo_corpus, tmp_path):  # noqa: F811
    run = tmp_path / "run"
    base = ["-m", "dfkit", "train", "--corpus", str(demo_corpus), "--backbone", "tiny", "--img-size", "32",
            "--batch-size", "8", "--device", "cpu", "--workers", "1", "--out", str(run)]
    r = _torchrun(base + ["--epochs", "1"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout + r.stderr
    assert out.count("data: attribution") == 1  # rank 0 alone speaks
    assert "data-parallel: 2 processes on cpu, batch 8 per process (16 per step)" in out
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["world_size"] == 2 and cfg["global_batch_size"] == 16 and cfg["device_used"] == "cpu"
    meta = json.loads((run / "last.json").read_text())["meta"]
    assert meta["world_size"] == 2 and meta["epoch"] == 1
    hist = json.loads((run / "history.json").read_text())
    n_train = cfg["counts"]["train"]["frames"]
    assert hist[0]["samples"] == n_train // 16 * 16  # both shards counted, last incomplete batches dropped

    r = _torchrun(base + ["--epochs", "2", "--resume"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resuming" in r.stdout and "after epoch 1" in r.stdout
    hist = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2]

    # the run is an ordinary run: dfkit eval reads it in one process
    r = subprocess.run([sys.executable, "-m", "dfkit", "eval", str(run), "--n-boot", "20", "--workers", "0",
                        "--device", "cpu"], cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    rep = json.loads(next(run.glob("eval_*_test/eval.json")).read_text())
    assert rep["overall"]["known"]["frame"]["accuracy"]["value"] is not None


@needs_torchrun
def test_batchnorm_statistics_are_one_model_after_every_epoch(demo_corpus, tmp_path):  # noqa: F811
    r = _torchrun([str(HERE / "ddp_job.py"), str(demo_corpus), str(tmp_path / "bn"), "bn", "8"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    digests = [json.loads((tmp_path / "bn" / f"rank{i}.json").read_text())["digest"] for i in (0, 1)]
    assert digests[0] == digests[1]  # running means/variances averaged: both processes hold the same model
    assert json.loads((tmp_path / "bn" / "job.json").read_text())["checkpoint_is_model"] is True
    running = _params(tmp_path / "bn" / "last.safetensors")
    assert any("running_mean" in k for k in running)


def test_other_commands_refuse_torchrun(demo_corpus, tmp_path):  # noqa: F811
    env = {**_env(), "WORLD_SIZE": "2", "RANK": "1"}
    r = subprocess.run([sys.executable, "-m", "dfkit", "info", "--corpus", str(demo_corpus)], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip() == ("dfkit: error: dfkit info runs in one process; start it without torchrun (only "
                                "`dfkit train` is data-parallel)")
    assert "Traceback" not in r.stderr
