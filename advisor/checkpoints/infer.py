"""Recover StyleGAN2 configs from NVlabs-named state dicts (no init kwargs available).

Used for sources that ship bare state dicts: rosinality checkpoints (after renaming to NVlabs
keys) and torch.save files of NVlabs state dicts such as the gan-transfer ImageNet checkpoints.
Shapes fix most fields: z/w dims, mapping depth, resolution, per-resolution channels (hence
``channel_base``/``channel_max``), architecture, minibatch-stddev channels, and the resample
filter (from the stored ``resample_filter`` buffers). What shapes cannot tell is taken from the
caller: ``conv_clamp``, the mapping learning-rate multiplier and the minibatch-stddev group
size. A layout NVlabs' ``min(channel_base // res, channel_max)`` cannot express is an error.

Every shape is read with the rank its tensor must have (a 1-d tensor where a 2-d weight belongs
is refused, never indexed past its end), block resolutions must be 4, 8, 16... up to the top
one, and the inferred config goes through the config's own bounds and size estimate: whatever
the state holds, the result is a valid config or one :class:`AdvisorError` line.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from advisor.errors import AdvisorError
from advisor.networks import DiscriminatorConfig, GeneratorConfig
from advisor.networks.config import MAX_RESOLUTION

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
    default is reported as the default. Non-separable, non-finite or oddly shaped filters (not
    1-d or square 2-d of 1 to 7 taps, or summing to zero) are an error.
    """
    if filter_2d is None:
        return _DEFAULT_TAPS
    shape = tuple(filter_2d.shape)
    if not (len(shape) in (1, 2) and 1 <= shape[0] < 8 and shape == shape[:1] * len(shape)):
        raise AdvisorError(f"resample filter has shape {shape}; expected [k] or [k, k], k <= 7")
    f = filter_2d.double()
    if not torch.isfinite(f).all() or f.sum() == 0:
        raise AdvisorError("resample filter has non-finite values or sums to zero")
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


def _resolutions(state: dict[str, torch.Tensor], pattern: str, what: str) -> list[int]:
    """Sorted block resolutions named by ``pattern``'s group; each a power of two in range."""
    found = set()
    for key in state:
        if m := re.match(pattern, key):
            digits = m.group(1)
            res = int(digits) if len(digits) <= 6 else MAX_RESOLUTION + 1
            if not 4 <= res <= MAX_RESOLUTION or res & (res - 1):
                raise AdvisorError(
                    f"{what} state has a block at resolution {digits[:12]}; advisor supports "
                    f"powers of two from 4 to {MAX_RESOLUTION}"
                )
            found.add(res)
    return sorted(found)


def _check_block_chain(resolutions: list[int], first: int, what: str) -> None:
    """Blocks must be ``first, 2 * first, ...`` with no gap (NVlabs' layout)."""
    expected = [first << i for i in range(len(resolutions))]
    if not resolutions or resolutions != expected:
        shown = ", ".join(str(r) for r in resolutions[:8]) or "none"
        raise AdvisorError(
            f"{what} blocks at resolutions {shown} are not the layout advisor rebuilds "
            f"({first}, {2 * first}, ... doubling up to the image size)"
        )


def _shape(
    state: dict[str, torch.Tensor], key: str, what: str, ndim: int | None = None
) -> tuple[int, ...]:
    if key not in state:
        raise AdvisorError(f"{what} state lacks {key}; it is not a StyleGAN2 network")
    shape = tuple(state[key].shape)
    if ndim is not None and len(shape) != ndim:
        raise AdvisorError(
            f"{what} tensor {key} has shape {shape[:8]}; a StyleGAN2 network has a "
            f"{ndim}-d tensor there"
        )
    return shape


def _config(kind: type, what: str, **fields: Any) -> Any:
    """Build the inferred config; its validation (bounds, size estimate) becomes one line."""
    try:
        return kind(**fields)
    except (TypeError, ValueError) as err:
        raise AdvisorError(
            f"{what} shapes describe a network advisor cannot build: {err}"
        ) from None


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
    layers = sorted(
        int(m.group(1)) for k in state if (m := re.match(r"mapping\.fc(\d{1,6})\.weight$", k))
    )
    if not layers or layers != list(range(len(layers))):
        raise AdvisorError("generator state has no mapping.fc0..N layers; not a StyleGAN2 G")
    z_dim = _shape(state, "mapping.fc0.weight", what, 2)[1]
    w_dim = _shape(state, f"mapping.fc{layers[-1]}.weight", what, 2)[0]
    resolutions = _resolutions(state, r"synthesis\.b(\d+)\.", what)
    if not resolutions or resolutions[0] != 4:
        raise AdvisorError("generator state has no synthesis.b4 block; not a StyleGAN2 G")
    _check_block_chain(resolutions, 4, what)
    channels = {4: _shape(state, "synthesis.b4.const", what, 3)[0]}
    for res in resolutions[1:]:
        channels[res] = _shape(state, f"synthesis.b{res}.conv1.weight", what, 4)[0]
    torgbs = [r for r in resolutions if f"synthesis.b{r}.torgb.weight" in state]
    if any(f"synthesis.b{r}.skip.weight" in state for r in resolutions):
        architecture = "resnet"
    elif torgbs == resolutions:
        architecture = "skip"
    else:
        architecture = "orig"
    top = resolutions[-1]
    if top < 8:
        raise AdvisorError("generator state stops at 4x4; advisor supports 8 px and up")
    base, cmax = infer_channel_layout(channels, what)
    return _config(
        GeneratorConfig,
        what,
        z_dim=z_dim,
        w_dim=w_dim,
        img_resolution=top,
        img_channels=_shape(state, f"synthesis.b{top}.torgb.weight", what, 4)[0],
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
    resolutions = _resolutions(state, r"b(\d+)\.conv0\.weight$", what)
    if not resolutions:
        raise AdvisorError("discriminator state has no b<res>.conv0 blocks; not a StyleGAN2 D")
    _check_block_chain(resolutions, 8, what)
    top = resolutions[-1]
    channels = {res: _shape(state, f"b{res}.conv0.weight", what, 4)[0] for res in resolutions}
    channels[4], conv_in = _shape(state, "b4.conv.weight", what, 4)[:2]
    if any(f"b{r}.skip.weight" in state for r in resolutions):
        architecture = "resnet"
    elif all(f"b{r}.fromrgb.weight" in state for r in resolutions):
        architecture = "skip"
    else:
        architecture = "orig"
    base, cmax = infer_channel_layout(channels, what)
    return _config(
        DiscriminatorConfig,
        what,
        img_resolution=top,
        img_channels=_shape(state, f"b{top}.fromrgb.weight", what, 4)[1],
        architecture=architecture,
        channel_base=base,
        channel_max=cmax,
        conv_clamp=conv_clamp,
        mbstd_group_size=mbstd_group_size,
        mbstd_num_channels=conv_in - channels[4],
        resample_filter=filter_taps(state.get(f"b{top}.resample_filter")),
    )
