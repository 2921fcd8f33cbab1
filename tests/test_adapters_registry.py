"""All adapters registered, described (dfkit datasets), and every manifest method mapped into the taxonomy."""

from __future__ import annotations

from pathlib import Path

import pytest

import dfkit.ingest.adapters
from dfkit.errors import DfkitError, LayoutError
from dfkit.ingest.base import Adapter, create_adapter, list_adapters
from dfkit.ingest.catalog import describe_adapters
from dfkit.paths import manifests_dir
from dfkit.taxonomy import dataset_manifest, taxonomy

ADAPTERS = list(list_adapters())


def test_every_adapter_module_registers_one():
    here = Path(dfkit.ingest.adapters.__file__).parent
    assert {p.stem for p in here.glob("*.py") if not p.name.startswith("_")} == set(ADAPTERS)
    assert {"ffpp", "demo", "celebdf", "dfdc", "folder", "csv"} <= set(ADAPTERS)


@pytest.mark.parametrize("name", ADAPTERS)
def test_adapter_registered_with_description(name):
    cls = list_adapters()[name]
    assert issubclass(cls, Adapter) and cls.name == name and cls.title and cls.expects, name
    assert cls.__module__ == f"dfkit.ingest.adapters.{name}"  # one file per dataset, named after it
    assert (manifests_dir() / name / "methods.yaml").is_file(), name
    assert all(isinstance(k, str) and h for k, h in cls.options.items()), name


@pytest.mark.parametrize("name", ADAPTERS)
def test_adapter_creates_and_refuses_bad_roots_and_options(name, tmp_path):
    a = create_adapter(name, tmp_path)
    assert isinstance(a, Adapter) and a.root == tmp_path
    assert a.methods() == list(dataset_manifest(name)["methods"])
    assert a.ingest_params()["root"] == str(tmp_path)
    with pytest.raises(LayoutError, match=f"^{name}: "):  # an empty root: says what was expected, no traceback
        list(a.videos())
    with pytest.raises(DfkitError, match="does not exist"):
        list(create_adapter(name, tmp_path / "missing").videos())
    known = ", ".join(sorted(list_adapters()[name].options)) or "none"
    with pytest.raises(DfkitError, match=f"unknown option\\(s\\) bogus; known: {known}$"):
        create_adapter(name, tmp_path, bogus="1")


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(DfkitError, match="unknown dataset 'nope'; known: " + ", ".join(ADAPTERS)):
        create_adapter("nope", "/tmp")


@pytest.mark.parametrize("name", ADAPTERS)
def test_manifest_methods_map_to_taxonomy(name):
    man = dataset_manifest(name)
    assert man["dataset"] == name and man["methods"]
    canon = taxonomy()["canonical"]
    for method, entry in man["methods"].items():
        assert entry["label"] in ("real", "fake"), (name, method)
        assert entry["canonical"] in canon, (name, method, entry["canonical"])
        if entry["label"] == "real":
            assert entry["canonical"] == "real", (name, method)


def test_taxonomy_families_are_defined():
    tx = taxonomy()
    assert set(tx["canonical"].values()) <= set(tx["families"])


def test_describe_adapters():
    rows = {d["name"]: d for d in describe_adapters()}
    assert list(rows) == ADAPTERS  # every registered adapter, sorted by name
    for name, cls in list_adapters().items():
        assert rows[name]["options"] == dict(cls.options) and rows[name]["expects"] == cls.expects
    cdf = rows["celebdf"]
    assert set(cdf) == {"name", "title", "expects", "methods", "options"}
    assert {m["name"] for m in cdf["methods"]} == {"Celeb-real", "YouTube-real", "Celeb-synthesis"}
    synth = next(m for m in cdf["methods"] if m["name"] == "Celeb-synthesis")
    assert synth == {"name": "Celeb-synthesis", "label": "fake", "canonical": "celebdf_synthesis",
                     "family": "faceswap_autoencoder"}
    assert "version" in cdf["options"] and "ffpp_root" in rows["deeperforensics"]["options"]
    assert rows["dfdc"]["methods"][1]["family"] == "unknown"
