"""ResNet50 (bottleneck blocks 3-4-6-3) with reduced pooling for small inputs: a 3×3 stem at stride 1
and no stem max-pool, so the last map is 1/8 of the input side (8×8 at 64², 16×16 at 128²); a width
multiplier on every stage (1.0 = 256-512-1024-2048 output channels); global average pooling."""

from __future__ import annotations

from torch import nn

from selfsup.models import BACKBONES, Backbone


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, c_in: int, c_mid: int, stride: int):
        super().__init__()
        c_out = c_mid * self.expansion
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_mid, 1, bias=False),
            nn.BatchNorm2d(c_mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_mid, c_mid, 3, stride, 1, bias=False),
            nn.BatchNorm2d(c_mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_mid, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        nn.init.zeros_(self.body[-1].weight)  # zero-init the last BN: each block starts as the identity
        self.shortcut = (
            nn.Identity()
            if stride == 1 and c_in == c_out
            else nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.body(x) + self.shortcut(x))


class ResNet50(Backbone):
    pool = "avg"

    def __init__(self, width: float = 1.0, in_channels: int = 3, colour: str = "rgb"):
        super().__init__(colour)
        c0 = max(8, round(64 * width))
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, c0, 3, 1, 1, bias=False), nn.BatchNorm2d(c0), nn.ReLU(inplace=True)
        )
        stages, c_in = [], c0
        for n, stride, mid in zip((3, 4, 6, 3), (1, 2, 2, 2), (64, 128, 256, 512)):
            c_mid = max(4, round(mid * width))
            blocks = []
            for i in range(n):
                blocks.append(Bottleneck(c_in, c_mid, stride if i == 0 else 1))
                c_in = c_mid * Bottleneck.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages_ = nn.ModuleList(stages)
        self.out_dim = c_in

    def groups(self):
        return [[self.stem, self.stages_[0]], *([s] for s in self.stages_[1:])]

    def body(self, x):
        x = self.stem(x)
        maps = []
        for stage in self.stages_:
            x = stage(x)
            maps.append(x)
        return maps


@BACKBONES.register("resnet50")
def resnet50(width: float = 1.0, in_channels: int = 3, colour: str = "rgb") -> ResNet50:
    return ResNet50(width, in_channels, colour)
