"""Feature-extraction throughput: advisor's whole pipeline vs the network alone vs pytorch-fid.

Measured side by side in one run on the same images (the bundled examples by default):
- ``network``: the extractor's forward pass alone on images already decoded and resized
  (the limit of this machine);
- ``pipeline``: advisor's whole path (read, decode in worker processes, resize, network);
- ``pytorch-fid``: pytorch-fid's own pipeline (its dataset, DataLoader and InceptionV3) with the
  same weights, fp32 only.
The canonical FID Inception weights cannot be downloaded here, so the Inception rows use seeded
random weights in the same architecture: identical cost, meaningless values. The bf16 FID shift is
therefore reported for efficientnet-lite0 (real ImageNet weights) and, for cost only, Inception.

Called from ``benchmarks/metrics.py`` (``extraction_benchmarks(args)``) or run alone.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from advisor.features import get_extractor
from advisor.features.pipeline import FeatureOptions, compute_features
from advisor.images import load_images, open_image_set
from advisor.metrics import SmallSampleWarning, fid

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SETS = (ROOT / "examples" / "cjk_glyphs", ROOT / "examples" / "emoji_nature_food")


def _random_inception_weights(path: Path) -> Path:
    """Save a seeded random state dict in the FID Inception layout (same cost as the real one).

    pytorch-fid's builder insists on loading the published weights; both the download and the
    load are stubbed out for the moment of construction, keeping the random initialisation.
    """
    from unittest import mock

    import pytorch_fid.inception as pfi

    torch.manual_seed(0)
    with (
        mock.patch.object(pfi, "load_state_dict_from_url", lambda *a, **k: None),
        mock.patch.object(torch.nn.Module, "load_state_dict", lambda *a, **k: None),
    ):
        model = pfi.fid_inception_v3()
    torch.save(model.state_dict(), path)
    return path


def _rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("nan")


def _time_network(extractor, images: torch.Tensor, batch_size: int) -> float:  # noqa: ANN001
    """Images/s of the forward pass alone on pre-resized uint8 images."""
    extractor(images[:batch_size])  # warm-up
    start = time.perf_counter()
    for i in range(0, len(images), batch_size):
        extractor(images[i : i + batch_size])
    return _rate(len(images), time.perf_counter() - start)


def _time_pipeline(folder: Path, options: FeatureOptions) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    fs = compute_features(folder, options=options)
    return _rate(len(fs), time.perf_counter() - start), fs.features


def _time_pytorch_fid(files: list[str], weights: Path, batch_size: int, workers: int) -> float:
    import pytorch_fid.inception as pfi
    from pytorch_fid.fid_score import get_activations

    state = torch.load(weights, weights_only=True)
    real_loader = pfi.load_state_dict_from_url
    pfi.load_state_dict_from_url = lambda *a, **k: state
    try:
        model = pfi.InceptionV3([3]).eval()
    finally:
        pfi.load_state_dict_from_url = real_loader
    get_activations(files[:batch_size], model, batch_size, 2048, "cpu", 0)  # warm-up
    start = time.perf_counter()
    get_activations(files, model, batch_size, 2048, "cpu", workers)
    return _rate(len(files), time.perf_counter() - start)


def extraction_benchmarks(args: argparse.Namespace) -> dict[str, object]:
    """Run the extraction benchmark; returns a JSON-ready dict and prints a table."""
    sets = [Path(s) for s in (getattr(args, "image_sets", None) or DEFAULT_SETS)]
    limit = getattr(args, "extraction_images", None) or (64 if args.quick else 1000)
    batch_size = 32
    workers = 1  # two cores: one decodes, the network's threads take the rest
    results: dict[str, object] = {"images_per_set_limit": limit, "batch_size": batch_size}
    work = Path(tempfile.mkdtemp(prefix="advisor-bench-"))
    # the random Inception weights are deliberate; their "not comparable" warning is noise here
    warnings.filterwarnings("ignore", message=".*not the published FID Inception file")
    warnings.filterwarnings("ignore", category=SmallSampleWarning)
    os.environ["ADVISOR_CACHE"] = str(work / "cache")  # a cold cache: every run decodes
    weights = _random_inception_weights(work / "inception-random.pth")

    # one folder of `limit` images (symlink-free copy of the first set's first files)
    folder = work / "images"
    folder.mkdir()
    names = open_image_set(sets[0]).names[:limit]
    for name in names:
        (folder / Path(name).name).write_bytes((sets[0] / name).read_bytes())
    files = sorted(str(p) for p in folder.iterdir())

    rows = []
    for name, extractor_weights in (("inception", str(weights)), ("efficientnet-lite0", None)):
        for precision in ("fp32", "bf16"):
            extractor = get_extractor(
                name, weights=extractor_weights, precision=precision, device="cpu", progress=False
            )
            images, _ = load_images(folder, size=extractor.protocol.input_size, workers=0)
            net = _time_network(extractor, torch.from_numpy(images), batch_size)
            options = FeatureOptions(
                extractor=name,
                weights=extractor_weights,
                precision=precision,
                device="cpu",
                batch_size=batch_size,
                workers=workers,
                cache=False,
                progress=False,
            )
            pipe, _ = _time_pipeline(folder, options)
            row = {
                "extractor": name,
                "precision": precision,
                "network_img_s": net,
                "pipeline_img_s": pipe,
                "pipeline_over_network": pipe / net,
            }
            if name == "inception" and precision == "fp32":
                peer = _time_pytorch_fid(files, weights, batch_size, workers)
                row["pytorch_fid_img_s"] = peer
                row["pipeline_over_pytorch_fid"] = pipe / peer
            rows.append(row)
            print(
                f"{name:<19} {precision}  network {net:7.1f} img/s  pipeline {pipe:7.1f} img/s"
                f"  ratio {pipe / net:5.2f}"
                + (
                    f"  pytorch-fid {row['pytorch_fid_img_s']:6.1f} img/s  advisor/pytorch-fid "
                    f"{row['pipeline_over_pytorch_fid']:4.2f}x"
                    if "pytorch_fid_img_s" in row
                    else ""
                ),
                flush=True,
            )
    results["throughput"] = rows

    shifts = []
    for name, extractor_weights in (("efficientnet-lite0", None), ("inception", str(weights))):
        if args.quick and name == "inception":
            continue
        feats = {}
        for precision in ("fp32", "bf16"):
            options = FeatureOptions(
                extractor=name,
                weights=extractor_weights,
                precision=precision,
                device="cpu",
                workers=workers,
                cache=False,
                progress=False,
            )
            feats[precision] = [compute_features(s, options=options).features for s in sets[:2]]
        f32 = fid(*feats["fp32"])
        b16 = fid(*feats["bf16"])
        shift = {
            "extractor": name,
            "fid_fp32": f32,
            "fid_bf16": b16,
            "relative_change": abs(b16 - f32) / f32,
            "weights": "real ImageNet" if extractor_weights is None else "random (cost only)",
        }
        shifts.append(shift)
        print(
            f"bf16 FID shift, {name} ({shift['weights']}): fp32 {f32:.3f} bf16 {b16:.3f} "
            f"({100 * shift['relative_change']:.2f}%) on {sets[0].name} vs {sets[1].name}"
        )
    results["bf16_fid_shift"] = shifts
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    parser.add_argument("--extraction-images", type=int, default=None)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "extraction.json"))
    args = parser.parse_args(argv)
    results = extraction_benchmarks(args)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
