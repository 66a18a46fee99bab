"""Benchmark ``advisor rank``: cold run, warm re-run, and the per-checkpoint split.

Builds a registry of ``--checkpoints`` random StyleGAN2 generators (advisor format, local
entries) at ``--resolution`` and a target of ``--samples`` random images, then times:

- ``cold``: :func:`advisor.ranking.rank` with an empty cache (target features, every
  checkpoint's sampling and extraction, metrics);
- ``warm``: the same call again (target and sample features from the caches: metrics only);
- per checkpoint, the split of the cold run into resolve (hashing), generation, extraction and
  metrics, from the rows' timings;
- ``bare``: the physical limit of this design, the sum of the bare forward passes over the same
  images: each generator's forward over the seeds (quantised, as sampled) and the extractor's
  forward over every sample and every target image (already decoded and at input size).

Prints ``warm_speedup = cold / warm`` (target >= 10) and ``cold_vs_bare = cold / bare``
(target <= 1.25) and writes JSON to ``benchmarks/results/rank.json`` (``--out`` to change).

    python benchmarks/rank.py [--checkpoints 3] [--samples 200] [--resolution 32]
        [--extractor efficientnet-lite0] [--device cpu] [--batch 32] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from advisor.checkpoints.format import Checkpoint, CheckpointMetadata, save_checkpoint
from advisor.checkpoints.registry import load_registry
from advisor.features import get_extractor
from advisor.images import load_images
from advisor.metrics import MetricOptions
from advisor.networks import Generator, GeneratorConfig
from advisor.ranking import rank
from advisor.sampling import sample

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(REPO))

from benchmarks.targets import write_noise_images  # noqa: E402


def generator_config(resolution: int) -> GeneratorConfig:
    """A small but complete StyleGAN2 generator (z, w 128; 2 mapping layers; 64 channels)."""
    return GeneratorConfig.from_nvlabs_kwargs(
        {
            "z_dim": 128,
            "c_dim": 0,
            "w_dim": 128,
            "img_resolution": resolution,
            "img_channels": 3,
            "mapping_kwargs": {"num_layers": 2},
            "synthesis_kwargs": {"channel_base": 4096, "channel_max": 64, "conv_clamp": 256},
        }
    )


def build_world(folder: Path, *, checkpoints: int, samples: int, resolution: int) -> Path:
    """Target images and a registry of random generators in ``folder``; returns the registry."""
    write_noise_images(folder / "target", samples, size=resolution, rng=np.random.default_rng(0))
    lines = []
    for k in range(checkpoints):
        torch.manual_seed(k)
        g = Generator(generator_config(resolution)).eval()
        meta = CheckpointMetadata(name=f"g{k}", generator=g.config)
        save_checkpoint(folder / f"g{k}", Checkpoint(metadata=meta, G_ema=g))
        lines.append(
            f'[checkpoints.g{k}]\nformat = "advisor"\nresolution = {resolution}\n'
            f'source_dataset = "random"\nlicence = "CC0"\ntrust = "local"\n'
            f'path = "g{k}.safetensors"\n'
        )
    (folder / "reg.toml").write_text("\n".join(lines))
    return folder / "reg.toml"


def bare_seconds(
    folder: Path, *, checkpoints: int, samples: int, extractor_name: str, device: str, batch: int
) -> dict[str, float]:
    """Seconds of the bare forward passes: generators, and the extractor on samples + target."""
    from advisor.checkpoints.format import load_checkpoint

    extractor = get_extractor(extractor_name, device=device)
    seeds = list(range(samples))
    generate = extract = 0.0
    for k in range(checkpoints):
        g = load_checkpoint(folder / f"g{k}", networks=()).G_ema
        start = time.perf_counter()
        images = list(sample(g, seeds, batch_size=batch, noise_mode="random", device=device))
        generate += time.perf_counter() - start
        start = time.perf_counter()
        for b in images:
            extractor(b)
        extract += time.perf_counter() - start
    target, _ = load_images(folder / "target", size=extractor.protocol.input_size, workers=0)
    start = time.perf_counter()
    for i in range(0, len(target), batch):
        extractor(torch.from_numpy(target[i : i + batch]))
    target_s = time.perf_counter() - start
    return {
        "generate": generate,
        "extract_samples": extract,
        "extract_target": target_s,
        "total": generate + extract + target_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoints", type=int, default=3)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--extractor", default="efficientnet-lite0")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent / "results" / "rank.json"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        os.environ["ADVISOR_CACHE"] = str(folder / "cache")
        registry_file = build_world(
            folder, checkpoints=args.checkpoints, samples=args.samples, resolution=args.resolution
        )
        registry = load_registry([registry_file])
        call = dict(
            registry=registry,
            n_samples=args.samples,
            extractor=args.extractor,
            device=args.device,
            batch_size=args.batch,
            metrics=MetricOptions(),
            progress=False,
        )
        start = time.perf_counter()
        cold = rank(folder / "target", **call)
        cold_s = time.perf_counter() - start
        start = time.perf_counter()
        warm = rank(folder / "target", **call)
        warm_s = time.perf_counter() - start
        bare = bare_seconds(
            folder,
            checkpoints=args.checkpoints,
            samples=args.samples,
            extractor_name=args.extractor,
            device=args.device,
            batch=args.batch,
        )
    per_checkpoint = {row.checkpoint: row.timings.to_dict() for row in cold.rows}
    metrics_s = sum(row.timings.metrics for row in cold.rows)
    result = {
        "config": vars(args) | {"out": str(args.out)},
        "machine": {
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
        "cold_s": cold_s,
        "warm_s": warm_s,
        "warm_speedup": cold_s / warm_s,
        "bare_s": bare,
        "cold_vs_bare": cold_s / bare["total"],
        "cold_minus_metrics_vs_bare": (cold_s - metrics_s) / bare["total"],
        "metrics_s_cold": metrics_s,
        "metrics_s_warm": sum(row.timings.metrics for row in warm.rows),
        "per_checkpoint_cold": per_checkpoint,
        "warm_all_from_cache": all(row.from_cache for row in warm.rows),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"cold {cold_s:.2f} s, warm {warm_s:.2f} s: warm speedup {cold_s / warm_s:.1f}x")
    print(
        f"bare forward passes {bare['total']:.2f} s (generate {bare['generate']:.2f}, extract "
        f"samples {bare['extract_samples']:.2f}, target {bare['extract_target']:.2f}): "
        f"cold/bare {cold_s / bare['total']:.2f}x, without metrics "
        f"{(cold_s - metrics_s) / bare['total']:.2f}x"
    )
    for name, split in per_checkpoint.items():
        print(f"  {name}: {split}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
