"""The feature-extractor contract: uint8 NCHW RGB in, float32 [N, D] out, with its protocol.

Every extractor is a :class:`FeatureExtractor` whose ``state_dict`` keys are exactly those of
the weights file it loads (so the published file loads with ``strict=True``). The base class
owns everything that is the same for all networks: the input contract, the protocol's resize,
the uint8 -> float normalisation, precision (fp32, or bf16 autocast), memory format and
inference mode. A subclass only builds its layers and maps a normalised float batch to pooled
features.

Registry: extractors are registered by name with :func:`register_extractor` and looked up by
``advisor.features.get_extractor``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar, Literal, TypeVar

import torch
from torch import nn

from advisor.cache import atomic_write_bytes, cache_dir, read_small_file
from advisor.devices import fp32_math
from advisor.download import sha256_file
from advisor.errors import AdvisorError
from advisor.images import RESIZE_POLICY, resize_uint8
from advisor.progress import Reporting

#: Precisions an extractor can run at. bf16 means ``torch.autocast(..., torch.bfloat16)``.
PRECISIONS = ("fp32", "bf16")


#: How two protocols that differ in a field relate: ``"incomparable"`` (another network, weights,
#: input size, resize or dimension: the features live in different spaces) or ``"mixed"`` (the
#: same network at another precision: comparable, but the metrics mix two arithmetics).
DifferenceKind = Literal["incomparable", "mixed"]
#: Fields whose difference only mixes arithmetic; every other field but ``comparable`` (which
#: follows from ``weights_sha256``) makes features incomparable.
_MIXED_FIELDS = frozenset({"precision"})


@dataclass(frozen=True, kw_only=True)
class ProtocolDifference:
    """One field in which two protocols differ: ``ours`` is this protocol's value."""

    field: str
    ours: str | int | bool
    theirs: str | int | bool
    kind: DifferenceKind

    def __str__(self) -> str:
        return f"{self.field}: {self.ours!r} vs {self.theirs!r}"


@dataclass(frozen=True, kw_only=True)
class FeatureProtocol:
    """Everything that determines an extractor's features, recorded with every result.

    ``comparable`` is True iff the loaded weights are the canonical published ones (their
    sha256 matches the pin); it does not change the features, so it is left out of ``key()``
    and of :meth:`differences`.
    """

    extractor: str
    weights_sha256: str
    comparable: bool
    input_size: int
    resize: str
    precision: str
    dim: int

    def to_dict(self) -> dict[str, object]:
        """The protocol as a JSON-ready dict (feature files, results); only at the edges."""
        return asdict(self)

    def key(self) -> str:
        """Stable sha256 hex of every field that changes features (all but ``comparable``)."""
        fields = self.to_dict()
        del fields["comparable"]
        blob = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()

    def differences(self, other: FeatureProtocol) -> tuple[ProtocolDifference, ...]:
        """How ``other`` differs from this protocol: one entry per field that changes features
        (all but ``comparable``), in field order; empty when features are interchangeable."""
        out = []
        for item in dataclasses.fields(self):
            ours, theirs = getattr(self, item.name), getattr(other, item.name)
            if item.name == "comparable" or ours == theirs:
                continue
            kind: DifferenceKind = "mixed" if item.name in _MIXED_FIELDS else "incomparable"
            out.append(ProtocolDifference(field=item.name, ours=ours, theirs=theirs, kind=kind))
        return tuple(out)

    def summary(self) -> str:
        """One line for people: extractor, dimension, weights, input, resize, precision."""
        comparable = "" if self.comparable else " (not comparable with published FIDs)"
        return (
            f"{self.extractor} {self.dim}-d, weights sha256 {self.weights_sha256[:12]}"
            f"{comparable}, {self.input_size}px {self.resize}, {self.precision}"
        )


@dataclass(frozen=True)
class WeightsFile:
    """A weights file found on disk, its sha256, and whether that hash is the published one."""

    path: Path
    sha256: str
    comparable: bool


def check_precision(precision: str) -> str:
    """Return ``precision`` if known, else raise :class:`AdvisorError` listing the choices."""
    if precision not in PRECISIONS:
        choices = ", ".join(PRECISIONS)
        raise AdvisorError(f"unknown precision {precision!r}; choose one of {choices}")
    return precision


class FoldedConv2d(nn.Conv2d):
    """A bias-free convolution that runs with its following (eval-mode) BatchNorm folded in.

    ``bn(conv(x)) == conv'(x)`` with ``w' = w * s`` and ``b' = beta - mean * s``, where
    ``s = gamma / sqrt(var + eps)``: one convolution instead of a convolution plus a full pass
    over the activations. The BatchNorm stays a separate module of the owner, where the weights
    file has its keys; the folded weight and bias are non-persistent buffers (not in the state
    dict). :meth:`fold` must run after the weights change: :class:`FeatureExtractor` does it
    after every ``load_state_dict``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int = 1,
        padding: int | tuple[int, int] = 0,
        groups: int = 1,
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False
        )
        self.register_buffer("folded_weight", None, persistent=False)
        self.register_buffer("folded_bias", None, persistent=False)

    @torch.no_grad()
    def fold(self, bn: nn.BatchNorm2d) -> None:
        """Fold ``bn``'s running statistics and affine parameters into this convolution."""
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
        # Elementwise ops keep the weight's memory format (channels_last stays channels_last).
        self.folded_weight = self.weight * scale.view(-1, 1, 1, 1)
        self.folded_bias = bn.bias - bn.running_mean * scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.folded_weight, self.folded_bias)


class FoldsBatchNorm(nn.Module):
    """A module owning (:class:`FoldedConv2d`, BatchNorm) pairs; ``refold`` folds each pair."""

    def refold(self) -> None:
        """Fold this module's own BatchNorms into its convolutions (not its children's)."""
        raise NotImplementedError


def _refold_after_load(module: nn.Module, incompatible_keys: object) -> None:
    for sub in module.modules():
        if isinstance(sub, FoldsBatchNorm):
            sub.refold()


class FeatureExtractor(FoldsBatchNorm):
    """Abstract base: a pretrained network that maps images to pooled feature vectors.

    Subclasses set the class attributes, build their layers in ``__init__`` between
    ``super().__init__(name=..., precision=...)`` and ``self.finish_init()``, and implement
    :meth:`features` and the classmethod :meth:`locate_weights`. The module is always in eval
    mode and never needs gradients. Its BatchNorms are folded into the convolutions
    (:class:`FoldedConv2d`) at construction and after every ``load_state_dict``; change
    weights only through ``load_state_dict`` (or :meth:`load_weights`).
    """

    #: Side of the square input the network sees; other sizes are resized to it.
    input_size: ClassVar[int]
    #: Feature dimension D.
    dim: ClassVar[int]
    #: Per-channel mean and std in uint8 units: the network sees ``(x - mean) / std``.
    pixel_mean: ClassVar[tuple[float, float, float]]
    pixel_std: ClassVar[tuple[float, float, float]]
    #: Run convolutions in channels_last (NHWC) memory format (see the subclass for why).
    channels_last: ClassVar[bool] = True
    #: Classes of the network's own classifier head (:meth:`head_logits`); None: no head.
    head_classes: ClassVar[int | None] = None
    #: True when an Inception Score from this head is the published one (the FID Inception's
    #: 1008-way head); any other head's IS is marked not comparable with published IS.
    head_is_standard: ClassVar[bool] = False

    protocol: FeatureProtocol

    def __init__(self, *, name: str, precision: str = "fp32") -> None:
        super().__init__()
        self.protocol = self.describe(name=name, weights=None, precision=precision)
        mean = torch.tensor(self.pixel_mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(self.pixel_std, dtype=torch.float32).view(1, 3, 1, 1)
        # Non-persistent: the state dict must hold exactly the weights file's keys.
        self.register_buffer("_scale", 1.0 / std, persistent=False)
        self.register_buffer("_shift", -mean / std, persistent=False)
        self.register_load_state_dict_post_hook(_refold_after_load)

    @classmethod
    def describe(cls, *, name: str, weights: WeightsFile | None, precision: str) -> FeatureProtocol:
        """The protocol of this network under ``name`` with ``weights`` (None: untrained)."""
        return FeatureProtocol(
            extractor=name,
            weights_sha256=weights.sha256 if weights is not None else "untrained",
            comparable=weights.comparable if weights is not None else False,
            input_size=cls.input_size,
            resize=RESIZE_POLICY,
            precision=check_precision(precision),
            dim=cls.dim,
        )

    # --- what a subclass provides ---------------------------------------------------------

    @classmethod
    def locate_weights(
        cls, weights: str | os.PathLike[str] | None, *, offline: bool | None, progress: Reporting
    ) -> WeightsFile:
        """Find (and if needed download) the weights file; hash it. Raises AdvisorError."""
        raise NotImplementedError

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Map a normalised float batch [N, 3, S, S] (S = input_size) to features [N, dim]."""
        raise NotImplementedError

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """The classifier head: float32 features [N, dim] -> logits [N, head_classes].

        Every head here is linear on the pooled features, so logits follow from the features
        (cached or fresh) without a second pass over the images; see :meth:`head_logits`.
        """
        raise NotImplementedError

    # --- shared machinery -----------------------------------------------------------------

    def refold(self) -> None:
        """Nothing to fold at the top level unless a subclass owns conv/BN pairs itself."""

    def finish_init(self) -> None:
        """Call at the end of a subclass ``__init__``: eval mode, no grads, memory format,
        BatchNorms folded."""
        for param in self.parameters():
            param.requires_grad_(False)
        if self.channels_last:
            self.to(memory_format=torch.channels_last)
        _refold_after_load(self, None)
        self.eval()

    def load_weights(self, weights: WeightsFile) -> None:
        """Load ``weights.path`` strictly (``weights_only=True``) and record it in the protocol."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch's pickle-protocol chatter
                state = torch.load(weights.path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises many types for a non-checkpoint file
            raise AdvisorError(
                f"cannot read {weights.path} as a weights file ({_load_failure(err)})"
            ) from None
        if not isinstance(state, dict):
            raise AdvisorError(f"{weights.path} does not hold a state dict")
        try:
            self.load_state_dict(state, strict=True)
        except RuntimeError as err:
            first_line = str(err).strip().splitlines()[-1].strip()
            raise AdvisorError(
                f"{weights.path} does not fit the {self.protocol.extractor} network "
                f"({first_line[:200]}); pass the right weights file"
            ) from None
        self.protocol = self.describe(
            name=self.protocol.extractor, weights=weights, precision=self.protocol.precision
        )

    def head_logits(self, features: torch.Tensor) -> torch.Tensor:
        """Classifier logits of features this extractor made: float32 [N, dim] on any device
        -> float32 [N, head_classes] on the extractor's device, computed in fp32 (no TF32, no
        autocast: under bf16 the features are already rounded, the head is not).

        Raises :class:`AdvisorError` when the network has no classifier head, and
        ``ValueError`` for features of another shape.
        """
        if self.head_classes is None:
            raise AdvisorError(f"{self.protocol.extractor} has no classifier head (no logits)")
        if features.ndim != 2 or features.shape[1] != self.dim:
            raise ValueError(f"expected features [N, {self.dim}], got {tuple(features.shape)}")
        with torch.inference_mode(), fp32_math():
            out = self.head(features.to(self._scale.device, torch.float32))
        return out.to(torch.float32, copy=True)

    def train(self, mode: bool = True) -> FeatureExtractor:
        """Feature extractors stay in eval mode (BatchNorm uses running statistics)."""
        return super().train(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Features of a batch of images.

        Args:
            images: uint8 [N, 3, H, W] RGB, 0..255, on any device. Batches whose H, W differ
                from ``input_size`` are resized with the protocol's resize
                (:func:`advisor.images.resize_uint8`, on the CPU).

        Returns:
            float32 [N, dim] on the extractor's device, also under bf16; computed in
            inference mode without TF32 (:func:`advisor.devices.fp32_math`), returned as an
            ordinary tensor with no autograd history.
        """
        if not isinstance(images, torch.Tensor):
            raise ValueError(f"expected a torch.Tensor of uint8 images, got {type(images)}")
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(
                f"expected uint8 NCHW RGB images [N, 3, H, W], got {images.dtype} "
                f"{tuple(images.shape)}"
            )
        size = self.input_size
        if images.shape[2] != size or images.shape[3] != size:
            images = resize_uint8(images, size)
        device = self._scale.device
        # The numeric mode is part of the forward, not of the process: no TF32 (fp32_math).
        with torch.inference_mode(), fp32_math():
            x = images.to(device, non_blocking=True)
            if self.channels_last:
                # Converting the uint8 batch is 4x cheaper than converting the float one.
                x = x.contiguous(memory_format=torch.channels_last)
            x = torch.addcmul(self._shift, x, self._scale)
            with torch.autocast(
                device.type, dtype=torch.bfloat16, enabled=self.protocol.precision == "bf16"
            ):
                out = self.features(x)
        # Copied outside inference mode: callers get an ordinary tensor they may modify in
        # place (an inference tensor would refuse), at the cost of copying N x D floats.
        return out.to(torch.float32, copy=True)


def _load_failure(err: Exception) -> str:
    """Why ``torch.load(weights_only=True)`` failed, in our words.

    torch's own text for a refused pickle advises retrying with ``weights_only=False``; for a
    file from anywhere that would run its code, so that text is never passed on.
    """
    if isinstance(err, pickle.UnpicklingError):
        return (
            "it holds Python objects besides tensors, which advisor never loads; "
            "use a file of plain tensors (a state_dict saved with torch.save, or safetensors)"
        )
    text = " ".join(str(err).split())
    if "weights_only" in text or not text:
        return f"{type(err).__name__}; not a torch.save file of tensors"
    return f"{type(err).__name__}: {text[:200]}"


# --- registry --------------------------------------------------------------------------------

E = TypeVar("E", bound=type[FeatureExtractor])

#: Registered extractor classes by name (``--extractor NAME``).
EXTRACTORS: dict[str, type[FeatureExtractor]] = {}


def register_extractor(name: str) -> Callable[[E], E]:
    """Class decorator: register a :class:`FeatureExtractor` subclass under ``name``."""

    def decorate(cls: E) -> E:
        if name in EXTRACTORS:
            raise ValueError(f"extractor {name!r} is already registered")
        EXTRACTORS[name] = cls
        return cls

    return decorate


# --- weights hashing -------------------------------------------------------------------------

_MEMO_NAME = "sha256-memo.json"
# A file modified less than this long ago may still change within the same mtime tick, so
# its hash is not memoised (git's "racily clean" rule).
_RACY_SECONDS = 2.0


def weights_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a weights file, memoised across runs by (path, device, inode, size, mtime).

    The memo lives in ``cache_dir("weights")`` and only saves re-hashing a ~100 MB file on
    every run; any change to the file's size or mtime re-hashes it.
    """
    path = Path(path).resolve()
    st = path.stat()
    stamp = [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns]
    try:
        memo_path: Path | None = cache_dir("weights") / _MEMO_NAME
    except AdvisorError:
        memo_path = None  # the memo is an optimisation only: an unusable cache just re-hashes
    memo: dict[str, object] = {}
    if memo_path is not None:
        try:
            loaded = json.loads(read_small_file(memo_path))
            memo = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError, RecursionError):
            pass
    entry = memo.get(str(path))
    if (
        isinstance(entry, dict)
        and entry.get("stamp") == stamp
        and isinstance(entry.get("sha256"), str)
    ):
        return entry["sha256"]
    digest = sha256_file(path)
    if memo_path is not None and time.time() - st.st_mtime_ns / 1e9 > _RACY_SECONDS:
        memo[str(path)] = {"stamp": stamp, "sha256": digest}
        try:
            atomic_write_bytes(memo_path, json.dumps(memo, indent=1).encode())
        except OSError:
            pass  # the memo is an optimisation only
    return digest
