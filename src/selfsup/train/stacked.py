"""Replicas of one architecture trained as one module: the cells of a sweep, stacked.

Every cell of a (label budget × seed) sweep has the same network and step count, so its B models
can run as one: :class:`StackedModels` holds each parameter and buffer of the B replicas stacked
along a new first dimension and runs ``torch.func.vmap`` over ``functional_call`` of one template.
Batch norm stays exact per replica (its statistics and running buffers are per replica), frozen
parameters stay frozen, and :meth:`StackedModels.unstack` copies the trained state back into the
replicas for evaluation. With the losses summed (see :func:`selfsup.train.fit`) each replica gets
the gradient it would get alone.

Whether stacking is faster depends on the device: on a GPU it fills the device with many small
models; on a 2-core CPU a vmapped (grouped) convolution is slower than B plain ones
(``bench/sweep_bench.py`` measures both in one run).

Mixed precision is explicit here: autocast does not reach inside ``vmap`` (on the CPU a stacked step
under autocast silently ran in fp32), and a vmapped batch norm given a bf16 input and fp32 running
statistics is a dtype error. So under an enabled autocast the forward casts the input and every
weight but batch norm's to the autocast dtype, batch norm computes in fp32 (its input cast up, its
output cast back), and the output is fp32 for the loss; the stacked parameters stay fp32 masters.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap


class StackedModels(nn.Module):
    """B replicas of one module (same architecture, any weights) as one trainable module."""

    def __init__(self, models: list[nn.Module]):
        super().__init__()
        if not models:
            raise ValueError("no models to stack")
        self.replicas = list(models)  # a plain list: not submodules, their parameters are not ours
        params, buffers = stack_module_state(models)
        grads = dict(models[0].named_parameters())
        self.param_names, self.buffer_names = list(params), list(buffers)
        self.stacked_params = nn.ParameterList(
            [nn.Parameter(params[n].detach().clone(), requires_grad=grads[n].requires_grad) for n in params]
        )
        for i, n in enumerate(self.buffer_names):
            self.register_buffer(f"buffer_{i}", buffers[n].clone())
        self._template = [copy.deepcopy(models[0]).to("meta")]  # in a list: hidden from .modules()
        bns = [n for n, m in self.template.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        self._bn_params = {n for n in self.param_names if n.rpartition(".")[0] in bns}
        self._low: list[torch.dtype | None] = [None]  # the dtype of the forward now running (None: as given)
        for _, m in self.template.named_modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.register_forward_pre_hook(self._bn_in)
                m.register_forward_hook(self._bn_out)

    def _bn_in(self, module, args):
        return (args[0].float(),) if self._low[0] is not None else None

    def _bn_out(self, module, args, out):
        return out.to(self._low[0]) if self._low[0] is not None else None

    @property
    def template(self) -> nn.Module:
        return self._template[0]

    def __len__(self) -> int:
        return len(self.replicas)

    def train(self, mode: bool = True):
        super().train(mode)
        self.template.train(mode)  # the template's own train() decides batch norm's mode (frozen BN stays eval)
        return self

    def _state(self) -> tuple[dict, dict]:
        params = dict(zip(self.param_names, self.stacked_params))
        buffers = {n: getattr(self, f"buffer_{i}") for i, n in enumerate(self.buffer_names)}
        return params, buffers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, ...) inputs, one batch per replica → (B, N, ...) outputs."""

        def one(params, buffers, xb):
            return functional_call(self.template, (params, buffers), (xb,))

        params, buffers = self._state()
        device = x.device.type
        if not torch.is_autocast_enabled(device):
            return vmap(one, in_dims=(0, 0, 0))(params, buffers, x)
        low = torch.get_autocast_dtype(device)
        params = {n: p if n in self._bn_params or not p.is_floating_point() else p.to(low) for n, p in params.items()}
        self._low[0] = low
        try:
            with torch.autocast(device, enabled=False):
                return vmap(one, in_dims=(0, 0, 0))(params, buffers, x.to(low)).float()
        finally:
            self._low[0] = None

    @torch.no_grad()
    def unstack(self) -> list[nn.Module]:
        """The replicas, holding the stacked module's current state."""
        params, buffers = self._state()
        for i, model in enumerate(self.replicas):
            state = {n: t[i] for n, t in {**params, **buffers}.items()}
            model.load_state_dict(state, strict=True)
        return self.replicas
