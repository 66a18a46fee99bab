"""Tests for advisor.finetuning.augment: the ADA pipeline's known answers, determinism,
differentiability (R1 needs double backward) and the p update rule."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from advisor.finetuning.augment import (
    SYM6,
    AdaOptions,
    AugmentConfig,
    AugmentPipe,
    _blit,
    _downsample2x,
    _polyphase,
    _upsample2x,
    _warp,
    ada_adjust,
    hue_rotation,
)
from advisor.networks import ops


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _image(n: int = 2, c: int = 3, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand([n, c, size, size], generator=_gen(seed)) * 2 - 1


def _smooth(n: int = 2, size: int = 32, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    low = torch.rand([n, 3, size // 4, size // 4], generator=_gen(3), dtype=dtype) * 2 - 1
    return F.interpolate(low, size=size, mode="bicubic", align_corners=False)


def _repeat(x: torch.Tensor, n: int) -> torch.Tensor:
    return x[:1].expand(n, -1, -1, -1).contiguous()


def test_p0_is_exact_identity():
    x = _image()
    out = AugmentPipe(p=0.0)(x, _gen())
    assert torch.equal(out, x)


def test_xflip_alone_gives_exact_flips_of_both_kinds():
    x = _repeat(_image(), 64)
    out = AugmentPipe(AugmentConfig.only("xflip"), p=1.0)(x, _gen())
    same = [torch.equal(o, x[0]) for o in out]
    flipped = [torch.equal(o, x[0].flip(2)) for o in out]
    assert all(a or b for a, b in zip(same, flipped, strict=True))
    assert 16 < sum(flipped) < 48


def test_rotate90_alone_gives_exact_quarter_turns_of_all_four_kinds():
    x = _repeat(_image(), 64)
    out = AugmentPipe(AugmentConfig.only("rotate90"), p=1.0)(x, _gen())
    turns = []
    for o in out:
        match = [k for k in range(4) if torch.equal(o, torch.rot90(x[0], k, (1, 2)))]
        assert len(match) == 1
        turns.append(match[0])
    assert set(turns) == {0, 1, 2, 3}


def test_integer_translation_alone_gives_exact_reflected_shifts_up_to_an_eighth():
    x = _repeat(_image(), 64)
    out = AugmentPipe(AugmentConfig.only("xint"), p=1.0)(x, _gen())
    padded = F.pad(x[:1], [2, 2, 2, 2], mode="reflect")[0]  # 0.125 * 16 = 2 pixels at most
    shifts = set()
    for o in out:
        match = [
            (dx, dy)
            for dx in range(-2, 3)
            for dy in range(-2, 3)
            if torch.equal(o, padded[:, 2 - dy : 18 - dy, 2 - dx : 18 - dx])
        ]
        assert len(match) == 1
        shifts.add(match[0])
    assert len(shifts) > 10


def test_separable_resampling_matches_ops_and_down_inverts_up():
    taps = torch.tensor(SYM6, dtype=torch.float64)
    taps = taps / taps.sum()
    f = torch.outer(taps, taps)
    x = torch.rand([2, 3, 10, 14], generator=_gen(), dtype=torch.float64)
    up = _upsample2x(x, _polyphase(taps))
    torch.testing.assert_close(up, ops.upsample2d(x, f))
    margin = F.pad(x, [3, 3, 3, 3], mode="reflect")  # the down filter reads 2.5 px either side
    down = _downsample2x(_upsample2x(margin, _polyphase(taps))[..., 1:-1, 1:-1], taps)
    torch.testing.assert_close(down, x)


def test_warp_identity_and_whole_pixel_shift_match_the_exact_result():
    x = _image(seed=1).double()
    eye = torch.eye(3, dtype=torch.float64).expand(2, 3, 3)
    pipe = AugmentPipe().double()
    shift = eye.clone()
    shift[:, 0, 2], shift[:, 1, 2] = -1.0, 2.0  # content moves right by 1, up by 2
    for g in (eye, shift):
        warped = _warp(x, g, pipe.phases, pipe.taps)
        torch.testing.assert_close(warped, _blit(x, g.float()), atol=1e-6, rtol=0)


def test_warp_quarter_turn_is_centred_on_smooth_images():
    x = _smooth()
    g = torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]], dtype=torch.float64).expand(2, 3, 3)
    pipe = AugmentPipe().double()
    warped = _warp(x, g, pipe.phases, pipe.taps)
    # Without the filter-delay correction the turn is off by ~0.4 px: mean error ~0.1.
    assert (warped - torch.rot90(x, 1, (2, 3))).abs().mean() < 0.01


def test_brightness_adds_one_offset_per_image_with_std_0_2():
    x = _repeat(_image(), 4096)
    out = AugmentPipe(AugmentConfig.only("brightness"), p=1.0)(x, _gen())
    shift = out - x
    torch.testing.assert_close(shift, shift[:, :1, :1, :1].expand_as(shift))
    b = shift[:, 0, 0, 0].double()
    assert abs(b.mean()) < 0.01 and abs(b.std() - 0.2) < 0.01


def test_contrast_scales_mean_and_std_by_one_factor_with_log2_std_0_5():
    x = _repeat(_image(), 4096)
    out = AugmentPipe(AugmentConfig.only("contrast"), p=1.0)(x, _gen())
    c = (out.flatten(1).std(1) / x.flatten(1).std(1)).double()
    torch.testing.assert_close(out, x * c.float()[:, None, None, None])
    assert abs(c.log2().mean()) < 0.03 and abs(c.log2().std() - 0.5) < 0.02


def test_saturation_keeps_luma_and_scales_chroma_with_log2_std_1():
    x = _repeat(_image(), 4096)
    out = AugmentPipe(AugmentConfig.only("saturation"), p=1.0)(x, _gen())
    torch.testing.assert_close(out.mean(1), x.mean(1), atol=1e-5, rtol=0)
    chroma_in, chroma_out = x - x.mean(1, keepdim=True), out - out.mean(1, keepdim=True)
    s = (chroma_out.flatten(1).norm(dim=1) / chroma_in.flatten(1).norm(dim=1)).double()
    torch.testing.assert_close(chroma_out, chroma_in * s.float()[:, None, None, None])
    assert abs(s.log2().mean()) < 0.05 and abs(s.log2().std() - 1.0) < 0.03


def test_hue_full_turn_is_identity_and_third_turn_cycles_rgb():
    m = hue_rotation(torch.tensor([2 * math.pi, 2 * math.pi / 3], dtype=torch.float64))
    torch.testing.assert_close(m[0], torch.eye(4, dtype=torch.float64))
    cycle = torch.eye(4, dtype=torch.float64)[[2, 0, 1, 3]]  # r -> g, g -> b, b -> r
    torch.testing.assert_close(m[1], cycle)


def test_hue_in_the_pipeline_keeps_luma_and_chroma_length():
    x = _repeat(_image(), 256)
    out = AugmentPipe(AugmentConfig.only("hue"), p=1.0)(x, _gen())
    torch.testing.assert_close(out.mean(1), x.mean(1), atol=1e-5, rtol=0)
    norm = (x - x.mean(1, keepdim=True)).norm(dim=1)
    torch.testing.assert_close((out - out.mean(1, keepdim=True)).norm(dim=1), norm)
    assert (out - x).abs().amax(dim=(1, 2, 3)).gt(1e-3).float().mean() > 0.9


def test_lumaflip_negates_luma_and_keeps_chroma():
    x = _repeat(_image(), 64)
    out = AugmentPipe(AugmentConfig.only("lumaflip"), p=1.0)(x, _gen())
    chroma = x - x.mean(1, keepdim=True)
    flipped = 0
    for o in out:
        if not torch.equal(o, x[0]):
            torch.testing.assert_close(o, chroma[0] - x[0].mean(0, keepdim=True))
            flipped += 1
    assert 16 < flipped < 48


def test_ops_fire_with_probability_p_and_rotation_pre_or_post_with_p():
    x = _repeat(_image(size=8), 4000)
    for op in ("scale", "rotate", "brightness"):
        out = AugmentPipe(AugmentConfig.only(op), p=0.3)(x, _gen())
        changed = (out != x).flatten(1).any(1).double().mean()
        assert abs(changed - 0.3) < 0.03, op  # 4 sigma


def test_grey_images_get_brightness_contrast_and_lumaflip_only():
    x = _image(n=64, c=1)
    cfg = AugmentConfig.only("brightness", "contrast", "lumaflip", "hue", "saturation")
    out = AugmentPipe(cfg, p=1.0)(x, _gen())
    ratio = (out - out.mean((2, 3), keepdim=True)) / (x - x.mean((2, 3), keepdim=True))
    torch.testing.assert_close(ratio, ratio[:, :, :1, :1].expand_as(ratio), atol=1e-4, rtol=1e-4)
    assert (ratio[:, 0, 0, 0] < 0).any() and (ratio[:, 0, 0, 0] > 0).any()


def test_same_generator_state_gives_same_output_and_another_state_differs():
    x = _image(n=4)
    pipe = AugmentPipe(p=0.7)
    a, b, c = pipe(x, _gen(5)), pipe(x, _gen(5)), pipe(x, _gen(6))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_first_images_of_a_batch_are_augmented_as_a_smaller_batch():
    x = _image(n=8)
    pipe = AugmentPipe(p=0.5)
    assert torch.equal(pipe(x, _gen(2))[:3], pipe(x[:3], _gen(2)))


def test_p_is_the_only_state_and_a_reloaded_pipe_gives_the_same_output():
    pipe = AugmentPipe(p=0.25)
    assert list(pipe.state_dict()) == ["p"] and pipe.state_dict()["p"].shape == ()
    other = AugmentPipe()
    other.load_state_dict(pipe.state_dict())
    x = _image()
    assert float(other.p) == 0.25 and torch.equal(other(x, _gen(1)), pipe(x, _gen(1)))


@pytest.mark.parametrize("channels", [3, 1])
def test_gradcheck_and_gradgradcheck_pass_with_all_ops_at_p1(channels):
    x = _image(n=1, c=channels, size=5).double().requires_grad_(True)
    pipe = AugmentPipe(p=1.0).double()

    def f(images: torch.Tensor) -> torch.Tensor:
        return pipe(images, _gen(4))

    assert torch.autograd.gradcheck(f, (x,), fast_mode=True)
    assert torch.autograd.gradgradcheck(f, (x,), fast_mode=True)


@pytest.mark.slow
def test_full_jacobian_gradcheck_and_gradgradcheck_pass_with_all_ops_at_p1():
    x = _image(n=1, size=5).double().requires_grad_(True)
    pipe = AugmentPipe(p=1.0).double()

    def f(images: torch.Tensor) -> torch.Tensor:
        return pipe(images, _gen(4))

    assert torch.autograd.gradcheck(f, (x,))
    assert torch.autograd.gradgradcheck(f, (x,))


def test_gradcheck_and_gradgradcheck_pass_for_a_mixed_batch():
    # With generator seed 7 and p = 0.3 the four images take different paths: warped only,
    # blitted and warped, untouched, blitted and warped (some with colour ops).
    x = _image(n=4, size=6).double().requires_grad_(True)
    pipe = AugmentPipe(p=0.3).double()

    def f(images: torch.Tensor) -> torch.Tensor:
        return pipe(images, _gen(7))

    assert torch.autograd.gradcheck(f, (x,), fast_mode=True)
    assert torch.autograd.gradgradcheck(f, (x,), fast_mode=True)


def test_r1_double_backward_through_the_pipe_reaches_discriminator_weights():
    torch.manual_seed(0)
    d = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.LeakyReLU(0.2),
        torch.nn.Conv2d(4, 1, 3),
        torch.nn.Flatten(),
        torch.nn.Linear(14 * 14, 1),
    )
    x = _image().requires_grad_(True)
    logits = d(AugmentPipe(p=1.0)(x, _gen(7)))
    (grad,) = torch.autograd.grad(logits.sum(), x, create_graph=True)
    grad.square().sum().backward()
    for w in d.parameters():
        if w.ndim > 1:  # biases of the first layer get no R1 gradient through lrelu's kinks
            assert w.grad is not None and torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0


def test_bfloat16_images_are_augmented_in_float32_and_returned_in_bfloat16():
    x = _image(n=4)
    pipe = AugmentPipe(p=0.8)
    out = pipe(x.bfloat16(), _gen(3))
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), pipe(x.bfloat16().float(), _gen(3)).bfloat16().float())


def test_invalid_images_and_unknown_ops_are_clear_errors():
    with pytest.raises(ValueError, match="expected"):
        AugmentPipe(p=1.0)(torch.zeros(1, 2, 8, 8), _gen())
    with pytest.raises(ValueError, match="known: xflip"):
        AugmentConfig.only("cutout")
    with pytest.raises(ValueError, match="saturation_std"):
        AugmentConfig(saturation_std=-1)


def test_ada_adjust_known_answers():
    step = 32 * 4 / (500 * 1000)
    kw = {"batch": 32, "interval": 4, "ada_kimg": 500}
    assert ada_adjust(0.1, 0.8, **kw) == pytest.approx(0.1 + step)
    assert ada_adjust(0.1, 0.2, **kw) == pytest.approx(0.1 - step)
    assert ada_adjust(0.0001, -1.0, **kw) == 0.0
    assert ada_adjust(0.1, 0.6, **kw) == 0.1
    assert ada_adjust(1.0, 1.0, **kw) == pytest.approx(1.0 + step)  # no clamp above
    assert ada_adjust(0.5, 0.7, batch=8, interval=4, ada_kimg=100, target=0.8) == pytest.approx(
        0.5 - 8 * 4 / 100_000
    )


def test_ada_options_defaults_and_validation():
    o = AdaOptions()
    assert (o.target, o.interval, o.ada_kimg) == (0.6, 4, 500.0)
    assert o.adjust(0.2, 1.0, batch=32) == ada_adjust(
        0.2, 1.0, batch=32, interval=4, ada_kimg=500.0, target=0.6
    )
    with pytest.raises(ValueError, match="ada_kimg"):
        AdaOptions(ada_kimg=0)
