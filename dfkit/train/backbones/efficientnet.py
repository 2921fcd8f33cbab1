"""EfficientNet (timm): ``efficientnet_b0`` (4.0M feature parameters, 1280-d embedding, 224 px) and
``efficientnet_b4`` (17.6M, 1792-d, 380 px) - the usual DeepFake-detection baselines. Any input size works."""

from __future__ import annotations

from dfkit.train.backbones.registry import register_timm_backbone

register_timm_backbone("efficientnet_b0", family="efficientnet", default_img_size=224,
                       description="EfficientNet-B0, 4.0M params")
register_timm_backbone("efficientnet_b4", family="efficientnet", default_img_size=380,
                       description="EfficientNet-B4, 17.6M params")
