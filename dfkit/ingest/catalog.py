"""The catalogue of datasets (what ``dfkit datasets`` shows): every registered adapter, what it expects on disk, its
methods and options."""

from __future__ import annotations

from typing import Any

from dfkit.ingest.base import list_adapters
from dfkit.taxonomy import dataset_manifest, method_family


def describe_adapters() -> list[dict[str, Any]]:
    """One dict per adapter, sorted by name: ``name``, ``title``, ``expects``, ``options`` (name -> help) and
    ``methods`` (the manifest's method list: ``name``, ``label``, ``canonical``, ``family``)."""
    out = []
    for name, cls in list_adapters().items():
        man = dataset_manifest(name)
        methods = []
        for mname, entry in (man.get("methods") or {}).items():
            entry = entry or {}
            label = entry.get("label")
            canonical = "real" if label == "real" else str(entry.get("canonical") or mname.lower())
            methods.append({"name": mname, "label": label, "canonical": canonical,
                            "family": method_family(canonical)})
        out.append({
            "name": name,
            "title": cls.title or man.get("title") or name,
            "expects": cls.expects,
            "methods": methods,
            "options": dict(cls.options),
        })
    return out
