"""Where the corpus and the dataset roots are, set once.

Resolution order (first wins):

* corpus: ``--corpus PATH`` > ``$DFKIT_CORPUS`` > ``corpus:`` in the config file > ``./dfkit-corpus``
* a dataset root: the ``ROOT`` argument > ``$DFKIT_ROOT_<NAME>`` (e.g. ``DFKIT_ROOT_FFPP``) > ``roots: {<name>: ...}``
  in the config file

The config file is ``$DFKIT_CONFIG``, else ``./dfkit.yaml``, else ``~/.config/dfkit/config.yaml``::

    corpus: /data/dfkit-corpus
    roots:
      ffpp: /data/FaceForensics++
      celebdf: /data/Celeb-DF-v2
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from dfkit.errors import DfkitError

DEFAULT_CORPUS = "dfkit-corpus"


def config_path() -> Path | None:
    env = os.environ.get("DFKIT_CONFIG")
    if env:
        p = Path(env).expanduser()
        if not p.exists():
            raise DfkitError(f"DFKIT_CONFIG points to {p}, which does not exist")
        return p
    for cand in (Path("dfkit.yaml"), Path("~/.config/dfkit/config.yaml").expanduser()):
        if cand.exists():
            return cand
    return None


def read_yaml_mapping(p: Path, expected: str) -> dict[str, Any]:
    """The YAML (or JSON) mapping in ``p`` (empty file: ``{}``); one-line :class:`DfkitError` naming ``p`` when it is
    not valid YAML or not a mapping (``expected`` says what it should hold)."""
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise DfkitError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise DfkitError(f"{p}: expected a mapping {expected}")
    return data


def load_config() -> dict[str, Any]:
    p = config_path()
    if p is None:
        return {}
    return read_yaml_mapping(p, "with keys corpus/roots")


def resolve_corpus(arg: str | Path | None) -> Path:
    if arg:
        return Path(arg).expanduser()
    if os.environ.get("DFKIT_CORPUS"):
        return Path(os.environ["DFKIT_CORPUS"]).expanduser()
    cfg = load_config()
    return Path(cfg.get("corpus") or DEFAULT_CORPUS).expanduser()


def resolve_root(dataset: str, arg: str | Path | None) -> Path:
    if arg:
        return Path(arg).expanduser()
    env = f"DFKIT_ROOT_{dataset.upper()}"
    if os.environ.get(env):
        return Path(os.environ[env]).expanduser()
    roots = load_config().get("roots") or {}
    if roots.get(dataset):
        return Path(roots[dataset]).expanduser()
    where = config_path() or "dfkit.yaml"
    raise DfkitError(f"no root given for {dataset}: pass ROOT, set {env}, or add roots.{dataset} to {where}")


def default_of(cls: Any, name: str) -> Any:
    """The default of dataclass ``cls``'s field ``name``, or of function ``cls``'s parameter ``name``, so that a
    command-line option spells it only once (``typer.Option(default_of(IngestParams, "frames"))``,
    ``default_of(services.evaluate, "batch_size")``)."""
    from dataclasses import MISSING

    if not hasattr(cls, "__dataclass_fields__"):
        import inspect

        d = inspect.signature(cls).parameters[name].default
        if d is inspect.Parameter.empty:
            raise KeyError(f"{cls.__name__}({name}) has no default")
        return d
    f = cls.__dataclass_fields__[name]
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    raise KeyError(f"{cls.__name__}.{name} has no default")
