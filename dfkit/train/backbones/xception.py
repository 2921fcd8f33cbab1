"""Xception (timm ``legacy_xception``, 20.8M feature parameters, 2048-d embedding, 299 px): the FaceForensics++
baseline. Any input size works (>= ~71 px)."""

from __future__ import annotations

from dfkit.train.backbones.registry import BackboneClassifier, register_backbone, timm_classifier


@register_backbone("legacy_xception", family="xception", default_img_size=299, timm_name="legacy_xception",
                   description="Xception as in FaceForensics++, 20.8M params")
def legacy_xception(num_classes: int, pretrained: bool = False, img_size: int = 299, **kw) -> BackboneClassifier:
    return timm_classifier("legacy_xception", backbone_name="legacy_xception", num_classes=num_classes,
                           pretrained=pretrained, img_size=img_size, **kw)
