"""Fine-tuning options: one frozen dataclass, validated on construction, resolved per resolution.

Defaults follow NVlabs StyleGAN2-ADA's ``--cfg auto`` for one device (batch, lr, R1 gamma, EMA)
and its transfer recipe (ADA target 0.6, ``ada_kimg`` 100 from a pretrained D, no EMA ramp-up
from a pretrained G). ``None`` means "the auto value for this checkpoint"; :func:`resolve`
fills every ``None`` once the checkpoint's resolution is known, and the resolved options are
what ``config.json`` records.

CPU defaults, for the small 32-64 px targets advisor's demos use: ``kimg`` 50, ticks of 1 kimg,
metrics every 5 kimg on 1,000 G_ema samples, snapshots every 10 kimg. A 2-core CPU trains a
32 px, channel_max 64 network at roughly 60-90 images/s, so 50 kimg is 10-15 minutes; pass
``--kimg``, ``--metric-every`` and ``--snapshot-every`` for longer or GPU runs (NVlabs: "1000
kimg is often enough for transfer learning"; ticks 4 kimg).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

from advisor.errors import AdvisorError
from advisor.metrics.directions import METRIC_MODES

Init = Literal["pretrained", "random"]
Augment = Literal["ada", "fixed", "none"]
Precision = Literal["fp32", "bf16"]
TRACKED_METRICS = METRIC_MODES  # which way is better per metric: one table with convergence

MAX_KIMG = 1_000_000.0
"""Longest run accepted: 40x NVlabs' 25,000 kimg from-scratch FFHQ schedule."""
MAX_BATCH = 4096
MAX_METRIC_SAMPLES = 100_000
MAX_SEED = 2**31 - 1


@dataclass(frozen=True, kw_only=True)
class FinetuneOptions:
    """Everything that decides a fine-tune; ``None`` fields are resolved by :func:`resolve`.

    G/D initialisation: ``g_init``/``d_init`` ``"pretrained"`` loads the checkpoint's tensors,
    ``"random"`` re-initialises with the checkpoint's architecture from ``seed`` (G_ema follows
    G). Training: ``batch`` (images per step over all devices), ``lr`` (both G and D, before
    the lazy-regularisation correction), ``r1_gamma``, ``r1_interval`` (16), ``pl_weight``
    (path-length regularisation, 0 = off; NVlabs uses 2), ``pl_interval`` (4),
    ``style_mixing`` (probability, 0.9), ``ema_kimg``, ``ema_rampup`` (None = off),
    ``mirror`` (x-flipped copies double the target), ``freeze_d`` (FreezeD: first N D layers,
    counted from the input), ``aug`` (``ada`` adjusts p toward ``ada_target``; ``fixed`` keeps
    ``aug_p``; ``none``), ``precision`` (``bf16`` autocast for the networks' convolutions).
    Schedule: ``kimg`` total, ``tick_kimg`` (a stats line), ``metric_every`` and
    ``snapshot_every`` in kimg, ``keep_snapshots`` (the last K, plus the best).
    Tracking: ``metric`` (the curve that decides best, plateau and stops; one of the default
    set, or an other measure: ``is``, ``swd``, ``gan_train``, ``gan_test_confidence``,
    ``mode_coverage``, computed only when tracked; ``classes``: k-means surrogate classes for
    the classifier measures on an unlabelled target), ``metric_samples``
    G_ema samples from fixed seeds against the target's cached features with ``extractor``,
    ``plateau_delta`` (relative), ``plateau_window`` (evaluations), ``stop_at_plateau``,
    ``stop_if_worse`` (evaluations without a new best).
    """

    g_init: Init = "pretrained"
    d_init: Init = "pretrained"
    kimg: float = 50.0
    batch: int | None = None
    lr: float | None = None
    r1_gamma: float | None = None
    r1_interval: int = 16
    pl_weight: float | None = None
    pl_interval: int = 4
    pl_batch_shrink: int = 2
    pl_decay: float = 0.01
    style_mixing: float = 0.9
    ema_kimg: float | None = None
    ema_rampup: float | None = None
    mirror: bool = False
    freeze_d: int = 0
    aug: Augment = "ada"
    aug_p: float = 0.0
    ada_target: float = 0.6
    ada_interval: int = 4
    ada_kimg: float | None = None
    precision: Precision = "fp32"
    seed: int = 0
    tick_kimg: float = 1.0
    metric_every: float | None = 5.0
    metric_samples: int = 1000
    metric: str = "fid"
    classes: int | None = None
    extractor: str = "efficientnet-lite0"
    plateau_delta: float = 0.02
    plateau_window: int = 3
    stop_at_plateau: bool = False
    stop_if_worse: int | None = None
    snapshot_every: float = 10.0
    keep_snapshots: int = 3
    grid_seeds: int = 32

    def __post_init__(self) -> None:
        _choice("g_init", self.g_init, ("pretrained", "random"))
        _choice("d_init", self.d_init, ("pretrained", "random"))
        _choice("aug", self.aug, ("ada", "fixed", "none"))
        _choice("precision", self.precision, ("fp32", "bf16"))
        _choice("metric", self.metric, tuple(TRACKED_METRICS))
        if self.classes is not None:
            _integer("classes", self.classes, 2, 10_000)
        _real("kimg", self.kimg, 0.0, MAX_KIMG, low_open=True)
        if self.batch is not None:
            _integer("batch", self.batch, 1, MAX_BATCH)
        for name in ("lr", "r1_gamma", "ema_kimg", "ada_kimg"):
            value = getattr(self, name)
            if value is not None:
                _real(name, value, 0.0, 1e9, low_open=name in ("lr", "ada_kimg"))
        if self.ema_rampup is not None:
            _real("ema_rampup", self.ema_rampup, 0.0, 1e3, low_open=True)
        for name in ("r1_interval", "pl_interval", "ada_interval", "pl_batch_shrink"):
            _integer(name, getattr(self, name), 1, 1_000_000)
        if self.pl_weight is not None:
            _real("pl_weight", self.pl_weight, 0.0, 1e9)
        _real("pl_decay", self.pl_decay, 0.0, 1.0)
        _real("style_mixing", self.style_mixing, 0.0, 1.0)
        _integer("freeze_d", self.freeze_d, 0, 10_000)
        _real("aug_p", self.aug_p, 0.0, 1.0)
        _real("ada_target", self.ada_target, 0.0, 1.0)
        _integer("seed", self.seed, 0, MAX_SEED)
        _real("tick_kimg", self.tick_kimg, 0.0, MAX_KIMG, low_open=True)
        if self.metric_every is not None:
            _real("metric_every", self.metric_every, 0.0, MAX_KIMG, low_open=True)
        _integer("metric_samples", self.metric_samples, 2, MAX_METRIC_SAMPLES)
        _real("plateau_delta", self.plateau_delta, 0.0, 1.0)
        _integer("plateau_window", self.plateau_window, 1, 10_000)
        if self.stop_if_worse is not None:
            _integer("stop_if_worse", self.stop_if_worse, 1, 10_000)
        if (self.stop_at_plateau or self.stop_if_worse) and self.metric_every is None:
            raise AdvisorError("stop rules need metrics: give --metric-every")
        _real("snapshot_every", self.snapshot_every, 0.0, MAX_KIMG, low_open=True)
        _integer("keep_snapshots", self.keep_snapshots, 1, 10_000)
        _integer("grid_seeds", self.grid_seeds, 1, 1024)
        if not isinstance(self.mirror, bool) or not isinstance(self.stop_at_plateau, bool):
            raise AdvisorError("mirror and stop_at_plateau must be true or false")
        if not isinstance(self.extractor, str) or not self.extractor:
            raise AdvisorError("extractor must be a name")

    @property
    def metric_mode(self) -> str:
        """``"min"`` when lower is better for the tracked metric (FID, KID), else ``"max"``."""
        return TRACKED_METRICS[self.metric]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FinetuneOptions:
        """Inverse of :meth:`to_dict`; unknown keys are an error (a run from a newer advisor)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise AdvisorError(f"unknown fine-tune options {unknown} (written by a newer advisor?)")
        return cls(**data)


def auto_batch(resolution: int, world_size: int = 1) -> int:
    """NVlabs ``--cfg auto``: ``max(min(gpus * min(4096 // res, 32), 64), gpus)``, rounded
    down to a multiple of ``world_size``. NVlabs accepts only power-of-two GPU counts, which
    always divide it; advisor also runs on 3, 5, 6... devices, where the cap of 64 would not
    split evenly (3 devices at 32 px: 63, not 64)."""
    batch = max(min(world_size * min(4096 // resolution, 32), 64), world_size)
    return batch - batch % world_size


def resolve(options: FinetuneOptions, *, resolution: int, world_size: int = 1) -> FinetuneOptions:
    """Fill every ``None`` with NVlabs' ``auto`` value for ``resolution`` (one device).

    batch: :func:`auto_batch`; lr 0.0025 (0.002 at 1024 px); R1 gamma ``0.0002 * res^2 / batch``;
    ``ema_kimg = batch * 10 / 32``; path-length weight 2, but 0 up to 64 px (NVlabs' ``cifar``
    config turns it off at 32 px; at 64 px advisor follows it to save a third of the CPU time
    of a step, measured by ``benchmarks/finetune.py``); EMA ramp-up 0.05 only for a random G
    (NVlabs resumes without one); ``ada_kimg`` 100 from a pretrained D (NVlabs' resume
    value), else 500. The batch must split evenly over ``world_size`` processes.
    """
    batch = options.batch if options.batch is not None else auto_batch(resolution, world_size)
    if batch % world_size:
        raise AdvisorError(f"batch {batch} does not split over {world_size} processes")
    return dataclasses.replace(
        options,
        batch=batch,
        lr=options.lr if options.lr is not None else (0.002 if resolution >= 1024 else 0.0025),
        r1_gamma=(
            options.r1_gamma if options.r1_gamma is not None else 0.0002 * resolution**2 / batch
        ),
        ema_kimg=options.ema_kimg if options.ema_kimg is not None else batch * 10 / 32,
        pl_weight=(
            options.pl_weight
            if options.pl_weight is not None
            else (0.0 if resolution <= 64 else 2.0)
        ),
        ema_rampup=(
            options.ema_rampup
            if options.ema_rampup is not None or options.g_init == "pretrained"
            else 0.05
        ),
        ada_kimg=(
            options.ada_kimg
            if options.ada_kimg is not None
            else (100.0 if options.d_init == "pretrained" else 500.0)
        ),
    )


def _choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise AdvisorError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")


def _integer(name: str, value: object, lo: int, hi: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise AdvisorError(f"{name} must be an integer from {lo} to {hi}, got {value!r}")


def _real(name: str, value: object, lo: float, hi: float, *, low_open: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and math.isfinite(value) and (value > lo if low_open else value >= lo) and value <= hi
    if not ok:
        bound = ">" if low_open else ">="
        raise AdvisorError(
            f"{name} must be a finite number {bound} {lo} and <= {hi}, got {value!r}"
        )
