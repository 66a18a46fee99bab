"""Benchmark advisor finetune's training loop against the bare G+D step.

Measures, at one architecture (default ``ref32-c64``: 32x32, z/w 128, 2 mapping layers,
channel_base 16384, channel_max 64, batch 32), side by side in one process:

- ``bare``: the bare step of ``benchmarks/networks.py`` (one G and one D step, non-saturating
  loss, Adam; no R1, no path length, no EMA, no ADA, no style mixing);
- ``loop``: ``Trainer.step`` with everything the fine-tune does per minibatch at 32 px by
  default: style mixing, lazy R1 (every 16), G EMA, ADA with p held at ``--aug-p`` (default
  0.2, a typical value mid-run), per-step seeded generators;
- ``loop_with_pl``: the same plus lazy path-length regularisation (every 4 steps, weight
  ``--pl-weight``), NVlabs' default above 64 px;
- ``metric``: one metric evaluation (``--metric-samples`` G_ema samples through
  EfficientNet-Lite0, FID/KID/PR/DC against a random 1,000 x 1280 target feature set).

The two step timings are interleaved in rounds (bare, loop, bare, loop, ...) and each is the
median over rounds of a whole lazy-regularisation cycle (16 steps), so load on a shared machine
hits both alike. The target of the issue: loop images/s >= 80% of bare images/s.

    python benchmarks/finetune.py [--dtypes fp32 bf16] [--rounds 3] [--device cpu]
        [--pl-weight 2] [--aug-p 0.2] [--metric-samples 1000] [--threads N] [--out FILE]

Writes ``benchmarks/results/finetune.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from networks import _ref32, advisor_train_step  # noqa: E402

from advisor.finetuning.options import FinetuneOptions, resolve  # noqa: E402
from advisor.finetuning.training import Trainer  # noqa: E402
from advisor.networks import Discriminator, Generator  # noqa: E402

CYCLE = 16  # one R1 interval: every lazy regulariser runs at its real frequency


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_cycle(fn, device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    for _ in range(CYCLE):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / CYCLE


def bench(dtype: str, args: argparse.Namespace, device: torch.device) -> dict[str, object]:
    cfg = _ref32(64, 75.0)
    batch = cfg.batch
    torch.manual_seed(0)
    G_bare, D_bare = (
        Generator(cfg.generator).to(device),
        Discriminator(cfg.discriminator).to(device),
    )
    bare = advisor_train_step(G_bare, D_bare, batch, dtype, device)
    reals = torch.rand(batch, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1

    def trainer_step(pl_weight: float):
        options = resolve(
            FinetuneOptions(
                batch=batch,
                precision=dtype,
                pl_weight=pl_weight,
                aug="ada",
                aug_p=args.aug_p,
                ada_kimg=1e9,
            ),  # ada_kimg: keep p where it is
            resolution=cfg.generator.img_resolution,
        )
        G, D = Generator(cfg.generator), Discriminator(cfg.discriminator)
        G_ema = Generator(cfg.generator)
        G_ema.load_state_dict(G.state_dict())
        trainer = Trainer(G=G, D=D, G_ema=G_ema, options=options, device=device)
        return lambda: trainer.step(reals)

    loop, loop_pl = trainer_step(0.0), trainer_step(args.pl_weight)
    bare(), loop(), loop_pl()  # warm-up
    bare_s, loop_s, pl_s = [], [], []
    for _ in range(args.rounds):
        bare_s.append(_time_cycle(bare, device))
        loop_s.append(_time_cycle(loop, device))
        pl_s.append(_time_cycle(loop_pl, device))
    bare_img_s = batch / float(np.median(bare_s))
    loop_img_s = batch / float(np.median(loop_s))
    pl_img_s = batch / float(np.median(pl_s))
    record: dict[str, object] = {
        "config": "ref32-c64",
        "dtype": dtype,
        "device": str(device),
        "batch": batch,
        "bare_img_s": round(bare_img_s, 2),
        "loop_img_s": round(loop_img_s, 2),
        "loop_vs_bare": round(loop_img_s / bare_img_s, 3),
        "loop_kimg_per_h": round(loop_img_s * 3.6, 2),
        "loop_s_per_kimg": round(1000 / loop_img_s, 1),
        "loop_with_pl_img_s": round(pl_img_s, 2),
        "loop_with_pl_vs_bare": round(pl_img_s / bare_img_s, 3),
        "options": {
            "pl_weight": args.pl_weight,
            "aug_p": args.aug_p,
            "r1_interval": 16,
            "pl_interval": 4,
            "style_mixing": 0.9,
        },
    }
    print(
        f"{dtype}: bare {bare_img_s:.1f} img/s, loop {loop_img_s:.1f} img/s, "
        f"loop/bare {loop_img_s / bare_img_s:.2f} (target >= 0.80), "
        f"{1000 / loop_img_s:.0f} s/kimg; with path length (weight {args.pl_weight:g}) "
        f"{pl_img_s:.1f} img/s, {pl_img_s / bare_img_s:.2f} of bare",
        flush=True,
    )
    return record


def bench_metric(args: argparse.Namespace, device: torch.device) -> dict[str, object]:
    from advisor.features import get_extractor
    from advisor.metrics import MetricOptions, compare_features
    from advisor.sampling import sample

    cfg = _ref32(64, 75.0)
    G = Generator(cfg.generator).eval()
    extractor = get_extractor("efficientnet-lite0", device=device, progress=False)
    target = np.random.default_rng(0).normal(size=(1000, 1280)).astype(np.float32)
    seeds = list(range(args.metric_samples))
    start = time.perf_counter()
    rows = [
        extractor(b) for b in sample(G, seeds, batch_size=32, noise_mode="random", device=device)
    ]
    mid = time.perf_counter()
    compare_features(target, torch.cat(rows).cpu().numpy(), options=MetricOptions(bootstrap=0))
    end = time.perf_counter()
    record = {
        "samples": len(seeds),
        "sample_and_extract_s": round(mid - start, 2),
        "metrics_s": round(end - mid, 2),
        "total_s": round(end - start, 2),
    }
    print(
        f"one metric evaluation ({len(seeds)} samples): {end - start:.1f} s "
        f"(sampling + extraction {mid - start:.1f} s, metrics {end - mid:.1f} s)"
    )
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--pl-weight", type=float, default=2.0)
    parser.add_argument("--aug-p", type=float, default=0.2)
    parser.add_argument("--metric-samples", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-metric", action="store_true")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "finetune.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    records = [bench(dtype, args, device) for dtype in args.dtypes]
    metric = None if args.no_metric else bench_metric(args, device)
    out = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "rounds": args.rounds,
        "records": records,
        "metric_evaluation": metric,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
