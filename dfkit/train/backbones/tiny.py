"""``tiny``: a four-block CNN (~100k parameters) for tests and the demo; trains in seconds on a CPU at 64-128 px.

Not from timm, no pretrained weights. Each block is conv3x3 -> BatchNorm -> ReLU -> 2x2 max-pool (the last block
pools globally), widths 16-32-64-128, so the embedding has 128 dimensions.
"""

from __future__ import annotations

from torch import nn

from dfkit.train.backbones.registry import BackboneClassifier, register_backbone


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class TinyCNN(nn.Module):
    """Image batch ``B x 3 x H x W`` -> pooled embedding ``B x widths[-1]``."""

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 128)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for i, w in enumerate(widths):
            layers.append(_block(cin, w))
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            cin = w
        self.body = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = cin
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        return self.pool(self.body(x)).flatten(1)


@register_backbone("tiny", family="tiny", default_img_size=64,
                   description="4-block CNN, ~100k params, for tests and the demo (no pretrained weights)",
                   tags=("test", "cpu"))
def _factory(num_classes: int, pretrained: bool = False, img_size: int = 64, drop_rate: float = 0.0,
             widths: tuple[int, ...] = (16, 32, 64, 128)) -> BackboneClassifier:
    if pretrained:
        raise ValueError("tiny has no pretrained weights: train it from scratch (--scratch) or start from "
                         "--weights PATH")
    features = TinyCNN(tuple(widths))
    return BackboneClassifier(features, features.num_features, num_classes, img_size=img_size, drop_rate=drop_rate)
