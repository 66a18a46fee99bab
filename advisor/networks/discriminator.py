"""StyleGAN2 discriminator (unconditional): image -> one logit per sample.

Names follow NVlabs StyleGAN2-ADA: blocks ``b{res}`` from the input resolution down to 8
(``fromrgb`` on the first block, or on every block for ``'skip'``; ``conv0``; ``conv1`` with
downsampling; ``skip`` for ``'resnet'``), then the epilogue ``b4`` (``mbstd``, ``conv``, ``fc``,
``out``). ``Discriminator.state_dict()`` keys equal those of an NVlabs ``D`` of the same config.

Unlike the generator, D mixes samples on purpose: the minibatch-standard-deviation features
depend on the other members of each sample's group.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from advisor.networks.config import DiscriminatorConfig
from advisor.networks.layers import Conv2dLayer, FullyConnectedLayer
from advisor.networks.ops import downsample2d, setup_filter


class DiscriminatorBlock(nn.Module):
    """One resolution: [fromrgb] + conv0 + conv1 (downsample x2) [+ residual skip]."""

    def __init__(
        self,
        in_channels: int,
        tmp_channels: int,
        out_channels: int,
        *,
        resolution: int,
        img_channels: int,
        architecture: str,
        resample_filter: Sequence[float],
        conv_clamp: float | None,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.resolution = resolution
        self.architecture = architecture
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        if in_channels == 0 or architecture == "skip":
            self.fromrgb = Conv2dLayer(
                img_channels, tmp_channels, 1, activation="lrelu", conv_clamp=conv_clamp
            )
        self.conv0 = Conv2dLayer(
            tmp_channels, tmp_channels, 3, activation="lrelu", conv_clamp=conv_clamp
        )
        self.conv1 = Conv2dLayer(
            tmp_channels,
            out_channels,
            3,
            activation="lrelu",
            down=2,
            resample_filter=resample_filter,
            conv_clamp=conv_clamp,
        )
        if architecture == "resnet":
            self.skip = Conv2dLayer(
                tmp_channels, out_channels, 1, bias=False, down=2, resample_filter=resample_filter
            )

    def forward(
        self, x: torch.Tensor | None, img: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x [N, in, res, res] (None for the first block), img [N, C, res, res] or None."""
        if self.in_channels == 0 or self.architecture == "skip":
            y = self.fromrgb(img)
            x = y if x is None else x + y
            img = downsample2d(img, self.resample_filter) if self.architecture == "skip" else None
        if self.architecture == "resnet":
            y = self.skip(x, gain=math.sqrt(0.5))
            x = self.conv0(x)
            x = self.conv1(x, gain=math.sqrt(0.5))
            return y.add_(x), img  # y: the skip convolution's fresh output
        return self.conv1(self.conv0(x)), img


class MinibatchStdLayer(nn.Module):
    """Append the mean standard deviation over groups of samples as extra feature maps.

    Samples ``j, j + n, j + 2n, ...`` (``n = N / G``) form a group of ``G = min(group_size, N)``.
    Channels are split into ``num_channels`` parts; each part yields one feature: the standard
    deviation over the group (biased, + 1e-8 inside the sqrt), averaged over channels and pixels.
    """

    def __init__(self, group_size: int | None, num_channels: int = 1) -> None:
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, C, H, W] -> [N, C + num_channels, H, W]; N must be a multiple of the group size."""
        n, c, h, w = x.shape
        g = n if self.group_size is None else min(self.group_size, n)
        if n % g:
            raise ValueError(f"batch of {n} does not split into minibatch-std groups of {g}")
        f = self.num_channels
        y = x.reshape(g, -1, f, c // f, h, w)
        y = (y - y.mean(dim=0)).square().mean(dim=0)
        y = (y + 1e-8).sqrt().mean(dim=[2, 3, 4])  # [n, F]
        y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)
        return torch.cat([x, y], dim=1)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}, num_channels={self.num_channels}"


class DiscriminatorEpilogue(nn.Module):
    """4x4 head: [fromrgb] + minibatch std + 3x3 conv + dense + output logit."""

    def __init__(
        self,
        in_channels: int,
        *,
        resolution: int,
        img_channels: int,
        architecture: str,
        mbstd_group_size: int | None,
        mbstd_num_channels: int,
        conv_clamp: float | None,
    ) -> None:
        super().__init__()
        self.architecture = architecture
        if architecture == "skip":
            self.fromrgb = Conv2dLayer(img_channels, in_channels, 1, activation="lrelu")
        self.mbstd = (
            MinibatchStdLayer(mbstd_group_size, mbstd_num_channels) if mbstd_num_channels else None
        )
        self.conv = Conv2dLayer(
            in_channels + mbstd_num_channels,
            in_channels,
            3,
            activation="lrelu",
            conv_clamp=conv_clamp,
        )
        self.fc = FullyConnectedLayer(in_channels * resolution**2, in_channels, activation="lrelu")
        self.out = FullyConnectedLayer(in_channels, 1)

    def forward(self, x: torch.Tensor, img: torch.Tensor | None) -> torch.Tensor:
        """x [N, C, 4, 4] -> logits [N, 1]."""
        if self.architecture == "skip":
            x = x + self.fromrgb(img)
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        x = self.fc(x.flatten(1))
        return self.out(x)


class Discriminator(nn.Module):
    """StyleGAN2 discriminator: images [N, C, R, R] float in [-1, 1] -> logits [N, 1] float32."""

    def __init__(self, config: DiscriminatorConfig) -> None:
        super().__init__()
        self.config = config
        log2 = int(math.log2(config.img_resolution))
        self.block_resolutions = [2**i for i in range(log2, 2, -1)]
        for res in self.block_resolutions:
            block = DiscriminatorBlock(
                config.channels(res) if res < config.img_resolution else 0,
                config.channels(res),
                config.channels(res // 2),
                resolution=res,
                img_channels=config.img_channels,
                architecture=config.architecture,
                resample_filter=config.resample_filter,
                conv_clamp=config.conv_clamp,
            )
            setattr(self, f"b{res}", block)
        self.b4 = DiscriminatorEpilogue(
            config.channels(4),
            resolution=4,
            img_channels=config.img_channels,
            architecture=config.architecture,
            mbstd_group_size=config.mbstd_group_size,
            mbstd_num_channels=config.mbstd_num_channels,
            conv_clamp=config.conv_clamp,
        )

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """Score a batch; the batch size must be a multiple of ``mbstd_group_size`` (or smaller)."""
        r, c = self.config.img_resolution, self.config.img_channels
        if img.ndim != 4 or img.shape[1:] != (c, r, r):
            raise ValueError(f"expected images [N, {c}, {r}, {r}], got {tuple(img.shape)}")
        # channels_last: oneDNN and cuDNN convolve NHWC without reordering, and the depthwise
        # FIR filters run about twice as fast (measured on CPU, forward and backward).
        img = img.contiguous(memory_format=torch.channels_last)
        x = None
        for res in self.block_resolutions:
            x, img = getattr(self, f"b{res}")(x, img)
        out = self.b4(x, img)
        return out.to(torch.promote_types(out.dtype, torch.float32))
