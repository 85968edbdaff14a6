"""Backbones: ``create_backbone("resnet9", width=0.25)``; each returns pooled features and feature maps."""

from torch import nn

from ..registry import Registry

BACKBONES: Registry[nn.Module] = Registry("backbone")


def create_backbone(name: str, **kwargs) -> nn.Module:
    return BACKBONES.create(name, **kwargs)


def list_backbones() -> list[str]:
    return BACKBONES.names()


from . import resnet9  # noqa: E402,F401  (registers)
