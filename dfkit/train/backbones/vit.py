"""Vision Transformer (timm ``vit_small_patch16_224``, 21.7M feature parameters, 384-d embedding).

The model is built for ``img_size`` (default 224, a multiple of 16); position embeddings are resampled from the
pretrained 224 px ones when ``pretrained=True``. Inputs must then have exactly that size.
"""

from __future__ import annotations

from dfkit.train.backbones.registry import register_timm_backbone

register_timm_backbone("vit_small_patch16_224", family="vit", default_img_size=224, pass_img_size=True,
                       description="ViT-S/16, 21.7M params")
