"""StyleGAN2 generator: mapping network z -> w, synthesis network w -> image.

Module, parameter and buffer names follow NVlabs StyleGAN2-ADA, so ``Generator.state_dict()``
has exactly the keys (and shapes) of an NVlabs ``G``/``G_ema`` of the same configuration, e.g.
``mapping.fc0.weight``, ``mapping.w_avg``, ``synthesis.b4.const``,
``synthesis.b8.conv0.affine.weight``, ``synthesis.b8.conv0.noise_const``,
``synthesis.b8.torgb.weight``, and every ``resample_filter`` buffer.

Randomness: the mapping input is z (see ``advisor.networks.latents.z_from_seeds``). Noise
inputs are ``'const'`` (the stored ``noise_const`` buffers; NVlabs generate.py's default),
``'random'`` (drawn from an explicit ``torch.Generator``, or one generator per sample so that a
sample's noise does not depend on its batch), or ``'none'``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from advisor.networks.config import GeneratorConfig
from advisor.networks.layers import Conv2dLayer, FullyConnectedLayer
from advisor.networks.ops import (
    ACT_GAINS,
    act_clamp,
    modulated_conv2d,
    normalize_2nd_moment,
    setup_filter,
    upsample2d,
)

NOISE_MODES = ("const", "random", "none")
NoiseGenerator = torch.Generator | Sequence[torch.Generator] | None


def _no_autocast(device: torch.device) -> torch.autocast:
    # Latents, styles and demodulation stay float32 under a bf16 autocast: they are tiny, and
    # rounding them would perturb every pixel. Only the convolutions run in low precision.
    return torch.autocast(device_type=device.type, enabled=False)


def _draw_noise(
    shape: tuple[int, int, int, int], generator: NoiseGenerator, device: torch.device
) -> torch.Tensor:
    """Standard normal noise [N, 1, H, W]; one generator per sample when a sequence is given."""
    if generator is None:
        raise ValueError("noise_mode='random' needs noise_generator (advisor uses no global RNG)")
    if isinstance(generator, torch.Generator):
        return torch.randn(shape, generator=generator, device=generator.device).to(device)
    if len(generator) != shape[0]:
        raise ValueError(f"got {len(generator)} noise generators for a batch of {shape[0]}")
    one = (1, *shape[1:])
    return torch.cat([torch.randn(one, generator=g, device=g.device) for g in generator]).to(device)


class MappingNetwork(nn.Module):
    """z [N, z_dim] -> ws [N, num_ws, w_dim]: 2nd-moment normalisation, then lrelu MLP layers.

    Buffer ``w_avg`` [w_dim] is the tracked mean of w, the centre of truncation.
    """

    def __init__(
        self,
        *,
        z_dim: int,
        w_dim: int,
        num_ws: int,
        num_layers: int,
        lr_multiplier: float,
        w_avg_beta: float,
    ) -> None:
        super().__init__()
        self.z_dim, self.w_dim, self.num_ws = z_dim, w_dim, num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta
        features = [z_dim] + [w_dim] * num_layers
        for idx in range(num_layers):
            layer = FullyConnectedLayer(
                features[idx], features[idx + 1], activation="lrelu", lr_multiplier=lr_multiplier
            )
            setattr(self, f"fc{idx}", layer)
        self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(
        self,
        z: torch.Tensor,
        *,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        update_w_avg: bool = False,
    ) -> torch.Tensor:
        """Map z to ws float32; truncate ``ws[:, :cutoff] <- w_avg + psi * (w - w_avg)``.

        ``update_w_avg=True`` (training only) moves ``w_avg`` towards this batch's mean w by
        ``1 - w_avg_beta``, before truncation, as NVlabs does.
        """
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"expected z of shape [N, {self.z_dim}], got {tuple(z.shape)}")
        with _no_autocast(z.device):
            x = normalize_2nd_moment(z.float())
            for idx in range(self.num_layers):
                x = getattr(self, f"fc{idx}")(x)
            if update_w_avg:
                with torch.no_grad():
                    self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
            ws = x.unsqueeze(1).expand(-1, self.num_ws, -1)
            if truncation_psi != 1:
                cutoff = self.num_ws if truncation_cutoff is None else truncation_cutoff
                head = self.w_avg.lerp(ws[:, :cutoff], truncation_psi)
                ws = torch.cat([head, ws[:, cutoff:]], dim=1)
        return ws


class SynthesisLayer(nn.Module):
    """Modulated 3x3 convolution (optionally upsampling x2) + noise + bias + lrelu (+ clamp)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        w_dim: int,
        resolution: int,
        up: int = 1,
        use_noise: bool = True,
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, 3, 3]))
        if use_noise:
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))

    def forward(
        self,
        x: torch.Tensor,
        w: torch.Tensor,
        *,
        noise_mode: str,
        noise_generator: NoiseGenerator,
        fused: bool,
        gain: float = 1.0,
    ) -> torch.Tensor:
        """x [N, I, res/up, res/up], w [N, w_dim] -> [N, O, res, res]."""
        with _no_autocast(x.device):
            styles = self.affine(w.float())
        noise = None
        if self.use_noise and noise_mode == "random":
            shape = (x.shape[0], 1, self.resolution, self.resolution)
            noise = _draw_noise(shape, noise_generator, x.device) * self.noise_strength
        elif self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        x = modulated_conv2d(
            x,
            self.weight,
            styles,
            bias=self.bias,
            noise=noise,
            gain=ACT_GAINS["lrelu"] * gain,
            up=self.up,
            padding=1,
            resample_filter=self.resample_filter,
            flip_weight=self.up == 1,
            fused=fused,
        )
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return act_clamp(x, act="lrelu", clamp=clamp)


class ToRGBLayer(nn.Module):
    """Modulated (not demodulated) 1x1 convolution to image channels, + bias (+ clamp)."""

    def __init__(
        self, in_channels: int, out_channels: int, *, w_dim: int, conv_clamp: float | None = None
    ) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, 1, 1]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor, *, fused: bool) -> torch.Tensor:
        """x [N, I, H, W], w [N, w_dim] -> [N, img_channels, H, W]."""
        with _no_autocast(x.device):
            styles = self.affine(w.float()) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, bias=self.bias, demodulate=False, fused=fused)
        return act_clamp(x, clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution: (const | upsampling conv0) + conv1, and the image path (ToRGB/skip)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        w_dim: int,
        resolution: int,
        img_channels: int,
        is_last: bool,
        architecture: str,
        resample_filter: Sequence[float],
        conv_clamp: float | None,
        use_noise: bool,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.resolution = resolution
        self.is_last = is_last
        self.architecture = architecture
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        layer_kw = dict(
            w_dim=w_dim,
            resolution=resolution,
            use_noise=use_noise,
            resample_filter=resample_filter,
            conv_clamp=conv_clamp,
        )
        self.num_conv = 0
        self.num_torgb = 0
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, up=2, **layer_kw)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, **layer_kw)
        self.num_conv += 1
        if is_last or architecture == "skip":
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp)
            self.num_torgb += 1
        if in_channels != 0 and architecture == "resnet":
            self.skip = Conv2dLayer(
                in_channels, out_channels, 1, bias=False, up=2, resample_filter=resample_filter
            )

    def forward(
        self,
        x: torch.Tensor | None,
        img: torch.Tensor | None,
        ws: torch.Tensor,
        *,
        noise_mode: str,
        noise_generator: NoiseGenerator,
        fused: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """ws [N, num_conv + num_torgb, w_dim]; returns features and the float32 image so far."""
        w_iter = iter(ws.unbind(dim=1))
        kw = dict(noise_mode=noise_mode, noise_generator=noise_generator, fused=fused)
        if self.in_channels == 0:
            x = self.const.unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
            if not fused:  # see Discriminator.forward on channels_last
                x = x.contiguous(memory_format=torch.channels_last)
            x = self.conv1(x, next(w_iter), **kw)
        elif self.architecture == "resnet":
            y = self.skip(x, gain=math.sqrt(0.5))
            x = self.conv0(x, next(w_iter), **kw)
            x = self.conv1(x, next(w_iter), gain=math.sqrt(0.5), **kw)
            x = y + x
        else:
            x = self.conv0(x, next(w_iter), **kw)
            x = self.conv1(x, next(w_iter), **kw)
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == "skip":
            y = self.torgb(x, next(w_iter), fused=fused).float()
            img = y if img is None else img + y
        return x, img


class SynthesisNetwork(nn.Module):
    """ws [N, num_ws, w_dim] -> image [N, img_channels, R, R] float32; blocks ``b4`` .. ``bR``."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.w_dim = config.w_dim
        self.img_resolution = config.img_resolution
        log2 = int(math.log2(config.img_resolution))
        self.block_resolutions = [2**i for i in range(2, log2 + 1)]
        self.num_ws = 0
        for res in self.block_resolutions:
            block = SynthesisBlock(
                config.channels(res // 2) if res > 4 else 0,
                config.channels(res),
                w_dim=config.w_dim,
                resolution=res,
                img_channels=config.img_channels,
                is_last=res == config.img_resolution,
                architecture=config.architecture,
                resample_filter=config.resample_filter,
                conv_clamp=config.conv_clamp,
                use_noise=config.use_noise,
            )
            self.num_ws += block.num_conv + (block.num_torgb if block.is_last else 0)
            setattr(self, f"b{res}", block)

    def forward(
        self,
        ws: torch.Tensor,
        *,
        noise_mode: str = "const",
        noise_generator: NoiseGenerator = None,
        fused_modconv: bool | None = None,
    ) -> torch.Tensor:
        """Synthesise images; see ``Generator.forward`` for the keyword arguments.

        In eval mode the batch runs in chunks of exactly ``eval_chunk(device)`` samples (the last
        chunk padded with copies of its last sample, whose outputs are dropped). Every kernel
        then sees the same shapes whatever the caller's batch size, and kernels do not mix
        samples, so a sample's pixels do not depend on the batch it came in.
        """
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"expected ws [N, {self.num_ws}, {self.w_dim}], got {tuple(ws.shape)}")
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        if fused_modconv is None:  # measured on CPU: shared-weight convolutions are faster
            fused_modconv = not self.training and ws.device.type == "cuda"
        ws = ws.float()
        if self.training:
            return self._run(ws, noise_mode, noise_generator, fused_modconv)
        chunk = eval_chunk(ws.device)
        per_sample = noise_mode == "random" and not isinstance(
            noise_generator, torch.Generator | None
        )
        if per_sample and len(noise_generator) != ws.shape[0]:
            raise ValueError(f"got {len(noise_generator)} noise generators for {ws.shape[0]} ws")
        images = []
        for start in range(0, ws.shape[0], chunk):
            part = ws[start : start + chunk]
            gens = noise_generator[start : start + chunk] if per_sample else noise_generator
            missing = chunk - part.shape[0]
            if missing:
                part = torch.cat([part, part[-1:].expand(missing, -1, -1)])
                if per_sample:  # padding draws from throwaway generators
                    gens = [*gens, *(torch.Generator(gens[0].device) for _ in range(missing))]
            images.append(self._run(part, noise_mode, gens, fused_modconv)[: chunk - missing])
        return torch.cat(images)

    def _run(
        self, ws: torch.Tensor, noise_mode: str, noise_generator: NoiseGenerator, fused: bool
    ) -> torch.Tensor:
        x = img = None
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            block_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)
            w_idx += block.num_conv
            x, img = block(
                x,
                img,
                block_ws,
                noise_mode=noise_mode,
                noise_generator=noise_generator,
                fused=fused,
            )
        return img


def eval_chunk(device: torch.device) -> int:
    """Samples per synthesis call in eval mode: a constant per device type (see forward).

    CPU: 4 (measured: 1.3-1.5x the throughput of one-by-one at 32x32, equal at 256x256; a
    single image costs four). CUDA: 32, untested here, chosen to keep a GPU busy.
    """
    return 32 if device.type == "cuda" else 4


class Generator(nn.Module):
    """StyleGAN2 generator (unconditional): z [N, z_dim] -> images [N, C, R, R] float32 ~[-1, 1].

    Submodules ``synthesis`` and ``mapping`` carry NVlabs' names, so ``state_dict()`` keys equal
    those of an NVlabs ``G`` with the same configuration (parameters and buffers).
    """

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        self.synthesis = SynthesisNetwork(config)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(
            z_dim=config.z_dim,
            w_dim=config.w_dim,
            num_ws=self.num_ws,
            num_layers=config.mapping_layers,
            lr_multiplier=config.mapping_lr_multiplier,
            w_avg_beta=config.w_avg_beta,
        )

    def forward(
        self,
        z: torch.Tensor,
        *,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        noise_mode: str = "const",
        noise_generator: NoiseGenerator = None,
        update_w_avg: bool = False,
        fused_modconv: bool | None = None,
    ) -> torch.Tensor:
        """Generate images from latents.

        z: [N, z_dim] (float64 is cast to float32, like NVlabs). truncation_psi/cutoff: pull the
        first ``cutoff`` (default all) ws towards ``mapping.w_avg``. noise_mode: ``'const'``
        (stored buffers, NVlabs generate.py's default), ``'random'`` (needs ``noise_generator``:
        one ``torch.Generator`` for the batch, or one per sample for batch-independent noise),
        ``'none'``. update_w_avg: training-time tracking of ``w_avg``. fused_modconv: grouped
        per-sample convolution (True) or activation scaling around a shared convolution (False);
        default False, except True in eval mode on CUDA (NVlabs' choice; on CPU the shared
        convolution measured 1.4-2x faster).
        Returns float32 [N, img_channels, R, R], roughly in [-1, 1] (not clamped).

        Batch independence: in eval mode a sample's pixels do not depend on the batch size or
        the other samples (given ``noise_mode`` ``'const'``/``'none'``, or ``'random'`` with one
        generator per sample); see ``SynthesisNetwork.forward``. Tested bit for bit on CPU.
        In train mode the whole batch runs at once and only float-rounding agreement holds.
        """
        ws = self.mapping(
            z,
            truncation_psi=truncation_psi,
            truncation_cutoff=truncation_cutoff,
            update_w_avg=update_w_avg,
        )
        return self.synthesis(
            ws, noise_mode=noise_mode, noise_generator=noise_generator, fused_modconv=fused_modconv
        )
