"""Vision Transformer (timm ``vit_small_patch16_224``, 21.7M feature parameters, 384-d embedding).

The model is built for ``img_size`` (default 224, a multiple of 16); position embeddings are resampled from the
pretrained 224 px ones when ``pretrained=True``. Inputs must then have exactly that size.
"""

from __future__ import annotations

from dfkit.train.backbones.registry import BackboneClassifier, register_backbone, timm_classifier


@register_backbone("vit_small_patch16_224", family="vit", default_img_size=224, timm_name="vit_small_patch16_224",
                   description="ViT-S/16, 21.7M params")
def vit_small_patch16_224(num_classes: int, pretrained: bool = False, img_size: int = 224,
                          **kw) -> BackboneClassifier:
    return timm_classifier("vit_small_patch16_224", backbone_name="vit_small_patch16_224", num_classes=num_classes,
                           pretrained=pretrained, img_size=img_size, pass_img_size=True, **kw)
