"""Swin Transformer (timm ``swin_small_patch4_window7_224``, 48.8M feature parameters, 768-d embedding).

The model is built for ``img_size`` (default 224); timm adapts the windows to other sizes, and the pretrained relative
position tables are resized when ``pretrained=True``. Inputs must then have exactly that size.
"""

from __future__ import annotations

from dfkit.train.backbones.registry import register_timm_backbone

register_timm_backbone("swin_small", family="swin", default_img_size=224, timm_name="swin_small_patch4_window7_224",
                       pass_img_size=True, description="Swin-S (patch 4, window 7), 48.8M params")
