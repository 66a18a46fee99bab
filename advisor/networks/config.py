"""Typed configurations of the StyleGAN2 generator and discriminator.

The fields mirror the init kwargs of NVlabs' StyleGAN2-ADA networks (``training.networks``) and of
the StyleGAN2 networks in the StyleGAN3 repository (``training.networks_stylegan2``), flattened
into one frozen dataclass per network. ``from_nvlabs_kwargs`` maps the kwargs stored in an NVlabs
pickle (the persistent classes' ``init_kwargs``) onto these fields; a value advisor cannot
reproduce exactly is a ``ValueError``, never silently dropped.

Two NVlabs kwargs are accepted and deliberately not stored: ``num_fp16_res`` and
``fp16_channels_last`` (advisor computes in float32, optionally under bf16 autocast; NVlabs'
StyleGAN3 repository also forces float32 off-GPU), and ``fused_modconv_default`` (an execution
choice with the same mathematics). ``freeze_layers`` of the discriminator is a training choice and
is accepted and dropped too.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from typing_extensions import Self

#: Module names of the NVlabs persistent classes advisor can rebuild, with the defaults their
#: constructors apply to kwargs that a pickle does not carry.
NVLABS_MODULES = ("training.networks", "training.networks_stylegan2")

# Upper bounds on every config, whatever it came from (advisor JSON, an NVlabs pickle's init
# kwargs, shapes of a state dict): a corrupt or hostile value fails here, before anything is
# allocated. The largest real StyleGAN configs are StyleGAN2 config-f at 1024 px (z = w = 512,
# channel_base 32768, channel_max 512, 8 mapping layers, ~30M G and ~29M D parameters),
# StyleGAN3-R (channel_base 65536, channel_max 1024) and StyleGAN-XL at 1024 px (~170M G
# parameters). Every bound is at least an order of magnitude above those.
#: z_dim and w_dim: real networks use 512 (StyleGAN-XL: z 64, w 512).
MAX_LATENT_DIM = 8192
#: Mapping layers: real networks use 2 to 8.
MAX_MAPPING_LAYERS = 64
#: Image side in pixels: real checkpoints go to 1024 (a few community ones to 2048).
MAX_RESOLUTION = 8192
#: Image channels: real networks use 1 (greyscale), 3 (RGB) or 4 (RGBA).
MAX_IMG_CHANNELS = 64
#: channel_base: real configs use 16384 to 65536.
MAX_CHANNEL_BASE = 2**20
#: channel_max: real configs use 512 (StyleGAN3-R: 1024).
MAX_CHANNEL_MAX = 16384
#: Minibatch-stddev group size and feature count: real configs use 4 (or the batch) and 1.
MAX_MBSTD = 4096
#: Values in one network's state_dict (parameters + buffers), computed from the config before
#: anything is built: 2e9 float32 values are 8 GB, ~60x StyleGAN2 config-f's G (~33M with its
#: noise buffers) and ~12x StyleGAN-XL's.
MAX_STATE_NUMEL = 2_000_000_000

_ARCHITECTURES = ("orig", "skip", "resnet")
_DEFAULT_FILTER = (1, 3, 3, 1)
#: Characters of a bad value quoted back in an error; the rest is cut.
_SHOWN_CHARS = 40


def short_repr(value: Any) -> str:
    """A short, safe rendering of a bad value for a one-line error: numbers and short strings
    as themselves, anything else by its type (never a huge or self-referencing repr)."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        return repr(value) if abs(value) < 10**18 else f"an integer of {value.bit_length()} bits"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        text = ascii(value)
        return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."
    return f"a {type(value).__name__}"


def _check_int(name: str, value: Any, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {short_repr(value)}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {short_repr(value)}")


def _check_real(name: str, value: Any) -> None:
    """``value`` is an int or float (not bool) with a finite float value."""
    ok = not isinstance(value, bool) and isinstance(value, int | float)
    try:
        ok = ok and math.isfinite(float(value))
    except OverflowError:
        ok = False
    if not ok:
        raise ValueError(f"{name} must be a finite number, got {short_repr(value)}")


def _check_filter(taps: Any) -> None:
    """1 to 7 finite taps whose float32 2-D filter (as ``setup_filter`` builds it) is finite."""
    if not isinstance(taps, tuple) or not 1 <= len(taps) < 8:
        raise ValueError(f"resample_filter must be a tuple of 1 to 7 taps, got {short_repr(taps)}")
    for tap in taps:
        _check_real("resample_filter taps", tap)
    with np.errstate(all="ignore"):
        f = np.asarray(taps, dtype=np.float64).astype(np.float32)
        f2 = np.outer(f, f)
        total = f2.sum(dtype=np.float32)
        ok = bool(np.isfinite(f2).all() and np.isfinite(total) and total != 0)
        ok = ok and bool(np.isfinite(f2 / total).all())
    if not ok:
        raise ValueError("resample_filter must have finite taps with a non-zero, finite sum")


def _module_defaults(module: str) -> dict[str, Any]:
    if module == "training.networks":  # StyleGAN2-ADA
        return {"conv_clamp": None, "w_avg_beta": 0.995}
    if module == "training.networks_stylegan2":  # StyleGAN3 repository, config stylegan2
        return {"conv_clamp": 256, "w_avg_beta": 0.998}
    raise ValueError(
        f"unknown NVlabs network module {short_repr(module)}; known: {', '.join(NVLABS_MODULES)}"
    )


def _check_common(
    *,
    c_dim: int,
    img_resolution: int,
    img_channels: int,
    channel_base: int,
    channel_max: int,
    conv_clamp: float | None,
    architecture: str,
    resample_filter: tuple[float, ...],
) -> None:
    if isinstance(c_dim, bool) or not isinstance(c_dim, int) or c_dim != 0:
        raise ValueError(
            f"c_dim={short_repr(c_dim)}: conditional networks are not supported; advisor handles "
            "unconditional StyleGAN2 only (c_dim=0)"
        )
    _check_int("img_resolution", img_resolution, 8, MAX_RESOLUTION)
    if img_resolution & (img_resolution - 1):
        raise ValueError(f"img_resolution must be a power of two >= 8, got {img_resolution}")
    _check_int("img_channels", img_channels, 1, MAX_IMG_CHANNELS)
    _check_int("channel_base", channel_base, 1, MAX_CHANNEL_BASE)
    _check_int("channel_max", channel_max, 1, MAX_CHANNEL_MAX)
    if channel_base < img_resolution:
        raise ValueError(
            f"channel_base {channel_base} leaves zero channels at {img_resolution} px "
            f"(channels are min(channel_base // res, channel_max)); it must be at least "
            f"{img_resolution}"
        )
    if conv_clamp is not None:
        _check_real("conv_clamp", conv_clamp)
        if not conv_clamp > 0:
            raise ValueError(f"conv_clamp must be positive or None, got {conv_clamp}")
    if not isinstance(architecture, str) or architecture not in _ARCHITECTURES:
        raise ValueError(
            f"architecture must be one of {_ARCHITECTURES}, got {short_repr(architecture)}"
        )
    _check_filter(resample_filter)


def _take(kwargs: dict[str, Any], key: str, default: Any) -> Any:
    return kwargs.pop(key) if key in kwargs else default


def _take_dict(kwargs: dict[str, Any], key: str) -> dict[str, Any]:
    """A nested kwargs dict (``mapping_kwargs``...); ``None`` or absent is empty."""
    value = _take(kwargs, key, None)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ValueError(
            f"NVlabs kwarg {key} must be a dict of named values, got {short_repr(value)}"
        )
    return dict(value)


def _as_int(value: Any, key: str) -> int:
    """An int, or a float with an integral finite value (NVlabs configs compute some)."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"NVlabs kwarg {key} must be an integer, got {short_repr(value)}")
    return value


def _as_float(value: Any, key: str) -> float:
    _check_real(f"NVlabs kwarg {key}", value)
    return float(value)


def _require(value: Any, allowed: tuple[Any, ...], key: str) -> None:
    if not any(type(value) is type(a) and value == a for a in allowed):
        raise ValueError(
            f"NVlabs kwarg {key}={short_repr(value)} is not supported (supported: {allowed})"
        )


def _reject_leftovers(kwargs: dict[str, Any], where: str) -> None:
    if kwargs:
        names = sorted(
            short_repr(k) if not isinstance(k, str) else k[:_SHOWN_CHARS] for k in kwargs
        )
        shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        raise ValueError(f"unknown NVlabs {where} kwargs: {shown}")


def _filter_tuple(value: Any) -> tuple[float, ...]:
    """Filter taps as a tuple, integral values as ints; validated by the config afterwards."""
    if not isinstance(value, list | tuple) or len(value) > 64:
        raise ValueError(f"resample_filter must be a list of 1 to 7 taps, got {short_repr(value)}")
    out: list[float] = []
    for v in value:
        _check_real("resample_filter taps", v)
        out.append(int(v) if isinstance(v, int) or float(v).is_integer() else float(v))
    return tuple(out)


def _conv(cin: int, cout: int, k: int, *, bias: bool, filter_numel: int) -> int:
    """Values in a ``Conv2dLayer`` state: weight, bias, resample_filter buffer."""
    return cout * cin * k * k + (cout if bias else 0) + filter_numel


def _dense(cin: int, cout: int) -> int:
    """Values in a ``FullyConnectedLayer`` state (with bias)."""
    return cout * cin + cout


class _ConfigIO:
    """What both network configs share: channel counts, validation and the JSON round trip."""

    c_dim: int
    img_resolution: int
    img_channels: int
    channel_base: int
    channel_max: int
    conv_clamp: float | None
    architecture: str
    resample_filter: tuple[float, ...]

    def _check_shared(self) -> None:
        """Validate the fields both networks have (``ValueError`` on a bad value)."""
        _check_common(
            c_dim=self.c_dim,
            img_resolution=self.img_resolution,
            img_channels=self.img_channels,
            channel_base=self.channel_base,
            channel_max=self.channel_max,
            conv_clamp=self.conv_clamp,
            architecture=self.architecture,
            resample_filter=self.resample_filter,
        )

    def _check_size(self, what: str) -> None:
        """Refuse a network whose state would exceed ``MAX_STATE_NUMEL`` values (one line)."""
        numel = self.state_numel()
        if numel > MAX_STATE_NUMEL:
            raise ValueError(
                f"this {what} config describes {numel:.3g} parameter values "
                f"({numel * 4 / 2**30:.3g} GiB in float32); advisor refuses networks above "
                f"{MAX_STATE_NUMEL:.0e} (the largest real StyleGANs have ~2e8)"
            )

    def channels(self, res: int) -> int:
        """Feature maps of the block at resolution ``res``."""
        return min(self.channel_base // res, self.channel_max)

    def state_numel(self) -> int:
        """Exact number of values in the network's ``state_dict`` (parameters and buffers),
        computed from the config alone, without building or allocating anything."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``resample_filter`` as a list); inverse of ``from_dict``."""
        out = dataclasses.asdict(self)
        out["resample_filter"] = list(self.resample_filter)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Build from ``to_dict`` output; unknown keys or bad values are a ``ValueError``."""
        return _from_dict(cls, data)


@dataclass(frozen=True, kw_only=True)
class GeneratorConfig(_ConfigIO):
    """StyleGAN2 generator architecture (unconditional), NVlabs-compatible.

    ``channel_base``/``channel_max`` give ``min(channel_base // res, channel_max)`` feature maps at
    resolution ``res``. ``conv_clamp`` clamps convolution outputs to +-value (NVlabs training
    configs use 256; ``None`` disables). ``architecture`` is NVlabs' ``'skip'`` (default,
    ToRGB at every resolution summed with upsampling), ``'orig'`` or ``'resnet'``.
    ``mapping_lr_multiplier`` is the equalised-learning-rate multiplier of the mapping layers; it
    changes the forward pass of stored weights, so it is part of the architecture.
    ``w_avg_beta`` is the decay of the tracked average of w (used for truncation).
    Every field is bounded (``MAX_*`` above) and the whole network must stay within
    ``MAX_STATE_NUMEL`` values; a violation is a one-line ``ValueError``.
    """

    z_dim: int = 512
    w_dim: int = 512
    c_dim: int = 0
    img_resolution: int = 256
    img_channels: int = 3
    mapping_layers: int = 8
    mapping_lr_multiplier: float = 0.01
    w_avg_beta: float = 0.995
    channel_base: int = 32768
    channel_max: int = 512
    conv_clamp: float | None = 256
    architecture: str = "skip"
    resample_filter: tuple[float, ...] = _DEFAULT_FILTER
    use_noise: bool = True

    def __post_init__(self) -> None:
        self._check_shared()
        _check_int("z_dim", self.z_dim, 1, MAX_LATENT_DIM)
        _check_int("w_dim", self.w_dim, 1, MAX_LATENT_DIM)
        _check_int("mapping_layers", self.mapping_layers, 1, MAX_MAPPING_LAYERS)
        _check_real("w_avg_beta", self.w_avg_beta)
        if not 0 <= self.w_avg_beta < 1:
            raise ValueError(f"w_avg_beta must be in [0, 1), got {self.w_avg_beta}")
        _check_real("mapping_lr_multiplier", self.mapping_lr_multiplier)
        if not self.mapping_lr_multiplier > 0:
            raise ValueError("mapping_lr_multiplier must be positive")
        if not isinstance(self.use_noise, bool):
            raise ValueError(f"use_noise must be true or false, got {short_repr(self.use_noise)}")
        self._check_size("generator")

    def state_numel(self) -> int:
        """Exact number of values in ``Generator(self).state_dict()``; nothing is allocated."""
        w, img, flt = self.w_dim, self.img_channels, len(self.resample_filter) ** 2
        features = [self.z_dim] + [w] * self.mapping_layers
        total = sum(_dense(a, b) for a, b in zip(features, features[1:], strict=False)) + w
        noise = 1 if self.use_noise else 0
        log2 = int(math.log2(self.img_resolution))
        for res in (2**i for i in range(2, log2 + 1)):
            cin, cout = (self.channels(res // 2) if res > 4 else 0), self.channels(res)
            total += flt  # the block's resample_filter
            layers = [(cin, cout)] if cin else []
            if not cin:
                total += cout * res * res  # const
            for lin, lout in [*layers, (cout, cout)]:  # conv0 (upsampling), conv1
                total += _dense(w, lin) + lout * lin * 9 + lout + flt + noise * (1 + res * res)
            if res == self.img_resolution or self.architecture == "skip":
                total += _dense(w, cout) + img * cout + img  # torgb
            if cin and self.architecture == "resnet":
                total += _conv(cin, cout, 1, bias=False, filter_numel=flt)
        return total

    @classmethod
    def from_nvlabs_kwargs(
        cls, init_kwargs: dict[str, Any], *, module: str = "training.networks"
    ) -> GeneratorConfig:
        """Map an NVlabs ``Generator`` ``init_kwargs`` onto a config.

        ``module`` is the persistent class's module: ``'training.networks'`` (StyleGAN2-ADA,
        nested ``synthesis_kwargs``) or ``'training.networks_stylegan2'`` (StyleGAN3 repository,
        synthesis kwargs at top level); it decides the defaults of kwargs the pickle omits.
        Unknown kwargs, values of the wrong type or values advisor cannot reproduce raise
        ``ValueError``.
        """
        defaults = _module_defaults(module)
        kw = _take_dict({"init_kwargs": init_kwargs}, "init_kwargs")
        required = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")
        missing = [k for k in required if k not in kw]
        if missing:
            raise ValueError(f"NVlabs generator kwargs lack {', '.join(missing)}")
        top = {k: _as_int(kw.pop(k), k) for k in required}
        mapping = _take_dict(kw, "mapping_kwargs")
        synthesis = _take_dict(kw, "synthesis_kwargs")
        synthesis.update(kw)  # StyleGAN3-repository layout: synthesis kwargs at top level
        kw.clear()

        layer_features = _take(mapping, "layer_features", None)
        _require(layer_features, (None, top["w_dim"]), "mapping_kwargs.layer_features")
        _require(_take(mapping, "activation", "lrelu"), ("lrelu",), "mapping_kwargs.activation")
        _take(mapping, "embed_features", None)  # label embedding: unused when c_dim == 0
        w_avg_beta = _take(mapping, "w_avg_beta", defaults["w_avg_beta"])
        if w_avg_beta is None:
            raise ValueError("NVlabs generator without w_avg (w_avg_beta=None) is not supported")
        fields: dict[str, Any] = dict(
            top,
            mapping_layers=_as_int(_take(mapping, "num_layers", 8), "mapping_kwargs.num_layers"),
            mapping_lr_multiplier=_as_float(
                _take(mapping, "lr_multiplier", 0.01), "mapping_kwargs.lr_multiplier"
            ),
            w_avg_beta=_as_float(w_avg_beta, "mapping_kwargs.w_avg_beta"),
        )
        _reject_leftovers(mapping, "mapping")

        for ignored in ("num_fp16_res", "fp16_channels_last", "fused_modconv_default"):
            synthesis.pop(ignored, None)
        _require(_take(synthesis, "kernel_size", 3), (3,), "synthesis_kwargs.kernel_size")
        _require(_take(synthesis, "activation", "lrelu"), ("lrelu",), "synthesis_kwargs.activation")
        use_noise = _take(synthesis, "use_noise", True)
        _require(use_noise, (True, False), "synthesis_kwargs.use_noise")
        fields.update(
            channel_base=_as_int(_take(synthesis, "channel_base", 32768), "channel_base"),
            channel_max=_as_int(_take(synthesis, "channel_max", 512), "channel_max"),
            conv_clamp=_take(synthesis, "conv_clamp", defaults["conv_clamp"]),
            architecture=_take(synthesis, "architecture", "skip"),
            resample_filter=_filter_tuple(_take(synthesis, "resample_filter", _DEFAULT_FILTER)),
            use_noise=use_noise,
        )
        _reject_leftovers(synthesis, "synthesis")
        return cls(**fields)


@dataclass(frozen=True, kw_only=True)
class DiscriminatorConfig(_ConfigIO):
    """StyleGAN2 discriminator architecture (unconditional), NVlabs-compatible.

    ``architecture`` is NVlabs' ``'resnet'`` (default: residual blocks), ``'skip'`` or
    ``'orig'``. The epilogue appends ``mbstd_num_channels`` minibatch-standard-deviation features
    computed over groups of ``mbstd_group_size`` samples (``None`` = the whole batch; a batch
    must divide into whole groups); the 4x4 channels must split evenly into
    ``mbstd_num_channels`` parts. ``conv_clamp`` and the bounds as in ``GeneratorConfig``.
    """

    c_dim: int = 0
    img_resolution: int = 256
    img_channels: int = 3
    architecture: str = "resnet"
    channel_base: int = 32768
    channel_max: int = 512
    conv_clamp: float | None = 256
    mbstd_group_size: int | None = 4
    mbstd_num_channels: int = 1
    resample_filter: tuple[float, ...] = _DEFAULT_FILTER

    def __post_init__(self) -> None:
        self._check_shared()
        if self.mbstd_group_size is not None:
            _check_int("mbstd_group_size", self.mbstd_group_size, 1, MAX_MBSTD)
        _check_int("mbstd_num_channels", self.mbstd_num_channels, 0, MAX_MBSTD)
        if self.mbstd_num_channels and self.channels(4) % self.mbstd_num_channels:
            raise ValueError(
                f"mbstd_num_channels {self.mbstd_num_channels} does not divide the "
                f"{self.channels(4)} channels at 4x4"
            )
        self._check_size("discriminator")

    def state_numel(self) -> int:
        """Exact number of values in ``Discriminator(self).state_dict()``; nothing is allocated."""
        img, flt, top = self.img_channels, len(self.resample_filter) ** 2, self.img_resolution
        default_flt = len(_DEFAULT_FILTER) ** 2  # layers that do not resample keep the default
        total = 0
        log2 = int(math.log2(top))
        for res in (2**i for i in range(log2, 2, -1)):
            tmp, out = self.channels(res), self.channels(res // 2)
            total += flt  # the block's resample_filter
            if res == top or self.architecture == "skip":
                total += _conv(img, tmp, 1, bias=True, filter_numel=default_flt)  # fromrgb
            total += _conv(tmp, tmp, 3, bias=True, filter_numel=default_flt)  # conv0
            total += _conv(tmp, out, 3, bias=True, filter_numel=flt)  # conv1
            if self.architecture == "resnet":
                total += _conv(tmp, out, 1, bias=False, filter_numel=flt)  # skip
        c = self.channels(4)
        if self.architecture == "skip":
            total += _conv(img, c, 1, bias=True, filter_numel=default_flt)
        total += _conv(c + self.mbstd_num_channels, c, 3, bias=True, filter_numel=default_flt)
        return total + _dense(c * 16, c) + _dense(c, 1)

    @classmethod
    def from_nvlabs_kwargs(
        cls, init_kwargs: dict[str, Any], *, module: str = "training.networks"
    ) -> DiscriminatorConfig:
        """Map an NVlabs ``Discriminator`` ``init_kwargs`` onto a config (see the generator's)."""
        defaults = _module_defaults(module)
        kw = _take_dict({"init_kwargs": init_kwargs}, "init_kwargs")
        missing = {"c_dim", "img_resolution", "img_channels"} - set(kw)
        if missing:
            raise ValueError(f"NVlabs discriminator kwargs lack {', '.join(sorted(missing))}")
        block = _take_dict(kw, "block_kwargs")
        epilogue = _take_dict(kw, "epilogue_kwargs")
        _take(kw, "mapping_kwargs", {})  # label mapping: unused when c_dim == 0
        _take(kw, "cmap_dim", None)
        kw.pop("num_fp16_res", None)
        fields: dict[str, Any] = {
            "c_dim": _as_int(kw.pop("c_dim"), "c_dim"),
            "img_resolution": _as_int(kw.pop("img_resolution"), "img_resolution"),
            "img_channels": _as_int(kw.pop("img_channels"), "img_channels"),
            "architecture": _take(kw, "architecture", "resnet"),
            "channel_base": _as_int(_take(kw, "channel_base", 32768), "channel_base"),
            "channel_max": _as_int(_take(kw, "channel_max", 512), "channel_max"),
            "conv_clamp": _take(kw, "conv_clamp", defaults["conv_clamp"]),
        }
        _reject_leftovers(kw, "discriminator")

        for ignored in ("freeze_layers", "fp16_channels_last"):
            block.pop(ignored, None)
        _require(_take(block, "activation", "lrelu"), ("lrelu",), "block_kwargs.activation")
        fields["resample_filter"] = _filter_tuple(_take(block, "resample_filter", _DEFAULT_FILTER))
        _reject_leftovers(block, "block")

        _require(_take(epilogue, "activation", "lrelu"), ("lrelu",), "epilogue_kwargs.activation")
        group = _take(epilogue, "mbstd_group_size", 4)
        fields["mbstd_group_size"] = None if group is None else _as_int(group, "mbstd_group_size")
        fields["mbstd_num_channels"] = _as_int(
            _take(epilogue, "mbstd_num_channels", 1), "mbstd_num_channels"
        )
        _reject_leftovers(epilogue, "epilogue")
        return cls(**fields)


def _from_dict(cls: type, data: Any) -> Any:
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise ValueError(f"a {cls.__name__} must be a JSON object, got {short_repr(data)}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {', '.join(sorted(unknown)[:10])}")
    values = dict(data)
    if "resample_filter" in values:
        values["resample_filter"] = _filter_tuple(values["resample_filter"])
    return cls(**values)
