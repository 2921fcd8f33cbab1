"""``dfkit experiment quality-sweep`` (equal training size, low-quality arm, table + plot) and ``cross-dataset``."""

from __future__ import annotations

import json

import dfkit.corpus
from tests.test_train_cli import demo_corpus, one_thread, quality_corpus, run_cli  # noqa: F401 - fixtures


def test_quality_sweep_holds_training_size_equal(quality_corpus, demo_corpus, tmp_path, capsys):
    out = tmp_path / "sweep"
    args = ["experiment", "quality-sweep", "--corpus", quality_corpus, "--backbone", "tiny", "--img-size", "32",
            "--epochs", "1", "--batch-size", "16", "--thresholds", "0,0.6", "--seeds", "0", "--n-boot", "50",
            "--workers", "0", "--threads", "1", "--out", out]
    code, stdout, err = run_cli(args, capsys)
    assert code == 0, err
    rep = json.loads((out / "sweep.json").read_text())
    arms = [a["name"] for a in rep["arms"]]
    assert arms == ["q>=0", "q>=0.6", "q<0.6 (low only)"]
    meta = dfkit.corpus.open(quality_corpus).metadata()
    train = meta[meta["split"] == "train"]
    pools = {"q>=0": train, "q>=0.6": train[train["quality"] >= 0.6], "q<0.6 (low only)": train[train["quality"] < 0.6]}
    for a in rep["arms"]:
        assert a["pool_frames"] == len(pools[a["name"]])
    # every arm trains on the same number of crops per class: the smallest arm's
    from dfkit.train.data import target_names

    expect = {}
    for name, pool in pools.items():
        for c, n in target_names("attribution", pool).value_counts().items():
            expect[c] = min(expect.get(c, 10 ** 9), int(n))
    assert rep["per_class"] == expect
    assert {r["train_frames"] for r in rep["runs"]} == {sum(expect.values())}
    assert len(rep["runs"]) == 3 and all(r["value"] is not None and r["ci"] for r in rep["runs"])
    low = [r for r in rep["runs"] if r["arm"].startswith("q<")][0]
    high = [r for r in rep["runs"] if r["arm"] == "q>=0.6"][0]
    assert low["train_mean_quality"] < 0.6 <= high["train_mean_quality"]
    assert (out / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    assert "| q<0.6 (low only) |" in (out / "sweep.md").read_text()
    assert "q>=0.6" in stdout and "sweep.md" in stdout
    # a rerun reuses the arms
    code, stdout, err = run_cli(args, capsys)
    assert code == 0 and stdout.count("reused") == 3
    # without quality scores: a one-line error
    code, stdout, err = run_cli(["experiment", "quality-sweep", "--corpus", demo_corpus, "--backbone", "tiny",
                                 "--out", tmp_path / "x"], capsys)
    assert code == 2 and "no quality scores yet" in err and "Traceback" not in err


def test_cross_dataset_matrix(demo_corpus, tmp_path, capsys):
    out = tmp_path / "xd"
    args = ["experiment", "cross-dataset", "--corpus", demo_corpus, "--backbone", "tiny", "--img-size", "32",
            "--epochs", "1", "--n-boot", "50", "--workers", "0", "--threads", "1", "--out", out]
    code, stdout, err = run_cli(args, capsys)
    assert code == 0, err
    rep = json.loads((out / "cross_dataset.json").read_text())
    assert rep["datasets"] == ["demo"] and rep["tasks"] == ["binary", "attribution"]
    for task in rep["tasks"]:
        m = rep["matrix"][task]
        assert len(m) == 1 and len(m[0]) == 1 and m[0][0]["value"] is not None and m[0][0]["ci"]
    assert (out / "cross_dataset.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "binary" / "demo" / "eval_demo" / "eval.json").exists()
    # the shortcut is a study (task x each dataset): its folder is a study folder, and a rerun retrains nothing
    best = (out / "binary" / "demo" / "best.safetensors").stat().st_mtime_ns
    code, stdout, err = run_cli(args, capsys)
    assert code == 0 and stdout.count("skipped") == 2, stdout
    assert (out / "binary" / "demo" / "best.safetensors").stat().st_mtime_ns == best
    idx = json.loads((out / "study.json").read_text())
    assert sorted(c["labels"]["task"] for c in idx["cells"]) == ["attribution", "binary"]
    # with other settings the cells are trained again
    code, stdout, err = run_cli(args[:-2] + ["--lr", "0.002", "--out", out], capsys)
    assert code == 0 and "skipped" not in stdout
    assert (out / "binary" / "demo" / "best.safetensors").stat().st_mtime_ns != best
