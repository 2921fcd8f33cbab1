"""Xception (timm ``legacy_xception``, 20.8M feature parameters, 2048-d embedding, 299 px): the FaceForensics++
baseline. Any input size works (>= ~71 px)."""

from __future__ import annotations

from dfkit.train.backbones.registry import register_timm_backbone

register_timm_backbone("legacy_xception", family="xception", default_img_size=299,
                       description="Xception as in FaceForensics++, 20.8M params")
