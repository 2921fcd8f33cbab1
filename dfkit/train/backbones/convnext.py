"""ConvNeXt (timm): ``convnext_tiny`` (27.8M feature parameters, 768-d) and ``convnext_small`` (49.5M, 768-d), 224 px.
Any input size divisible by 32 works."""

from __future__ import annotations

from dfkit.train.backbones.registry import BackboneClassifier, register_backbone, timm_classifier


@register_backbone("convnext_tiny", family="convnext", default_img_size=224, timm_name="convnext_tiny",
                   description="ConvNeXt-T, 27.8M params")
def convnext_tiny(num_classes: int, pretrained: bool = False, img_size: int = 224, **kw) -> BackboneClassifier:
    return timm_classifier("convnext_tiny", backbone_name="convnext_tiny", num_classes=num_classes,
                           pretrained=pretrained, img_size=img_size, **kw)


@register_backbone("convnext_small", family="convnext", default_img_size=224, timm_name="convnext_small",
                   description="ConvNeXt-S, 49.5M params")
def convnext_small(num_classes: int, pretrained: bool = False, img_size: int = 224, **kw) -> BackboneClassifier:
    return timm_classifier("convnext_small", backbone_name="convnext_small", num_classes=num_classes,
                           pretrained=pretrained, img_size=img_size, **kw)
