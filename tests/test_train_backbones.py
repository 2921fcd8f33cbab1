"""Backbone registry: construction, forward/embed, local weights, the offline default."""

import logging

import pytest
import torch
from safetensors.torch import save_file

from dfkit.errors import DfkitError
from dfkit.train.backbones import BackboneClassifier, backbone_spec, create_backbone, list_backbones

BACKBONES = list_backbones()


def test_registry():
    assert {"tiny", "efficientnet_b0", "legacy_xception", "vit_small_patch16_224"} <= set(BACKBONES)
    assert BACKBONES == sorted(BACKBONES)
    families = {backbone_spec(n).family for n in BACKBONES}
    assert sorted(n for f in families for n in list_backbones(f)) == BACKBONES  # every backbone in one family
    assert list_backbones("efficientnet") == ["efficientnet_b0", "efficientnet_b4"]
    assert backbone_spec("legacy_xception").timm_name == "legacy_xception"
    with pytest.raises(KeyError, match="unknown backbone 'resnet9000'; known: " + ", ".join(BACKBONES)):
        create_backbone("resnet9000", num_classes=2)
    with pytest.raises(DfkitError, match="unknown backbone"):
        backbone_spec("resnet9000")


@pytest.mark.parametrize("name", BACKBONES)
def test_every_backbone_creates_and_runs(name):
    """Built from scratch at its default size: named once (the registry's name is the model's), an embedding and
    logits of the right shapes, and a config that names it. Built on the meta device (shapes without numbers: the
    big ones take seconds to initialise on a CPU); tiny and efficientnet_b0 run real numbers below."""
    import timm

    spec = backbone_spec(name)
    assert spec.name == name and spec.description and spec.default_img_size >= 32
    assert spec.factory.__module__.startswith("dfkit.train.backbones.")
    if spec.timm_name is not None:
        assert spec.timm_name in timm.list_models()
    with torch.device("meta"):
        m = create_backbone(name, num_classes=3).eval()
        emb = m.embed(torch.randn(2, 3, m.img_size, m.img_size))
        logits = m.classify(emb)
    assert isinstance(m, BackboneClassifier) and m.backbone_name == name and m.weights_source == "scratch"
    assert m.img_size == spec.default_img_size
    assert emb.shape == (2, m.embed_dim) and logits.shape == (2, 3) and m.head.in_features == m.embed_dim
    assert {k: m.config()[k] for k in ("backbone", "num_classes", "img_size", "embed_dim")} == {
        "backbone": name, "num_classes": 3, "img_size": spec.default_img_size, "embed_dim": m.embed_dim}


@pytest.mark.parametrize("name", BACKBONES)
def test_every_backbone_says_where_pretrained_weights_come_from(name, monkeypatch):
    import timm

    def offline(*args, **kwargs):
        if kwargs.get("pretrained"):
            raise OSError("Name or service not known")
        raise AssertionError("unexpected call")

    monkeypatch.setattr(timm, "create_model", offline)
    if backbone_spec(name).timm_name is None:  # not from timm: it has no pretrained weights, and says so
        with pytest.raises(ValueError, match="no pretrained weights"):
            create_backbone(name, num_classes=2, pretrained=True)
    else:
        with pytest.raises(RuntimeError, match="needs the internet"):
            create_backbone(name, num_classes=2, pretrained=True)


def test_tiny_forward_and_scratch_message(caplog):
    with caplog.at_level(logging.WARNING, logger="dfkit.train"):
        m = create_backbone("tiny", num_classes=4, img_size=64)
    assert "training tiny from scratch (no pretrained weights: offline default)" in caplog.text
    assert isinstance(m, BackboneClassifier) and m.weights_source == "scratch"
    assert 50_000 < sum(p.numel() for p in m.parameters()) < 150_000
    x = torch.randn(3, 3, 64, 64)
    emb, logits = m.embed(x), m(x)
    assert emb.shape == (3, m.embed_dim) == (3, 128) and logits.shape == (3, 4)
    assert torch.allclose(m.classify(emb), logits)
    assert m(torch.randn(2, 3, 128, 128)).shape == (2, 4)  # any input size
    assert m.config()["backbone"] == "tiny" and m.config()["num_classes"] == 4
    with pytest.raises(ValueError, match="no pretrained weights"):
        create_backbone("tiny", num_classes=2, pretrained=True)


def test_tiny_local_weights(tmp_path):
    src = create_backbone("tiny", num_classes=2)
    # a bare feature-extractor state dict (.safetensors) and a torch file (loaded with weights_only=True)
    save_file({k: v.contiguous() for k, v in src.features.state_dict().items()}, str(tmp_path / "f.safetensors"))
    torch.save({"state_dict": src.state_dict()}, tmp_path / "m.pth")
    for path in (tmp_path / "f.safetensors", tmp_path / "m.pth"):
        m = create_backbone("tiny", num_classes=2, weights=path)
        assert m.weights_source == str(path)
        for k, v in src.features.state_dict().items():
            assert torch.equal(m.features.state_dict()[k], v), (path, k)
    assert torch.equal(m.head.weight, src.head.weight)  # the .pth held the whole classifier
    save_file({"unrelated.weight": torch.zeros(3)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError, match="no tensor matches"):
        create_backbone("tiny", num_classes=2, weights=tmp_path / "bad.safetensors")
    with pytest.raises(FileNotFoundError):
        create_backbone("tiny", num_classes=2, weights=tmp_path / "missing.safetensors")


def test_efficientnet_b0_and_timm_weights(tmp_path):
    import timm

    m = create_backbone("efficientnet_b0", num_classes=3)
    assert m.embed_dim == 1280 and m.img_size == 224
    m.eval()
    with torch.no_grad():
        x = torch.randn(2, 3, 64, 64)
        assert m.embed(x).shape == (2, 1280) and m(x).shape == (2, 3)
    # timm's own checkpoint layout (with its 1000-class classifier) loads into the features, the classifier dropped
    ref = timm.create_model("efficientnet_b0", pretrained=False, num_classes=1000)
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(tmp_path / "model.safetensors"))
    m2 = create_backbone("efficientnet_b0", num_classes=3, weights=tmp_path / "model.safetensors")
    assert torch.equal(m2.features.conv_stem.weight, ref.conv_stem.weight)
    assert m2.head.weight.shape == (3, 1280)
