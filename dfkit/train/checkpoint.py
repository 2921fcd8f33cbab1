"""Checkpoints as ``safetensors`` plus JSON metadata - never pickle.

A checkpoint ``NAME`` is two files side by side:

- ``NAME.safetensors``: every tensor - the model (``model.*``), extra modules such as a projection head
  (``<module>.*``), the optimizer and scheduler state (``optimizer.*``, ``scheduler.*``) and the random generators'
  states (``rng.*``);
- ``NAME.json``: the metadata the caller passes (config, class names, epoch, best metric, seeds, ...) and the
  *skeletons* of the optimizer/scheduler/rng states: their non-tensor structure (step counts, learning rates, betas,
  parameter ids) as JSON, with each tensor replaced by a reference to its key in the safetensors file.

Nothing is ever unpickled, so loading an untrusted checkpoint cannot run code. Both files are written atomically
(temporary file + rename) and carry a shared random token, so a crash between the two writes is detected on load.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dfkit.errors import DfkitError
from dfkit.procs import fault_point

FORMAT = "dfkit-checkpoint"
VERSION = 1

__all__ = [
    "checkpoint_paths",
    "save_checkpoint",
    "load_checkpoint",
    "read_checkpoint_meta",
    "verify_checkpoint",
    "CheckpointError",
    "capture_rng_state",
    "restore_rng_state",
    "build_model_from_checkpoint",
]


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """``(NAME.safetensors, NAME.json)`` for ``NAME``, ``NAME.safetensors`` or ``NAME.json``."""
    p = Path(path)
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".safetensors"), p.with_name(p.name + ".json")


# ----------------------------------------------------------------------------------------------------------------------
# nested state <-> (tensors, JSON skeleton)

def _flatten(obj: Any, key: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace every tensor/array in ``obj`` by ``{"__tensor__": key}`` (storing it in ``tensors``); keep the rest as
    JSON. Dict keys keep their type (optimizer state is keyed by int), tuples stay tuples."""
    if isinstance(obj, torch.Tensor):
        tensors[key] = obj.detach().to("cpu").contiguous().clone()
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray):
        tensors[key] = torch.from_numpy(np.ascontiguousarray(obj)).clone()
        return {"__ndarray__": key}
    if isinstance(obj, dict):
        items = []
        for i, (k, v) in enumerate(obj.items()):
            if not isinstance(k, (str, int, float, bool)) and k is not None:
                raise TypeError(f"cannot store dict key of type {type(k).__name__} at {key}")
            items.append([k, _flatten(v, f"{key}.{i}", tensors)])
        return {"__dict__": items}
    if isinstance(obj, tuple):
        return {"__tuple__": [_flatten(v, f"{key}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_flatten(v, f"{key}.{i}", tensors) for i, v in enumerate(obj)]
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} at {key} without pickle")


def _unflatten(skel: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(skel, dict):
        if "__tensor__" in skel:
            return tensors[skel["__tensor__"]]
        if "__ndarray__" in skel:
            return tensors[skel["__ndarray__"]].numpy()
        if "__dict__" in skel:
            return {k: _unflatten(v, tensors) for k, v in skel["__dict__"]}
        if "__tuple__" in skel:
            return tuple(_unflatten(v, tensors) for v in skel["__tuple__"])
        return {k: _unflatten(v, tensors) for k, v in skel.items()}
    if isinstance(skel, list):
        return [_unflatten(v, tensors) for v in skel]
    return skel


# ----------------------------------------------------------------------------------------------------------------------
# random generators

def capture_rng_state() -> dict[str, Any]:
    """The global states of Python's ``random``, numpy's legacy generator, torch (CPU and every CUDA device)."""
    py = random.getstate()  # (version, tuple of 625 ints, gauss_next)
    np_state = np.random.get_state()  # ("MT19937", uint32[624], pos, has_gauss, cached_gaussian)
    state: dict[str, Any] = {
        "python": {"version": py[0], "state": np.asarray(py[1], dtype=np.int64), "gauss_next": py[2]},
        "numpy": {"name": np_state[0], "keys": np_state[1].astype(np.int64), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state` (CUDA states are restored when the same devices exist)."""
    py = state["python"]
    random.setstate((int(py["version"]), tuple(int(x) for x in np.asarray(py["state"])), py["gauss_next"]))
    n = state["numpy"]
    np.random.set_state((n["name"], np.asarray(n["keys"]).astype(np.uint32), int(n["pos"]), int(n["has_gauss"]),
                         float(n["cached_gaussian"])))
    torch.set_rng_state(torch.as_tensor(state["torch"], dtype=torch.uint8))
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([torch.as_tensor(s, dtype=torch.uint8) for s in cuda])


# ----------------------------------------------------------------------------------------------------------------------
# save / load

def _atomic_write(path: Path, write) -> None:
    # a checkpoint file left under its temporary name by a process killed mid-write (one writer per run folder)
    for stale in [*path.parent.glob("*.safetensors.*.tmp"), *path.parent.glob("*.json.*.tmp")]:
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        fault_point("checkpoint-tmp-written")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _named_modules(model: nn.Module | None, modules: dict[str, nn.Module] | None) -> dict[str, nn.Module]:
    named = dict(modules or {})
    if model is not None:
        if "model" in named:
            raise ValueError("pass the model either as model= or in modules=, not both")
        named["model"] = model
    return named


def _module_state(module: nn.Module) -> dict[str, torch.Tensor]:
    # unwrap DistributedDataParallel / DataParallel / torch.compile wrappers so keys do not depend on them
    inner = getattr(module, "module", None) or getattr(module, "_orig_mod", None) or module
    return inner.state_dict()


def save_checkpoint(
    path: str | Path,
    *,
    model: nn.Module | None = None,
    modules: dict[str, nn.Module] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    meta: dict[str, Any] | None = None,
    rng: bool = True,
    extra_state: dict[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write ``NAME.safetensors`` + ``NAME.json``; returns both paths.

    Args:
        path: ``NAME`` (suffix optional); parent folders are created.
        model: stored under ``model.*``.
        modules: further modules, stored under ``<name>.*`` (e.g. ``{"projection": head}``).
        optimizer, scheduler: their ``state_dict()`` (tensors -> safetensors, the rest -> JSON skeleton).
        meta: JSON-serialisable metadata (config, class names, epoch, best metric, seeds ...).
        rng: also store the global random generators' states (for exact resume).
        extra_state: any further nested state of tensors/arrays/JSON values (e.g. a sampler's state).
    """
    st_path, js_path = checkpoint_paths(path)
    st_path.parent.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    mod_names: list[str] = []
    for name, mod in _named_modules(model, modules).items():
        if "." in name:
            raise ValueError(f"module name {name!r} must not contain '.'")
        mod_names.append(name)
        for k, v in _module_state(mod).items():
            tensors[f"{name}.{k}"] = v.detach().to("cpu").contiguous().clone()
    skeletons: dict[str, Any] = {}
    for name, state in (("optimizer", optimizer.state_dict() if optimizer is not None else None),
                        ("scheduler", scheduler.state_dict() if scheduler is not None else None),
                        ("rng", capture_rng_state() if rng else None),
                        ("extra", extra_state)):
        if state is not None:
            if name in mod_names:
                raise ValueError(f"module name {name!r} is reserved")
            skeletons[name] = _flatten(state, name, tensors)
    token = secrets.token_hex(8)
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "token": token,
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "tensors_file": st_path.name,
        "modules": sorted(mod_names),
        "meta": meta or {},
        "state": skeletons,
    }
    text = json.dumps(doc, indent=1)  # fail on non-JSON metadata before writing anything

    from safetensors.torch import save_file

    _atomic_write(st_path, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt", "dfkit": FORMAT,
                                                                           "token": token}))
    _atomic_write(js_path, lambda tmp: Path(tmp).write_text(text))
    return st_path, js_path


class CheckpointError(DfkitError, ValueError):
    """A checkpoint that cannot be used (damaged, incomplete, or of another model): one line naming the file and the
    problem. Also a ``ValueError`` for callers of the Python API."""


def read_checkpoint_meta(path: str | Path) -> dict[str, Any]:
    """The JSON document of a checkpoint (``doc["meta"]`` is what the caller saved). A missing, damaged or foreign
    file raises :class:`CheckpointError` naming it."""
    _, js_path = checkpoint_paths(path)
    try:
        doc = json.loads(js_path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{js_path}: checkpoint file missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{js_path}: damaged checkpoint metadata (truncated or overwritten? {e})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise CheckpointError(f"{js_path} is not a dfkit checkpoint")
    return doc


def _tensor_refs(skel: Any, out: set[str]) -> set[str]:
    if isinstance(skel, dict):
        for k in ("__tensor__", "__ndarray__"):
            if k in skel:
                out.add(skel[k])
                return out
        for v in skel.values():
            _tensor_refs(v, out)
    elif isinstance(skel, list):
        for v in skel:
            _tensor_refs(v, out)
    return out


def verify_checkpoint(path: str | Path, model: nn.Module | None = None, *, modules: tuple[str, ...] = ("model",),
                      state: tuple[str, ...] = ()) -> dict[str, Any]:
    """Check, without loading the tensors, that checkpoint ``path`` is whole and fits ``model``: both files readable,
    of one save (same token), holding ``modules`` and the ``state`` entries (``optimizer``, ``scheduler``, ``rng``)
    with every tensor they refer to, and (``model``) the model's tensor names and shapes exactly. Returns the JSON
    document; raises :class:`CheckpointError` naming the file and the problem."""
    from safetensors import SafetensorError, safe_open

    st_path, js_path = checkpoint_paths(path)
    doc = read_checkpoint_meta(js_path)
    try:
        with safe_open(str(st_path), framework="pt") as f:
            token = (f.metadata() or {}).get("token")
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except FileNotFoundError:
        raise CheckpointError(f"{st_path}: checkpoint file missing (beside {js_path.name})") from None
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{st_path}: damaged checkpoint tensors (truncated or overwritten? {e})") from None
    if token != doc.get("token"):
        raise CheckpointError(f"{st_path} and {js_path} do not belong together (interrupted save?)")
    for name in modules:
        if name not in doc.get("modules", []):
            raise CheckpointError(f"{st_path} holds no module {name!r} (it has {doc.get('modules')})")
    skel = doc.get("state", {})
    for name in state:
        if name not in skel:
            raise CheckpointError(f"{st_path} holds no {name} state")
        gone = sorted(_tensor_refs(skel[name], set()) - set(shapes))
        if gone:
            raise CheckpointError(f"{st_path}: its {name} state refers to {len(gone)} tensors the file lacks "
                                  f"(e.g. {gone[0]}): damaged checkpoint")
    if model is not None:
        own = {k: tuple(v.shape) for k, v in _module_state(model).items()}
        have = {k[len("model."):]: v for k, v in shapes.items() if k.startswith("model.")}
        what = ""
        cfg = (doc.get("meta") or {}).get("model") or {}
        if cfg:
            what = f" (it holds a {cfg.get('backbone')} model for {cfg.get('num_classes')} classes)"
        missing, extra = sorted(set(own) - set(have)), sorted(set(have) - set(own))
        if missing or extra:
            ex = (missing or extra)[0]
            raise CheckpointError(f"{st_path} is of another model{what}: {len(missing)} tensors of this model "
                                  f"missing, {len(extra)} not of this model (e.g. {ex})")
        bad = [k for k in own if own[k] != have[k]]
        if bad:
            k = bad[0]
            raise CheckpointError(f"{st_path} does not fit this model{what}: {k} has shape {list(have[k])} there, "
                                  f"{list(own[k])} here ({len(bad)} tensors differ)")
    return doc


def _load_into(mod: nn.Module, state: dict[str, torch.Tensor], strict: bool) -> None:
    inner = getattr(mod, "module", None) or getattr(mod, "_orig_mod", None) or mod
    inner.load_state_dict(state, strict=strict)


def load_checkpoint(
    path: str | Path,
    *,
    model: nn.Module | None = None,
    modules: dict[str, nn.Module] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    restore_rng: bool = False,
    strict: bool = True,
) -> dict[str, Any]:
    """Load what the arguments ask for from ``NAME.safetensors``/``NAME.json`` and return the JSON document.

    Tensors are read on the CPU; ``load_state_dict`` copies them onto the modules' (and optimizer's) devices.
    ``restore_rng`` resets the global random generators to their saved states (for exact resume). The returned
    document's ``"extra_state"`` holds what was saved as ``extra_state``.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    st_path, js_path = checkpoint_paths(path)
    doc = read_checkpoint_meta(js_path)
    from safetensors import SafetensorError

    try:
        with safe_open(str(st_path), framework="pt") as f:
            token = (f.metadata() or {}).get("token")
        if token != doc.get("token"):
            raise CheckpointError(f"{st_path} and {js_path} do not belong together (interrupted save?)")
        tensors = load_file(str(st_path), device="cpu")
    except FileNotFoundError:
        raise CheckpointError(f"{st_path}: checkpoint file missing (beside {js_path.name})") from None
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{st_path}: damaged checkpoint tensors (truncated or overwritten? {e})") from None
    for name, mod in _named_modules(model, modules).items():
        if name not in doc["modules"]:
            raise KeyError(f"{st_path} holds no module {name!r} (it has {doc['modules']})")
        prefix = name + "."
        _load_into(mod, {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}, strict)
    state = doc.get("state", {})
    if optimizer is not None:
        if "optimizer" not in state:
            raise KeyError(f"{st_path} holds no optimizer state")
        optimizer.load_state_dict(_unflatten(state["optimizer"], tensors))  # moves state to the params' device
    if scheduler is not None:
        if "scheduler" not in state:
            raise KeyError(f"{st_path} holds no scheduler state")
        scheduler.load_state_dict(_unflatten(state["scheduler"], tensors))
    if restore_rng:
        if "rng" not in state:
            raise KeyError(f"{st_path} holds no random generator state")
        restore_rng_state(_unflatten(state["rng"], tensors))
    doc["extra_state"] = _unflatten(state["extra"], tensors) if "extra" in state else None
    return doc


def build_model_from_checkpoint(path: str | Path) -> nn.Module:
    """Rebuild a :class:`~dfkit.train.backbones.BackboneClassifier` saved by the training loop (its config is in
    ``meta["model"]``) and load its weights; returns it in eval mode."""
    from dfkit.train.backbones import create_backbone

    st_path, _ = checkpoint_paths(path)
    cfg = read_checkpoint_meta(path)["meta"].get("model")
    if not cfg:
        raise ValueError(f"{path}: no model config in the metadata; build the model yourself and use load_checkpoint")
    model = create_backbone(cfg["backbone"], cfg["num_classes"], img_size=cfg.get("img_size"), weights=st_path)
    return model.eval()
