"""``dfkit study``: the grid and its digests, bad study files, the report's paired differences against hand-computed
values on fixed predictions, and a smoke study on the demo corpus that is killed halfway and resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.test_train_cli import demo_corpus, one_thread, quality_corpus, run_cli  # noqa: F401 - fixtures

ROOT = Path(__file__).resolve().parents[1]


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ----------------------------------------------------------------------------------------------------------------------
# the grid

GRID = """
name: grid
corpus: {corpus}
out: {out}
base: {{epochs: 1, img_size: 32, lr: 0.003, workers: 0}}
axes:
  task: [binary, attribution]
  backbone: [tiny, efficientnet_b0]
  contrastive: [none, supcon_joint]
  min_quality: [null, 0.6]
  seed: [0, 1]
"""

# the same study, its keys in another order (top level, base, axes)
GRID_REORDERED = """
axes:
  seed: [0, 1]
  min_quality: [0, 0.6]
  contrastive: [off, supcon]
  backbone: [tiny, efficientnet_b0]
  task: [binary, attribution]
base: {{workers: 3, lr: 0.003, img_size: 32, epochs: 1}}
out: {out}
corpus: {corpus}
name: grid
"""


def test_expand_digests_stable_distinct_and_independent_of_key_order(demo_corpus, tmp_path):
    from dfkit.train.settings import TrainSettings
    from dfkit.train.study import cell_digest, expand, load_study

    a = load_study(_write(tmp_path / "a.yaml", GRID.format(corpus=demo_corpus, out=tmp_path / "s")))
    b = load_study(_write(tmp_path / "b.yaml", GRID_REORDERED.format(corpus=demo_corpus, out=tmp_path / "s")))
    ca, cb = expand(a), expand(b)
    assert len(ca) == 2 * 2 * 2 * 2 * 2
    # the same cells, in the same order (AXES order, not the file's), with the same digests and folders
    assert [c.digest for c in ca] == [c.digest for c in cb]
    assert [c.folder for c in ca] == [c.folder for c in cb]
    assert len({c.digest for c in ca}) == len(ca)  # distinct
    c = ca[0]
    assert c.folder.parent == tmp_path / "s" / "cells" and c.folder.name == f"{c.digest[:10]}-{c.slug}"
    assert c.slug == "binary-tiny-none-qall-all-s0"
    assert (c.settings.task, c.settings.backbone, c.settings.contrastive, c.settings.seed) == \
        ("binary", "tiny", None, 0)
    s = [x for x in ca if x.axes["contrastive"] == "supcon_joint"][0].settings
    assert (s.contrastive, s.contrastive_mode) == ("supcon", "joint")
    # stable: a JSON round trip of the settings (a run's config.json) gives the same digest; what does not change
    # the result (workers, threads, out, device, progress) is left out, as are contrastive-only settings of a run
    # without a contrastive loss; img_size null is the backbone's default
    saved = json.loads(json.dumps(c.settings.to_dict()))
    assert cell_digest(TrainSettings.from_saved(saved)) == c.digest
    assert cell_digest(c.settings.copy(workers=7, threads=2, out="elsewhere", progress=False)) == c.digest
    assert cell_digest(c.settings.copy(contrastive_weight=0.9, temperature=0.3)) == c.digest
    assert cell_digest(c.settings.copy(epochs=2)) != c.digest
    big = TrainSettings(backbone="efficientnet_b0")
    assert cell_digest(big) == cell_digest(big.copy(img_size=224))
    # a fixed value: the digest of these settings must not drift between runs or dfkit versions
    assert cell_digest(TrainSettings(task="binary", backbone="tiny", img_size=32, epochs=1)) == \
        cell_digest(TrainSettings.from_dict({"epochs": 1, "img_size": 32, "backbone": "tiny", "task": "binary"}))
    # dataset words: all, each, leave-one-out (the demo corpus has one dataset)
    each = load_study(_write(tmp_path / "e.yaml", f"out: {tmp_path / 'e'}\ncorpus: {demo_corpus}\naxes:\n"
                             "  train_datasets: [each, all, [demo]]\n  backbone: [tiny]\n"))
    cells = expand(each)
    assert len(cells) == 1 and cells[0].settings.datasets == ["demo"]  # the same run, kept once


def test_holdout_methods_axis(demo_corpus, tmp_path):
    from dfkit.train.settings import TrainSettings
    from dfkit.train.study import expand, load_study

    if "holdout_methods" not in TrainSettings.keys():
        pytest.skip("this dfkit has no holdout_methods setting")
    s = load_study(_write(tmp_path / "h.yaml", f"out: {tmp_path / 'h'}\ncorpus: {demo_corpus}\naxes:\n"
                          "  backbone: [tiny]\n  holdout_methods: [null, [demo_checkerboard]]\n"))
    cells = expand(s)
    assert [c.settings.holdout_methods for c in cells] == [None, ["demo_checkerboard"]]
    assert cells[0].digest != cells[1].digest and "hold-demo_checkerboard" in cells[1].slug


BAD = [
    ("bogus: 1\n", "bogus: unknown key"),
    ("axes: {backbone: [tiny, resnet9000]}\n", "axes.backbone: unknown backbone 'resnet9000'"),
    ("axes: {task: [binary, detection]}\n", "axes.task: unknown task 'detection'"),
    ("axes: {min_quality: [1.5]}\n", "axes.min_quality:"),
    ("axes: {contrastive: [simclr]}\n", "axes.contrastive: unknown arm 'simclr'"),
    ("axes: {seed: [-1]}\n", "axes.seed:"),
    ("axes: {colour: [red]}\n", "axes.colour: unknown axis"),
    ("axes: {train_datasets: [[ffpp]]}\n", "axes.train_datasets: unknown dataset(s) ffpp"),
    ("base: {epochs: 0}\n", "base: --epochs must be >= 1"),
    ("base: {out: x}\n", "base.out:"),
    ("base: {colour: red}\n", "base.colour: unknown key"),
    ("eval: {split: holdout}\n", "eval.split:"),
    ("eval: {nboot: 3}\n", "eval.nboot: unknown key"),
    ("questions: [why]\n", "questions: unknown question 'why'"),
    ("report: {metric: f2}\n", "report.metric:"),
    ("equal_size: maybe\n", "equal_size: true or false"),
]


@pytest.mark.parametrize("body,expect", BAD, ids=[e for _, e in BAD])
def test_bad_study_files_are_one_line_naming_the_key(body, expect, demo_corpus, tmp_path, capsys):
    p = _write(tmp_path / "bad.yaml", f"corpus: {demo_corpus}\nout: {tmp_path / 'out'}\n" + body)
    code, out, err = run_cli(["study", "run", p, "--dry-run"], capsys)
    assert code == 2, (out, err)
    assert expect in err and str(p) in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_missing_out_and_missing_file(tmp_path, capsys):
    p = _write(tmp_path / "s.yaml", "axes: {task: [binary]}\n")
    code, _, err = run_cli(["study", "run", p], capsys)
    assert code == 2 and "out: missing" in err
    code, _, err = run_cli(["study", "run", tmp_path / "nope.yaml"], capsys)
    assert code == 2 and "no such study file" in err


def test_shipped_studies_load(demo_corpus, tmp_path):
    """Every study in manifests/studies/ is valid (paper's datasets are checked only when expanded)."""
    from dfkit.paths import manifests_dir
    from dfkit.train.study import expand, load_study

    names = sorted(p.stem for p in (manifests_dir() / "studies").glob("*.yaml"))
    assert {"smoke", "paper", "template"} <= set(names)
    for n in names:
        s = load_study(n, corpus=demo_corpus, out=tmp_path / n)
        assert s.axes["task"] and s.out == tmp_path / n
    paper = load_study("paper", corpus=demo_corpus, out=tmp_path / "p")
    assert set(paper.axes["backbone"]) >= {"efficientnet_b0", "swin_small"}
    assert paper.axes["task"] == ["binary", "attribution"] and "supcon_joint" in paper.axes["contrastive"]
    smoke = load_study("smoke", corpus=demo_corpus, out=tmp_path / "sm")
    assert len(expand(smoke)) == 4


def test_equal_size_quality_arms_train_on_the_smallest_arm_per_class(quality_corpus, tmp_path, capsys):
    """equal_size: every min_quality arm trains on the smallest arm's crops per class (as the quality sweep)."""
    import dfkit.corpus
    from dfkit.train.data import target_names

    out = tmp_path / "q"
    spec = _write(tmp_path / "q.yaml", f"corpus: {quality_corpus}\nout: {out}\nequal_size: true\n"
                  "base: {epochs: 1, img_size: 32, batch_size: 16, workers: 0, threads: 1}\n"
                  "axes: {task: [attribution], backbone: [tiny], min_quality: [null, 0.6]}\n"
                  "eval: {n_boot: 10}\nquestions: [quality]\n")
    meta = dfkit.corpus.open(quality_corpus).metadata()
    train = meta[meta["split"] == "train"]
    expect: dict[str, int] = {}
    for pool in (train, train[train["quality"] >= 0.6]):
        for c, n in target_names("attribution", pool).value_counts().items():
            expect[c] = min(expect.get(c, 10 ** 9), int(n))
    code, text, err = run_cli(["study", "run", spec, "--dry-run"], capsys)
    assert code == 0, err
    rows = [ln.split() for ln in text.splitlines() if ln.startswith("attribution-")]
    assert [int(r[3]) for r in rows] == [sum(expect.values())] * 2
    code, text, err = run_cli(["study", "run", spec, "--quiet"], capsys)
    assert code == 0, err
    idx = json.loads((out / "study.json").read_text())
    for c in idx["cells"]:
        counts = json.loads((Path(c["folder"]) / "data.json").read_text())["counts"]["train"]["per_class"]
        assert {k: v["frames"] for k, v in counts.items()} == expect
    code, text, err = run_cli(["study", "report", out], capsys)
    assert code == 0, err
    rep = json.loads((out / "report" / "report.json").read_text())
    assert rep["tables"]["quality"] and rep["tables"]["quality"][0]["pairs"][0]["label"] == "q>=0.6 - all crops"


# ----------------------------------------------------------------------------------------------------------------------
# paired differences on fixed predictions

# 4 test videos x 2 frames; video-level probabilities are the means of the frames'.
#   binary model (real, fake), P(fake) per video: v1 real 0.2, v2 real 0.6 (wrong), v3 fake 0.7, v4 fake 0.4 (wrong)
#     -> balanced accuracy (1/2 + 1/2) / 2 = 0.5; AUC 3/4 (0.4 < 0.6 the only reversed pair)
#   attribution model (real, A, B) as a detector, P(fake) = 1 - P(real): v1 0.3, v2 0.4, v3 0.8, v4 0.6
#     -> balanced accuracy 1.0; AUC 1.0
#   seed 1: the binary model gets every video right (P(fake) 0.1, 0.3, 0.9, 0.8: BA 1.0, AUC 1.0), the attribution
#   model is as in seed 0. Means over seeds: binary BA 0.75, AUC 0.875; attribution 1.0, 1.0.
#   attribution - binary: balanced accuracy +0.25, AUC +0.125.
VIDEOS = ["v1", "v2", "v3", "v4"]
METHODS = ["real", "real", "A", "B"]
BIN = {0: [0.2, 0.6, 0.7, 0.4], 1: [0.1, 0.3, 0.9, 0.8]}
ATTR = [[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.4, 0.1, 0.5]]


def _frames(video_probs: list[list[float]]) -> list[list[float]]:
    """Two frames per video whose mean is the video's probabilities (+-0.05 on the first two classes)."""
    out = []
    for p in video_probs:
        d = np.zeros(len(p))
        d[0], d[1] = 0.05, -0.05
        out += [list(np.asarray(p) + d), list(np.asarray(p) - d)]
    return out


def _fixed_study(tmp: Path) -> Path:
    from dfkit.train.evaluation import save_predictions
    from dfkit.train.study import CELL_MARKER, INDEX_FILE

    rows = pd.DataFrame({"sample_id": [f"ds/{v}/{i}" for v in VIDEOS for i in range(2)], "dataset": "ds",
                         "video_id": [v for v in VIDEOS for _ in range(2)],
                         "label": ["real" if m == "real" else "fake" for m in METHODS for _ in range(2)],
                         "method_canonical": [m for m in METHODS for _ in range(2)]})
    cells = []
    for task, names in (("binary", ["real", "fake"]), ("attribution", ["real", "A", "B"])):
        for seed in (0, 1):
            probs = _frames([[1 - f, f] for f in BIN[seed]]) if task == "binary" else _frames(ATTR)
            folder = tmp / "cells" / f"{task}-s{seed}"
            (folder / "eval_ds").mkdir(parents=True)
            pr = pd.DataFrame({"sample_id": rows["sample_id"][::-1].tolist(),  # any row order
                               "probs": probs[::-1]})
            pr.attrs["class_names"] = names
            save_predictions(pr, folder / "eval_ds" / "predictions.parquet")
            rows.to_parquet(folder / "eval_ds" / "rows.parquet", index=False)
            labels = {"task": task, "backbone": "tiny", "contrastive": "none", "min_quality": "all crops",
                      "train_datasets": "ds", "seed": str(seed)}
            axes = {"task": task, "backbone": "tiny", "contrastive": "none", "min_quality": None,
                    "train_datasets": ["ds"], "seed": seed}
            marker = {"digest": f"d-{task}-{seed}", "trained": True, "axes": axes, "labels": labels,
                      "class_names": names, "n_params": 1, "evals": {"ds": {"key": {}, "dir": "eval_ds",
                                                                          "error": None}}}
            (folder / CELL_MARKER).write_text(json.dumps(marker))
            cells.append({"digest": marker["digest"], "folder": str(folder), "slug": folder.name, "axes": axes,
                          "labels": labels, "status": "done"})
    idx = {"study": {"name": "fixed", "questions": ["binary_vs_attribution", "cross_dataset"],
                     "report": {"metric": "balanced_accuracy", "level": "video", "n_boot": 300}},
           "corpus": "none", "cells": cells}
    (tmp / INDEX_FILE).write_text(json.dumps(idx))
    return tmp


def test_detector_probs():
    from dfkit.errors import DfkitError
    from dfkit.train.study import detector_probs

    p = detector_probs(np.array(ATTR), ["real", "A", "B"])
    assert p[:, 1] == pytest.approx([0.3, 0.4, 0.8, 0.6]) and p.sum(1) == pytest.approx(1.0)
    assert detector_probs(np.array([[0.2, 0.3, 0.5]]), ["A", "real", "B"])[0] == pytest.approx([0.3, 0.7])
    with pytest.raises(DfkitError, match="no real class"):
        detector_probs(np.array([[0.5, 0.5]]), ["A", "B"])


def test_report_paired_differences_against_hand_computed_values(tmp_path):
    from dfkit.train.study import report_study

    rep = report_study(_fixed_study(tmp_path / "study"), echo=lambda m: None)
    rows = {r["metric"]: r for r in rep["tables"]["binary_vs_attribution"]}
    assert set(rows) == {"auc", "eer", "balanced_accuracy"}
    ba = rows["balanced_accuracy"]
    assert ba["n_videos"] == 4 and ba["seeds"] == [0, 1]
    assert ba["arms"]["binary"]["per_seed"] == pytest.approx([0.5, 1.0])
    assert ba["arms"]["binary"]["value"] == pytest.approx(0.75)
    assert ba["arms"]["attribution"]["value"] == pytest.approx(1.0)
    (pair,) = ba["pairs"]
    assert (pair["a"], pair["b"]) == ("attribution", "binary")
    assert pair["value"] == pytest.approx(0.25) and pair["per_seed"] == pytest.approx([0.5, 0.0])
    lo, hi = pair["ci"]
    assert lo <= 0.25 <= hi
    auc = rows["auc"]
    assert auc["arms"]["binary"]["per_seed"] == pytest.approx([0.75, 1.0])
    assert auc["pairs"][0]["value"] == pytest.approx(0.125)
    # EER: binary seed 0 has one real above one fake of two each -> 0.5; every other run separates perfectly
    assert rows["eer"]["pairs"][0]["value"] == pytest.approx(-0.25)
    # the cross-dataset matrix of each task: one row (ds) x one column (ds), the mean over the 2 seeds
    xd = {e["group"]["task"]: e for e in rep["tables"]["cross_dataset"]}
    assert xd["binary"]["matrix"][0][0]["value"] == pytest.approx(0.75)
    assert xd["attribution"]["matrix"][0][0]["seeds"] == [0, 1]
    # the attribution model on its own 3 classes: v1, v2 real; v3 A; v4 B: every video right
    assert xd["attribution"]["matrix"][0][0]["value"] == pytest.approx(1.0)
    out = Path(rep["out_dir"])
    assert (out / "report.json").exists() and (out / "cross_dataset.png").read_bytes()[:4] == b"\x89PNG"
    assert "attribution - binary: +0.250" in (out / "report.md").read_text()


# ----------------------------------------------------------------------------------------------------------------------
# a smoke study end to end, killed halfway

SMOKE = """
name: smoke-test
corpus: {corpus}
out: {out}
base: {{epochs: 1, img_size: 32, batch_size: 32, lr: 0.003, workers: 0, threads: 1}}
axes:
  task: [binary, attribution]
  backbone: [tiny, efficientnet_b0]
  seed: [0]
eval: {{split: test, datasets: all, n_boot: 50}}
"""


def _finished(out: Path) -> dict[str, dict]:
    from dfkit.train.study import CELL_MARKER

    got = {}
    for m in (out / "cells").glob(f"*/{CELL_MARKER}"):
        try:
            d = json.loads(m.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if (d.get("evals") or {}).get("demo"):
            got[m.parent.name] = d
    return got


def test_smoke_study_killed_halfway_resumes_without_retraining(demo_corpus, tmp_path, capsys):
    out = tmp_path / "study"
    spec = _write(tmp_path / "smoke.yaml", SMOKE.format(corpus=demo_corpus, out=out))
    # the dry run: 4 cells, their crops, a measured cost; it writes nothing
    code, text, err = run_cli(["study", "run", spec, "--dry-run"], capsys)
    assert code == 0, err
    assert "4 cells" in text and "steps/s" in text and "estimated cost" in text and not out.exists()
    from dfkit.train.data import select_data

    sel = select_data(demo_corpus, task="binary")
    lines = [ln.split() for ln in text.splitlines() if ln.startswith(("binary-", "attribution-"))]
    assert len(lines) == 4
    for ln in lines:  # cell, digest, status, train, val, test, eval crops, steps, estimate
        assert ln[2] == "todo" and [int(x) for x in ln[3:6]] == [len(sel.train), len(sel.val), len(sel.test)]
        assert int(ln[7]) == len(sel.train) // 32  # 1 epoch at batch 32 (the last partial batch dropped)

    # run it in a process of its own and kill it (SIGKILL: no clean-up) once the first cell is finished
    env = {**os.environ, "FIFTYONE_DO_NOT_TRACK": "true", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "dfkit", "study", "run", str(spec), "--quiet"], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    t0 = time.time()
    try:
        while not _finished(out) and proc.poll() is None and time.time() - t0 < 120:
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    first = _finished(out)
    assert first, proc.stdout.read().decode()[-2000:]
    assert len(first) < 4, "the study finished before it could be killed"
    before = {}
    for name in first:
        st = (out / "cells" / name / "best.safetensors").stat()
        before[name] = (st.st_ino, st.st_mtime_ns)
    idx = json.loads((out / "study.json").read_text())  # the index survived the kill (written atomically)
    assert len(idx["cells"]) == 4

    # the rerun: the finished cells are skipped, not retrained; the others are trained
    code, text, err = run_cli(["study", "run", spec, "--quiet"], capsys)
    assert code == 0, err
    for name in first:
        st = (out / "cells" / name / "best.safetensors").stat()
        assert (st.st_ino, st.st_mtime_ns) == before[name], f"{name} was retrained"
        slug = name.split("-", 1)[1]
        assert any(slug in ln and "skipped" in ln for ln in text.splitlines()), text
    assert text.count("skipped") == len(first)
    done = _finished(out)
    assert len(done) == 4
    idx = json.loads((out / "study.json").read_text())
    assert {c["status"] for c in idx["cells"]} == {"done"}
    # each cell is an ordinary run folder: dfkit eval opens it
    cell = Path(idx["cells"][0]["folder"])
    assert (cell / "config.json").exists() and (cell / "eval_demo" / "eval.json").exists()
    code, text, err = run_cli(["eval", cell, "--n-boot", "10", "--workers", "0", "--threads", "1",
                               "--out", tmp_path / "eval"], capsys)
    assert code == 0 and (tmp_path / "eval" / "eval.json").exists(), err
    # a third run does nothing
    code, text, err = run_cli(["study", "run", spec, "--quiet"], capsys)
    assert code == 0 and text.count("skipped") == 4 and "training" not in text

    # the report: every table
    code, text, err = run_cli(["study", "report", out], capsys)
    assert code == 0, err
    rep = json.loads((out / "report" / "report.json").read_text())
    t = rep["tables"]
    assert set(t) == {"cells", "binary_vs_attribution", "backbone_size", "supcon", "quality", "cross_dataset"}
    assert len(t["cells"]) == 4
    assert len(t["binary_vs_attribution"]) == 2 * 3  # per backbone: AUC, EER, balanced accuracy
    assert {r["group"]["backbone"] for r in t["binary_vs_attribution"]} == {"tiny", "efficientnet_b0"}
    # backbone size: the larger (by parameters) minus the smaller, per task
    bb = t["backbone_size"]
    assert {r["group"]["task"] for r in bb} == {"binary", "attribution"}
    assert all(r["pairs"][0]["label"] == "efficientnet_b0 - tiny" for r in bb)
    for r in t["binary_vs_attribution"] + bb:
        p = r["pairs"][0]
        assert p["value"] is None or p["ci"] is None or p["ci"][0] - 1e-9 <= p["value"] <= p["ci"][1] + 1e-9
    assert t["supcon"] == [] and "contrastive" in rep["not_applicable"]["supcon"]
    assert t["quality"] == [] and "min_quality" in rep["not_applicable"]["quality"]
    assert len(t["cross_dataset"]) == 4 and all(e["matrix"][0][0]["value"] is not None for e in t["cross_dataset"])
    page = (out / "report" / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 3  # the heatmaps and both paired plots, embedded
    for title in ("Every cell", "Binary vs attribution", "Larger vs smaller backbone", "SupCon", "Quality arms",
                  "Cross-dataset"):
        assert title in page
