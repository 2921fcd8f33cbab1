"""All adapters registered, described (dfkit datasets), and every manifest method mapped into the taxonomy."""

from __future__ import annotations

import pytest

from dfkit.ingest.base import Adapter, list_adapters
from dfkit.ingest.datasets_cli import describe_adapters
from dfkit.paths import manifests_dir
from dfkit.taxonomy import dataset_manifest, taxonomy

NEW = ["celebdf", "dfdc", "dfdcp", "deeperforensics", "forgerynet", "df40", "fakeavceleb", "wilddeepfake", "kodf",
       "folder", "csv"]


def test_all_adapters_registered_with_description():
    adapters = list_adapters()
    for name in NEW:
        cls = adapters[name]
        assert issubclass(cls, Adapter) and cls.title and cls.expects, name
        assert (manifests_dir() / name / "methods.yaml").is_file(), name


@pytest.mark.parametrize("name", NEW)
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
    assert set(NEW) <= set(rows)
    cdf = rows["celebdf"]
    assert set(cdf) == {"name", "title", "expects", "methods", "options"}
    assert {m["name"] for m in cdf["methods"]} == {"Celeb-real", "YouTube-real", "Celeb-synthesis"}
    synth = next(m for m in cdf["methods"] if m["name"] == "Celeb-synthesis")
    assert synth == {"name": "Celeb-synthesis", "label": "fake", "canonical": "celebdf_synthesis",
                     "family": "faceswap_autoencoder"}
    assert "version" in cdf["options"] and "ffpp_root" in rows["deeperforensics"]["options"]
    assert rows["dfdc"]["methods"][1]["family"] == "unknown"
