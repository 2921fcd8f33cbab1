"""One method taxonomy across datasets: dataset method -> canonical method -> family (manifests/)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import yaml

from dfkit.paths import manifests_dir


@lru_cache(maxsize=None)
def taxonomy() -> dict[str, Any]:
    with open(manifests_dir() / "taxonomy.yaml") as f:
        return yaml.safe_load(f)


@lru_cache(maxsize=None)
def dataset_manifest(dataset: str) -> dict[str, Any]:
    path = manifests_dir() / dataset / "methods.yaml"
    if not path.exists():
        return {"dataset": dataset, "methods": {}}
    with open(path) as f:
        return yaml.safe_load(f)


def dataset_methods(dataset: str) -> list[str]:
    return list(dataset_manifest(dataset).get("methods", {}))


def canonical_method(dataset: str, method: str, label: str) -> str:
    """The canonical name of a dataset's method; reals are always ``real``; unlisted methods keep a
    lower-cased version of their own name (and are reported as unseen by cross-dataset evaluation)."""
    if label == "real":
        return "real"
    entry = dataset_manifest(dataset).get("methods", {}).get(method)
    if entry and entry.get("canonical"):
        return str(entry["canonical"])
    return method.lower()


def method_family(canonical: str) -> str:
    return str(taxonomy()["canonical"].get(canonical, "unknown"))
