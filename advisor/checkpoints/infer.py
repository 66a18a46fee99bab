"""Recover StyleGAN2 configs from NVlabs-named state dicts (no init kwargs available).

Used for sources that ship bare state dicts: rosinality checkpoints (after renaming to NVlabs
keys) and torch.save files of NVlabs state dicts such as the gan-transfer ImageNet checkpoints.
Shapes fix most fields: z/w dims, mapping depth, resolution, per-resolution channels (hence
``channel_base``/``channel_max``), architecture, minibatch-stddev channels, and the resample
filter (from the stored ``resample_filter`` buffers). What shapes cannot tell is taken from the
caller: ``conv_clamp``, the mapping learning-rate multiplier and the minibatch-stddev group
size. A layout NVlabs' ``min(channel_base // res, channel_max)`` cannot express is an error.
"""

from __future__ import annotations

import re

import torch

from advisor.errors import AdvisorError
from advisor.networks import DiscriminatorConfig, GeneratorConfig

_DEFAULT_TAPS = (1, 3, 3, 1)


def infer_channel_layout(channels: dict[int, int], what: str) -> tuple[int, int]:
    """``(channel_base, channel_max)`` with ``channels[res] == min(base // res, max)`` for all.

    Raises :class:`AdvisorError` when no such pair exists. Among valid bases the smallest power
    of two is chosen (NVlabs' configs use 16384 or 32768), else the smallest valid one.
    """
    channel_max = max(channels.values())
    lo, hi = 1, None
    for res, c in channels.items():
        if c == channel_max:
            lo = max(lo, channel_max * res)  # base // res >= channel_max
        else:
            lo, hi = max(lo, c * res), min(hi or c * res + res - 1, c * res + res - 1)
    if hi is None:
        hi = lo
    if lo > hi:
        raise AdvisorError(
            f"{what} channels {dict(sorted(channels.items()))} do not follow "
            "min(channel_base // res, channel_max); advisor cannot rebuild this network"
        )
    base = next((1 << p for p in range(1, 40) if lo <= 1 << p <= hi), lo)
    return base, channel_max


def filter_taps(filter_2d: torch.Tensor | None) -> tuple[float, ...]:
    """1-D taps of a separable, normalised NVlabs ``resample_filter`` buffer.

    ``None`` (no buffer) gives NVlabs' default ``(1, 3, 3, 1)``; a filter proportional to the
    default is reported as the default. Non-separable filters are an error.
    """
    if filter_2d is None:
        return _DEFAULT_TAPS
    f = filter_2d.double()
    if f.ndim == 1:
        taps = f / f.sum()
    else:
        taps = f.sum(dim=1) / f.sum()
        if not torch.allclose(torch.outer(taps, taps), f / f.sum(), atol=1e-6):
            raise AdvisorError("resample filter is not separable; advisor cannot rebuild it")
    default = torch.tensor(_DEFAULT_TAPS, dtype=torch.float64)
    if taps.numel() == 4 and torch.allclose(taps, default / default.sum(), atol=1e-6):
        return _DEFAULT_TAPS
    return tuple(float(t) for t in taps)


def _resolutions(state: dict[str, torch.Tensor], pattern: str) -> list[int]:
    found = {int(m.group(1)) for k in state if (m := re.match(pattern, k))}
    return sorted(found)


def _shape(state: dict[str, torch.Tensor], key: str, what: str) -> tuple[int, ...]:
    if key not in state:
        raise AdvisorError(f"{what} state lacks {key}; it is not a StyleGAN2 network")
    return tuple(state[key].shape)


def infer_generator_config(
    state: dict[str, torch.Tensor],
    *,
    conv_clamp: float | None,
    mapping_lr_multiplier: float = 0.01,
) -> GeneratorConfig:
    """A :class:`GeneratorConfig` whose network has exactly ``state``'s NVlabs keys and shapes."""
    what = "generator"
    if any(k.startswith("mapping.embed.") for k in state):
        raise AdvisorError("conditional generators (label embedding) are not supported")
    layers = _resolutions(state, r"mapping\.fc(\d+)\.weight$")
    if not layers or layers != list(range(len(layers))):
        raise AdvisorError("generator state has no mapping.fc0..N layers; not a StyleGAN2 G")
    z_dim = _shape(state, "mapping.fc0.weight", what)[1]
    w_dim = _shape(state, f"mapping.fc{layers[-1]}.weight", what)[0]
    resolutions = _resolutions(state, r"synthesis\.b(\d+)\.")
    if not resolutions or resolutions[0] != 4:
        raise AdvisorError("generator state has no synthesis.b4 block; not a StyleGAN2 G")
    channels = {4: _shape(state, "synthesis.b4.const", what)[0]}
    for res in resolutions[1:]:
        channels[res] = _shape(state, f"synthesis.b{res}.conv1.weight", what)[0]
    torgbs = [r for r in resolutions if f"synthesis.b{r}.torgb.weight" in state]
    if any(f"synthesis.b{r}.skip.weight" in state for r in resolutions):
        architecture = "resnet"
    elif torgbs == resolutions:
        architecture = "skip"
    else:
        architecture = "orig"
    top = resolutions[-1]
    base, cmax = infer_channel_layout(channels, what)
    return GeneratorConfig(
        z_dim=z_dim,
        w_dim=w_dim,
        img_resolution=top,
        img_channels=_shape(state, f"synthesis.b{top}.torgb.weight", what)[0],
        mapping_layers=len(layers),
        mapping_lr_multiplier=mapping_lr_multiplier,
        channel_base=base,
        channel_max=cmax,
        conv_clamp=conv_clamp,
        architecture=architecture,
        resample_filter=filter_taps(state.get("synthesis.b4.resample_filter")),
        use_noise="synthesis.b4.conv1.noise_strength" in state,
    )


def infer_discriminator_config(
    state: dict[str, torch.Tensor],
    *,
    conv_clamp: float | None,
    mbstd_group_size: int | None = 4,
) -> DiscriminatorConfig:
    """A :class:`DiscriminatorConfig` whose network has exactly ``state``'s keys and shapes."""
    what = "discriminator"
    if any(k.startswith("mapping.") for k in state):
        raise AdvisorError("conditional discriminators (label mapping) are not supported")
    resolutions = _resolutions(state, r"b(\d+)\.conv0\.weight$")
    if not resolutions:
        raise AdvisorError("discriminator state has no b<res>.conv0 blocks; not a StyleGAN2 D")
    top = resolutions[-1]
    channels = {res: _shape(state, f"b{res}.conv0.weight", what)[0] for res in resolutions}
    channels[4], conv_in = _shape(state, "b4.conv.weight", what)[:2]
    if any(f"b{r}.skip.weight" in state for r in resolutions):
        architecture = "resnet"
    elif all(f"b{r}.fromrgb.weight" in state for r in resolutions):
        architecture = "skip"
    else:
        architecture = "orig"
    base, cmax = infer_channel_layout(channels, what)
    return DiscriminatorConfig(
        img_resolution=top,
        img_channels=_shape(state, f"b{top}.fromrgb.weight", what)[1],
        architecture=architecture,
        channel_base=base,
        channel_max=cmax,
        conv_clamp=conv_clamp,
        mbstd_group_size=mbstd_group_size,
        mbstd_num_channels=conv_in - channels[4],
        resample_filter=filter_taps(state.get(f"b{top}.resample_filter")),
    )
