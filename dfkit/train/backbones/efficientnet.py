"""EfficientNet (timm): ``efficientnet_b0`` (4.0M feature parameters, 1280-d embedding, 224 px) and
``efficientnet_b4`` (17.6M, 1792-d, 380 px) - the usual DeepFake-detection baselines. Any input size works."""

from __future__ import annotations

from dfkit.train.backbones.registry import BackboneClassifier, register_backbone, timm_classifier


@register_backbone("efficientnet_b0", family="efficientnet", default_img_size=224, timm_name="efficientnet_b0",
                   description="EfficientNet-B0, 4.0M params")
def efficientnet_b0(num_classes: int, pretrained: bool = False, img_size: int = 224, **kw) -> BackboneClassifier:
    return timm_classifier("efficientnet_b0", backbone_name="efficientnet_b0", num_classes=num_classes,
                           pretrained=pretrained, img_size=img_size, **kw)


@register_backbone("efficientnet_b4", family="efficientnet", default_img_size=380, timm_name="efficientnet_b4",
                   description="EfficientNet-B4, 17.6M params")
def efficientnet_b4(num_classes: int, pretrained: bool = False, img_size: int = 380, **kw) -> BackboneClassifier:
    return timm_classifier("efficientnet_b4", backbone_name="efficientnet_b4", num_classes=num_classes,
                           pretrained=pretrained, img_size=img_size, **kw)
