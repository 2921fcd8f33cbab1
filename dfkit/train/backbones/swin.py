"""Swin Transformer (timm ``swin_small_patch4_window7_224``, 48.8M feature parameters, 768-d embedding).

The model is built for ``img_size`` (default 224); timm adapts the windows to other sizes, and the pretrained relative
position tables are resized when ``pretrained=True``. Inputs must then have exactly that size.
"""

from __future__ import annotations

from dfkit.train.backbones.registry import BackboneClassifier, register_backbone, timm_classifier


@register_backbone("swin_small", family="swin", default_img_size=224, timm_name="swin_small_patch4_window7_224",
                   description="Swin-S (patch 4, window 7), 48.8M params")
def swin_small(num_classes: int, pretrained: bool = False, img_size: int = 224, **kw) -> BackboneClassifier:
    return timm_classifier("swin_small_patch4_window7_224", backbone_name="swin_small", num_classes=num_classes,
                           pretrained=pretrained, img_size=img_size, pass_img_size=True, **kw)
