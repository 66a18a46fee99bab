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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing_extensions import Self

#: Module names of the NVlabs persistent classes advisor can rebuild, with the defaults their
#: constructors apply to kwargs that a pickle does not carry.
NVLABS_MODULES = ("training.networks", "training.networks_stylegan2")

_ARCHITECTURES = ("orig", "skip", "resnet")
_DEFAULT_FILTER = (1, 3, 3, 1)


def _module_defaults(module: str) -> dict[str, Any]:
    if module == "training.networks":  # StyleGAN2-ADA
        return {"conv_clamp": None, "w_avg_beta": 0.995}
    if module == "training.networks_stylegan2":  # StyleGAN3 repository, config stylegan2
        return {"conv_clamp": 256, "w_avg_beta": 0.998}
    raise ValueError(
        f"unknown NVlabs network module {module!r}; known: {', '.join(NVLABS_MODULES)}"
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
    if c_dim != 0:
        raise ValueError(
            f"c_dim={c_dim}: conditional networks are not supported; advisor handles "
            "unconditional StyleGAN2 only (c_dim=0)"
        )
    if img_resolution < 8 or img_resolution & (img_resolution - 1):
        raise ValueError(f"img_resolution must be a power of two >= 8, got {img_resolution}")
    if img_channels < 1 or channel_base < 1 or channel_max < 1:
        raise ValueError("img_channels, channel_base and channel_max must be positive")
    if conv_clamp is not None and not conv_clamp > 0:
        raise ValueError(f"conv_clamp must be positive or None, got {conv_clamp}")
    if architecture not in _ARCHITECTURES:
        raise ValueError(f"architecture must be one of {_ARCHITECTURES}, got {architecture!r}")
    if not 1 <= len(resample_filter) < 8:
        raise ValueError(f"resample_filter must have 1 to 7 taps, got {len(resample_filter)}")


def _take(kwargs: dict[str, Any], key: str, default: Any) -> Any:
    return kwargs.pop(key) if key in kwargs else default


def _require(value: Any, allowed: tuple[Any, ...], key: str) -> None:
    if value not in allowed:
        raise ValueError(f"NVlabs kwarg {key}={value!r} is not supported (supported: {allowed})")


def _reject_leftovers(kwargs: dict[str, Any], where: str) -> None:
    if kwargs:
        raise ValueError(f"unknown NVlabs {where} kwargs: {', '.join(sorted(kwargs))}")


def _filter_tuple(value: Any) -> tuple[float, ...]:
    return tuple(float(v) if float(v) != int(v) else int(v) for v in value)


class _ConfigIO:
    """What both network configs share: channel counts and the JSON round trip."""

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

    def channels(self, res: int) -> int:
        """Feature maps of the block at resolution ``res``."""
        return min(self.channel_base // res, self.channel_max)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``resample_filter`` as a list); inverse of ``from_dict``."""
        out = dataclasses.asdict(self)
        out["resample_filter"] = list(self.resample_filter)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Build from ``to_dict`` output; unknown keys are a ``ValueError``."""
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
        if self.z_dim < 1 or self.w_dim < 1 or self.mapping_layers < 1:
            raise ValueError("z_dim, w_dim and mapping_layers must be positive")
        if not 0 <= self.w_avg_beta < 1:
            raise ValueError(f"w_avg_beta must be in [0, 1), got {self.w_avg_beta}")
        if not self.mapping_lr_multiplier > 0:
            raise ValueError("mapping_lr_multiplier must be positive")

    @classmethod
    def from_nvlabs_kwargs(
        cls, init_kwargs: dict[str, Any], *, module: str = "training.networks"
    ) -> GeneratorConfig:
        """Map an NVlabs ``Generator`` ``init_kwargs`` onto a config.

        ``module`` is the persistent class's module: ``'training.networks'`` (StyleGAN2-ADA,
        nested ``synthesis_kwargs``) or ``'training.networks_stylegan2'`` (StyleGAN3 repository,
        synthesis kwargs at top level); it decides the defaults of kwargs the pickle omits.
        Unknown kwargs or values advisor cannot reproduce raise ``ValueError``.
        """
        defaults = _module_defaults(module)
        kw = dict(init_kwargs)
        required = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")
        missing = [k for k in required if k not in kw]
        if missing:
            raise ValueError(f"NVlabs generator kwargs lack {', '.join(missing)}")
        top = {k: kw.pop(k) for k in required}
        mapping = dict(_take(kw, "mapping_kwargs", {}))
        synthesis = dict(_take(kw, "synthesis_kwargs", {}))
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
            mapping_layers=_take(mapping, "num_layers", 8),
            mapping_lr_multiplier=float(_take(mapping, "lr_multiplier", 0.01)),
            w_avg_beta=float(w_avg_beta),
        )
        _reject_leftovers(mapping, "mapping")

        for ignored in ("num_fp16_res", "fp16_channels_last", "fused_modconv_default"):
            synthesis.pop(ignored, None)
        _require(_take(synthesis, "kernel_size", 3), (3,), "synthesis_kwargs.kernel_size")
        _require(_take(synthesis, "activation", "lrelu"), ("lrelu",), "synthesis_kwargs.activation")
        fields.update(
            channel_base=int(_take(synthesis, "channel_base", 32768)),
            channel_max=int(_take(synthesis, "channel_max", 512)),
            conv_clamp=_take(synthesis, "conv_clamp", defaults["conv_clamp"]),
            architecture=_take(synthesis, "architecture", "skip"),
            resample_filter=_filter_tuple(_take(synthesis, "resample_filter", _DEFAULT_FILTER)),
            use_noise=bool(_take(synthesis, "use_noise", True)),
        )
        _reject_leftovers(synthesis, "synthesis")
        return cls(**fields)


@dataclass(frozen=True, kw_only=True)
class DiscriminatorConfig(_ConfigIO):
    """StyleGAN2 discriminator architecture (unconditional), NVlabs-compatible.

    ``architecture`` is NVlabs' ``'resnet'`` (default: residual blocks), ``'skip'`` or
    ``'orig'``. The epilogue appends ``mbstd_num_channels`` minibatch-standard-deviation features
    computed over groups of ``mbstd_group_size`` samples (``None`` = the whole batch; a batch
    must divide into whole groups). ``conv_clamp`` as in ``GeneratorConfig``.
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
        if self.mbstd_group_size is not None and self.mbstd_group_size < 1:
            raise ValueError("mbstd_group_size must be positive or None")
        if self.mbstd_num_channels < 0:
            raise ValueError("mbstd_num_channels must be >= 0")

    @classmethod
    def from_nvlabs_kwargs(
        cls, init_kwargs: dict[str, Any], *, module: str = "training.networks"
    ) -> DiscriminatorConfig:
        """Map an NVlabs ``Discriminator`` ``init_kwargs`` onto a config (see the generator's)."""
        defaults = _module_defaults(module)
        kw = dict(init_kwargs)
        missing = {"c_dim", "img_resolution", "img_channels"} - set(kw)
        if missing:
            raise ValueError(f"NVlabs discriminator kwargs lack {', '.join(sorted(missing))}")
        block = dict(_take(kw, "block_kwargs", {}))
        epilogue = dict(_take(kw, "epilogue_kwargs", {}))
        _take(kw, "mapping_kwargs", {})  # label mapping: unused when c_dim == 0
        _take(kw, "cmap_dim", None)
        kw.pop("num_fp16_res", None)
        fields: dict[str, Any] = {
            "c_dim": kw.pop("c_dim"),
            "img_resolution": kw.pop("img_resolution"),
            "img_channels": kw.pop("img_channels"),
            "architecture": _take(kw, "architecture", "resnet"),
            "channel_base": int(_take(kw, "channel_base", 32768)),
            "channel_max": int(_take(kw, "channel_max", 512)),
            "conv_clamp": _take(kw, "conv_clamp", defaults["conv_clamp"]),
        }
        _reject_leftovers(kw, "discriminator")

        for ignored in ("freeze_layers", "fp16_channels_last"):
            block.pop(ignored, None)
        _require(_take(block, "activation", "lrelu"), ("lrelu",), "block_kwargs.activation")
        fields["resample_filter"] = _filter_tuple(_take(block, "resample_filter", _DEFAULT_FILTER))
        _reject_leftovers(block, "block")

        _require(_take(epilogue, "activation", "lrelu"), ("lrelu",), "epilogue_kwargs.activation")
        fields["mbstd_group_size"] = _take(epilogue, "mbstd_group_size", 4)
        fields["mbstd_num_channels"] = int(_take(epilogue, "mbstd_num_channels", 1))
        _reject_leftovers(epilogue, "epilogue")
        return cls(**fields)


def _from_dict(cls: type, data: dict[str, Any]) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {', '.join(sorted(unknown))}")
    values = dict(data)
    if "resample_filter" in values:
        values["resample_filter"] = _filter_tuple(values["resample_filter"])
    return cls(**values)
