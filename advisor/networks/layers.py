"""Equalised-learning-rate layers shared by the generator and the discriminator.

Equalised learning rate (Karras et al.): parameters are stored with unit-variance initialisation
(``weight ~ N(0, 1) / lr_multiplier``) and scaled at run time by
``weight_gain = lr_multiplier / sqrt(fan_in)`` (and the bias by ``lr_multiplier``), so that
Adam's per-parameter step sizes are uniform across layers. Parameter names and shapes follow
NVlabs StyleGAN2-ADA (``weight``, ``bias``, buffer ``resample_filter``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from advisor.networks.ops import (
    ACT_GAINS,
    act_clamp,
    batch_invariant_matmul,
    conv2d_resample,
    setup_filter,
)


class FullyConnectedLayer(nn.Module):
    """Dense layer ``act(x @ (weight * weight_gain).T + bias * bias_gain)``.

    ``x``: [N, in_features] -> [N, out_features]. ``weight``: [out, in]; ``bias``: [out].
    In eval mode each row is computed by its own matrix-vector product, so a row's result does
    not depend on the batch it came in (BLAS matrix products pick kernels by batch size); in
    training mode one matrix product serves the batch.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias: bool = True,
        activation: str = "linear",
        lr_multiplier: float = 1.0,
        bias_init: float = 0.0,
    ) -> None:
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act_gain = ACT_GAINS[self.activation]  # folded: act(a) * g == act(a * g) for g > 0
        w = (self.weight * (self.weight_gain * act_gain)).to(x.dtype)
        b = None if self.bias is None else (self.bias * (self.bias_gain * act_gain)).to(x.dtype)
        if not self.training:
            x = batch_invariant_matmul(x, w.t())
            x = x if b is None else x + b
        elif b is not None:
            x = torch.addmm(b.unsqueeze(0), x, w.t())
        else:
            x = x.matmul(w.t())
        return act_clamp(x, act=self.activation)

    def extra_repr(self) -> str:
        out_f, in_f = self.weight.shape
        return f"in_features={in_f}, out_features={out_f}, activation={self.activation}"


class Conv2dLayer(nn.Module):
    """Equalised-lr convolution with optional FIR up/downsampling, bias and activation.

    ``x``: [N, in, H, W] -> [N, out, H*up/down, W*up/down] ('same' padding ``kernel // 2``).
    ``forward(x, gain)`` multiplies the activation gain and the clamp by ``gain`` (residual
    branches use sqrt(0.5)). ``conv_clamp=None`` disables clamping.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        bias: bool = True,
        activation: str = "linear",
        up: int = 1,
        down: int = 1,
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.activation = activation
        self.up = up
        self.down = down
        self.conv_clamp = conv_clamp
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        self.act_gain = ACT_GAINS[activation]
        self.weight = nn.Parameter(
            torch.randn([out_channels, in_channels, kernel_size, kernel_size])
        )
        self.bias = nn.Parameter(torch.zeros([out_channels])) if bias else None
        self.register_buffer("resample_filter", setup_filter(resample_filter))

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        scale = self.act_gain * gain  # folded into weight and bias (see advisor.networks.ops)
        w = (self.weight * (self.weight_gain * scale)).to(x.dtype)
        b = None if self.bias is None else (self.bias * scale).to(x.dtype)
        x = conv2d_resample(
            x,
            w,
            self.resample_filter,
            bias=b,
            up=self.up,
            down=self.down,
            padding=self.padding,
            flip_weight=self.up == 1,
        )
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return act_clamp(x, act=self.activation, clamp=clamp)

    def extra_repr(self) -> str:
        out_c, in_c, k, _ = self.weight.shape
        return f"{in_c}, {out_c}, kernel={k}, up={self.up}, down={self.down}, act={self.activation}"
