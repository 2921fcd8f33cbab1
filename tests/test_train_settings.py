"""One training-settings type (checked once, at construction), old run records still loading, one meaning of
``--min-quality`` per command (range-checked everywhere, before anything is written) and command-line defaults that
come from the dataclasses."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from dfkit.errors import DfkitError, SettingsError
from dfkit.train.settings import TrainSettings
from tests.test_train_cli import demo_corpus, one_thread, quality_corpus, run_cli  # noqa: F401 - fixtures

# the config of a checkpoint's metadata as the former loop's TrainConfig wrote it (dfkit <= issue 11 step 2)
OLD_CHECKPOINT_CONFIG = {
    "epochs": 2, "lr": 0.003, "weight_decay": 0.05, "warmup_epochs": 0.0, "min_lr_ratio": 0.01,
    "label_smoothing": 0.0, "grad_clip": None, "contrastive": None, "contrastive_mode": "joint",
    "contrastive_weight": 0.5, "temperature": 0.1, "projection_dim": 128, "probe_epochs": 5, "probe_lr": None,
    "select_metric": "balanced_accuracy", "select_level": "video", "device": "cpu", "amp": False, "seed": 3,
    "steps_per_epoch": None, "progress": False,
}

# a run folder's config.json as the former runner wrote it: its TrainSettings' fields and what the runner adds
OLD_RUN_CONFIG = {
    "corpus": "/data/dfkit-corpus", "task": "attribution", "backbone": "tiny", "datasets": ["demo"], "methods": None,
    "compression": None, "min_quality": 0.6, "max_quality": None, "split": "official", "split_seed": 0, "epochs": 2,
    "img_size": 32, "crop": "resize", "batch_size": 16, "lr": 0.003, "weight_decay": 0.05, "warmup_epochs": 0.0,
    "label_smoothing": 0.0, "seed": 0, "out": "runs/x", "contrastive": None, "contrastive_mode": "joint",
    "contrastive_weight": 0.5, "temperature": 0.1, "probe_epochs": 5, "pretrained": False, "weights": None,
    "augment": True, "drop_real": False, "balanced": True, "samples_per_epoch": None, "device": "auto",
    "amp": False, "workers": 0, "threads": 1, "progress": False,
    "class_names": ["real", "fake"], "weights_source": "scratch", "device_used": "cpu", "counts": {}, "notes": [],
    "dfkit_command": "train", "world_size": 1, "global_batch_size": 16,
}


# ----------------------------------------------------------------------------------------------------------------------
# the type

def test_one_type_checked_at_construction():
    s = TrainSettings(backbone="tiny", datasets="a, b", lr="1e-3", epochs="3", contrastive="none")
    assert s.datasets == ["a", "b"] and s.lr == 0.001 and s.epochs == 3 and s.contrastive is None
    for kw, needle in [({"epochs": 0}, "--epochs must be >= 1"), ({"lr": 0}, "--lr must be > 0"),
                       ({"min_quality": 1.5}, "--min-quality must lie in [0, 1]"),
                       ({"max_quality": -0.1}, "max_quality (a --config setting) must lie in [0, 1]"),
                       ({"task": "segmentation"}, "unknown task"), ({"crop": "zoom"}, "--crop must be one of"),
                       ({"select_level": "clip"}, "select_level (a --config setting) must be video or frame"),
                       ({"batch_size": "many"}, "--batch-size must be a whole number"),
                       ({"epochs": 2.5}, "--epochs must be a whole number"),
                       ({"augment": {"wobble": True}}, "wobble"), ({"device": "tpu"}, "--device must be")]:
        with pytest.raises(SettingsError, match=re.escape(needle)):
            TrainSettings(backbone="tiny", **kw)
    # a usage error for the CLI (one line, exit 2) and a ValueError for Python callers
    assert issubclass(SettingsError, DfkitError) and issubclass(SettingsError, ValueError)
    with pytest.raises(SettingsError, match="unknown setting"):
        TrainSettings.from_dict({"learning_rate": 1})
    # copies are checked too; the original stays as it was
    with pytest.raises(SettingsError, match="--min-quality"):
        s.copy(min_quality=2)
    c = s.copy(min_quality=0.5, seed=4)
    assert (c.min_quality, c.seed, s.min_quality, s.seed) == (0.5, 4, None, 0)


def test_the_loop_has_no_second_settings_class():
    import dfkit.train.loop as loop
    import dfkit.train.runner as runner

    assert not hasattr(loop, "TrainConfig")
    assert runner.TrainSettings is TrainSettings  # the runner re-exports the one type


def test_old_run_records_still_load():
    ck = TrainSettings.from_saved(OLD_CHECKPOINT_CONFIG)
    assert (ck.epochs, ck.lr, ck.seed, ck.device, ck.projection_dim) == (2, 0.003, 3, "cpu", 128)
    run = TrainSettings.from_saved(OLD_RUN_CONFIG)  # the runner's extra keys (classes, counts, ...) are ignored
    assert (run.backbone, run.min_quality, run.batch_size, run.datasets) == ("tiny", 0.6, 16, ["demo"])
    assert run.select_level == "video" and run.min_lr_ratio == 0.01  # keys the old record lacks: the defaults


def test_resume_of_a_checkpoint_written_by_the_old_loop(tmp_path, caplog):
    """A run whose ``last.json`` holds the former TrainConfig's ``config`` resumes, without a spurious
    "changed settings" warning for the keys the old record lacks."""
    import logging

    from tests.test_train_loop import CLASSES, _loaders, _model

    from dfkit.train.checkpoint import checkpoint_paths
    from dfkit.train.loop import train

    cfg = TrainSettings(epochs=2, lr=3e-3, seed=3, progress=False, device="cpu")
    tl, vl = _loaders(n_train=12, n_val=6)
    train(_model(), tl, vl, cfg, tmp_path / "r", class_names=CLASSES, stop_after_epoch=1)
    js = checkpoint_paths(tmp_path / "r" / "last")[1]
    doc = json.loads(js.read_text())
    assert set(OLD_CHECKPOINT_CONFIG) < set(doc["meta"]["config"])
    doc["meta"]["config"] = {k: doc["meta"]["config"][k] for k in OLD_CHECKPOINT_CONFIG}
    js.write_text(json.dumps(doc))
    tl, vl = _loaders(n_train=12, n_val=6)
    with caplog.at_level(logging.WARNING, logger="dfkit.train"):
        res = train(_model(), tl, vl, cfg, tmp_path / "r", class_names=CLASSES, resume=True)
    assert [h["epoch"] for h in res["history"]] == [1, 2]
    assert "changed settings" not in caplog.text
    # a real change is still reported
    tl, vl = _loaders(n_train=12, n_val=6)
    with caplog.at_level(logging.WARNING, logger="dfkit.train"):
        train(_model(), tl, vl, cfg.copy(epochs=3, lr=1e-3), tmp_path / "r", class_names=CLASSES, resume=True)
    assert "resuming with changed settings: epochs, lr" in caplog.text


# ----------------------------------------------------------------------------------------------------------------------
# --min-quality: refused out of [0, 1] by every command, before anything is written

def _one_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("dfkit: error:"), err
    return lines[0]


@pytest.mark.parametrize("value", ["1.5", "-0.1"])
@pytest.mark.parametrize("command", ["train", "eval", "cross-dataset", "quality-sweep", "quality-sweep-config",
                                     "browse"])
def test_every_command_refuses_a_quality_out_of_range(command, value, tmp_path, capsys):
    corpus, out = tmp_path / "corpus", tmp_path / "out"
    run = tmp_path / "run"
    run.mkdir()
    option = "--min-quality"
    if command == "train":
        args = ["train", "--corpus", corpus, "--backbone", "tiny", "--out", out, "--min-quality", value]
    elif command == "eval":
        args = ["eval", run, "--corpus", corpus, "--out", out, "--min-quality", value]
    elif command == "cross-dataset":
        args = ["experiment", "cross-dataset", "--corpus", corpus, "--backbone", "tiny", "--out", out,
                "--min-quality", value]
    elif command == "quality-sweep":
        option = "--thresholds"
        args = ["experiment", "quality-sweep", "--corpus", corpus, "--backbone", "tiny", "--out", out,
                "--thresholds", f"0,{value}"]
    elif command == "browse":
        args = ["browse", "--corpus", corpus, "--no-launch", "--min-quality", value]
    else:  # a --config file's min_quality is checked as the option
        cfg = tmp_path / "train.yaml"
        cfg.write_text(f"backbone: tiny\nmin_quality: {value}\n")
        args = ["experiment", "quality-sweep", "--corpus", corpus, "--config", cfg, "--out", out]
    code, stdout, err = run_cli(args, capsys)
    assert code == 2, err
    line = _one_line(err)
    assert option in line and "[0, 1]" in line and value in line, line
    assert not out.exists() and not corpus.exists() and list(run.iterdir()) == []  # nothing written


# ----------------------------------------------------------------------------------------------------------------------
# --min-quality: what each command filters

def test_train_filters_the_training_split_only_and_eval_the_evaluated_crops(quality_corpus, tmp_path, capsys):
    import dfkit.corpus

    meta = dfkit.corpus.open(quality_corpus).metadata()
    by_split = {sp: meta[meta["split"] == sp] for sp in ("train", "val", "test")}
    run = tmp_path / "run"
    code, out, err = run_cli(["train", "--corpus", quality_corpus, "--backbone", "tiny", "--img-size", "32",
                              "--epochs", "1", "--batch-size", "16", "--workers", "0", "--threads", "1",
                              "--min-quality", "0.6", "--out", run, "-q"], capsys)
    assert code == 0, err
    counts = json.loads((run / "config.json").read_text())["counts"]
    assert counts["train"]["frames"] == int((by_split["train"]["quality"] >= 0.6).sum()) < len(by_split["train"])
    assert counts["val"]["frames"] == len(by_split["val"])  # validation: never filtered
    assert counts["test"]["frames"] == len(by_split["test"])  # nor test
    test = by_split["test"]
    for q, expect in [(None, test), ("0.7", test[test["quality"] >= 0.7])]:
        ev = tmp_path / f"eval_{q}"
        code, out, err = run_cli(["eval", run, "--out", ev, "--n-boot", "0", "--workers", "0", "--threads", "1"]
                                 + (["--min-quality", q] if q else []), capsys)
        assert code == 0, err
        rep = json.loads((ev / "eval.json").read_text())
        assert rep["min_quality"] == (float(q) if q else None)
        # eval filters the evaluated (test) crops by its own threshold; the run's training filter is not applied
        preds = __import__("pandas").read_parquet(ev / "predictions.parquet")
        assert set(preds["sample_id"]) == set(expect["sample_id"]) and 0 < len(expect)


def test_help_names_the_meaning_of_min_quality():
    from typer.main import get_command

    from dfkit.cli import app

    root = get_command(app)
    helps = {name: {p.name: p.help for p in cmd.params}
             for name, cmd in [("train", root.commands["train"]), ("eval", root.commands["eval"]),
                               ("cross-dataset", root.commands["experiment"].commands["cross-dataset"]),
                               ("quality-sweep", root.commands["experiment"].commands["quality-sweep"])]}
    assert helps["train"]["min_quality"].startswith("Training filter, in [0, 1]: train only on training-split crops")
    assert "validation and test crops are never filtered" in helps["train"]["min_quality"]
    assert helps["eval"]["min_quality"].startswith("Evaluation filter, in [0, 1]: score only the evaluated crops")
    assert "training filter is not applied" in helps["eval"]["min_quality"]
    assert helps["cross-dataset"]["min_quality"].startswith("Training filter of every run, in [0, 1]")
    assert "never filtered" in helps["quality-sweep"]["thresholds"]


# ----------------------------------------------------------------------------------------------------------------------
# command-line defaults come from the dataclasses

def _format(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def test_cli_defaults_are_the_dataclasses_defaults():
    from dataclasses import fields

    from typer.main import get_command

    from dfkit.cli import app
    from dfkit.ingest.engine import IngestParams

    root = get_command(app)
    ingest = {p.name: p.default for p in root.commands["ingest"].params}
    for f in fields(IngestParams):
        assert ingest[f.name] == f.default, f.name
    defaults = {f.name: f.default for f in fields(TrainSettings)}
    commands = [root.commands["train"], root.commands["experiment"].commands["quality-sweep"],
                root.commands["experiment"].commands["cross-dataset"]]
    checked = 0
    for cmd in commands:
        for p in cmd.params:
            if p.name not in defaults or (p.name == "out" and cmd.name != "train"):  # an experiment's own folder
                continue
            # the option itself means "not given" (the --config file or the resumed run may set it) ...
            assert p.default is None, (cmd.name, p.name)
            # ... and the default its help names is the dataclass's
            m = re.search(r"\(default: ([^;)]+)[;)]", p.help or "")
            v = defaults[p.name]
            if m is None or v is None:
                continue
            shown = m.group(1).strip()
            if isinstance(v, bool):
                assert shown in ({"on", "pretrained", "drop"} if v else {"off", "from scratch, said so", "keep"})
            else:
                assert shown == _format(v), (cmd.name, p.name, shown, v)
            checked += 1
    assert checked >= 15


def test_settings_module_is_light():
    """The CLI reads the defaults from dfkit.train.settings when it starts: it must not pull torch or pandas in."""
    import subprocess
    import sys

    code = ("import sys, dfkit.train.settings; bad = [m for m in ('torch', 'pandas', 'timm') if m in sys.modules]; "
            "print(','.join(bad))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert r.returncode == 0 and r.stdout.strip() == "", r.stdout + r.stderr
