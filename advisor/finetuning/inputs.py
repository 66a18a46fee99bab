"""What a fine-tune starts from: G, D and G_ema per ``--g-init``/``--d-init``, the target
images in a resumable order, and the G_ema evaluator (metrics against the target's features).
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from advisor.checkpoints.format import (
    Checkpoint,
)
from advisor.errors import AdvisorError
from advisor.features.base import FeatureProtocol
from advisor.finetuning.distributed import Distributed, gather_interleaved
from advisor.finetuning.options import FinetuneOptions
from advisor.finetuning.training import d_layers
from advisor.metrics import MetricOptions
from advisor.metrics.classifier import ClassifierOptions, Labels
from advisor.metrics.other import MEASURE_GROUP_OF
from advisor.networks import Discriminator, Generator

METRIC_SEED_BASE = 0
"""Metric samples use seeds METRIC_SEED_BASE .. + metric_samples - 1 (random noise, psi 1)."""


# --------------------------------------------------------------------------- networks
def _seeded_init(seed: int, build: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    # Random initialisation from the run's seed without touching the caller's global RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def check_trainable(ckpt: Checkpoint, options: FinetuneOptions) -> None:
    """One-line error before any work when this checkpoint cannot be fine-tuned here."""
    meta = ckpt.metadata
    config = meta.generator
    if config.c_dim:
        raise AdvisorError(
            f"{meta.name}: conditional generators (c_dim {config.c_dim}) are "
            "not supported by advisor finetune"
        )
    if config.img_channels != 3:
        raise AdvisorError(
            f"{meta.name}: only RGB generators can be fine-tuned "
            f"(this one has {config.img_channels} channels)"
        )
    if meta.discriminator is None:
        raise AdvisorError(
            f"{meta.name}: the checkpoint has no discriminator config, so D "
            "cannot be built; fine-tuning needs one"
        )
    if options.d_init == "pretrained" and ckpt.D is None:
        raise AdvisorError(f"{meta.name}: the checkpoint has no D tensors; use --d-init random")
    n_layers = len(d_layers(Discriminator(meta.discriminator).to("meta")))
    if options.freeze_d > n_layers:
        raise AdvisorError(f"--freeze-d {options.freeze_d}: this D has only {n_layers} layers")


def build_networks(
    ckpt: Checkpoint, options: FinetuneOptions
) -> tuple[Generator, Discriminator, Generator, dict[str, Any]]:
    """G, D, G_ema for ``options.g_init``/``d_init`` and a report of what was loaded."""
    meta = ckpt.metadata
    report: dict[str, Any] = {}
    if options.g_init == "pretrained":
        source = ckpt.G if ckpt.G is not None else ckpt.G_ema
        G = copy.deepcopy(source)
        G_ema = copy.deepcopy(ckpt.G_ema)
        n = len(G.state_dict())
        report["G"] = {
            "init": "pretrained",
            "from": "G" if ckpt.G is not None else "G_ema",
            "tensors_loaded": n,
            "missing": [],
            "reinitialised": 0,
        }
        report["G_ema"] = {"init": "pretrained", "tensors_loaded": len(G_ema.state_dict())}
    else:
        G = _seeded_init(options.seed, lambda: Generator(meta.generator))
        G_ema = copy.deepcopy(G)
        n = len(G.state_dict())
        report["G"] = {
            "init": "random",
            "seed": options.seed,
            "tensors_loaded": 0,
            "missing": [],
            "reinitialised": n,
        }
        report["G_ema"] = {"init": "copy of G", "tensors_loaded": 0}
    assert meta.discriminator is not None
    if options.d_init == "pretrained" and ckpt.D is not None:
        D = copy.deepcopy(ckpt.D)
        report["D"] = {
            "init": "pretrained",
            "tensors_loaded": len(D.state_dict()),
            "missing": [],
            "reinitialised": 0,
        }
    else:
        D = _seeded_init(options.seed + 1, lambda: Discriminator(meta.discriminator))
        report["D"] = {
            "init": "random",
            "seed": options.seed + 1,
            "tensors_loaded": 0,
            "missing": [],
            "reinitialised": len(D.state_dict()),
        }
    return G, D, G_ema, report


# --------------------------------------------------------------------------- data
class TargetData:
    """The target as one uint8 tensor [N, 3, R, R] and a deterministic, resumable order.

    Image ``i`` of the stream (``i`` = images consumed so far over all processes) is
    ``perm_e[i % M]`` of epoch ``e = i // M``, where ``M`` is N (2N with ``mirror``: index
    ``j >= N`` is image ``j - N`` x-flipped) and ``perm_e`` a permutation seeded by
    ``(seed, e)``. Process ``r`` of ``W`` takes the ``r``-th slice of each global batch.
    """

    def __init__(self, images: torch.Tensor, *, mirror: bool, seed: int) -> None:
        self.images, self.mirror, self.seed = images, mirror, seed
        self.size = len(images) * (2 if mirror else 1)
        self._perm_epoch = -1
        self._perm = np.arange(self.size)

    def _perm_for(self, epoch: int) -> np.ndarray:
        if epoch != self._perm_epoch:
            rng = np.random.default_rng([self.seed, epoch])
            self._perm, self._perm_epoch = rng.permutation(self.size), epoch
        return self._perm

    def batch(self, start: int, count: int) -> torch.Tensor:
        """Float32 [count, 3, R, R] in [-1, 1]: stream items ``start .. start + count - 1``."""
        rows = []
        for i in range(start, start + count):
            j = int(self._perm_for(i // self.size)[i % self.size])
            image = self.images[j % len(self.images)]
            rows.append(image.flip(-1) if j >= len(self.images) else image)
        return torch.stack(rows).float() / 127.5 - 1


def load_target(target: str | os.PathLike[str], resolution: int) -> tuple[torch.Tensor, dict]:
    """Target images as uint8 [N, 3, R, R] resized to the checkpoint's resolution, and a note."""
    from advisor.images import load_images

    images, report = load_images(target, size=resolution)
    if len(images) < 2:
        raise AdvisorError(f"{target}: fine-tuning needs at least 2 usable images")
    note = {
        "images": int(len(images)),
        "skipped": len(report.skipped),
        "resized_to": resolution,
        "resize": "PIL bicubic (antialiased) to the checkpoint's resolution",
    }
    return torch.from_numpy(np.ascontiguousarray(images)), note


# --------------------------------------------------------------------------- metrics
@dataclass(frozen=True, kw_only=True)
class EvalProtocol:
    """What the numbers of one metrics line were measured under (its ``"protocol"``): the
    extractor's protocol, ``samples`` G_ema images (seeds from :data:`METRIC_SEED_BASE`,
    ``noise_mode``, ``truncation_psi``) against ``target_images`` target images, and the metric
    options (k for precision/recall and density/coverage)."""

    extractor: FeatureProtocol
    samples: int
    noise_mode: str
    truncation_psi: float
    target_images: int
    metrics: MetricOptions
    seed_base: int = METRIC_SEED_BASE

    def to_dict(self) -> dict[str, Any]:
        """The ``protocol`` object of a ``metrics.jsonl`` line (``seed_base`` only when it is
        not the default, so every run's lines read as they always have)."""
        out = {
            "extractor": self.extractor.to_dict(),
            "samples": self.samples,
            "noise_mode": self.noise_mode,
            "truncation_psi": self.truncation_psi,
            "target_images": self.target_images,
            "k_pr": self.metrics.k_pr,
            "k_dc": self.metrics.k_dc,
        }
        if self.seed_base != METRIC_SEED_BASE:
            out["seed_base"] = self.seed_base
        return out


class Evaluator:
    """Metrics of G_ema samples (fixed seeds) against the target's cached features.

    Samples use seeds ``seed_base .. seed_base + metric_samples - 1``; a run always uses
    :data:`METRIC_SEED_BASE`, and another base re-measures a generator on fresh samples (the
    evidence benchmark's check of how repeatable a final FID is).
    """

    def __init__(
        self,
        target: str | os.PathLike[str],
        options: FinetuneOptions,
        device: torch.device,
        dist: Distributed,
        *,
        seed_base: int = METRIC_SEED_BASE,
    ) -> None:
        from advisor.features.extract import SharedExtractor
        from advisor.features.pipeline import FeatureOptions, compute_features

        feature_options = FeatureOptions(
            extractor=options.extractor, device=str(device), progress=False
        )
        # One extractor for the target's features and the samples'.
        shared = SharedExtractor(options.extractor, progress=False)
        self.target = compute_features(target, options=feature_options, extractor=shared)
        self.extractor = shared.on(device)
        self.options, self.device, self.dist = options, device, dist
        self.target_path = target
        self._target_images: np.ndarray | None = None
        self._labels: Labels | None = None
        self.seeds = list(range(seed_base, seed_base + options.metric_samples))
        self.protocol = EvalProtocol(
            extractor=self.extractor.protocol,
            samples=len(self.seeds),
            noise_mode="random",
            truncation_psi=1.0,
            target_images=len(self.target),
            metrics=MetricOptions(bootstrap=0, kid_subset_size=1000),
            seed_base=seed_base,
        )

    def __call__(self, G_ema: Generator) -> dict[str, float]:  # noqa: N803
        from advisor.metrics import compare_features
        from advisor.sampling import sample

        w = self.dist.world_size
        mine = self.seeds[self.dist.rank :: w]
        batches = sample(
            G_ema,
            mine,
            batch_size=32,
            truncation_psi=self.protocol.truncation_psi,
            noise_mode=self.protocol.noise_mode,
            device=self.device,
        )
        kept: list[torch.Tensor] = []  # the images themselves, for SWD only
        rows = []
        for b in batches:
            rows.append(self.extractor(b))
            if self.options.metric == "swd":
                kept.append(b)
        feats = gather_interleaved(torch.cat(rows).cpu(), len(self.seeds), self.dist)
        if self.dist.rank != 0:
            return {}
        report = compare_features(
            self.target.features,
            feats.numpy(),
            options=self.protocol.metrics,
        )
        values = {
            name: float(getattr(report, name).value)
            for name in ("fid", "kid", "precision", "recall", "density", "coverage")
        }
        if self.options.metric in MEASURE_GROUP_OF:
            values[self.options.metric] = self._other(feats, kept)
        return values

    def _other(self, feats: torch.Tensor, kept: list[torch.Tensor]) -> float:
        """The tracked other measure of these samples (only on rank 0; ``kept``: the uint8
        sample batches, for SWD, which needs the images themselves)."""
        from advisor.metrics.classifier import classifier_measures
        from advisor.metrics.inception_score import score_logits
        from advisor.metrics.swd import swd
        from advisor.other_measures import images_at, target_labels

        name = self.options.metric
        if name == "is":
            logits = self.extractor.head_logits(feats).cpu().numpy()
            head = f"{self.extractor.protocol.extractor} head"
            standard = self.extractor.head_is_standard and self.extractor.protocol.comparable
            return score_logits(logits, head=head, standard_head=standard).mean
        if name == "swd":
            if kept and self._target_images is None:
                self._target_images = images_at(self.target_path, int(kept[0].shape[-1]))
            images = torch.cat(kept).numpy() if kept else None
            if images is None or self._target_images is None:
                return math.nan  # a process without samples
            return swd(self._target_images, images).mean
        if self._labels is None:
            self._labels = target_labels(self.target, classes=self.options.classes, seed=0)
        report = classifier_measures(self.target.features, self._labels, feats.numpy(),
                                     options=ClassifierOptions(bootstrap=0))  # fmt: skip
        if name == "mode_coverage":
            return report.mode_coverage.fraction.value
        return float(getattr(report, name).value)
