"""Training and evaluation building blocks for dfkit.

The modules here do not depend on the corpus layer; they are wired to it by the ``dfkit train`` / ``dfkit eval``
commands:

- :mod:`dfkit.train.backbones` - a timm-like registry of classifier backbones (``create_backbone``, ``list_backbones``).
- :mod:`dfkit.train.losses` - supervised contrastive loss (SupCon).
- :mod:`dfkit.train.scores` - evaluation scores: frame and video level, video bootstrap CIs, cross-dataset attribution.
- :mod:`dfkit.train.checkpoint` - safetensors + JSON checkpoints (never pickle), resume.
- :mod:`dfkit.train.augment` - seeded, toggleable augmentations on uint8 RGB images.
- :mod:`dfkit.train.sampler` - class-balanced sampler.
- :mod:`dfkit.train.loop` - the generic training loop (``train``).
- :mod:`dfkit.train.settings` - ``TrainSettings``, the one settings type of ``dfkit train`` and the loop.

Submodules are imported on demand so that ``import dfkit.train`` stays cheap (torch and timm load only when used).
"""
