"""Self-supervised methods: one file each, all behind :class:`Method`.

A method owns its backbone and any heads; ``loss(x, generator)`` takes a normalised batch
(B, 3, H, W), applies the method's own augmentations/views and returns (loss, scalars to log).
Adding a method is a new file with ``@METHODS.register("name")``; the training loop never changes.
"""

from __future__ import annotations

import torch
from torch import nn

from ..registry import Registry


class Method(nn.Module):
    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def loss(self, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError


METHODS: Registry[Method] = Registry("method")


def create_method(name: str, backbone: nn.Module, **kwargs) -> Method:
    return METHODS.create(name, backbone=backbone, **kwargs)


def list_methods() -> list[str]:
    return METHODS.names()


from . import rotation, simclr  # noqa: E402,F401  (registers)
