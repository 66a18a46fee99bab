"""Metric speed and agreement: advisor vs pytorch-fid, prdc and torch-fidelity, same features.

Sections, each run side by side in one process on the same synthetic features (float32,
non-negative, correlated and tie-free, like Inception pool features):
- ``fid``: pytorch-fid's statistics (``np.mean``/``np.cov``, as its
  ``calculate_activation_statistics``) and its ``calculate_frechet_distance`` (scipy ``sqrtm``),
  timed apart, against advisor's ``feature_stats`` + ``fid_from_stats`` and ``fid`` end to end.
  The headline ratio is the distance step alone (the ``sqrtm`` the issue is about).
- ``prdc``: ``prdc.compute_prdc`` vs advisor's ``precision_recall_density_coverage`` with the
  same k for all four, values side by side. prdc gets the float32 features as they come (sklearn
  computes in float64 and returns float32 distances); advisor computes in float64.
- ``prdc_large``: advisor alone at N = 50,000 in a child process, peak RSS from ``getrusage``
  (features included).
- ``kid``, ``kid_small``: torch-fidelity's ``kid_features_to_metric`` on the same float32 tensors
  vs advisor's ``kid``, same subsets, at 10,000 rows and at a small target's 2,000. Both take
  float32 products inside the kernel from float32 features; advisor sums in float64.
- ``compare``: advisor's ``compare_features`` with default options (bootstrap intervals on) at
  the large size and at 300 samples.
- ``other``: the other measures, each timed next to one KID (100 subsets of 1000) on the same
  sets: the Inception Score on [N, 1008] logits vs torch-fidelity's ``isc_features_to_metric``
  on the same logits (advisor's timed with its interval, plus its head matmul from 2048-d
  features); the classifier measures (GAN-train, GAN-test analogue, mode coverage, with
  bootstrap intervals; k-means surrogate classes and a label-cache hit timed apart) on a target
  of ``--n-kid-small`` rows and N generated rows; SWD on two sets of synthetic uint8 images
  (``--swd-images`` x ``--swd-size`` px; no peer is installed: ProGAN's TensorFlow code is
  not), against KID on features of as many images, and against KID from the images, that is
  with the FID Inception's extraction of both sets (SWD needs none), estimated from the
  extraction of 32 of them (seeded random weights: the cost of the real ones).
- feature extraction: ``benchmarks/extraction.py`` (the lead's), when present, adds its keys.

Run alone on an idle machine; ``--quick`` is a smoke run with small sizes.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from advisor.metrics import (
    MetricOptions,
    compare_features,
    feature_stats,
    fid,
    fid_from_stats,
    kid,
    precision_recall_density_coverage,
)

ROOT = Path(__file__).resolve().parent.parent


def synthetic_features(n: int, dim: int, *, seed: int, shift: float = 0.0) -> np.ndarray:
    """float32 [n, dim]: a 64-d latent through a fixed mixing, plus noise, then ReLU."""
    mixing = np.random.default_rng(12345).standard_normal((64, dim), dtype=np.float32) / 8
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 64), dtype=np.float32) @ mixing
    x += 0.5 * rng.standard_normal((n, dim), dtype=np.float32) + np.float32(shift)
    return np.maximum(x, 0, out=x)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def machine_info() -> dict[str, object]:
    import scipy
    import sklearn
    import torch

    cpu = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "load_average_at_start": list(os.getloadavg()),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "sklearn": sklearn.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


def fid_section(n: int, dim: int) -> dict[str, object]:
    import warnings

    from pytorch_fid.fid_score import calculate_frechet_distance

    ref, cand = synthetic_features(n, dim, seed=1), synthetic_features(n, dim, seed=2, shift=0.05)

    def peer_stats():
        return [(np.mean(a, axis=0), np.cov(a, rowvar=False)) for a in (ref, cand)]

    peer_stats_s, ((mu1, s1), (mu2, s2)) = timed(peer_stats)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # scipy's sqrtm(disp=...)
        peer_dist_s, peer_value = timed(lambda: calculate_frechet_distance(mu1, s1, mu2, s2))
    ours_stats_s, (a, b) = timed(lambda: (feature_stats(ref), feature_stats(cand)))
    ours_dist_s, ours_value = timed(lambda: fid_from_stats(a, b))
    ours_total_s, ours_total = timed(lambda: fid(ref, cand))
    return {
        "n": n,
        "dim": dim,
        "pytorch_fid": {"stats_s": peer_stats_s, "distance_s": peer_dist_s, "value": peer_value},
        "advisor": {
            "stats_s": ours_stats_s,
            "distance_s": ours_dist_s,
            "fid_end_to_end_s": ours_total_s,
            "value": ours_value,
            "value_end_to_end": ours_total,
        },
        "relative_difference": abs(ours_value - peer_value) / abs(peer_value),
        "speedup_distance": peer_dist_s / ours_dist_s,
        "speedup_stats_and_distance": (peer_stats_s + peer_dist_s) / ours_total_s,
    }


def prdc_section(n: int, dim: int, k: int) -> dict[str, object]:
    from prdc import compute_prdc

    ref, cand = synthetic_features(n, dim, seed=3), synthetic_features(n, dim, seed=4, shift=0.05)
    with contextlib.redirect_stdout(io.StringIO()):  # prdc prints the set sizes
        peer_s, peer = timed(lambda: compute_prdc(ref, cand, nearest_k=k))
    ours_s, ours = timed(lambda: precision_recall_density_coverage(ref, cand, k_pr=k, k_dc=k))
    names = ("precision", "recall", "density", "coverage")
    return {
        "n": n,
        "dim": dim,
        "k": k,
        "prdc_s": peer_s,
        "advisor_s": ours_s,
        "speedup": peer_s / ours_s,
        "prdc": {name: float(peer[name]) for name in names},
        "advisor": dict(zip(names, ours, strict=True)),
        "max_abs_difference": max(
            abs(float(peer[m]) - v) for m, v in zip(names, ours, strict=True)
        ),
    }


def peak_rss_gib() -> float:
    """This process's peak resident memory. Linux's ``VmHWM`` starts afresh at exec, whereas
    ``getrusage``'s maximum carries over the forking parent's."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def prdc_child(n: int, dim: int, k: int) -> None:
    """Runs in a child process (numpy and advisor.metrics only): features, then the metric;
    prints one JSON line."""
    ref, cand = synthetic_features(n, dim, seed=5), synthetic_features(n, dim, seed=6, shift=0.05)
    before = peak_rss_gib()
    seconds, values = timed(lambda: precision_recall_density_coverage(ref, cand, k_pr=k, k_dc=k))
    peak = peak_rss_gib()
    print(
        json.dumps(
            {
                "n": n,
                "dim": dim,
                "k": k,
                "advisor_s": seconds,
                "rss_with_features_gib": before,
                "peak_rss_gib": peak,
                "features_gib": 2 * ref.nbytes / 2**30,
                "values": dict(
                    zip(("precision", "recall", "density", "coverage"), values, strict=True)
                ),
            }
        )
    )


def prdc_large_section(n: int, dim: int, k: int) -> dict[str, object]:
    cmd = [sys.executable, __file__, "--prdc-child", str(n), str(dim), str(k)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def kid_section(n: int, dim: int, subsets: int, size: int) -> dict[str, object]:
    import torch
    from torch_fidelity.metric_kid import kid_features_to_metric

    ref, cand = synthetic_features(n, dim, seed=7), synthetic_features(n, dim, seed=8, shift=0.05)

    def peer():
        out = kid_features_to_metric(
            torch.from_numpy(ref),
            torch.from_numpy(cand),
            kid_subsets=subsets,
            kid_subset_size=size,
            rng_seed=0,
            verbose=False,
        )
        return out["kernel_inception_distance_mean"], out["kernel_inception_distance_std"]

    peer_s, (peer_mean, peer_std) = timed(peer)
    ours_s, (mean, std) = timed(lambda: kid(ref, cand, num_subsets=subsets, subset_size=size))
    return {
        "n": n,
        "dim": dim,
        "subsets": subsets,
        "subset_size": size,
        "torch_fidelity_s": peer_s,
        "advisor_s": ours_s,
        "speedup": peer_s / ours_s,
        "torch_fidelity": {"mean": peer_mean, "std": peer_std, "sums": "float32"},
        "advisor": {"mean": mean, "std": std, "sums": "float64"},
        "relative_difference": abs(mean - peer_mean) / abs(peer_mean),
    }


def other_section(
    n: int, n_target: int, dim: int, swd_images: int, swd_size: int
) -> dict[str, object]:
    import torch
    from torch_fidelity.metric_isc import isc_features_to_metric

    from advisor.features.extract import extract_features
    from advisor.features.inception import InceptionV3Features
    from advisor.features.store import LabelKey, LabelStore
    from advisor.metrics.classifier import (
        KMEANS_METHOD,
        ClassifierOptions,
        classifier_measures,
        kmeans_labels,
    )
    from advisor.metrics.inception_score import inception_score, score_logits
    from advisor.metrics.swd import swd

    out: dict[str, object] = {"n": n, "n_target": n_target, "dim": dim}
    ref, cand = synthetic_features(n, dim, seed=7), synthetic_features(n, dim, seed=8, shift=0.05)
    kid_s, _ = timed(lambda: kid(ref, cand))
    out["kid_same_sets_s"] = kid_s

    head = np.random.default_rng(3).standard_normal((dim, 1008), dtype=np.float32) / 8
    head_s, logits = timed(lambda: cand @ head)
    peer_s, peer = timed(lambda: isc_features_to_metric(torch.from_numpy(logits)))
    ours_s, (mean, std) = timed(lambda: inception_score(logits))
    interval_s, scored = timed(
        lambda: score_logits(logits, head="bench", standard_head=True, confidence=0.95)
    )
    out["is"] = {
        "torch_fidelity_s": peer_s,
        "advisor_s": ours_s,
        "advisor_with_interval_s": interval_s,
        "advisor_head_matmul_s": head_s,
        "speedup": peer_s / ours_s,
        "vs_kid": (interval_s + head_s) / kid_s,
        "advisor": {"mean": mean, "std": std, "low": scored.low, "high": scored.high},
        "torch_fidelity": {
            "mean": peer["inception_score_mean"],
            "std": peer["inception_score_std"],
        },
        "relative_difference": abs(mean - peer["inception_score_mean"]) / mean,
    }

    target = synthetic_features(n_target, dim, seed=9)
    kmeans_s, labels = timed(lambda: kmeans_labels(target, 10, seed=0))
    with tempfile.TemporaryDirectory() as folder:
        store = LabelStore(folder)
        key = LabelKey.of(target, classes=10, seed=0, method=KMEANS_METHOD)
        store.put(key, labels.labels)
        hit_s, hit = timed(
            lambda: store.get(LabelKey.of(target, classes=10, seed=0, method=KMEANS_METHOD))
        )
        assert hit is not None and np.array_equal(hit, labels.labels)
    classifier_s, report = timed(
        lambda: classifier_measures(target, labels, cand, options=ClassifierOptions())
    )
    kid_small_s, _ = timed(lambda: kid(target, cand))
    out["classifier"] = {
        "kmeans_10_s": kmeans_s,
        "kmeans_cache_hit_s": hit_s,
        "advisor_s": classifier_s,
        "kid_same_sets_s": kid_small_s,
        "vs_kid": classifier_s / kid_small_s,
        "bootstrap": report.options.bootstrap,
        "n_train": report.n_train,
        "gan_train": report.gan_train.value,
        "mode_coverage": report.mode_coverage.fraction.value,
    }

    rng = np.random.default_rng(5)
    base = rng.integers(0, 256, (swd_images, 3, swd_size // 4, swd_size // 4), dtype=np.uint8)
    a = base.repeat(4, axis=2).repeat(4, axis=3)  # blocky images: structure at every level
    b = np.clip(a + rng.normal(0, 8, a.shape), 0, 255).astype(np.uint8)
    swd_s, result = timed(lambda: swd(a, b))
    fa = synthetic_features(swd_images, dim, seed=10)
    fb = synthetic_features(swd_images, dim, seed=11)
    kid_swd_s, _ = timed(lambda: kid(fa, fb))
    torch.manual_seed(0)
    network = InceptionV3Features().eval()
    few = torch.from_numpy(a[:32])
    extract_features(network, [few[:2]])  # warm-up
    extract_s, _ = timed(lambda: extract_features(network, [few[:16], few[16:]]))
    extraction_s = extract_s / len(few) * 2 * swd_images
    out["swd"] = {
        "images": swd_images,
        "size": swd_size,
        "levels": [size for size, _ in result.per_level],
        "advisor_s": swd_s,
        "peer": None,
        "kid_same_count_s": kid_swd_s,
        "vs_kid": swd_s / kid_swd_s,
        "inception_extraction_both_sets_s": extraction_s,
        "vs_kid_from_images": swd_s / (extraction_s + kid_swd_s),
        "value": result.mean,
    }
    return out


def compare_section(sizes: list[int], dim: int, options: MetricOptions) -> list[dict[str, object]]:
    rows = []
    for n in sizes:
        ref, cand = (
            synthetic_features(n, dim, seed=9),
            synthetic_features(n, dim, seed=10, shift=0.05),
        )
        seconds, report = timed(lambda r=ref, c=cand: compare_features(r, c, options=options))
        rows.append({"n": n, "dim": dim, "advisor_s": seconds, "report": report.to_dict()})
    return rows


def extraction_section(args: argparse.Namespace) -> dict[str, object]:
    # ---- LEAD HOOK: feature-extraction benchmarks live in benchmarks/extraction.py (the lead's).
    # When that file exists, its extraction_benchmarks(args) runs here and its dict is merged
    # into the JSON at top level.
    path = Path(__file__).with_name("extraction.py")
    if args.skip_extraction or not path.exists():
        return {}
    spec = importlib.util.spec_from_file_location("advisor_benchmark_extraction", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.extraction_benchmarks(args)


def print_table(results: dict[str, Any]) -> None:
    rows = [("section", "advisor s", "peer s", "speedup", "agreement")]
    if "fid" in results:
        r = results["fid"]
        rows.append(
            (
                f"FID distance {r['n']}x{r['dim']}",
                f"{r['advisor']['distance_s']:.3f}",
                f"{r['pytorch_fid']['distance_s']:.3f}",
                f"{r['speedup_distance']:.1f}x",
                f"rel {r['relative_difference']:.1e}",
            )
        )
        rows.append(
            (
                "FID stats + distance",
                f"{r['advisor']['fid_end_to_end_s']:.3f}",
                f"{r['pytorch_fid']['stats_s'] + r['pytorch_fid']['distance_s']:.3f}",
                f"{r['speedup_stats_and_distance']:.1f}x",
                "",
            )
        )
    if "prdc" in results:
        r = results["prdc"]
        rows.append(
            (
                f"PRDC {r['n']}x{r['dim']} k={r['k']}",
                f"{r['advisor_s']:.2f}",
                f"{r['prdc_s']:.2f}",
                f"{r['speedup']:.1f}x",
                f"max abs {r['max_abs_difference']:.1e}",
            )
        )
    if "prdc_large" in results:
        r = results["prdc_large"]
        rows.append(
            (
                f"PRDC {r['n']}x{r['dim']} (alone)",
                f"{r['advisor_s']:.1f}",
                "-",
                "-",
                f"peak RSS {r['peak_rss_gib']:.2f} GiB",
            )
        )
    for r in (results[key] for key in ("kid", "kid_small") if key in results):
        rows.append(
            (
                f"KID {r['n']}x{r['dim']} {r['subsets']}x{r['subset_size']}",
                f"{r['advisor_s']:.2f}",
                f"{r['torch_fidelity_s']:.2f}",
                f"{r['speedup']:.1f}x",
                f"rel {r['relative_difference']:.1e} (peer fp32)",
            )
        )
    for r in results.get("compare", []):
        rows.append(
            (
                f"compare {r['n']}x{r['dim']} (CIs)",
                f"{r['advisor_s']:.2f}",
                "-",
                "-",
                f"bootstrap {r['report']['options']['bootstrap']}",
            )
        )
    if "other" in results:
        r = results["other"]
        i, c, s = r["is"], r["classifier"], r["swd"]
        rows.append((f"IS {r['n']}x1008 logits", f"{i['advisor_s']:.3f}",
                     f"{i['torch_fidelity_s']:.3f}", f"{i['speedup']:.1f}x",
                     f"rel {i['relative_difference']:.1e}; +head {i['advisor_head_matmul_s']:.2f}s;"
                     f" {i['vs_kid']:.2f}x one KID"))  # fmt: skip
        tail = (f"{c['vs_kid']:.2f}x one KID; k-means {c['kmeans_10_s']:.2f}s, cached "
                f"{c['kmeans_cache_hit_s']:.3f}s")  # fmt: skip
        rows.append((f"classifier {r['n_target']}+{r['n']}x{r['dim']}", f"{c['advisor_s']:.2f}",
                     "-", "-", tail))  # fmt: skip
        rows.append((f"SWD {s['images']} imgs {s['size']}px", f"{s['advisor_s']:.2f}", "-", "-",
                     f"{s['vs_kid']:.1f}x one KID on {s['images']} rows; "
                     f"{s['vs_kid_from_images']:.2f}x with extraction"))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run with small sizes")
    parser.add_argument("--dim", type=int, default=None, help="feature dimension (2048)")
    parser.add_argument("--n-fid", type=int, default=None, help="rows per set for FID (10000)")
    parser.add_argument("--n-prdc", type=int, default=None, help="rows per set for PRDC (10000)")
    parser.add_argument("--n-prdc-large", type=int, default=None, help="advisor alone (50000)")
    parser.add_argument("--n-kid", type=int, default=None, help="rows per set for KID (10000)")
    parser.add_argument("--n-kid-small", type=int, default=None, help="a small target (2000)")
    parser.add_argument("--kid-subsets", type=int, default=None, help="(100)")
    parser.add_argument("--kid-subset-size", type=int, default=None, help="(1000)")
    parser.add_argument("--k", type=int, default=5, help="k for all of PRDC")
    parser.add_argument("--swd-images", type=int, default=None, help="images per SWD set (1000)")
    parser.add_argument("--swd-size", type=int, default=None, help="SWD image side (64)")
    parser.add_argument("--skip", nargs="*", default=[], help="sections to skip")
    parser.add_argument("--skip-extraction", action="store_true")
    parser.add_argument("--extraction-images", type=int, default=None)
    parser.add_argument(
        "--out", default=None, help="JSON path (benchmarks/results/metrics[-quick].json)"
    )
    parser.add_argument("--prdc-child", nargs=3, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.prdc_child:
        prdc_child(*args.prdc_child)
        return 0

    quick = args.quick
    dim = args.dim or (512 if quick else 2048)
    n_fid = args.n_fid or (1000 if quick else 10_000)
    n_prdc = args.n_prdc or (2000 if quick else 10_000)
    n_large = args.n_prdc_large or (5000 if quick else 50_000)
    n_kid = args.n_kid or (2000 if quick else 10_000)
    n_kid_small = args.n_kid_small or (500 if quick else 2000)
    subsets = args.kid_subsets or (20 if quick else 100)
    size = args.kid_subset_size or (500 if quick else 1000)
    compare_sizes = [n_fid, 300]

    results: dict[str, Any] = {"machine": machine_info(), "quick": quick}
    sections = {
        "fid": lambda: fid_section(n_fid, dim),
        "prdc": lambda: prdc_section(n_prdc, dim, args.k),
        "prdc_large": lambda: prdc_large_section(n_large, dim, args.k),
        "kid": lambda: kid_section(n_kid, dim, subsets, size),
        "kid_small": lambda: kid_section(n_kid_small, dim, subsets, min(size, n_kid_small)),
        "compare": lambda: compare_section(compare_sizes, dim, MetricOptions()),
        "other": lambda: other_section(
            n_kid, n_kid_small, dim, args.swd_images or (200 if quick else 1000),
            args.swd_size or (32 if quick else 64),
        ),
    }  # fmt: skip
    for name, run in sections.items():
        if name in args.skip:
            continue
        print(f"running {name} ...", flush=True)
        results[name] = run()
    print_table(results)
    results.update(extraction_section(args))
    name = "metrics-quick.json" if quick else "metrics.json"
    out = Path(args.out or ROOT / "benchmarks" / "results" / name)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
