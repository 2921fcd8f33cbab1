"""Classifier backbones behind one timm-like factory.

>>> from dfkit.train.backbones import create_backbone, list_backbones
>>> model = create_backbone("tiny", num_classes=5, img_size=64)   # trains from scratch (offline default)
>>> logits = model(x); emb = model.embed(x)

One family per module: ``tiny`` (a ~100k-parameter CNN for tests and the demo), ``efficientnet``, ``xception``,
``convnext``, ``swin``, ``vit`` (timm models with our own head). ``pretrained=True`` uses timm's download path and needs
the internet; ``weights=PATH`` loads a local state dict; by default the model trains from scratch and says so.
"""

from dfkit.train.backbones.registry import (
    BackboneClassifier,
    BackboneSpec,
    backbone_spec,
    create_backbone,
    list_backbones,
    load_local_weights,
    read_state_dict,
    register_backbone,
    register_timm_backbone,
)

# the family modules (every module here but registry.py) register their backbones; they are imported on the first
# lookup (list_backbones, backbone_spec, create_backbone): a new family is a new file, no list to extend

__all__ = [
    "BackboneClassifier",
    "BackboneSpec",
    "backbone_spec",
    "create_backbone",
    "list_backbones",
    "load_local_weights",
    "read_state_dict",
    "register_backbone",
    "register_timm_backbone",
]
