"""The FID Inception-v3: the TF 2015-12-05 graph as ported by pytorch-fid; 2048-d pool3 features.

Architecture facts (from the TF graph, as pytorch-fid ports it): torchvision's Inception-v3
layout with 1008 output classes and no auxiliary head, BatchNorm eps 1e-3, and two
differences in the blocks: the 3x3 average pools inside the A, C and E blocks do not count
padded zeros (``count_include_pad=False``, TF's behaviour), and the last E block
(``Mixed_7c``) max-pools instead of average-pooling. Input is 299x299, scaled from 0..255 to
[-1, 1]. Module names follow torchvision's, so the published
``pt_inception-2015-12-05-6726825d.pth`` loads with ``strict=True`` (``fc`` is kept for that;
features are taken before it).

Weights are resolved in this order: an explicit path (``--extractor-weights``), then
``$ADVISOR_INCEPTION_WEIGHTS``, then advisor's cache, downloading into it if missing (the
pytorch-fid GitHub release, then a Hugging Face Hub mirror at a pinned commit) through
:func:`advisor.download.fetch`, always verified against the pinned sha256. A local file with
another hash is used with a warning: its FIDs are not comparable with published ones.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from advisor.cache import cache_dir
from advisor.download import HubFile, fetch, is_offline
from advisor.errors import AdvisorError
from advisor.features.base import (
    FeatureExtractor,
    FoldedConv2d,
    FoldsBatchNorm,
    WeightsFile,
    register_extractor,
    weights_sha256,
)
from advisor.progress import Reporting

INCEPTION_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
#: sha256 of the published FID weights (the file name carries its first 8 hex digits).
INCEPTION_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
#: Plain HTTP(S) sources, tried in order (resumable, sha256-verified).
INCEPTION_URLS: tuple[str, ...] = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + INCEPTION_FILENAME,
)
#: Environment variable naming a local weights file.
INCEPTION_WEIGHTS_ENV = "ADVISOR_INCEPTION_WEIGHTS"


#: Hub mirrors shipped with advisor, tried after the URLs: none. A mirror is a third-party copy,
#: acceptable only pinned to a commit (a branch can move) and checked against INCEPTION_SHA256;
#: no public Hub copy of this file could be verified from here (the Hub is unreachable, and
#: the one repo id seen in public scripts does not exist), so none is listed. A lab that keeps
#: its own copy names it in INCEPTION_HUB_ENV.
INCEPTION_HUB_MIRRORS: tuple[HubFile, ...] = ()
#: Environment variable naming a Hub mirror as ``owner/name@COMMIT`` (the full 40-hex commit),
#: holding INCEPTION_FILENAME at its root; tried after the shipped sources, hash-checked alike.
INCEPTION_HUB_ENV = "ADVISOR_INCEPTION_HUB"


def hub_mirrors() -> tuple[HubFile, ...]:
    """The shipped mirrors, then the one named in ``$ADVISOR_INCEPTION_HUB`` (if set).

    Raises a one-line :class:`AdvisorError` for a value that is not ``owner/name@COMMIT``
    with a 40-hex commit.
    """
    value = os.environ.get(INCEPTION_HUB_ENV, "").strip()
    if not value:
        return INCEPTION_HUB_MIRRORS
    repo, at, revision = value.rpartition("@")
    if not at:
        raise AdvisorError(f"${INCEPTION_HUB_ENV} must be owner/name@COMMIT, got {value!r}")
    try:
        mirror = HubFile(repo=repo, file=INCEPTION_FILENAME, revision=revision.lower())
    except AdvisorError as err:
        raise AdvisorError(f"${INCEPTION_HUB_ENV}: {err}") from None
    if not mirror.pinned:
        raise AdvisorError(
            f"${INCEPTION_HUB_ENV}: {revision!r} is not a 40-hex commit (a branch or tag can move)"
        )
    return (*INCEPTION_HUB_MIRRORS, mirror)


_WAYS_OUT = (
    f"pass a local copy of {INCEPTION_FILENAME} with --extractor-weights PATH "
    f"(or ${INCEPTION_WEIGHTS_ENV}), name a Hub mirror in ${INCEPTION_HUB_ENV}, or use "
    "--extractor efficientnet-lite0"
)


class BasicConv2d(FoldsBatchNorm):
    """Conv (no bias) -> BatchNorm (eps 1e-3) -> ReLU; torchvision's module names.

    The BatchNorm is folded into the convolution (see :class:`FoldedConv2d`).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int = 1,
        padding: int | tuple[int, int] = 0,
    ) -> None:
        super().__init__()
        self.conv = FoldedConv2d(in_channels, out_channels, kernel_size, stride, padding)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def refold(self) -> None:
        self.conv.fold(self.bn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x), inplace=True)


def _tf_avg_pool(x: torch.Tensor) -> torch.Tensor:
    # TF's SAME average pool divides by the number of real (unpadded) inputs.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    """35x35 block: 1x1, 5x5, double 3x3 and pooled branches (TF average pool)."""

    def __init__(self, in_channels: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, 1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_tf_avg_pool(x))
        return torch.cat([self.branch1x1(x), b5, b3, bp], 1)


class InceptionB(nn.Module):
    """35 -> 17 grid reduction: strided 3x3, strided double 3x3, max pool."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([self.branch3x3(x), b3, bp], 1)


class InceptionC(nn.Module):
    """17x17 block with factorised 7x7 convolutions (TF average pool)."""

    def __init__(self, in_channels: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d7 = self.branch7x7dbl_1(x)
        d7 = self.branch7x7dbl_3(self.branch7x7dbl_2(d7))
        d7 = self.branch7x7dbl_5(self.branch7x7dbl_4(d7))
        bp = self.branch_pool(_tf_avg_pool(x))
        return torch.cat([self.branch1x1(x), b7, d7, bp], 1)


class InceptionD(nn.Module):
    """17 -> 8 grid reduction."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_2(self.branch7x7x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(b7))
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([b3, b7, bp], 1)


class InceptionE(nn.Module):
    """8x8 block with split 1x3 / 3x1 branches; ``pool`` is "avg" (TF style) or "max"."""

    def __init__(self, in_channels: int, pool: str) -> None:
        super().__init__()
        if pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
        self.pool = pool
        self.branch1x1 = BasicConv2d(in_channels, 320, 1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_1(x)
        d3 = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        if self.pool == "avg":
            pooled = _tf_avg_pool(x)
        else:
            # The FID graph max-pools in its last block (pytorch-fid keeps this quirk).
            pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch3x3_2a(b3),
                self.branch3x3_2b(b3),
                self.branch3x3dbl_3a(d3),
                self.branch3x3dbl_3b(d3),
                self.branch_pool(pooled),
            ],
            1,
        )


@register_extractor("inception")
class InceptionV3Features(FeatureExtractor):
    """FID Inception-v3 pool3 features: uint8 [N, 3, H, W] -> float32 [N, 2048].

    Input is resized to 299x299 (protocol resize) and scaled to [-1, 1] (x / 127.5 - 1, the
    same map as pytorch-fid's ``2 * (x / 255) - 1``).
    """

    input_size = 299
    dim = 2048
    pixel_mean = (127.5, 127.5, 127.5)
    pixel_std = (127.5, 127.5, 127.5)
    # channels_last is faster on CPU (oneDNN's NHWC kernels) and on GPU.
    channels_last = True
    head_classes = 1008
    head_is_standard = True

    def __init__(self, *, precision: str = "fp32") -> None:
        super().__init__(name="inception", precision=precision)
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, pool="avg")
        self.Mixed_7c = InceptionE(2048, pool="max")
        # Not part of the features; the classifier head of :meth:`head` (1008 classes), and
        # the published file loads strictly with it.
        self.fc = nn.Linear(2048, 1008)
        self.finish_init()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """[N, 3, 299, 299] in [-1, 1] -> pool3 features [N, 2048]."""
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(x)))
        x = self.Mixed_6a(x)
        x = self.Mixed_6e(self.Mixed_6d(self.Mixed_6c(self.Mixed_6b(x))))
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x)))
        return x.mean(dim=(2, 3))

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """pool3 [N, 2048] -> 1008-way logits ``features @ fc.weight.T``, WITHOUT the bias: the
        logits the Inception Score is defined on (the original TF IS code multiplies pool3 by
        the softmax weights alone; torch-fidelity's ``logits_unbiased``)."""
        return features @ self.fc.weight.T

    @classmethod
    def locate_weights(
        cls, weights: str | os.PathLike[str] | None, *, offline: bool | None, progress: Reporting
    ) -> WeightsFile:
        """Resolve the FID weights: ``weights``, then ``$ADVISOR_INCEPTION_WEIGHTS``, then the
        cache (downloading into it). Raises :class:`AdvisorError` with the ways out."""
        if weights is None:
            weights = os.environ.get(INCEPTION_WEIGHTS_ENV) or None
        if weights is not None:
            return _local_weights(Path(weights).expanduser())
        return _cached_or_downloaded(offline=offline, progress=progress)


def _sources() -> Iterator[str | HubFile]:
    """The URLs, then the Hub mirrors. The mirrors are read only when every URL has failed: a
    typo in $ADVISOR_INCEPTION_HUB does not stop a download the official source can serve."""
    yield from INCEPTION_URLS
    yield from hub_mirrors()


def _local_weights(path: Path) -> WeightsFile:
    if not path.is_file():
        raise AdvisorError(
            f"inception weights file not found: {path} "
            f"(check --extractor-weights / ${INCEPTION_WEIGHTS_ENV})"
        )
    digest = weights_sha256(path)
    comparable = digest == INCEPTION_SHA256
    if not comparable:
        warnings.warn(
            f"{path} is not the published FID Inception file (sha256 {digest[:12]}..., "
            f"expected {INCEPTION_SHA256[:12]}...): FIDs not comparable with published ones",
            stacklevel=4,
        )
    return WeightsFile(path=path, sha256=digest, comparable=comparable)


def _cached_or_downloaded(*, offline: bool | None, progress: Reporting) -> WeightsFile:
    dest = cache_dir("weights") / INCEPTION_FILENAME
    if dest.is_file():
        if weights_sha256(dest) == INCEPTION_SHA256:
            return WeightsFile(path=dest, sha256=INCEPTION_SHA256, comparable=True)
        dest.unlink()  # only verified files are placed here; this one was damaged since
    if is_offline(offline):
        raise AdvisorError(f"offline and no cached FID Inception weights: {_WAYS_OUT}")
    failures = []
    for source in _sources():
        try:
            fetch(
                source,
                dest,
                sha256=INCEPTION_SHA256,
                progress=progress,
                offline=offline,
                require_commit=True,
            )
            return WeightsFile(path=dest, sha256=INCEPTION_SHA256, comparable=True)
        except AdvisorError as err:
            failures.append(str(err))
    raise AdvisorError(
        f"could not download the FID Inception weights ({'; '.join(failures)}); {_WAYS_OUT}"
    )
