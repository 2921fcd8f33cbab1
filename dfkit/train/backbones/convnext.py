"""ConvNeXt (timm): ``convnext_tiny`` (27.8M feature parameters, 768-d) and ``convnext_small`` (49.5M, 768-d), 224 px.
Any input size divisible by 32 works."""

from __future__ import annotations

from dfkit.train.backbones.registry import register_timm_backbone

register_timm_backbone("convnext_tiny", family="convnext", default_img_size=224, description="ConvNeXt-T, 27.8M params")
register_timm_backbone("convnext_small", family="convnext", default_img_size=224,
                       description="ConvNeXt-S, 49.5M params")
