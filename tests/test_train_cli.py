"""``dfkit train`` end to end on a small demo corpus: data selection, quality filter, identity split, learning,
resume, CLI errors. The corpus is built once per session (:func:`demo_corpus`, shared with test_eval/test_experiment).
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from dfkit.errors import DfkitError

FAST = dict(task="attribution", backbone="tiny", img_size=32, batch_size=32, lr=3e-3, workers=0, threads=1,
            progress=False)


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _build(root: Path) -> Path:
    from dfkit.demo.synth import make_demo_dataset
    from dfkit.ingest.base import create_adapter
    from dfkit.ingest.engine import IngestParams, run_ingest

    # clean capture (no degraded identities): the learning test then needs only a few seconds of training
    make_demo_dataset(root / "data", n_identities=6, n_frames=16, compressions=("c23", "c40"), progress=False,
                      degrade=False)
    for c in ("c23", "c40"):
        run_ingest(create_adapter("demo", root / "data", compression=c), root / "corpus",
                   IngestParams(frames=8, size=128), workers=2, progress=False, log=lambda m: None)
    return root / "corpus"


def write_quality(corpus: Path, seed: int = 0) -> pd.DataFrame:
    """A test-only quality shard: deterministic pseudo-random ``quality`` per crop (+ a ``q_*`` column)."""
    import dfkit.corpus

    meta = dfkit.corpus.open(corpus).metadata()
    rng = np.random.default_rng(seed)
    q = rng.uniform(0.3, 0.95, len(meta)).astype(np.float32)
    t = pa.table({"sample_id": meta["sample_id"].astype(str).tolist(), "quality": q,
                  "q_sharpness": rng.uniform(0, 1, len(meta)).astype(np.float32)})
    (corpus / "quality").mkdir(exist_ok=True)
    pq.write_table(t, corpus / "quality" / f"part-000001-{secrets.token_hex(4)}.parquet")
    return meta.assign(quality=q)


# Built once per session at a fixed place under the session's temporary folder (a marker file says it is complete),
# so test modules importing these fixtures share it.
@pytest.fixture(scope="session")
def demo_corpus(tmp_path_factory) -> Path:
    """The demo corpus without quality scores (6 identities, 2 compressions, 8 crops of 128 px per video)."""
    root = tmp_path_factory.getbasetemp() / "dfkit-train-demo"
    if not (root / "done").exists():
        shutil.rmtree(root, ignore_errors=True)
        _build(root)
        (root / "done").write_text("ok")
    return root / "corpus"


@pytest.fixture(scope="session")
def quality_corpus(demo_corpus, tmp_path_factory) -> Path:
    """A copy of the demo corpus with a (test-only) quality shard."""
    root = tmp_path_factory.getbasetemp() / "dfkit-train-demo-q"
    if not (root / "done").exists():
        shutil.rmtree(root, ignore_errors=True)
        shutil.copytree(demo_corpus, root / "corpus")
        write_quality(root / "corpus")
        (root / "done").write_text("ok")
    return root / "corpus"


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    """``dfkit ARGS`` in-process through the real entry point (``dfkit.cli.main``)."""
    from dfkit.cli import main

    old = sys.argv
    sys.argv = ["dfkit"] + [str(a) for a in args]
    try:
        main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = old
    out = capsys.readouterr()
    return code, out.out, out.err


# ----------------------------------------------------------------------------------------------------------------------
# data selection

def test_selection_classes_targets_and_video_keys(demo_corpus):
    from dfkit.train.data import select_data

    sel = select_data(demo_corpus, task="attribution")
    assert sel.class_names == ["real", "demo_checkerboard", "demo_landmark_warp", "demo_poisson_swap",
                               "demo_texture_render"]
    assert set(sel.train["split"]) == {"train"} and set(sel.val["split"]) == {"val"}
    assert set(sel.test["split"]) == {"test"}
    for df in (sel.train, sel.val, sel.test):
        assert (df["video_key"] == df["dataset"] + "/" + df["video_id"]).all()
        real = df["label"] == "real"
        assert (df.loc[real, "target"] == 0).all() and (df.loc[~real, "target"] > 0).all()
    # binary: real / fake
    b = select_data(demo_corpus, task="binary")
    assert b.class_names == ["real", "fake"]
    assert (b.train["target"] == (b.train["label"] == "fake").astype(int)).all()
    # drop real: only the methods
    d = select_data(demo_corpus, task="attribution", drop_real=True)
    assert d.class_names[0] == "demo_checkerboard" and (d.train["label"] == "fake").all()
    assert (d.val["label"] == "fake").all()  # val rows of classes the model lacks are left out


def test_min_quality_really_filters(quality_corpus, demo_corpus):
    import dfkit.corpus
    from dfkit.train.data import select_data

    meta = dfkit.corpus.open(quality_corpus).metadata()
    train_all = meta[meta["split"] == "train"]
    for t in (0.5, 0.7):
        sel = select_data(quality_corpus, min_quality=t)
        expect = train_all[train_all["quality"] >= t]
        assert len(sel.train) == len(expect) > 0
        assert set(sel.train["sample_id"]) == set(expect["sample_id"])
        assert sel.train["quality"].min() >= t
        # validation and test stay unfiltered (every arm is compared on the same data)
        assert len(sel.val) == int((meta["split"] == "val").sum())
        assert len(sel.test) == int((meta["split"] == "test").sum())
    hi = select_data(quality_corpus, max_quality=0.5)
    assert len(hi.train) == int((train_all["quality"] < 0.5).sum())
    with pytest.raises(DfkitError, match="no quality scores yet"):
        select_data(demo_corpus, min_quality=0.5)


def test_identity_split_never_puts_an_identity_in_two_splits(demo_corpus):
    from dfkit.train.data import apply_split, select_data, split_assignment

    for seed in (0, 1, 2, 3):
        sel = select_data(demo_corpus, split="identity", seed=seed)
        frames = pd.concat([sel.train.assign(s="train"), sel.val.assign(s="val"), sel.test.assign(s="test")])
        # frames of one video: one split
        assert frames.groupby("video_key")["s"].nunique().max() == 1
        # identities (a fake carries its target's and source's) and source groups: one split each
        ident = frames[["identity_ids", "s"]].explode("identity_ids")
        assert ident.groupby("identity_ids")["s"].nunique().max() == 1, seed
        assert frames.groupby(["dataset", "group_id"])["s"].nunique().max() == 1
        # c23 and c40 of the same content are one unit too
        assert frames.groupby("content_id")["s"].nunique().max() == 1
    # the split is computed over the whole corpus, deterministic
    a = split_assignment(demo_corpus, "identity", seed=5)
    b = split_assignment(demo_corpus, "identity", seed=5)
    pd.testing.assert_frame_equal(a.sort_values(["dataset", "video_id"]).reset_index(drop=True),
                                  b.sort_values(["dataset", "video_id"]).reset_index(drop=True))
    # a chain of shared identities is one component: A-B, B-C, C-D all land in one split
    chain = pd.DataFrame([{"dataset": "x", "video_id": f"v{i}", "identity_ids": [f"x:{i}", f"x:{i + 1}"],
                           "group_id": None} for i in range(12)]
                         + [{"dataset": "x", "video_id": f"w{i}", "identity_ids": [f"x:w{i}"], "group_id": None}
                            for i in range(30)])
    from dfkit.splits import identity_split

    for seed in range(5):
        assign = identity_split(chain, seed=seed)
        assert len({assign[("x", f"v{i}")] for i in range(12)}) == 1
    # inconsistent labels are caught: a video whose frames carry two splits
    bad = pd.DataFrame({"dataset": ["x", "x"], "video_id": ["v", "v"], "split": ["train", "test"]})
    with pytest.raises(DfkitError, match="span several splits"):
        apply_split(bad, None)


def test_subsample_by_video_is_exact_and_takes_whole_videos(demo_corpus):
    from dfkit.train.data import select_data, subsample_by_video

    sel = select_data(demo_corpus)
    want = {0: 10, 1: 16, 2: 3, 3: 9, 4: 8}
    sub = subsample_by_video(sel.train, want, seed=0)
    assert sub["target"].value_counts().to_dict() == want
    per_video = sub.groupby("video_key").size()
    full = sel.train.groupby("video_key").size()
    # at most one partial video per class
    partial = [v for v in per_video.index if per_video[v] < full[v]]
    assert len(partial) <= len(want)
    assert subsample_by_video(sel.train, want, seed=0)["sample_id"].tolist() == sub["sample_id"].tolist()


def test_dataset_batches_match_single_items_and_normalise(demo_corpus):
    from dfkit.train.data import CropDataset, collate, make_loaders, normalize_batch, select_data

    sel = select_data(demo_corpus)
    ds = CropDataset(sel.files, sel.train, 32)
    batch = ds.__getitems__([5, 0, 17, 5])
    assert batch["image"].dtype == torch.uint8 and tuple(batch["image"].shape) == (4, 3, 32, 32)
    for k, i in enumerate([5, 0, 17, 5]):
        item = ds[i]
        assert torch.equal(item["image"], batch["image"][k])
        assert item["label"] == int(batch["label"][k]) and item["video_key"] == batch["video_key"][k]
    assert collate(batch) is batch
    stacked = collate([ds[0], ds[1]])
    assert tuple(stacked["image"].shape) == (2, 3, 32, 32)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    x = normalize_batch(batch["image"], mean, std)
    ref = (batch["image"].float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(x, ref, atol=1e-5)
    tl, vl = make_loaders(sel, img_size=32, batch_size=16, workers=1, mean=mean, std=std, augment=True)
    b = next(iter(tl))
    assert b["image"].dtype == torch.float32 and tuple(b["image"].shape) == (16, 3, 32, 32)
    assert len(tl) == len(sel.train) // 16 and vl is not None
    # class-balanced: over an epoch every class is drawn
    labels = torch.cat([bb["label"] for bb in tl])
    assert set(labels.tolist()) == set(range(len(sel.class_names)))


# ----------------------------------------------------------------------------------------------------------------------
# training

def test_tiny_model_learns_the_demo_methods_above_chance(demo_corpus, tmp_path):
    from dfkit.demo.train_steps import AUGMENT
    from dfkit.train.evaluation import eval_run
    from dfkit.train.runner import TrainSettings, train_run

    # the central 32 px of the 128 px crops (artifacts at full resolution), colour-cast augmentation
    s = TrainSettings.from_dict({**FAST, "corpus": str(demo_corpus), "crop": "center", "augment": AUGMENT,
                                 "epochs": 10, "samples_per_epoch": 320, "out": str(tmp_path / "run")})
    summary = train_run(s, echo=lambda m: None)
    assert summary["epochs_done"] == 10
    rep = eval_run(tmp_path / "run", split="test", n_boot=200, workers=0, echo=lambda m: None)
    k = rep["overall"]["known"]
    chance = 1 / 5
    assert k["frame"]["accuracy"]["value"] > chance + 0.25, k["frame"]["confusion_matrix"]
    assert k["video"]["balanced_accuracy"]["value"] > chance + 0.25
    for name in ("config.yaml", "config.json", "data.json", "splits.parquet", "best.safetensors", "last.json",
                 "history.json"):
        assert (tmp_path / "run" / name).exists(), name


def test_cli_train_config_file_min_quality_and_resume(quality_corpus, tmp_path, capsys):
    import yaml

    import dfkit.corpus

    cfg = tmp_path / "train.yaml"
    cfg.write_text(yaml.safe_dump({"backbone": "tiny", "img-size": 32, "epochs": 5, "batch_size": 16,
                                   "task": "binary", "workers": 0}))
    run = tmp_path / "run"
    args = ["train", "--corpus", quality_corpus, "--config", cfg, "--task", "attribution", "--epochs", "2",
            "--min-quality", "0.6", "--out", run, "--threads", "1", "-q"]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    conf = json.loads((run / "config.json").read_text())
    # the command line overrides the file, the file the defaults
    assert conf["task"] == "attribution" and conf["epochs"] == 2 and conf["backbone"] == "tiny"
    assert conf["img_size"] == 32 and conf["batch_size"] == 16 and conf["min_quality"] == 0.6
    assert yaml.safe_load((run / "config.yaml").read_text())["min_quality"] == 0.6
    meta = dfkit.corpus.open(quality_corpus).metadata()
    n = int(((meta["split"] == "train") & (meta["quality"] >= 0.6)).sum())
    assert conf["counts"]["train"]["frames"] == n
    assert f"train {n} crops" in out
    h1 = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in h1] == [1, 2]

    # without --resume an existing run is refused
    code, out, err = run_cli(args, capsys)
    assert code == 2 and "--resume" in err
    # --resume continues from the checkpoint: the epoch count goes on, earlier epochs are kept
    code, out, err = run_cli(["train", "--out", run, "--resume", "--epochs", "3", "-q"], capsys)
    assert code == 0, err
    assert "resuming" in out and "after epoch 2" in out
    h2 = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in h2] == [1, 2, 3]
    assert h2[:2] == h1
    from dfkit.train.checkpoint import read_checkpoint_meta

    last = read_checkpoint_meta(run / "last")["meta"]
    assert last["epoch"] == 3 and last["run"]["settings"]["min_quality"] == 0.6


@pytest.mark.parametrize("args,needle", [
    (["--backbone", "resnet9000"], "unknown backbone 'resnet9000'"),
    (["--datasets", "celebdf"], "unknown dataset(s) celebdf"),
    (["--min-quality", "0.7"], "no quality scores yet"),
    (["--task", "segmentation"], "unknown task"),
    (["--split", "random"], "unknown split"),
])
def test_cli_user_errors_are_one_line_exit_2(demo_corpus, tmp_path, capsys, args, needle):
    code, out, err = run_cli(["train", "--corpus", demo_corpus, "--backbone", "tiny", "--out", tmp_path / "r",
                              "--epochs", "1", "-q"] + args, capsys)
    assert code == 2
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("dfkit: error:"), err
    assert needle in lines[0]
    assert "Traceback" not in err + out


def test_cli_error_through_the_real_entry_point(demo_corpus, tmp_path):
    r = subprocess.run([sys.executable, "-m", "dfkit.cli", "eval", str(tmp_path / "nope"), "--corpus",
                        str(demo_corpus)], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().startswith("dfkit: error: no run at") and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
