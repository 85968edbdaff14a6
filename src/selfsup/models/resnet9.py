"""ResNet9 in the Page / Myrtle style (3×3 stem at stride 1, widths 64-128-256-512, residual
blocks after the first and third stages, max-pool downsampling) with a width multiplier
(CMC's split version: ``models/split.py``)."""

from __future__ import annotations

import torch
from torch import nn

from selfsup.models import BACKBONES, Backbone


def conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class Residual(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(conv_bn(c, c), conv_bn(c, c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def resnet9_blocks(width: float, in_channels: int) -> tuple[nn.ModuleList, int]:
    c = [max(4, round(w * width)) for w in (64, 128, 256, 512)]
    blocks = nn.ModuleList(
        [
            conv_bn(in_channels, c[0]),  # (B, c0, H, W)
            nn.Sequential(conv_bn(c[0], c[1]), nn.MaxPool2d(2), Residual(c[1])),  # (B, c1, H/2, W/2)
            nn.Sequential(conv_bn(c[1], c[2]), nn.MaxPool2d(2)),  # (B, c2, H/4, W/4)
            nn.Sequential(conv_bn(c[2], c[3]), nn.MaxPool2d(2), Residual(c[3])),  # (B, c3, H/8, W/8)
        ]
    )
    return blocks, c[3]


def _run(blocks: nn.ModuleList, x: torch.Tensor) -> list[torch.Tensor]:
    maps = []
    for block in blocks:
        x = block(x)
        maps.append(x)
    return maps


class ResNet9(Backbone):
    """Global max pool over the last map, as in Page's ResNet9."""

    def __init__(self, width: float = 1.0, in_channels: int = 3, colour: str = "rgb"):
        super().__init__(colour)
        self.blocks, self.out_dim = resnet9_blocks(width, in_channels)

    def body(self, x):
        return _run(self.blocks, x)

    def groups(self):
        return [[b] for b in self.blocks]


@BACKBONES.register("resnet9")
def resnet9(width: float = 1.0, in_channels: int = 3, colour: str = "rgb") -> ResNet9:
    return ResNet9(width, in_channels, colour)
