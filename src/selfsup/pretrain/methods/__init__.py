"""Self-supervised methods: one file each, all behind :class:`Method`.

A method owns its backbone and any heads; ``loss(x, generator)`` takes a normalised batch
(B, 3, H, W), applies the method's own augmentations/views and returns (loss, scalars to log).
``after_step(step, total)`` runs after every optimiser step (momentum encoders use it).
Adding a method is a new file with ``@METHODS.register("name")`` on its class; the training loop never changes.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from selfsup.core.defaults import DEFAULT_BACKBONE
from selfsup.core.registry import Registry


class Method(nn.Module):
    # constructor argument → (low, high, "log" | "linear" | "int"): the method's own knobs that
    # `selfsup tune --pretrain` searches besides the optimiser's
    knobs: dict[str, tuple] = {}
    # the backbone variant the method trains for a backbone family: "" (the family itself) or "split"
    # (two half-width copies, one on L and one on ab: resnet9 → resnet9_split)
    backbone_variant: str = ""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def loss(self, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def after_step(self, step: int, total: int) -> None:
        """Called by the loop after optimiser step ``step`` (1-based) of ``total``."""


def mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Sequential:
    """The projector / predictor used by the multi-view methods: Linear-BN-ReLU-Linear."""
    return nn.Sequential(
        nn.Linear(d_in, d_hidden), nn.BatchNorm1d(d_hidden), nn.ReLU(inplace=True), nn.Linear(d_hidden, d_out)
    )


def frozen_copy(module: nn.Module) -> nn.Module:
    """A copy with no gradients, for momentum (EMA) target networks."""
    twin = copy.deepcopy(module)
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin


@torch.no_grad()
def ema_(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """target ← m·target + (1 − m)·online for parameters; buffers (BN statistics) are copied. One
    foreach call each (a few kernels, not one per tensor on a GPU)."""
    torch._foreach_lerp_(list(target.parameters()), [o.detach() for o in online.parameters()], 1 - momentum)
    torch._foreach_copy_(list(target.buffers()), list(online.buffers()))


@torch.no_grad()
def enqueue_(queue: torch.Tensor, ptr: torch.Tensor, keys: torch.Tensor) -> None:
    """Write ``keys`` (B, D) into the ring buffer ``queue`` (K, D) at ``ptr`` and advance it."""
    k, b = queue.shape[0], keys.shape[0]
    if k == 0:
        return
    idx = (ptr + torch.arange(b, device=queue.device)) % k
    queue[idx] = keys.detach().to(queue.dtype)
    ptr.copy_((ptr + b) % k)


METHODS: Registry[Method] = Registry("method")


def create_method(name: str, backbone: nn.Module, **kwargs) -> Method:
    return METHODS.create(name, backbone=backbone, **kwargs)


def method_knobs(name: str) -> dict[str, tuple]:
    """The search space of ``name``'s own knobs (constructor arguments)."""
    return dict(METHODS.get(name).knobs)


def default_backbone(method: str, family: str = DEFAULT_BACKBONE) -> str:
    """The backbone ``method`` trains for a backbone family (its class's ``backbone_variant``)."""
    from selfsup.models.split import split_name

    return split_name(family) if METHODS.get(method).backbone_variant == "split" else family


def list_methods() -> list[str]:
    return METHODS.names()


from selfsup.pretrain.methods import amdim, barlow, byol, cmc, moco, rotation, simclr, vae  # noqa: E402,F401  (registers)
