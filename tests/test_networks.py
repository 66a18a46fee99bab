"""Tests for advisor.networks: NVlabs layout, known answers, batch independence, numerics.

The NVlabs facts used here (state_dict keys and shapes, parameter counts, reference outputs)
were read off NVlabs stylegan2-ada-pytorch (training/networks.py) by building its networks with
the same kwargs on CPU in float32; they are written down as data so a reviewer can check them.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import signal

from advisor.networks import (
    Discriminator,
    DiscriminatorConfig,
    Generator,
    GeneratorConfig,
    from_uint8,
    ops,
    to_uint8,
    z_from_seeds,
)
from advisor.networks.discriminator import MinibatchStdLayer
from advisor.networks.generator import eval_chunk
from advisor.networks.layers import Conv2dLayer, FullyConnectedLayer

# A tiny NVlabs configuration (as pickled init_kwargs) and its advisor equivalents.
NV_G_KWARGS = {
    "z_dim": 16, "c_dim": 0, "w_dim": 16, "img_resolution": 16, "img_channels": 3,
    "mapping_kwargs": {"num_layers": 2},
    "synthesis_kwargs": {"channel_base": 256, "channel_max": 16, "conv_clamp": 256},
}  # fmt: skip
NV_D_KWARGS = {
    "c_dim": 0, "img_resolution": 16, "img_channels": 3, "channel_base": 256, "channel_max": 16,
    "conv_clamp": 256, "epilogue_kwargs": {"mbstd_group_size": 2},
}  # fmt: skip

# NVlabs G(**NV_G_KWARGS).state_dict(): keys in order, with shapes.
NV_G_STATE = {
    "synthesis.b4.const": (16, 4, 4),
    "synthesis.b4.resample_filter": (4, 4),
    "synthesis.b4.conv1.weight": (16, 16, 3, 3),
    "synthesis.b4.conv1.noise_strength": (),
    "synthesis.b4.conv1.bias": (16,),
    "synthesis.b4.conv1.resample_filter": (4, 4),
    "synthesis.b4.conv1.noise_const": (4, 4),
    "synthesis.b4.conv1.affine.weight": (16, 16),
    "synthesis.b4.conv1.affine.bias": (16,),
    "synthesis.b4.torgb.weight": (3, 16, 1, 1),
    "synthesis.b4.torgb.bias": (3,),
    "synthesis.b4.torgb.affine.weight": (16, 16),
    "synthesis.b4.torgb.affine.bias": (16,),
    "synthesis.b8.resample_filter": (4, 4),
    "synthesis.b8.conv0.weight": (16, 16, 3, 3),
    "synthesis.b8.conv0.noise_strength": (),
    "synthesis.b8.conv0.bias": (16,),
    "synthesis.b8.conv0.resample_filter": (4, 4),
    "synthesis.b8.conv0.noise_const": (8, 8),
    "synthesis.b8.conv0.affine.weight": (16, 16),
    "synthesis.b8.conv0.affine.bias": (16,),
    "synthesis.b8.conv1.weight": (16, 16, 3, 3),
    "synthesis.b8.conv1.noise_strength": (),
    "synthesis.b8.conv1.bias": (16,),
    "synthesis.b8.conv1.resample_filter": (4, 4),
    "synthesis.b8.conv1.noise_const": (8, 8),
    "synthesis.b8.conv1.affine.weight": (16, 16),
    "synthesis.b8.conv1.affine.bias": (16,),
    "synthesis.b8.torgb.weight": (3, 16, 1, 1),
    "synthesis.b8.torgb.bias": (3,),
    "synthesis.b8.torgb.affine.weight": (16, 16),
    "synthesis.b8.torgb.affine.bias": (16,),
    "synthesis.b16.resample_filter": (4, 4),
    "synthesis.b16.conv0.weight": (16, 16, 3, 3),
    "synthesis.b16.conv0.noise_strength": (),
    "synthesis.b16.conv0.bias": (16,),
    "synthesis.b16.conv0.resample_filter": (4, 4),
    "synthesis.b16.conv0.noise_const": (16, 16),
    "synthesis.b16.conv0.affine.weight": (16, 16),
    "synthesis.b16.conv0.affine.bias": (16,),
    "synthesis.b16.conv1.weight": (16, 16, 3, 3),
    "synthesis.b16.conv1.noise_strength": (),
    "synthesis.b16.conv1.bias": (16,),
    "synthesis.b16.conv1.resample_filter": (4, 4),
    "synthesis.b16.conv1.noise_const": (16, 16),
    "synthesis.b16.conv1.affine.weight": (16, 16),
    "synthesis.b16.conv1.affine.bias": (16,),
    "synthesis.b16.torgb.weight": (3, 16, 1, 1),
    "synthesis.b16.torgb.bias": (3,),
    "synthesis.b16.torgb.affine.weight": (16, 16),
    "synthesis.b16.torgb.affine.bias": (16,),
    "mapping.w_avg": (16,),
    "mapping.fc0.weight": (16, 16),
    "mapping.fc0.bias": (16,),
    "mapping.fc1.weight": (16, 16),
    "mapping.fc1.bias": (16,),
}

# NVlabs D(**NV_D_KWARGS).state_dict() (architecture 'resnet'), keys in order, with shapes.
NV_D_STATE = {
    "b16.resample_filter": (4, 4),
    "b16.fromrgb.weight": (16, 3, 1, 1),
    "b16.fromrgb.bias": (16,),
    "b16.fromrgb.resample_filter": (4, 4),
    "b16.conv0.weight": (16, 16, 3, 3),
    "b16.conv0.bias": (16,),
    "b16.conv0.resample_filter": (4, 4),
    "b16.conv1.weight": (16, 16, 3, 3),
    "b16.conv1.bias": (16,),
    "b16.conv1.resample_filter": (4, 4),
    "b16.skip.weight": (16, 16, 1, 1),
    "b16.skip.resample_filter": (4, 4),
    "b8.resample_filter": (4, 4),
    "b8.conv0.weight": (16, 16, 3, 3),
    "b8.conv0.bias": (16,),
    "b8.conv0.resample_filter": (4, 4),
    "b8.conv1.weight": (16, 16, 3, 3),
    "b8.conv1.bias": (16,),
    "b8.conv1.resample_filter": (4, 4),
    "b8.skip.weight": (16, 16, 1, 1),
    "b8.skip.resample_filter": (4, 4),
    "b4.conv.weight": (16, 17, 3, 3),
    "b4.conv.bias": (16,),
    "b4.conv.resample_filter": (4, 4),
    "b4.fc.weight": (16, 256),
    "b4.fc.bias": (16,),
    "b4.out.weight": (1, 16),
    "b4.out.bias": (1,),
}

# NVlabs networks with default kwargs (channel_base 32768, channel_max 512, z = w = 512,
# 8 mapping layers): resolution -> (G params, G buffer elements, num_ws, D params).
NV_DEFAULT_COUNTS = {
    16: (16014350, 1296, 6, 16525313),
    32: (21523475, 3392, 8, 21507073),
    64: (27032600, 11632, 10, 26488833),
    128: (29328669, 44448, 12, 28389121),
    256: (30034338, 175568, 14, 28864129),
    512: (30276583, 699904, 16, 28982849),
    1024: (30370060, 2797104, 18, 29012513),
}

# NVlabs outputs (float32, CPU) for the tiny networks above filled by ``_fill_like_reference``,
# z from seeds 0..3 as in generate.py, noise_mode 'const': per-image means, and pixel (5, 11).
NV_REF = {
    "psi1_mean": [0.1940404176712036, 0.050049930810928345, 0.10448034852743149,
                  0.019431695342063904],
    "psi1_pixels": [[0.5627699494361877, 1.1951607465744019, -0.4615069627761841],
                    [0.7187633514404297, 1.0450538396835327, -0.6385862231254578],
                    [-0.03074967861175537, 1.0111955404281616, -0.1634092926979065],
                    [0.36830848455429077, 0.47890332341194153, -0.3496653139591217]],
    "psi05_mean": [0.16202807426452637, 0.11468502879142761, 0.14932461082935333,
                   0.09639962762594223],
    "psi05_pixels": [[0.49235451221466064, 1.109940767288208, -0.44376036524772644],
                     [0.5006828308105469, 0.987238347530365, -0.6512346863746643],
                     [0.12139621376991272, 0.9866563081741333, -0.30921608209609985],
                     [0.4000825881958008, 0.646385908126831, -0.4006263315677643]],
    "none_mean": [0.211625337600708, 0.06697813421487808, 0.11376713961362839,
                  0.08974573016166687],
    "d_logits": [0.6092766523361206, 0.6107450723648071, 0.608914852142334, 0.6105473041534424],
}  # fmt: skip


def _fill_like_reference(module: torch.nn.Module, seed: int) -> None:
    """Deterministic state: N(0, 0.25) per tensor, in sorted key order; mapping weights x200."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, value in sorted(module.state_dict().items()):
            if key.endswith("resample_filter"):
                continue
            scale = 100.0 if key.startswith("mapping.fc") and key.endswith("weight") else 0.5
            value.copy_(torch.randn(value.shape, generator=gen) * scale)


def _tiny_g(**overrides) -> Generator:
    kw = dict(
        z_dim=16, w_dim=16, img_resolution=16, mapping_layers=2, channel_base=256, channel_max=16
    )
    kw.update(overrides)
    torch.manual_seed(0)
    G = Generator(GeneratorConfig(**kw))
    with torch.no_grad():  # untrained NVlabs init has zero noise strength: make noise matter
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.5)
    return G.eval()


def _tiny_d(**overrides) -> Discriminator:
    kw = dict(img_resolution=16, channel_base=256, channel_max=16, mbstd_group_size=2)
    kw.update(overrides)
    torch.manual_seed(1)
    return Discriminator(DiscriminatorConfig(**kw))


def _shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


# ----------------------------------------------------------------------------- configs


def test_config_from_nvlabs_kwargs_stylegan2_ada_layout():
    cfg = GeneratorConfig.from_nvlabs_kwargs(NV_G_KWARGS)
    assert (cfg.z_dim, cfg.w_dim, cfg.img_resolution, cfg.mapping_layers) == (16, 16, 16, 2)
    assert (cfg.channel_base, cfg.channel_max, cfg.conv_clamp) == (256, 16, 256)
    assert cfg.w_avg_beta == 0.995 and cfg.mapping_lr_multiplier == 0.01
    # Missing conv_clamp means the class default: None in StyleGAN2-ADA ...
    bare = {k: v for k, v in NV_G_KWARGS.items() if k != "synthesis_kwargs"}
    assert GeneratorConfig.from_nvlabs_kwargs(bare).conv_clamp is None
    d = DiscriminatorConfig.from_nvlabs_kwargs(NV_D_KWARGS)
    assert (d.architecture, d.mbstd_group_size, d.mbstd_num_channels, d.conv_clamp) == (
        "resnet",
        2,
        1,
        256,
    )


def test_config_from_nvlabs_kwargs_stylegan3_repository_layout():
    # networks_stylegan2 in the StyleGAN3 repo: synthesis kwargs flat, other class defaults.
    flat = {k: v for k, v in NV_G_KWARGS.items() if k != "synthesis_kwargs"}
    flat.update(
        channel_base=256, channel_max=16, num_fp16_res=4, fused_modconv_default="inference_only"
    )
    cfg = GeneratorConfig.from_nvlabs_kwargs(flat, module="training.networks_stylegan2")
    assert (cfg.channel_base, cfg.conv_clamp, cfg.w_avg_beta) == (256, 256, 0.998)
    d = DiscriminatorConfig.from_nvlabs_kwargs(
        {"c_dim": 0, "img_resolution": 16, "img_channels": 3, "block_kwargs": {"freeze_layers": 4}},
        module="training.networks_stylegan2",
    )
    assert d.conv_clamp == 256


@pytest.mark.parametrize(
    "change",
    [
        {"c_dim": 10},
        {"synthesis_kwargs": {"architecture": "stylegan3"}},
        {"synthesis_kwargs": {"activation": "relu"}},
        {"synthesis_kwargs": {"unknown_knob": 1}},
        {"mapping_kwargs": {"layer_features": 32}},
        {"mapping_kwargs": {"w_avg_beta": None}},
        {"img_resolution": 24},
    ],
)
def test_config_from_nvlabs_kwargs_rejects_what_it_cannot_reproduce(change):
    with pytest.raises(ValueError):
        GeneratorConfig.from_nvlabs_kwargs({**NV_G_KWARGS, **change})


def test_config_rejects_unknown_module_and_missing_kwargs():
    with pytest.raises(ValueError, match="unknown NVlabs network module"):
        GeneratorConfig.from_nvlabs_kwargs(NV_G_KWARGS, module="training.networks_stylegan3")
    with pytest.raises(ValueError, match="lack"):
        GeneratorConfig.from_nvlabs_kwargs({"z_dim": 4})
    with pytest.raises(ValueError, match="c_dim"):
        DiscriminatorConfig(c_dim=3)


def test_config_dict_round_trip_and_unknown_keys():
    g = GeneratorConfig(img_resolution=64, conv_clamp=None, resample_filter=(1, 2, 1))
    assert GeneratorConfig.from_dict(g.to_dict()) == g
    d = DiscriminatorConfig(architecture="skip", mbstd_group_size=None)
    assert DiscriminatorConfig.from_dict(d.to_dict()) == d
    with pytest.raises(ValueError, match="unknown"):
        GeneratorConfig.from_dict({**g.to_dict(), "num_fp16_res": 4})


# ----------------------------------------------------------------------------- NVlabs layout


def test_state_dict_keys_and_shapes_equal_nvlabs():
    G = Generator(GeneratorConfig.from_nvlabs_kwargs(NV_G_KWARGS))
    D = Discriminator(DiscriminatorConfig.from_nvlabs_kwargs(NV_D_KWARGS))
    assert list(_shapes(G).items()) == list(NV_G_STATE.items())
    assert list(_shapes(D).items()) == list(NV_D_STATE.items())
    # Buffers are buffers (not parameters) exactly where NVlabs has buffers.
    buffers = {k for k in NV_G_STATE if k.endswith(("resample_filter", "noise_const", "w_avg"))}
    assert {k for k, _ in G.named_buffers()} == buffers


def test_architecture_variants_change_keys_like_nvlabs():
    g = {a: set(_shapes(_tiny_g(architecture=a))) for a in ("skip", "orig", "resnet")}
    # 'orig' and 'resnet' keep only the last ToRGB; 'resnet' adds bias-free 1x1 skips.
    torgb = {k for k in g["skip"] if ".torgb." in k and not k.startswith("synthesis.b16.")}
    assert g["skip"] - g["orig"] == torgb
    skips = {f"synthesis.b{r}.skip.{n}" for r in (8, 16) for n in ("weight", "resample_filter")}
    assert g["resnet"] - g["orig"] == skips
    d = {a: set(_shapes(_tiny_d(architecture=a))) for a in ("skip", "orig", "resnet")}
    assert d["resnet"] - d["orig"] == {
        f"b{r}.skip.{n}" for r in (8, 16) for n in ("weight", "resample_filter")
    }
    assert d["skip"] - d["orig"] == {
        "b8.fromrgb.weight",
        "b8.fromrgb.bias",
        "b8.fromrgb.resample_filter",
        "b4.fromrgb.weight",
        "b4.fromrgb.bias",
        "b4.fromrgb.resample_filter",
    }


@pytest.mark.parametrize("res", sorted(NV_DEFAULT_COUNTS))
def test_every_resolution_builds_with_nvlabs_parameter_counts(res):
    g_params, g_buffers, num_ws, d_params = NV_DEFAULT_COUNTS[res]
    with torch.device("meta"):
        G = Generator(GeneratorConfig(img_resolution=res))
        D = Discriminator(DiscriminatorConfig(img_resolution=res))
    assert sum(p.numel() for p in G.parameters()) == g_params
    assert sum(b.numel() for b in G.buffers()) == g_buffers
    assert G.num_ws == num_ws == 2 * int(math.log2(res)) - 2
    assert sum(p.numel() for p in D.parameters()) == d_params


def test_matches_nvlabs_reference_outputs():
    G = Generator(GeneratorConfig.from_nvlabs_kwargs(NV_G_KWARGS)).eval()
    D = Discriminator(DiscriminatorConfig.from_nvlabs_kwargs(NV_D_KWARGS)).eval()
    _fill_like_reference(G, 1)
    _fill_like_reference(D, 2)
    z = z_from_seeds([0, 1, 2, 3], 16)
    with torch.no_grad():
        for psi, key in ((1.0, "psi1"), (0.5, "psi05")):
            img = G(z, truncation_psi=psi)
            assert img.dtype == torch.float32 and img.shape == (4, 3, 16, 16)
            torch.testing.assert_close(
                img.mean(dim=[1, 2, 3]), torch.tensor(NV_REF[f"{key}_mean"]), rtol=0, atol=2e-6
            )
            torch.testing.assert_close(
                img[:, :, 5, 11], torch.tensor(NV_REF[f"{key}_pixels"]), rtol=0, atol=2e-5
            )
            if psi == 1.0:
                logits = D(img).flatten()
                torch.testing.assert_close(
                    logits, torch.tensor(NV_REF["d_logits"]), rtol=0, atol=1e-5
                )
        none = G(z, noise_mode="none").mean(dim=[1, 2, 3])
        torch.testing.assert_close(none, torch.tensor(NV_REF["none_mean"]), rtol=0, atol=2e-6)
        # The non-fused (training) path computes the same function.
        fused = G(z, fused_modconv=True)
        torch.testing.assert_close(G(z, fused_modconv=False), fused, rtol=0, atol=2e-5)


# ----------------------------------------------------------------------------- seeds, batches


def test_z_from_seeds_is_generate_py_convention():
    z = z_from_seeds([0, 7, 2**32 - 1], 512)
    assert z.dtype == torch.float32 and z.shape == (3, 512)
    assert z[0, 0].item() == pytest.approx(1.764052345967664)  # RandomState(0).randn()
    expected = np.random.RandomState(7).randn(1, 512).astype(np.float32)[0]
    assert np.array_equal(z[1].numpy(), expected)
    assert z_from_seeds([], 8).shape == (0, 8)
    with pytest.raises(ValueError):
        z_from_seeds([-1], 8)


def _batch_vs_single(G, seeds, **kw):
    z = z_from_seeds(seeds, G.config.z_dim)
    with torch.no_grad():
        full = G(z, **kw)
        singles = torch.cat([G(z[i : i + 1], **kw) for i in range(len(seeds))])
        split = torch.cat([G(z[:3], **kw), G(z[3:], **kw)])
    return full, singles, split


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("noise_mode", ["const", "none"])
@pytest.mark.parametrize("res", [16, 32])
def test_batch_size_never_changes_a_pixel(fused, noise_mode, res):
    G = _tiny_g(img_resolution=res, channel_base=32 * res, channel_max=32)
    full, singles, split = _batch_vs_single(
        G, list(range(8)), noise_mode=noise_mode, fused_modconv=fused
    )
    assert torch.equal(full, singles) and torch.equal(full, split)
    assert not torch.equal(full[0], full[1])  # different seeds, different images


def test_random_noise_with_one_generator_per_sample_is_batch_independent():
    G = _tiny_g()
    seeds = list(range(6))
    z = z_from_seeds(seeds, 16)

    def gens(ss):
        return [torch.Generator().manual_seed(1000 + s) for s in ss]

    with torch.no_grad():
        full = G(z, noise_mode="random", noise_generator=gens(seeds))
        singles = torch.cat(
            [
                G(z[i : i + 1], noise_mode="random", noise_generator=gens([s]))
                for i, s in enumerate(seeds)
            ]
        )
        const = G(z, noise_mode="const")
        again = G(z, noise_mode="random", noise_generator=gens(seeds))
    assert torch.equal(full, singles) and torch.equal(full, again)
    assert not torch.allclose(full, const)
    with pytest.raises(ValueError, match="noise_generator"):
        G(z, noise_mode="random")
    with pytest.raises(ValueError, match="generators"):
        G(z, noise_mode="random", noise_generator=gens([0, 1]))


def test_eval_mode_always_synthesises_fixed_size_chunks():
    G = _tiny_g()
    seen = []
    G.synthesis.b8.conv0.register_forward_hook(lambda m, args, out: seen.append(out.shape[0]))
    with torch.no_grad():
        for n in (1, 3, 7, 9):
            assert G(z_from_seeds(range(n), 16)).shape[0] == n
    chunk = eval_chunk(torch.device("cpu"))
    assert set(seen) == {chunk}  # padded up to the chunk, whatever the batch
    G.train()
    seen.clear()
    G(z_from_seeds(range(3), 16))
    assert seen == [3]  # training runs the batch as given


def test_samples_are_deterministic_per_seed_across_instances():
    a, b = _tiny_g(), _tiny_g()
    z = z_from_seeds([5, 6], 16)
    with torch.no_grad():
        assert torch.equal(a(z), b(z))


# ----------------------------------------------------------------------------- truncation


def test_truncation_psi_zero_gives_the_w_avg_image_for_every_seed():
    G = _tiny_g()
    with torch.no_grad():
        G.mapping.w_avg.normal_()
        img = G(z_from_seeds(range(5), 16), truncation_psi=0.0)
        ws = G.mapping.w_avg.reshape(1, 1, -1).expand(1, G.num_ws, -1)
        reference = G.synthesis(ws)
    for i in range(5):
        assert torch.equal(img[i : i + 1], reference)


def test_truncation_formula_and_cutoff():
    G = _tiny_g()
    z = z_from_seeds([1, 2], 16)
    with torch.no_grad():
        G.mapping.w_avg.normal_()
        ws = G.mapping(z)
        cut = G.mapping(z, truncation_psi=0.5, truncation_cutoff=3)
    avg = G.mapping.w_avg
    torch.testing.assert_close(cut[:, :3], avg + 0.5 * (ws[:, :3] - avg))
    assert torch.equal(cut[:, 3:], ws[:, 3:])


def test_update_w_avg_tracks_the_batch_mean():
    G = _tiny_g().train()
    z = torch.randn(8, 16, generator=torch.Generator().manual_seed(0))
    before = G.mapping.w_avg.clone()
    ws = G.mapping(z, update_w_avg=True)
    torch.testing.assert_close(G.mapping.w_avg, ws[:, 0].mean(0).lerp(before, 0.995))
    G.mapping(z)  # no update unless asked
    torch.testing.assert_close(G.mapping.w_avg, ws[:, 0].mean(0).lerp(before, 0.995))


# ----------------------------------------------------------------------------- ops


def _naive_modconv(x, weight, styles, *, demodulate, up):
    """Per-sample loop: modulate, demodulate, then (for up=2) zero-insert, convolve, filter."""
    outs = []
    f1 = np.array([1.0, 3.0, 3.0, 1.0]) / 8.0
    for i in range(x.shape[0]):
        w = weight.double() * styles[i].double()[None, :, None, None]
        if demodulate:
            w = w / torch.sqrt(w.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8)
        xi = x[i].double().numpy()
        out = []
        for o in range(w.shape[0]):
            acc = 0
            for c in range(w.shape[1]):
                k = w[o, c].numpy()
                if up == 1:  # correlation with 'same' padding, like F.conv2d
                    acc = acc + signal.correlate2d(xi[c], k, mode="same")
                else:  # NVlabs: zero insertion, true convolution, FIR (x4 gain), crop
                    u = np.zeros((2 * xi.shape[1] - 1, 2 * xi.shape[2] - 1))
                    u[::2, ::2] = xi[c]
                    acc = acc + signal.convolve2d(u, k)
            if up == 2:
                acc = signal.convolve2d(acc, 4 * np.outer(f1, f1))
                n = 2 * xi.shape[1]
                acc = acc[2 : 2 + n, 2 : 2 + n]
            out.append(acc)
        outs.append(np.stack(out))
    return torch.from_numpy(np.stack(outs)).float()


@pytest.mark.parametrize("up", [1, 2])
@pytest.mark.parametrize("demodulate", [True, False])
def test_modulated_conv_grouped_and_shared_equal_a_naive_loop(up, demodulate):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 6, 6, generator=gen)
    weight = torch.randn(5, 4, 3, 3, generator=gen)
    styles = torch.randn(3, 4, generator=gen)
    f = ops.setup_filter([1, 3, 3, 1])
    expected = _naive_modconv(x, weight, styles, demodulate=demodulate, up=up)
    for fused in (True, False):
        out = ops.modulated_conv2d(
            x,
            weight,
            styles,
            up=up,
            padding=1,
            resample_filter=f,
            demodulate=demodulate,
            flip_weight=up == 1,
            fused=fused,
        )
        assert out.shape == (3, 5, 6 * up, 6 * up)
        torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)


def _scipy_upfirdn2d(x: np.ndarray, taps, up: int, down: int) -> np.ndarray:
    """Separable reference with scipy.signal.upfirdn (full output) along both image axes."""
    h = np.asarray(taps, dtype=np.float64)
    h = h / h.sum() * up
    rows = signal.upfirdn(h, x, up=up, down=1, axis=-1)
    return signal.upfirdn(h, rows, up=up, down=1, axis=-2)


def test_fir_upsample_and_downsample_match_scipy():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 8, 8, generator=gen, dtype=torch.float64)
    f = ops.setup_filter([1, 3, 3, 1]).double()
    # upsample2d: zero-insert, filter (gain 4), padding (2, 1) => full output cropped at 1.
    full = _scipy_upfirdn2d(x.numpy(), [1, 3, 3, 1], up=2, down=1)
    expected = full[..., 1:17, 1:17]
    np.testing.assert_allclose(ops.upsample2d(x, f).numpy(), expected, atol=1e-12)
    # downsample2d: filter with padding (1, 1), keep every 2nd => full output from 2, step 2.
    full = _scipy_upfirdn2d(x.numpy(), [1, 3, 3, 1], up=1, down=1)
    expected = full[..., 2:9:2, 2:9:2]
    np.testing.assert_allclose(ops.downsample2d(x, f).numpy(), expected, atol=1e-12)


def test_fir_impulse_and_dc_known_answers():
    f = ops.setup_filter([1, 3, 3, 1])
    assert f.shape == (4, 4) and f.sum().item() == pytest.approx(1.0)
    impulse = torch.zeros(1, 1, 8, 8)
    impulse[0, 0, 4, 4] = 1.0
    up = ops.upsample2d(impulse, f)  # the filter itself, x4, at the zero-inserted position
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0])
    torch.testing.assert_close(up[0, 0, 7:11, 7:11], 4 * torch.outer(taps, taps) / 64)
    assert up.sum().item() == pytest.approx(4.0)
    const = torch.full((1, 2, 8, 8), 0.7)  # unit DC gain away from the zero-padded border
    torch.testing.assert_close(
        ops.upsample2d(const, f)[..., 2:-2, 2:-2], torch.full((1, 2, 12, 12), 0.7)
    )
    torch.testing.assert_close(
        ops.downsample2d(const, f)[..., 1:-1, 1:-1], torch.full((1, 2, 2, 2), 0.7)
    )


def test_act_clamp_matches_the_reference_formula_to_second_order():
    gen = torch.Generator().manual_seed(5)
    x = (torch.randn(2, 3, 5, 5, generator=gen, dtype=torch.float64) * 3).requires_grad_(True)
    v = torch.randn(2, 3, 5, 5, generator=gen, dtype=torch.float64).requires_grad_(True)
    c = 2.0  # about a quarter of the values are clamped

    def reference(t):
        return F.leaky_relu(t, 0.2).clamp(-c, c)

    def mine(t):
        return ops.act_clamp(t * 1.0, act="lrelu", clamp=c)  # * 1.0: a fresh tensor to overwrite

    assert torch.equal(mine(x), reference(x))
    # First order without create_graph (the memory-reusing backward) ...
    (g_fast,) = torch.autograd.grad((mine(x) * v).sum(), x)
    # ... and with it, as R1 / path-length regularisation need; then differentiate again.
    (g_mine,) = torch.autograd.grad((mine(x) * v).sum(), x, create_graph=True)
    (g_ref,) = torch.autograd.grad((reference(x) * v).sum(), x, create_graph=True)
    assert torch.equal(g_fast, g_ref.detach()) and torch.equal(g_mine, g_ref)
    (d_mine,) = torch.autograd.grad(g_mine.square().sum(), v)
    (d_ref,) = torch.autograd.grad(g_ref.square().sum(), v)
    assert torch.equal(d_mine, d_ref)


def test_conv2d_resample_down_equals_filter_then_strided_conv():
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(2, 3, 8, 8, generator=gen)
    w = torch.randn(4, 3, 3, 3, generator=gen)
    f = ops.setup_filter([1, 3, 3, 1])
    out = ops.conv2d_resample(x, w, f, down=2, padding=1)
    filtered = ops.upfirdn2d(x, f, padding=(2, 2, 2, 2))
    torch.testing.assert_close(out, F.conv2d(filtered, w, stride=2))
    assert out.shape == (2, 4, 4, 4)


# ----------------------------------------------------------------------------- layers


def test_equalised_lr_initialisation_and_runtime_scaling():
    torch.manual_seed(0)
    fc = FullyConnectedLayer(256, 128, lr_multiplier=0.01, bias_init=1.0)
    assert fc.weight.std().item() == pytest.approx(100.0, rel=0.02)  # N(0, 1) / lr_multiplier
    assert torch.equal(fc.bias, torch.ones(128))
    x = torch.randn(5, 256)
    expected = x @ (fc.weight * 0.01 / 16).t() + fc.bias * 0.01
    torch.testing.assert_close(fc(x), expected)
    fc.eval()  # the batch-invariant path computes the same function
    torch.testing.assert_close(fc(x), expected)

    conv = Conv2dLayer(8, 4, 3, activation="lrelu", conv_clamp=0.5)
    assert conv.weight.std().item() == pytest.approx(1.0, rel=0.2)
    with torch.no_grad():
        conv.bias.normal_()
    x = torch.randn(2, 8, 5, 5)
    pre = F.conv2d(x, conv.weight / math.sqrt(8 * 9), conv.bias, padding=1)
    expected = (F.leaky_relu(pre, 0.2) * math.sqrt(2)).clamp(-0.5, 0.5)
    torch.testing.assert_close(conv(x), expected)
    expected_half = (F.leaky_relu(pre, 0.2) * math.sqrt(2) * 0.5).clamp(-0.25, 0.25)
    torch.testing.assert_close(conv(x, gain=0.5), expected_half)


def test_minibatch_std_groups_strided_samples():
    torch.manual_seed(0)
    x = torch.randn(4, 6, 3, 3)
    out = MinibatchStdLayer(group_size=2, num_channels=2)(x)
    assert out.shape == (4, 8, 3, 3) and torch.equal(out[:, :6], x)
    for j in range(2):  # group j = samples j and j + 2
        group = x[[j, j + 2]]
        for k in range(2):  # channel halves
            part = group[:, 3 * k : 3 * k + 3]
            expected = (part.var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
            for s in (j, j + 2):
                torch.testing.assert_close(out[s, 6 + k], expected.expand(3, 3))
    with pytest.raises(ValueError, match="groups"):
        MinibatchStdLayer(group_size=4)(torch.randn(6, 2, 2, 2))


# ----------------------------------------------------------------------------- D, training


def test_discriminator_shapes_and_gradients():
    D = _tiny_d()
    img = torch.randn(4, 3, 16, 16, requires_grad=True)
    logits = D(img)
    assert logits.shape == (4, 1) and logits.dtype == torch.float32
    logits.sum().backward()
    assert img.grad is not None and img.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in D.parameters())
    with pytest.raises(ValueError, match="expected images"):
        D(torch.randn(2, 3, 8, 8))


def test_discriminator_double_backward_matches_gradgradcheck():
    # R1 regularisation differentiates D's input gradient: check it in float64.
    D = _tiny_d(img_resolution=8, channel_base=32, channel_max=4).double()
    img = torch.randn(2, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(D, (img,), eps=1e-6, atol=1e-4, fast_mode=True)


def test_generator_trains_end_to_end_and_grads_reach_every_parameter():
    G = _tiny_g().train()
    D = _tiny_d()
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(4, 16, generator=gen)
    img = G(z, noise_mode="random", noise_generator=gen)
    assert img.shape == (4, 3, 16, 16)
    F.softplus(-D(img)).mean().backward()
    missing = [n for n, p in G.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert missing == []


def test_bf16_autocast_runs_and_stays_close_to_float32():
    G = _tiny_g()
    D = _tiny_d()
    z = z_from_seeds(range(4), 16)
    with torch.no_grad():
        ref = G(z)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = G(z)
            logits = D(low)
    assert low.dtype == torch.float32 and logits.dtype == torch.float32
    assert (low - ref).abs().mean() < 0.05 * ref.abs().mean()
    G.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = F.softplus(-D(G(z))).mean()
    loss.backward()
    assert torch.isfinite(loss)


def test_generator_rejects_bad_inputs():
    G = _tiny_g()
    with pytest.raises(ValueError, match="z of shape"):
        G(torch.randn(2, 15))
    with pytest.raises(ValueError, match="noise_mode"):
        G(torch.randn(2, 16), noise_mode="frozen")
    with pytest.raises(ValueError, match="ws"):
        G.synthesis(torch.randn(2, 3, 16))


# ----------------------------------------------------------------------------- uint8


def test_to_uint8_is_nvlabs_quantisation_and_inverts_from_uint8():
    x = torch.tensor([-2.0, -1.0, -0.999, 0.0, 1 / 127.5, 0.999, 1.0, 3.0]).reshape(1, 1, 2, 4)
    expected = [0, 0, 0, 128, 129, 255, 255, 255]
    assert to_uint8(x).flatten().tolist() == expected
    # x * 127.5 + 128 truncated: round-half-up of x * 127.5 + 127.5.
    assert to_uint8(torch.tensor([[[[-1 + 0.5 / 127.5]]]])).item() == 1
    every = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16)
    assert torch.equal(to_uint8(from_uint8(every)), every)
    with pytest.raises(ValueError):
        to_uint8(every)
    with pytest.raises(ValueError):
        from_uint8(every.float())
