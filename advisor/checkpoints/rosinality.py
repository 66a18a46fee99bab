"""Rename rosinality/stylegan2-pytorch state dicts onto NVlabs StyleGAN2-ADA names.

Facts used (from rosinality's ``model.py`` and ``convert_weight.py``, and NVlabs' ``legacy.py``
which converts the same TensorFlow weights the other way):

- Equalised learning rate is applied the same way in both (weights stored unscaled, scaled by
  ``1/sqrt(fan_in)`` at run time; the mapping's ``lr_mul`` 0.01 on weight and bias). Modulation
  biases are stored with the +1 already added in both. So values copy unchanged; only names and
  a few shapes differ.
- Modulated conv weights are ``[1, out, in, k, k]`` in rosinality, ``[out, in, k, k]`` in NVlabs.
  Both flip the TensorFlow kernels of the upsampling convolutions, so no flip is needed here.
- Noise: ``noises.noise_i`` ``[1, 1, R, R]`` -> ``noise_const`` ``[R, R]``; index 0 is the 4x4
  conv, then ``2k+1``/``2k+2`` for conv0/conv1 of block ``8 * 2**k``. Noise strength ``[1]`` ->
  ``[]``. ``activate.bias`` (FusedLeakyReLU) is the conv bias.
- ToRGB: ``to_rgb1`` is block 4, ``to_rgbs.k`` block ``8 * 2**k``; bias ``[1, 3, 1, 1]`` -> ``[3]``.
- Discriminator: ``convs.0`` is FromRGB of the top block, ``convs.i`` (a ResBlock) is block
  ``R / 2**(i-1)`` with ``conv1`` -> ``conv0``, ``conv2`` (blur, conv, act) -> ``conv1`` and
  ``skip`` (blur, conv) -> ``skip``; ``final_conv`` -> ``b4.conv``, ``final_linear.0/1`` ->
  ``b4.fc``/``b4.out``. The residual ``/sqrt(2)`` equals NVlabs' gains of ``sqrt(0.5)``.
- Blur kernels: rosinality stores them (times 4 where they upsample); NVlabs stores the
  normalised 2-D filter. The kernel is normalised and handed on as ``resample_filter``.

Not stored by rosinality and therefore derived by the importer: ``mapping.w_avg`` (rosinality
computes a mean latent at sampling time; advisor uses ``latent_avg`` when the file has one, else
the mean w of 10,000 latents drawn from torch seed 0). Not expressible: demodulation's epsilon
is added to the scaled weights in rosinality and to the unscaled ones in NVlabs, a relative
difference of about 1e-8 in the demodulation coefficients. rosinality never clamps activations,
so imports use ``conv_clamp=None``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from advisor.errors import AdvisorError
from advisor.networks.config import MAX_RESOLUTION


@dataclass(frozen=True)
class Renamed:
    """Result of a renaming: NVlabs-named tensors and the source keys left unused."""

    tensors: dict[str, torch.Tensor]
    unused: tuple[str, ...]


def _count(state: dict[str, torch.Tensor], pattern: str) -> int:
    found = set()
    for key in state:
        if m := re.fullmatch(pattern, key):
            if len(m.group(1)) > 6:
                raise AdvisorError(f"rosinality state has an absurd layer index in {key[:40]}")
            found.add(int(m.group(1)))
    if found and found != set(range(min(found), min(found) + len(found))):
        raise AdvisorError(f"rosinality state has gaps in {pattern}")
    return len(found)


def _check_blocks(blocks: int, what: str) -> None:
    """``blocks`` resolution doublings above 4x4 must stay within ``MAX_RESOLUTION``."""
    if 4 << blocks > MAX_RESOLUTION:
        raise AdvisorError(
            f"rosinality {what} state has {blocks} blocks above 4x4; advisor supports images "
            f"up to {MAX_RESOLUTION} px"
        )


class _Mover:
    def __init__(self, state: dict[str, torch.Tensor], what: str) -> None:
        self.src = dict(state)
        self.out: dict[str, torch.Tensor] = {}
        self.what = what

    def take(self, key: str) -> torch.Tensor:
        if key not in self.src:
            raise AdvisorError(f"rosinality {self.what} state lacks {key}")
        return self.src.pop(key)

    def move(self, src: str, dst: str, shape: tuple[int, ...] | None = None) -> None:
        value = self.take(src)
        if shape is not None:
            if value.numel() != torch.Size(shape).numel():
                raise AdvisorError(f"rosinality {src} has shape {tuple(value.shape)}")
            value = value.reshape(shape)
        self.out[dst] = value

    def kernel(self, key: str) -> torch.Tensor:
        """A blur kernel, normalised to sum 1 (rosinality scales upsampling ones by 4)."""
        k = self.take(key).double()
        return (k / k.sum()).float()


def _modconv(m: _Mover, src: str, dst: str, noise: str | None) -> None:
    weight = m.src.get(f"{src}.conv.weight")
    if weight is None or weight.ndim != 5 or weight.shape[0] != 1:
        raise AdvisorError(f"rosinality generator state lacks a [1,out,in,k,k] {src}.conv.weight")
    m.move(f"{src}.conv.weight", f"{dst}.weight", tuple(weight.shape[1:]))
    m.move(f"{src}.conv.modulation.weight", f"{dst}.affine.weight")
    m.move(f"{src}.conv.modulation.bias", f"{dst}.affine.bias")
    if noise is not None:
        m.move(f"{src}.noise.weight", f"{dst}.noise_strength", ())
        side = m.src[noise].shape[-1] if noise in m.src and m.src[noise].ndim else 0
        m.move(noise, f"{dst}.noise_const", (side, side))
    m.move(f"{src}.activate.bias", f"{dst}.bias")


def _torgb(m: _Mover, src: str, dst: str) -> None:
    weight = m.src.get(f"{src}.conv.weight")
    if weight is None or weight.ndim != 5:
        raise AdvisorError(f"rosinality generator state lacks {src}.conv.weight")
    m.move(f"{src}.conv.weight", f"{dst}.weight", tuple(weight.shape[1:]))
    m.move(f"{src}.conv.modulation.weight", f"{dst}.affine.weight")
    m.move(f"{src}.conv.modulation.bias", f"{dst}.affine.bias")
    m.move(f"{src}.bias", f"{dst}.bias", (weight.shape[1],))


def generator_to_nvlabs(state: dict[str, torch.Tensor]) -> Renamed:
    """Rename a rosinality ``Generator`` state dict (``g`` or ``g_ema``) to NVlabs keys.

    The output has every NVlabs G key except ``mapping.w_avg`` and the ``resample_filter``
    buffers other than ``synthesis.b4.resample_filter`` (set from rosinality's blur kernel).
    """
    m = _Mover(state, "generator")
    n_mlp = _count(state, r"style\.(\d+)\.weight")
    n_up = _count(state, r"to_rgbs\.(\d+)\.conv\.weight")
    if n_mlp == 0 or "input.input" not in state:
        raise AdvisorError("not a rosinality generator state (no style.N / input.input)")
    _check_blocks(n_up, "generator")
    for i in range(n_mlp):
        m.move(f"style.{i + 1}.weight", f"mapping.fc{i}.weight")
        m.move(f"style.{i + 1}.bias", f"mapping.fc{i}.bias")
    const = m.src["input.input"]
    m.move("input.input", "synthesis.b4.const", tuple(const.shape[1:]))
    noise = any(k.startswith("noises.") for k in state)
    _modconv(m, "conv1", "synthesis.b4.conv1", "noises.noise_0" if noise else None)
    _torgb(m, "to_rgb1", "synthesis.b4.torgb")
    kernel = None
    for k in range(n_up):
        res = 8 << k
        n0, n1 = (
            (f"noises.noise_{2 * k + 1}", f"noises.noise_{2 * k + 2}") if noise else (None,) * 2
        )
        _modconv(m, f"convs.{2 * k}", f"synthesis.b{res}.conv0", n0)
        _modconv(m, f"convs.{2 * k + 1}", f"synthesis.b{res}.conv1", n1)
        _torgb(m, f"to_rgbs.{k}", f"synthesis.b{res}.torgb")
        for key in (f"convs.{2 * k}.conv.blur.kernel", f"to_rgbs.{k}.upsample.kernel"):
            if key in m.src:
                this = m.kernel(key)
                if kernel is not None and not torch.allclose(this, kernel):
                    raise AdvisorError("rosinality generator uses different blur kernels per layer")
                kernel = this
    if kernel is not None:
        m.out["synthesis.b4.resample_filter"] = kernel
    return Renamed(tensors=m.out, unused=tuple(sorted(m.src)))


def discriminator_to_nvlabs(state: dict[str, torch.Tensor]) -> Renamed:
    """Rename a rosinality ``Discriminator`` state dict (``d``) to NVlabs keys.

    The output has every NVlabs D key except the ``resample_filter`` buffers other than the top
    block's (set from rosinality's blur kernel).
    """
    m = _Mover(state, "discriminator")
    n_blocks = _count(state, r"convs\.(\d+)\.conv1\.0\.weight")
    if n_blocks == 0 or "convs.0.0.weight" not in state:
        raise AdvisorError("not a rosinality discriminator state (no convs.0 / ResBlocks)")
    _check_blocks(n_blocks, "discriminator")
    top = 4 << n_blocks
    m.move("convs.0.0.weight", f"b{top}.fromrgb.weight")
    m.move("convs.0.1.bias", f"b{top}.fromrgb.bias")
    kernel = None
    for i in range(1, n_blocks + 1):
        res, src = top >> (i - 1), f"convs.{i}"
        m.move(f"{src}.conv1.0.weight", f"b{res}.conv0.weight")
        m.move(f"{src}.conv1.1.bias", f"b{res}.conv0.bias")
        m.move(f"{src}.conv2.1.weight", f"b{res}.conv1.weight")
        m.move(f"{src}.conv2.2.bias", f"b{res}.conv1.bias")
        m.move(f"{src}.skip.1.weight", f"b{res}.skip.weight")
        for key in (f"{src}.conv2.0.kernel", f"{src}.skip.0.kernel"):
            if key in m.src:
                this = m.kernel(key)
                if kernel is not None and not torch.allclose(this, kernel):
                    raise AdvisorError("rosinality discriminator uses different blur kernels")
                kernel = this
    m.move("final_conv.0.weight", "b4.conv.weight")
    m.move("final_conv.1.bias", "b4.conv.bias")
    m.move("final_linear.0.weight", "b4.fc.weight")
    m.move("final_linear.0.bias", "b4.fc.bias")
    m.move("final_linear.1.weight", "b4.out.weight")
    m.move("final_linear.1.bias", "b4.out.bias")
    if kernel is not None:
        m.out[f"b{top}.resample_filter"] = kernel
    return Renamed(tensors=m.out, unused=tuple(sorted(m.src)))
