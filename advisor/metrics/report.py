"""All metrics for one reference/candidate pair, with seeded bootstrap confidence intervals.

Bootstrap: ``bootstrap`` joint resamples of both sets' rows (with replacement, drawn from
``np.random.default_rng(seed)``), shared by every metric.
- precision, recall, density, coverage: the k-NN manifolds stay fixed (computed once); the
  per-row indicators are resampled. Percentile interval.
- FID: recomputed on resampled rows (repeated rows weighted, never copied). Each replicate of the
  D x D route costs an eigendecomposition, so large sets run fewer replicates (a note says so).
- KID: when one pass over the full kernel matrices is the cheaper route, replicates are the
  full-data unbiased MMD^2 of each resample; otherwise the subset values are resampled (the note
  says so: overlapping subsets make that interval too narrow).
FID and KID replicates are biased by repeated rows, so their spread, not their location, is
used: the interval is ``value +- z * sd(replicates)`` (FID's lower end clipped at 0).
"""

from __future__ import annotations

import dataclasses
import statistics
import warnings
from dataclasses import dataclass

import numpy as np

from advisor.metrics import frechet, mmd
from advisor.metrics.inputs import as_pair, check_k
from advisor.metrics.manifold import manifold_indicators

_METRICS = ("fid", "kid", "precision", "recall", "density", "coverage")


@dataclass(frozen=True, kw_only=True)
class MetricOptions:
    """How the metrics are computed; every field travels with the numbers (``to_dict``)."""

    k_pr: int = 3
    k_dc: int = 5
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    seed: int = 0
    bootstrap: int = 200
    confidence: float = 0.95

    def __post_init__(self) -> None:
        for name in ("k_pr", "k_dc", "kid_subsets"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.kid_subset_size < 2:
            raise ValueError(f"kid_subset_size must be at least 2, got {self.kid_subset_size}")
        if self.bootstrap < 0:
            raise ValueError(f"bootstrap must be 0 (no intervals) or more, got {self.bootstrap}")
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"confidence must lie strictly between 0 and 1, got {self.confidence}")

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Estimate:
    """A metric value with its confidence interval (``low``/``high`` None without bootstrap)."""

    value: float
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True)
class MetricReport:
    """Every metric for one pair; ``notes`` are caveats about this particular run."""

    fid: Estimate
    kid: Estimate
    kid_std: float
    precision: Estimate
    recall: Estimate
    density: Estimate
    coverage: Estimate
    n_reference: int
    n_candidate: int
    options: MetricOptions
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        """JSON-ready: metric values at top level, ``ci`` {metric: [low, high]} or None."""
        out: dict[str, object] = {name: getattr(self, name).value for name in _METRICS}
        out["kid_std"] = self.kid_std
        with_ci = self.options.bootstrap > 0
        out["ci"] = (
            {name: [getattr(self, name).low, getattr(self, name).high] for name in _METRICS}
            if with_ci
            else None
        )
        out["confidence"] = self.options.confidence
        out["n_reference"] = self.n_reference
        out["n_candidate"] = self.n_candidate
        out["options"] = self.options.to_dict()
        out["notes"] = list(self.notes)
        return out


def _resample_counts(n: int, replicates: int, rng: np.random.Generator) -> np.ndarray:
    """How often each row appears in each resample: float64 [replicates, n], rows sum to n."""
    draws = rng.integers(0, n, size=(replicates, n)) + n * np.arange(replicates)[:, None]
    counts = np.bincount(draws.ravel(), minlength=replicates * n)
    return counts.reshape(replicates, n).astype(np.float64)


def _spread_interval(
    value: float, replicates: np.ndarray, confidence: float, floor: float | None = None
) -> Estimate:
    """``value +- z * sd(replicates)``; no interval from fewer than 2 finite replicates (a
    resample of a tiny set can hold a single distinct row, leaving KID undefined)."""
    replicates = replicates[np.isfinite(replicates)]
    if len(replicates) < 2:
        return Estimate(value)
    half = statistics.NormalDist().inv_cdf((1 + confidence) / 2) * float(replicates.std(ddof=1))
    low = value - half if floor is None else max(floor, value - half)
    return Estimate(value, low, value + half)


def _percentile_interval(value: float, replicates: np.ndarray, confidence: float) -> Estimate:
    low, high = np.quantile(replicates, [(1 - confidence) / 2, (1 + confidence) / 2])
    return Estimate(value, float(low), float(high))


def compare_features(
    reference: np.ndarray,
    candidate: np.ndarray,
    *,
    options: MetricOptions = MetricOptions(),  # noqa: B008 (frozen, so sharing is safe)
) -> MetricReport:
    """FID, KID, precision, recall, density and coverage of ``candidate`` against ``reference``.

    Inputs are float arrays [N, D] (any float dtype; float64 inside). Raises ``ValueError`` with
    a one-line message on bad shapes, too few rows, non-finite values, or a k >= N. Emits no
    warnings: caveats (N < D for FID, a clamped KID subset size, fewer FID replicates) go to
    ``notes``. See the module docstring for how the intervals are made.
    """
    x, y = as_pair(reference, candidate)
    (n1, dim), n2 = x.shape, len(y)
    o = options
    check_k(o.k_pr, n1, "reference", "precision/recall")
    check_k(o.k_pr, n2, "candidate", "precision/recall")
    check_k(o.k_dc, n1, "reference", "density/coverage")
    notes: list[str] = []
    if min(n1, n2) < dim:
        notes.append(frechet.small_sample_note(min(n1, n2), dim))
    size, clamp_note = mmd.kid_subset_size(o.kid_subset_size, n1, n2)
    if clamp_note:
        notes.append(clamp_note)

    rng = np.random.default_rng(o.seed)
    w1 = _resample_counts(n1, o.bootstrap, rng)
    w2 = _resample_counts(n2, o.bootstrap, rng)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", frechet.SmallSampleWarning)
        fid_value = frechet.fid(x, y)
    fid_est = Estimate(fid_value)
    if o.bootstrap:
        count = frechet.fid_bootstrap_count(n1, n2, dim, o.bootstrap)
        if count < o.bootstrap:
            notes.append(
                f"FID interval from {count} of {o.bootstrap} bootstrap resamples "
                f"(each costs a {dim}-d eigendecomposition)"
            )
        reps = frechet.fid_replicates(x, y, w1[:count], w2[:count])
        fid_est = _spread_interval(fid_value, reps, o.confidence, floor=0.0)

    idx1, idx2 = mmd.kid_subsets(n1, n2, size, o.kid_subsets, o.seed)
    subset_values, kid_reps = mmd.kid_replicates(x, y, idx1, idx2, w1, w2)
    kid_value = float(subset_values.mean())
    kid_est = Estimate(kid_value)
    if o.bootstrap:
        kid_est = _spread_interval(kid_value, kid_reps, o.confidence)

    ind = manifold_indicators(x, y, o.k_pr, o.k_dc, None)
    assert ind.precision is not None and ind.recall is not None
    assert ind.density is not None and ind.coverage is not None
    per_row = {
        "precision": (ind.precision.astype(np.float64), w2, 1.0),
        "recall": (ind.recall.astype(np.float64), w1, 1.0),
        "density": (ind.density.astype(np.float64), w2, float(o.k_dc)),
        "coverage": (ind.coverage.astype(np.float64), w1, 1.0),
    }
    manifold: dict[str, Estimate] = {}
    for name, (values, counts, scale) in per_row.items():
        value = float(values.mean() / scale)
        manifold[name] = (
            _percentile_interval(value, counts @ values / (len(values) * scale), o.confidence)
            if o.bootstrap
            else Estimate(value)
        )

    return MetricReport(
        fid=fid_est,
        kid=kid_est,
        kid_std=float(subset_values.std()),
        n_reference=n1,
        n_candidate=n2,
        options=o,
        notes=tuple(notes),
        **manifold,
    )
