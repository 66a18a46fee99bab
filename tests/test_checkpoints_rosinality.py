"""rosinality checkpoints and bare NVlabs state dicts: names, shapes and numerics.

The known answer for rosinality is a small reference forward pass written here from the facts
of rosinality's model.py (PixelNorm, EqualLinear with lr_mul, non-fused modulated conv with
``[1, out, in, k, k]`` weights and demodulation on the scaled weight, transposed-conv upsampling
followed by a 4x-gained blur padded (1, 1), NoiseInjection before FusedLeakyReLU, ToRGB skips
upsampled by upfirdn with pad (2, 1), ResBlocks with blur-then-stride-2 convs and /sqrt(2),
minibatch stddev over groups of 4). An imported checkpoint must reproduce its images and
discriminator outputs.
"""

import argparse
import math
import os
import pickle

import pytest
import torch
import torch.nn.functional as F

from advisor.checkpoints import read_checkpoint
from advisor.checkpoints.infer import infer_channel_layout, infer_generator_config
from advisor.errors import AdvisorError
from advisor.networks import Generator, GeneratorConfig, z_from_seeds
from tests.test_checkpoints_fixtures import Reduce, randomize, tiny_networks

SIZE, LATENT, N_MLP = 16, 8, 2
CHANNELS = {4: 32, 8: 32, 16: 16}  # min(256 // res, 32): channel_base 256, channel_max 32
BLUR = torch.tensor([1.0, 3.0, 3.0, 1.0])
SQRT2 = math.sqrt(2)


def _kernel(gain: float = 1.0) -> torch.Tensor:
    k = BLUR[None, :] * BLUR[:, None]
    return k / k.sum() * gain


def rosinality_generator_state(seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)

    def r(*shape, scale=0.5):
        return torch.randn(shape, generator=gen) * scale

    s = {}
    for i in range(1, N_MLP + 1):
        s[f"style.{i}.weight"], s[f"style.{i}.bias"] = r(LATENT, LATENT, scale=50), r(LATENT)
    s["input.input"] = r(1, CHANNELS[4], 4, 4)

    def styled(prefix, cin, cout, res, up):
        s[f"{prefix}.conv.weight"] = r(1, cout, cin, 3, 3)
        s[f"{prefix}.conv.modulation.weight"] = r(cin, LATENT)
        s[f"{prefix}.conv.modulation.bias"] = 1 + r(cin, scale=0.1)
        s[f"{prefix}.noise.weight"] = r(1)
        s[f"{prefix}.activate.bias"] = r(cout)
        if up:
            s[f"{prefix}.conv.blur.kernel"] = _kernel(4)

    def torgb(prefix, cin, up):
        s[f"{prefix}.conv.weight"] = r(1, 3, cin, 1, 1)
        s[f"{prefix}.conv.modulation.weight"] = r(cin, LATENT)
        s[f"{prefix}.conv.modulation.bias"] = 1 + r(cin, scale=0.1)
        s[f"{prefix}.bias"] = r(1, 3, 1, 1)
        if up:
            s[f"{prefix}.upsample.kernel"] = _kernel(4)

    styled("conv1", CHANNELS[4], CHANNELS[4], 4, False)
    torgb("to_rgb1", CHANNELS[4], False)
    cin = CHANNELS[4]
    for k, res in enumerate(r for r in CHANNELS if r > 4):
        styled(f"convs.{2 * k}", cin, CHANNELS[res], res, True)
        styled(f"convs.{2 * k + 1}", CHANNELS[res], CHANNELS[res], res, False)
        torgb(f"to_rgbs.{k}", CHANNELS[res], True)
        cin = CHANNELS[res]
    for i in range(2 * (len(CHANNELS) - 1) + 1):
        side = 4 << ((i + 1) // 2)
        s[f"noises.noise_{i}"] = r(1, 1, side, side, scale=1.0)
    return s


def rosinality_discriminator_state(seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)

    def r(*shape, scale=0.5):
        return torch.randn(shape, generator=gen) * scale

    s = {"convs.0.0.weight": r(CHANNELS[SIZE], 3, 1, 1), "convs.0.1.bias": r(CHANNELS[SIZE])}
    res, i = SIZE, 1
    while res > 4:
        cin, cout = CHANNELS[res], CHANNELS[res // 2]
        p = f"convs.{i}"
        s[f"{p}.conv1.0.weight"], s[f"{p}.conv1.1.bias"] = r(cin, cin, 3, 3), r(cin)
        s[f"{p}.conv2.0.kernel"] = _kernel()
        s[f"{p}.conv2.1.weight"], s[f"{p}.conv2.2.bias"] = r(cout, cin, 3, 3), r(cout)
        s[f"{p}.skip.0.kernel"] = _kernel()
        s[f"{p}.skip.1.weight"] = r(cout, cin, 1, 1)
        res, i = res // 2, i + 1
    c4 = CHANNELS[4]
    s["final_conv.0.weight"], s["final_conv.1.bias"] = r(c4, c4 + 1, 3, 3), r(c4)
    s["final_linear.0.weight"], s["final_linear.0.bias"] = r(c4, c4 * 16), r(c4)
    s["final_linear.1.weight"], s["final_linear.1.bias"] = r(1, c4), r(1)
    return s


# --- reference forward passes (rosinality semantics, per-sample, unfused) --------------------


def _blur(x, kernel, pad):
    c = x.shape[1]
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    return F.conv2d(x, kernel.flip([0, 1])[None, None].expand(c, 1, -1, -1), groups=c)


def _upsample(x, kernel, pad):
    n, c, h, w = x.shape
    up = x.new_zeros(n, c, 2 * h, 2 * w)
    up[:, :, ::2, ::2] = x
    return _blur(up, kernel, pad)


def _equal_linear(x, s, prefix, lr_mul=1.0, act=False):
    weight = s[f"{prefix}.weight"]
    out = x @ (weight * lr_mul / math.sqrt(weight.shape[1])).t()
    out = out + s[f"{prefix}.bias"] * lr_mul
    return F.leaky_relu(out, 0.2) * SQRT2 if act else out


def _modconv(x, w, s, prefix, demodulate, up):
    weight = s[f"{prefix}.conv.weight"][0]  # [out, in, k, k]
    cout, cin, k, _ = weight.shape
    style = _equal_linear(w, s, f"{prefix}.conv.modulation")
    outs = []
    for n in range(x.shape[0]):
        wn = weight / math.sqrt(cin * k * k) * style[n].view(1, cin, 1, 1)
        if demodulate:
            wn = wn * torch.rsqrt(wn.pow(2).sum([1, 2, 3]) + 1e-8).view(cout, 1, 1, 1)
        xn = x[n : n + 1]
        if up:
            out = F.conv_transpose2d(xn, wn.transpose(0, 1), stride=2)
            out = _blur(out, s[f"{prefix}.conv.blur.kernel"], (1, 1))
        else:
            out = F.conv2d(xn, wn, padding=k // 2)
        outs.append(out)
    return torch.cat(outs)


def reference_generator(s, z, *, truncation=1.0, truncation_latent=None):
    w = z * torch.rsqrt(z.pow(2).mean(1, keepdim=True) + 1e-8)
    for i in range(1, N_MLP + 1):
        w = _equal_linear(w, s, f"style.{i}", lr_mul=0.01, act=True)
    if truncation < 1:
        w = truncation_latent + truncation * (w - truncation_latent)

    def styled(x, prefix, noise, up):
        x = _modconv(x, w, s, prefix, True, up)
        x = x + s[f"{prefix}.noise.weight"] * s[noise]
        return F.leaky_relu(x + s[f"{prefix}.activate.bias"].view(1, -1, 1, 1), 0.2) * SQRT2

    def torgb(x, prefix, skip):
        out = _modconv(x, w, s, prefix, False, False) + s[f"{prefix}.bias"]
        if skip is not None:
            out = out + _upsample(skip, s[f"{prefix}.upsample.kernel"], (2, 1))
        return out

    x = s["input.input"].repeat(z.shape[0], 1, 1, 1)
    x = styled(x, "conv1", "noises.noise_0", False)
    skip = torgb(x, "to_rgb1", None)
    for k in range(len(CHANNELS) - 1):
        x = styled(x, f"convs.{2 * k}", f"noises.noise_{2 * k + 1}", True)
        x = styled(x, f"convs.{2 * k + 1}", f"noises.noise_{2 * k + 2}", False)
        skip = torgb(x, f"to_rgbs.{k}", skip)
    return skip


def reference_discriminator(s, img):
    def conv(x, prefix, w_idx, b_idx, down=False, act=True):
        weight = s[f"{prefix}.{w_idx}.weight"]
        scale = 1 / math.sqrt(weight[0].numel())
        if down:
            pad = (2, 2) if weight.shape[-1] == 3 else (1, 1)
            x = _blur(x, s[f"{prefix}.0.kernel"], pad)
            x = F.conv2d(x, weight * scale, stride=2)
        else:
            x = F.conv2d(x, weight * scale, padding=weight.shape[-1] // 2)
        if act:
            x = F.leaky_relu(x + s[f"{prefix}.{b_idx}.bias"].view(1, -1, 1, 1), 0.2) * SQRT2
        return x

    out = conv(img, "convs.0", 0, 1)
    i = 1
    while f"convs.{i}.conv1.0.weight" in s:
        y = conv(out, f"convs.{i}.conv1", 0, 1)
        y = conv(y, f"convs.{i}.conv2", 1, 2, down=True)
        skip = conv(out, f"convs.{i}.skip", 1, None, down=True, act=False)
        out, i = (y + skip) / SQRT2, i + 1
    n, c, h, w = out.shape
    group = min(n, 4)
    std = out.view(group, -1, 1, c, h, w)
    std = torch.sqrt(std.var(0, unbiased=False) + 1e-8).mean([2, 3, 4], keepdim=True).squeeze(2)
    out = torch.cat([out, std.repeat(group, 1, h, w)], 1)
    out = conv(out, "final_conv", 0, 1).view(n, -1)
    out = _equal_linear(out, s, "final_linear.0", act=True)
    return _equal_linear(out, s, "final_linear.1")


# --- tests ------------------------------------------------------------------------------------


def _save_rosinality(tmp_path, *, latent_avg=None, extra=None):
    g_ema, g = rosinality_generator_state(1), rosinality_generator_state(2)
    d = rosinality_discriminator_state(3)
    ckpt = {
        "g": g, "d": d, "g_ema": g_ema, "g_optim": {}, "d_optim": {}, "ada_aug_p": 0.1,
        "args": argparse.Namespace(size=SIZE, latent=LATENT, n_mlp=N_MLP, channel_multiplier=2,
                                   path="/data/lmdb", batch=4),
    }  # fmt: skip
    if latent_avg is not None:
        ckpt["latent_avg"] = latent_avg
    ckpt.update(extra or {})
    path = tmp_path / "000100.pt"
    torch.save(ckpt, path)
    return path, g_ema, g, d


def test_rosinality_import_reproduces_reference_images_and_scores(tmp_path):
    path, g_state, _, d_state = _save_rosinality(tmp_path)
    ckpt, report = read_checkpoint(path)
    assert report.format == "rosinality-pt"
    assert report.complete
    g_ema = report.networks[0]
    assert g_ema.unexpected == ()
    assert "mapping.w_avg" in g_ema.derived
    assert ckpt.metadata.generator.conv_clamp is None
    assert (ckpt.metadata.generator.channel_base, ckpt.metadata.generator.channel_max) == (256, 32)

    z = z_from_seeds(range(4), LATENT)
    with torch.no_grad():
        expected = reference_generator(g_state, z)
        got = ckpt.G_ema(z, noise_mode="const")
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
        scores = ckpt.D(got)
        torch.testing.assert_close(
            scores, reference_discriminator(d_state, got), rtol=1e-4, atol=1e-4
        )


def test_rosinality_latent_avg_is_used_for_truncation(tmp_path):
    avg = torch.randn(1, LATENT, generator=torch.Generator().manual_seed(9))
    path, g_state, _, _ = _save_rosinality(tmp_path, latent_avg=avg)
    ckpt, report = read_checkpoint(path)
    assert "mapping.w_avg" in report.networks[0].matched
    z = z_from_seeds([5, 6], LATENT)
    with torch.no_grad():
        expected = reference_generator(g_state, z, truncation=0.5, truncation_latent=avg)
        got = ckpt.G_ema(z, truncation_psi=0.5)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_derived_w_avg_is_the_mean_w(tmp_path):
    path, _, _, _ = _save_rosinality(tmp_path)
    ckpt, _ = read_checkpoint(path)
    z = torch.randn(20000, LATENT, generator=torch.Generator().manual_seed(123))
    with torch.no_grad():
        mean_w = ckpt.G_ema.mapping(z)[:, 0].mean(0)
    spread = ckpt.G_ema.mapping(z)[:, 0].std(0)
    assert torch.all((ckpt.G_ema.mapping.w_avg - mean_w).abs() < 0.05 * spread + 1e-6)


def test_rosinality_namespace_is_read_without_running_code(tmp_path):
    marker = tmp_path / "pwned"
    path, *_ = _save_rosinality(tmp_path, extra={"evil": Reduce(os.system, f"touch {marker}")})
    with pytest.raises(AdvisorError, match=r"refused: .* asks for (posix|os)\.system") as info:
        read_checkpoint(path)
    assert "\n" not in str(info.value)
    assert not marker.exists()


def test_missing_rosinality_tensor_is_a_clear_error(tmp_path):
    path, *_ = _save_rosinality(tmp_path)
    data = torch.load(path, weights_only=False)
    del data["g_ema"]["convs.1.noise.weight"]
    torch.save(data, path)
    with pytest.raises(AdvisorError, match="lacks convs.1.noise.weight"):
        read_checkpoint(path)


def test_nvlabs_state_dict_file_infers_configs_and_matches(tmp_path):
    g, g_ema, d = tiny_networks(seed=4)
    path = tmp_path / "imagenet-16-state.pt"
    torch.save({"G": g.state_dict(), "D": d.state_dict(), "G_ema": g_ema.state_dict()}, path)
    ckpt, report = read_checkpoint(path)
    assert report.format == "nvlabs-state" and report.complete
    assert all(not r.unexpected and not r.derived for r in report.networks)
    assert ckpt.metadata.generator == g_ema.config
    expected_d = d.config.__class__(**{**vars(d.config), "mbstd_group_size": 4})
    assert ckpt.metadata.discriminator == expected_d
    z = z_from_seeds([0, 1, 2, 3], 8)
    with torch.no_grad():
        assert torch.equal(ckpt.G_ema(z), g_ema(z))


def test_torch_save_of_something_else_is_refused(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"state_dict": {"fc.weight": torch.zeros(2, 2)}}, path)
    with pytest.raises(AdvisorError, match="neither a rosinality checkpoint"):
        read_checkpoint(path)
    legacy = tmp_path / "legacy.pt"
    torch.save(
        {"g_ema": rosinality_generator_state(0)}, legacy, _use_new_zipfile_serialization=False
    )
    assert read_checkpoint(legacy)[1].format == "rosinality-pt"
    pickled = tmp_path / "plain.pkl"
    pickled.write_bytes(pickle.dumps({"g_ema": {}}))
    with pytest.raises(AdvisorError, match="not an NVlabs snapshot"):
        read_checkpoint(pickled)


@pytest.mark.parametrize(
    "base, cmax, top",
    [(16384, 512, 256), (32768, 512, 1024), (512, 32, 16), (8192, 256, 64), (1 << 20, 64, 32)],
)
def test_channel_layout_inference_recovers_nvlabs_formula(base, cmax, top):
    res = [4 << i for i in range(top.bit_length() - 3)]
    channels = {r: min(base // r, cmax) for r in res}
    got_base, got_max = infer_channel_layout(channels, "G")
    assert got_max == max(channels.values())
    assert all(min(got_base // r, got_max) == c for r, c in channels.items())


def test_channel_layout_that_nvlabs_cannot_express_is_refused():
    with pytest.raises(AdvisorError, match="do not follow"):
        infer_channel_layout({4: 512, 8: 512, 16: 512, 32: 512, 64: 1024}, "G")


def test_generator_config_inference_round_trips():
    cfg = GeneratorConfig(z_dim=16, w_dim=24, img_resolution=32, mapping_layers=3,
                          channel_base=1024, channel_max=64, conv_clamp=None)  # fmt: skip
    g = randomize(Generator(cfg), 0)
    assert infer_generator_config(g.state_dict(), conv_clamp=None) == cfg
