"""Benchmark advisor's StyleGAN2 networks: generation and training-step throughput.

Measures, per configuration, precision (fp32, bf16 autocast) and device:

- generator images/s: ``G.eval()``, ``torch.no_grad()``, const noise, truncation 1;
- training images/s: one generator step and one discriminator step per batch, both with the
  non-saturating logistic loss and Adam (betas 0, 0.99), random noise, w_avg tracking; no R1,
  no path-length regularisation, no EMA, no augmentation, no style mixing. Real images are a
  fixed random batch. One step processes ``batch`` real and ``2 * batch`` generated images;
  images/s counts ``batch`` per step, as NVlabs' kimg does.

Configurations:

- ``ref32-c64`` / ``ref32-c128``: the architecture of the NVlabs reference numbers quoted in the
  issue (32x32, z and w 128, 2 mapping layers, channel_base 16384, channel_max 64 or 128,
  batch 32): NVlabs' plain-PyTorch fallback did about 75 and 30 training images/s on the
  development machine (2 CPU cores). ``train_vs_quoted_reference`` divides by those quoted
  numbers (fp32, CPU, default batch only). With ``--nvlabs DIR`` (a local stylegan2-ada-pytorch
  checkout, never part of advisor) the same step is also timed with NVlabs' networks in this
  process, giving ``train_vs_nvlabs`` at equal architecture and conditions.
- ``paper256-r32`` / ``paper256-r256``: NVlabs' ``paper256`` config (z and w 512, 8 mapping
  layers, channel_base 16384, channel_max 512, conv_clamp 256, minibatch-std group 8) at 32x32
  and 256x256.

    python benchmarks/networks.py [--quick] [--configs NAME ...] [--dtypes fp32 bf16]
        [--device cpu|cuda] [--batch N] [--steps N] [--threads N] [--nvlabs DIR] [--out FILE]

Writes JSON to ``benchmarks/results/networks.json`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import sys
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from advisor.networks import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig


@dataclass(frozen=True, kw_only=True)
class BenchConfig:
    """One benchmarked architecture, its default batch, and the quoted reference if any."""

    name: str
    generator: GeneratorConfig
    discriminator: DiscriminatorConfig
    batch: int
    reference_train_img_s: float | None = None


def _ref32(channel_max: int, reference: float) -> BenchConfig:
    common = dict(img_resolution=32, channel_base=16384, channel_max=channel_max, conv_clamp=256)
    return BenchConfig(
        name=f"ref32-c{channel_max}",
        generator=GeneratorConfig(z_dim=128, w_dim=128, mapping_layers=2, **common),
        discriminator=DiscriminatorConfig(mbstd_group_size=4, **common),
        batch=32,
        reference_train_img_s=reference,
    )


def _paper256(res: int, batch: int) -> BenchConfig:
    common = dict(img_resolution=res, channel_base=16384, channel_max=512, conv_clamp=256)
    return BenchConfig(
        name=f"paper256-r{res}",
        generator=GeneratorConfig(z_dim=512, w_dim=512, mapping_layers=8, **common),
        discriminator=DiscriminatorConfig(mbstd_group_size=8, **common),
        batch=batch,
    )


CONFIGS = {
    c.name: c for c in (_ref32(64, 75.0), _ref32(128, 30.0), _paper256(32, 32), _paper256(256, 8))
}


def _autocast(device: torch.device, dtype: str) -> contextlib.AbstractContextManager:
    if dtype == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, steps: int, warmup: int, device: torch.device) -> float:
    """Median seconds per call of ``fn`` over ``steps`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def bench_generator(
    G: Generator, batch: int, dtype: str, steps: int, warmup: int, device: torch.device
) -> float:
    """Generator images/s in eval mode (const noise, no grad)."""
    G.eval()
    gen = torch.Generator(device=device).manual_seed(0)
    z = torch.randn([batch, G.config.z_dim], generator=gen, device=device)

    def run() -> None:
        with torch.no_grad(), _autocast(device, dtype):
            G(z)

    return batch / _timed(run, steps, warmup, device)


def make_train_step(
    G: torch.nn.Module,
    D: torch.nn.Module,
    generate: Callable[[torch.Tensor, bool], torch.Tensor],
    discriminate: Callable[[torch.Tensor], torch.Tensor],
    *,
    z_dim: int,
    shape: tuple[int, int, int],
    batch: int,
    dtype: str,
    device: torch.device,
) -> Callable[[], None]:
    """A closure doing one G step and one D step (non-saturating loss, Adam).

    ``generate(z, training_g)`` and ``discriminate(img)`` wrap the networks, so the same step
    times advisor's networks and NVlabs' (``--nvlabs``). ``shape`` is (C, H, W).
    """
    G.train()
    D.train()
    opt_g = torch.optim.Adam(G.parameters(), lr=0.0025, betas=(0.0, 0.99), eps=1e-8)
    opt_d = torch.optim.Adam(D.parameters(), lr=0.0025, betas=(0.0, 0.99), eps=1e-8)
    gen = torch.Generator(device=device).manual_seed(0)
    real = torch.rand([batch, *shape], generator=gen, device=device) * 2 - 1

    def step() -> None:
        G.requires_grad_(True)
        D.requires_grad_(False)
        z = torch.randn([batch, z_dim], generator=gen, device=device)
        with _autocast(device, dtype):
            loss_g = F.softplus(-discriminate(generate(z, True))).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()

        G.requires_grad_(False)
        D.requires_grad_(True)
        z = torch.randn([batch, z_dim], generator=gen, device=device)
        with _autocast(device, dtype):
            with torch.no_grad():
                fake = generate(z, False)
            loss_d = F.softplus(discriminate(fake)).mean() + F.softplus(-discriminate(real)).mean()
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()

    return step


def advisor_train_step(
    G: Generator, D: Discriminator, batch: int, dtype: str, device: torch.device
) -> Callable[[], None]:
    """``make_train_step`` for advisor's networks (random noise, w_avg tracking)."""
    noise = torch.Generator(device=device).manual_seed(1)

    def generate(z: torch.Tensor, training_g: bool) -> torch.Tensor:
        return G(z, noise_mode="random", noise_generator=noise, update_w_avg=training_g)

    cfg = G.config
    shape = (cfg.img_channels, cfg.img_resolution, cfg.img_resolution)
    return make_train_step(
        G, D, generate, D, z_dim=cfg.z_dim, shape=shape, batch=batch, dtype=dtype, device=device
    )


def nvlabs_train_step(
    checkout: Path, cfg: BenchConfig, batch: int, device: torch.device
) -> Callable[[], None]:
    """The same step with NVlabs' own networks imported from a local stylegan2-ada-pytorch
    checkout (never part of advisor), run with their plain-PyTorch fallback on CPU."""
    sys.path.insert(0, str(checkout))
    sys.modules.setdefault("requests", types.ModuleType("requests"))  # dnnlib imports it
    from training import networks as nv  # optional, user-supplied code, imported lazily

    g, d = cfg.generator, cfg.discriminator
    torch.manual_seed(0)
    G = nv.Generator(
        z_dim=g.z_dim,
        c_dim=0,
        w_dim=g.w_dim,
        img_resolution=g.img_resolution,
        img_channels=g.img_channels,
        mapping_kwargs={"num_layers": g.mapping_layers},
        synthesis_kwargs={
            "channel_base": g.channel_base,
            "channel_max": g.channel_max,
            "conv_clamp": g.conv_clamp,
            "architecture": g.architecture,
        },
    ).to(device)
    D = nv.Discriminator(
        c_dim=0,
        img_resolution=d.img_resolution,
        img_channels=d.img_channels,
        architecture=d.architecture,
        channel_base=d.channel_base,
        channel_max=d.channel_max,
        conv_clamp=d.conv_clamp,
        epilogue_kwargs={"mbstd_group_size": d.mbstd_group_size},
    ).to(device)
    shape = (g.img_channels, g.img_resolution, g.img_resolution)
    return make_train_step(
        G,
        D,
        lambda z, _: G(z, None),
        lambda img: D(img, None),
        z_dim=g.z_dim,
        shape=shape,
        batch=batch,
        dtype="fp32",
        device=device,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", choices=sorted(CONFIGS), default=sorted(CONFIGS))
    parser.add_argument("--dtypes", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, help="override every config's batch size")
    parser.add_argument("--steps", type=int, default=5, help="timed steps (median is reported)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (CPU)")
    parser.add_argument("--no-train", action="store_true", help="generator throughput only")
    parser.add_argument(
        "--nvlabs", type=Path, help="a stylegan2-ada-pytorch checkout: time its step side by side"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: batch 4, 1 step, 1 warmup, no 256 train"
    )
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent / "results" / "networks.json"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.batch, args.steps, args.warmup = args.batch or 4, 1, 1
    device = torch.device(args.device)

    records = []
    for name in args.configs:
        cfg = CONFIGS[name]
        batch = args.batch or cfg.batch
        torch.manual_seed(0)
        G = Generator(cfg.generator).to(device)
        D = Discriminator(cfg.discriminator).to(device)
        for dtype in args.dtypes:
            rec = {"config": name, "dtype": dtype, "device": str(device), "batch": batch}
            rec["generator_img_s"] = bench_generator(
                G, batch, dtype, args.steps, args.warmup, device
            )
            skip_train = args.no_train or (args.quick and cfg.generator.img_resolution > 64)
            if not skip_train:
                step = advisor_train_step(G, D, batch, dtype, device)
                rec["train_img_s"] = batch / _timed(step, args.steps, args.warmup, device)
                quoted = cfg.reference_train_img_s
                if quoted and dtype == "fp32" and device.type == "cpu" and batch == cfg.batch:
                    rec["quoted_reference_train_img_s"] = quoted
                    rec["train_vs_quoted_reference"] = rec["train_img_s"] / quoted
                if args.nvlabs and dtype == "fp32":
                    ref = nvlabs_train_step(args.nvlabs, cfg, batch, device)
                    rec["nvlabs_train_img_s"] = batch / _timed(ref, args.steps, args.warmup, device)
                    rec["train_vs_nvlabs"] = rec["train_img_s"] / rec["nvlabs_train_img_s"]
            records.append(rec)
            line = "  ".join(
                f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in rec.items()
            )
            print(line, flush=True)

    result = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "quick": args.quick,
        "steps": args.steps,
        "records": records,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
