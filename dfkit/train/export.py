"""A trained run's model as ONNX or TorchScript, checked against its checkpoint, with its preprocessing as JSON.

>>> from dfkit.train.export import export_model
>>> rep = export_model("runs/attr-b0", "onnx")           # -> runs/attr-b0/export/model.onnx + model.json
>>> rep["check"]["max_abs_diff"], rep["check"]["passed"]

What is written into ``out`` (default ``RUN/export/``):

- ``model.onnx`` (ONNX, opset :data:`ONNX_OPSET`, input ``image``, output ``logits``, batch axis dynamic) or
  ``model.pt`` (TorchScript, ``torch.jit.trace`` of the model in eval mode: every registered backbone traces; the
  batch size stays free);
- ``model.json``: (for the latest export; ``exports`` keeps one entry per format exported from the same
  checkpoint into this folder) what a user needs to run the file without dfkit -- the input (``NCHW`` ``float32`` RGB, side,
  the value range and the normalisation ``(rgb / 255 - mean) / std``), how a crop is fitted to the side (dfkit's
  :func:`~dfkit.train.data.fit_crop`: OpenCV resize with ``INTER_AREA`` when shrinking, ``INTER_LINEAR`` otherwise, or
  a centre crop), the class names in logit order, task, backbone, dfkit/torch versions, the SHA-256 of the
  checkpoint and of the exported file, and the check's result.

The check: up to ``n_check`` crops of the run's corpus (its test split when it has one, else every split), through
dfkit's own evaluation transform, go through the checkpoint model and the exported file (onnxruntime's CPU provider /
``torch.jit.load``) at a batch size other than the export's example batch (so the dynamic batch axis is exercised);
the largest absolute difference of the logits must be at most ``ATOL + RTOL * max|logit|`` (:data:`ATOL`,
:data:`RTOL`), and the arg-max classes are compared. Without the corpus (moved, deleted) the check runs on seeded
random input of the model's shape, and ``model.json`` says so.

Atomic: the model is exported to a temporary name in ``out`` and renamed to ``model.onnx``/``model.pt`` only after
the check passed, then ``model.json`` is written (temporary name + rename). A failed export or check removes the
temporary file and leaves an earlier export in ``out`` as it was: no file is ever named as a result that did not
pass (exit 1, the line gives the difference).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import time
import warnings
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dfkit.errors import DfkitError

#: the export formats and the file each writes (in ``out``)
FORMATS = {"onnx": "model.onnx", "torchscript": "model.pt"}
#: the preprocessing + check file written beside the model
JSON_NAME = "model.json"
#: the default folder, inside the run
DEFAULT_OUT = "export"
#: the ONNX operator set the file declares (onnxruntime >= 1.14 runs it)
ONNX_OPSET = 17
#: the check passes when ``max|exported - checkpoint| <= ATOL + RTOL * max|checkpoint logit|``
ATOL = 1e-4
RTOL = 1e-4
#: the example batch the model is exported/traced with (the check then uses another size)
EXAMPLE_BATCH = 2
INPUT_NAME, OUTPUT_NAME = "image", "logits"

__all__ = ["FORMATS", "JSON_NAME", "ONNX_OPSET", "ATOL", "RTOL", "export_model", "preprocessing_spec",
           "check_inputs"]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def preprocessing_spec(img_size: int, mean, std, crop: str) -> dict[str, Any]:
    """How dfkit turns a stored crop into the model's input (:class:`~dfkit.train.data.CropDataset` in evaluation
    mode, :func:`~dfkit.train.data.fit_crop`, :func:`~dfkit.train.data.normalize_batch`), as JSON."""
    s = int(img_size)
    resize = {"to": [s, s], "library": "opencv", "when_shrinking": "INTER_AREA", "otherwise": "INTER_LINEAR",
              "rule": f"cv2.resize(rgb, ({s}, {s}), interpolation=cv2.INTER_AREA if {s} < min(height, width) else "
                      f"cv2.INTER_LINEAR); nothing when the image is already {s} x {s}"}
    fit = ({"mode": "resize", "what": f"the whole crop resized to {s} x {s}", "resize": resize} if crop == "resize"
           else {"mode": "center", "what": f"the central {s} x {s} pixels at the stored resolution (offset "
                 f"((height - {s}) // 2, (width - {s}) // 2)); a crop smaller than {s} on a side is first resized "
                 f"to {s} x {s}", "resize": resize})
    return {
        "decode": "the crop image file (PNG/WebP/JPEG) as 8-bit RGB, height x width x 3 (OpenCV decodes BGR: "
                  "convert it to RGB)",
        "fit": fit,
        "value_range": [0, 255],
        "scale": 1 / 255,
        "mean": [float(m) for m in mean],
        "std": [float(v) for v in std],
        "formula": "x[c] = (rgb[c] / 255 - mean[c]) / std[c] for c in R, G, B; then HWC -> CHW, stacked on a new "
                   "batch axis 0",
    }


def check_inputs(run_dir: Path, config: dict[str, Any], model, n: int, corpus: str | Path | None = None,
                 seed: int = 0):
    """``(input batch float32 N x 3 x S x S, description)``: up to ``n`` crops of the run's corpus (``corpus``
    overrides it; its test split when it has one, else every crop), evenly spaced over the rows, through dfkit's
    evaluation transform; seeded random input when the run's corpus is gone (``corpus`` given but unusable: a
    DfkitError)."""
    import torch

    from dfkit.corpus.reader import Corpus
    from dfkit.train.data import make_eval_loader, parse_list
    from dfkit.train.evaluation import _rows_for

    root = Path(corpus).expanduser() if corpus is not None else (Path(config["corpus"]) if config.get("corpus")
                                                                 else None)
    rows = None
    why = "the run names no corpus"
    if root is not None:
        try:
            Corpus(root)
        except DfkitError as e:
            if corpus is not None:
                raise DfkitError(f"--corpus: {e}") from None
            why = f"the run's corpus {root} is gone ({e})"
        else:
            datasets = parse_list(config.get("datasets"))
            for split in ("test", "all"):
                try:
                    rows, files, _ = _rows_for(run_dir, config, root, datasets, split, None)
                    break
                except DfkitError as e:  # no test crops: every split; no crops at all: random input
                    why = f"{root}: {e}"
    s = int(model.img_size)
    if rows is None or rows.empty:
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(n, 3, s, s, generator=g)
        return x, {"inputs": "random", "why": why, "n": n, "seed": seed}
    pick = np.unique(np.linspace(0, len(rows) - 1, min(n, len(rows))).round().astype(int))
    sub = rows.iloc[pick].reset_index(drop=True)
    loader = make_eval_loader(files, sub, img_size=s, batch_size=len(sub), workers=0, mean=model.mean,
                              std=model.std, crop=config.get("crop", "resize"))
    x = next(iter(loader))["image"]
    return x, {"inputs": "corpus crops", "corpus": str(root), "split": split, "n": int(len(sub)),
               "sample_ids": sub["sample_id"].astype(str).tolist()}


def _quietly(fn: Callable[[], Any]) -> Any:
    """``fn()`` with the exporters' warnings and prints kept off the user's terminal (a failure still raises)."""
    with warnings.catch_warnings(), redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        return fn()


def _export_file(model, fmt: str, example, path: Path) -> None:
    import torch

    if fmt == "onnx":
        _quietly(lambda: torch.onnx.export(
            model, (example,), str(path), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}, opset_version=ONNX_OPSET,
            dynamo=False, do_constant_folding=True))
    else:
        traced = _quietly(lambda: torch.jit.trace(model, example, check_trace=False))
        _quietly(lambda: torch.jit.save(traced, str(path)))  # torch 2.14 calls TorchScript deprecated


def _run_exported(fmt: str, path: Path, x) -> tuple[np.ndarray, str]:
    """The exported file's logits for ``x`` and the runtime that computed them."""
    if fmt == "onnx":
        import onnxruntime as ort

        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return np.asarray(sess.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]), \
            f"onnxruntime {ort.__version__} (CPUExecutionProvider)"
    import torch

    loaded = _quietly(lambda: torch.jit.load(str(path), map_location="cpu"))
    with torch.no_grad():
        return loaded(x).numpy(), f"torch.jit.load (torch {torch.__version__})"


def _readable(path: Path) -> None:
    """The mode an ordinary new file gets (``mkstemp`` makes it private to the owner)."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        _readable(Path(tmp))
        Path(tmp).write_text(json.dumps(doc, indent=1) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _earlier_exports(path: Path, ckpt_sha: str, fmt: str) -> dict[str, Any]:
    """The other formats' entries of an earlier ``model.json`` in the same folder that are still true: exported
    from the same checkpoint, their file unchanged (so exporting both formats into one folder keeps both)."""
    try:
        old = json.loads(path.read_text())
        if old.get("checkpoint_sha256") != ckpt_sha:
            return {}
        return {f: e for f, e in (old.get("exports") or {}).items()
                if f != fmt and f in FORMATS and e.get("file") == FORMATS[f]
                and (path.parent / FORMATS[f]).exists() and _sha256(path.parent / FORMATS[f]) == e.get("file_sha256")}
    except (OSError, ValueError, AttributeError, TypeError):
        return {}


def export_model(run: str | Path, fmt: str = "onnx", out: str | Path | None = None, n_check: int = 32,
                 corpus: str | Path | None = None, progress: bool = False) -> dict[str, Any]:
    """Export the best checkpoint of ``run`` as ``fmt`` (``onnx`` or ``torchscript``) into ``out`` and check it;
    returns the ``model.json`` document (see the module docstring).

    1. Refuse an unknown ``fmt`` / ``n_check`` < 1 (nothing written), load the run (``best``, else ``last``).
    2. The check inputs: corpus crops through dfkit's transform, else seeded random input.
    3. Export to a temporary file in ``out`` (example batch :data:`EXAMPLE_BATCH`).
    4. Run the checkpoint and the file on the check inputs; over the tolerance: remove the file, DfkitError exit 1.
    5. Rename the file to its name, write ``model.json`` (temporary + rename).
    """
    import torch

    from dfkit import __version__
    from dfkit.train.checkpoint import checkpoint_paths
    from dfkit.train.predict import load_run, run_checkpoint

    if fmt not in FORMATS:
        raise DfkitError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
    if int(n_check) < 1:
        raise DfkitError(f"--n-check {n_check}: check at least 1 input")
    run = Path(run).expanduser()
    ckpt = run_checkpoint(run)  # a missing run: one line, before any progress bar
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=4, desc="export-model", unit="step", postfix="load")

    def step(done: str, following: str = "") -> None:
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(following)

    try:
        model, names, config = load_run(run)
        model.eval()
        st_path, _ = checkpoint_paths(ckpt)
        step("load", "check inputs")
        x, inputs = check_inputs(run, config, model, int(n_check), corpus=corpus)
        if len(x) == EXAMPLE_BATCH:  # the check must use another batch size than the example
            x = torch.cat([x, x[:1]])
        step("inputs", fmt)
        out_dir = Path(out).expanduser() if out is not None else run / DEFAULT_OUT
        out_dir.mkdir(parents=True, exist_ok=True)
        final = out_dir / FORMATS[fmt]
        fd, tmp_name = tempfile.mkstemp(dir=out_dir, prefix="." + final.name + ".", suffix=".tmp")
        os.close(fd)
        tmp = Path(tmp_name)
        _readable(tmp)
        try:
            threads = torch.get_num_threads()
            try:
                _export_file(model, fmt, x[:EXAMPLE_BATCH].clone(), tmp)
            except Exception as e:  # an operator the exporter lacks, a model that does not trace
                first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                raise DfkitError(f"{run}: {fmt} export of {model.backbone_name} failed ({type(e).__name__}: "
                                 f"{first}); nothing written", exit_code=1) from None
            finally:
                torch.set_num_threads(threads)
            step("export", "check")
            with torch.no_grad():
                ref = model(x).float().numpy()
            got, runtime = _run_exported(fmt, tmp, x)
            if got.shape != ref.shape:
                raise DfkitError(f"{run}: the exported {fmt} model gives shape {list(got.shape)} for a batch of "
                                 f"{len(x)}, the checkpoint {list(ref.shape)}; nothing written", exit_code=1)
            diff = float(np.abs(got.astype(np.float64) - ref.astype(np.float64)).max())
            tol = ATOL + RTOL * float(np.abs(ref).max())
            agree = float((got.argmax(1) == ref.argmax(1)).mean())
            step("check")
            check = {**inputs, "batch_size": int(len(x)), "export_batch_size": EXAMPLE_BATCH, "runtime": runtime,
                     "max_abs_diff": diff, "max_abs_logit": float(np.abs(ref).max()), "tolerance": tol,
                     "tolerance_rule": f"{ATOL:g} + {RTOL:g} * max|logit|", "argmax_agree": agree,
                     "passed": bool(diff <= tol)}
            if not check["passed"]:
                raise DfkitError(f"{run}: the exported {fmt} model differs from the checkpoint by up to {diff:.3g} "
                                 f"in the logits (tolerance {tol:.3g}; arg-max agrees on {agree:.0%} of "
                                 f"{len(x)} inputs); nothing written", exit_code=1)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        cfg = model.config()
        doc = {
            "format": fmt,
            "file": final.name,
            "file_sha256": _sha256(final),
            **({"onnx_opset": ONNX_OPSET} if fmt == "onnx" else {"torchscript": "torch.jit.trace, eval mode"}),
            "input": {"name": INPUT_NAME, "layout": "NCHW", "dtype": "float32", "channels": "RGB",
                      "shape": ["batch", 3, int(model.img_size), int(model.img_size)], "batch": "dynamic"},
            "output": {"name": OUTPUT_NAME, "shape": ["batch", len(names)],
                       "meaning": "logits, one per class in class_names order (softmax: probabilities; the arg-max "
                                  "is dfkit's prediction)"},
            "class_names": list(names),
            "task": config.get("task"),
            "backbone": cfg.get("backbone"),
            "img_size": int(model.img_size),
            "preprocessing": preprocessing_spec(model.img_size, model.mean, model.std, config.get("crop", "resize")),
            "run": str(run),
            "checkpoint": st_path.name,
            "checkpoint_sha256": _sha256(st_path),
            "dfkit_version": __version__,
            "torch_version": torch.__version__,
            "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "check": check,
        }
        doc["exports"] = {**_earlier_exports(out_dir / JSON_NAME, doc["checkpoint_sha256"], fmt),
                          fmt: {k: doc[k] for k in ("file", "file_sha256", "exported_at", "check")}}
        _write_json(out_dir / JSON_NAME, doc)
        return doc
    finally:
        if bar is not None:
            bar.close()
