"""All metrics for one reference/candidate pair, with seeded bootstrap confidence intervals.

Bootstrap: ``bootstrap`` joint resamples of both sets' rows (with replacement, drawn from
``np.random.default_rng(seed)``), shared by every metric; a resample is a vector of row counts,
so no rows are ever copied.
- precision, recall, density, coverage: the k-NN manifolds stay fixed (computed once on all
  rows); the per-row indicators are resampled. Percentile interval.
- FID: recomputed on each resample. On the D x D route every replicate costs an
  eigendecomposition, so large sets run fewer replicates (never fewer than 10; a note says so).
- KID: each resample's KID from its weighted rows (over the full data, or over the same subsets,
  whichever route is cheaper; see :mod:`advisor.metrics.mmd`).
FID and KID replicates are biased by repeated rows (a resample holds ~63% distinct rows), so
their spread, not their location, is used: the interval is ``value +- z * sd(replicates)``
(FID's lower end clipped at 0).
"""

from __future__ import annotations

import dataclasses
import statistics
import warnings
from dataclasses import dataclass

import numpy as np

from advisor.errors import AdvisorError
from advisor.metrics import frechet, mmd
from advisor.metrics.inputs import as_pair, check_k
from advisor.metrics.manifold import manifold_indicators

_METRICS = ("fid", "kid", "precision", "recall", "density", "coverage")


#: Most bootstrap resamples: 50x the default 200. Percentile intervals settle by 1,000-2,000
#: resamples (Efron & Tibshirani); each costs a [resamples, N] float64 count matrix per set.
MAX_BOOTSTRAP = 10_000
#: Most KID subsets: 100x the 100 of the KID paper and torch-fidelity.
MAX_KID_SUBSETS = 10_000
#: Largest KID subset size: the size is clamped to the smaller set anyway, and no feature set
#: reaches 10^7 rows (80 GB of 2048-d float32); the bound only catches typos like 10^30.
MAX_KID_SUBSET_SIZE = 10_000_000
#: Largest seed: KID draws its subsets with ``np.random.RandomState(seed)`` (as torch-fidelity
#: does), which takes 0 .. 2^32 - 1; checked here rather than after the features are computed.
MAX_SEED = 2**32 - 1


@dataclass(frozen=True, kw_only=True)
class MetricOptions:
    """How the metrics are computed; every field travels with the numbers (``to_dict``).

    ``k_pr``: k of the k-NN radii for precision/recall; ``k_dc``: for density/coverage.
    ``kid_subsets`` x ``kid_subset_size``: KID's subsets (the size is clamped to the smaller
    set). ``seed``: KID's subset draws and the bootstrap, 0 .. ``MAX_SEED``. ``bootstrap``:
    joint resamples for the intervals (0: none); ``confidence``: their coverage. Validated on
    construction (``ValueError``, one line), so a bad option fails before any work.
    """

    k_pr: int = 3
    k_dc: int = 5
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    seed: int = 0
    bootstrap: int = 200
    confidence: float = 0.95

    def __post_init__(self) -> None:
        for name in ("k_pr", "k_dc", "kid_subsets", "kid_subset_size", "seed", "bootstrap"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
                raise ValueError(f"{name} must be an integer, got {value!r}")
        for name in ("k_pr", "k_dc", "kid_subsets"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.kid_subsets > MAX_KID_SUBSETS:
            raise ValueError(
                f"kid_subsets must be at most {MAX_KID_SUBSETS}, got {self.kid_subsets}"
            )
        if not 2 <= self.kid_subset_size <= MAX_KID_SUBSET_SIZE:
            raise ValueError(
                f"kid_subset_size must be between 2 and {MAX_KID_SUBSET_SIZE}, "
                f"got {self.kid_subset_size}"
            )
        if not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be between 0 and {MAX_SEED} (2^32 - 1), got {self.seed}")
        if self.bootstrap < 0 or self.bootstrap == 1 or self.bootstrap > MAX_BOOTSTRAP:
            raise ValueError(
                f"bootstrap must be 0 (no intervals) or 2 to {MAX_BOOTSTRAP}, got {self.bootstrap}"
            )
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"confidence must lie strictly between 0 and 1, got {self.confidence}")

    # The defaults below are the fields' own: in the class body their names hold them.
    @classmethod
    def from_user(
        cls,
        *,
        k_pr: int = k_pr,
        k_dc: int = k_dc,
        kid_subsets: int = kid_subsets,
        kid_subset_size: int = kid_subset_size,
        seed: int = seed,
        bootstrap: int | None = None,
        confidence: float = confidence,
    ) -> MetricOptions:
        """The options a user chose (a command's flags, a service job's parameters): a bad
        value is an :class:`AdvisorError` with the same one line, not a ``ValueError``;
        ``bootstrap`` None is the default number of resamples."""
        try:
            return cls(
                k_pr=k_pr,
                k_dc=k_dc,
                kid_subsets=kid_subsets,
                kid_subset_size=kid_subset_size,
                seed=seed,
                bootstrap=cls.bootstrap if bootstrap is None else bootstrap,
                confidence=confidence,
            )
        except ValueError as err:
            raise AdvisorError(str(err)) from None

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
    """Every metric for one pair (reference = real/target, candidate = generated/source).

    ``kid_std`` is the spread of KID over its subsets (``ddof=0``, torch-fidelity's
    ``kernel_inception_distance_std``), not an uncertainty of the mean: ``kid.low``/``high`` is.
    ``notes`` are caveats about this particular run, one line each.
    """

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


def _fid_estimate(
    x: np.ndarray, y: np.ndarray, w1: np.ndarray, w2: np.ndarray, o: MetricOptions
) -> tuple[Estimate, list[str]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", frechet.SmallSampleWarning)  # compare reports notes
        value = frechet.fid(x, y)
    if not o.bootstrap:
        return Estimate(value), []
    count = frechet.fid_bootstrap_count(len(x), len(y), x.shape[1], o.bootstrap)
    notes = []
    if count < o.bootstrap:
        notes.append(
            f"FID interval from {count} of {o.bootstrap} bootstrap resamples "
            f"(each costs a {x.shape[1]}-d eigendecomposition)"
        )
    reps = frechet.fid_replicates(x, y, w1[:count], w2[:count])
    return _spread_interval(value, reps, o.confidence, floor=0.0), notes


def _manifold_estimates(
    x: np.ndarray, y: np.ndarray, w1: np.ndarray, w2: np.ndarray, o: MetricOptions
) -> dict[str, Estimate]:
    ind = manifold_indicators(x, y, o.k_pr, o.k_dc, None)
    assert ind.precision is not None and ind.recall is not None
    assert ind.density is not None and ind.coverage is not None
    per_row = {  # outcome per row, the resample counts of its set, the divisor
        "precision": (ind.precision, w2, 1.0),
        "recall": (ind.recall, w1, 1.0),
        "density": (ind.density, w2, float(o.k_dc)),
        "coverage": (ind.coverage, w1, 1.0),
    }
    out = {}
    for name, (outcome, counts, scale) in per_row.items():
        values = outcome.astype(np.float64) / scale
        value = float(values.mean())
        reps = counts @ values / len(values)
        out[name] = (
            _percentile_interval(value, reps, o.confidence) if o.bootstrap else Estimate(value)
        )
    return out


def compare_features(
    reference: np.ndarray,
    candidate: np.ndarray,
    *,
    options: MetricOptions = MetricOptions(),  # noqa: B008 (frozen, so sharing is safe)
) -> MetricReport:
    """FID, KID, precision, recall, density and coverage of ``candidate`` against ``reference``.

    Inputs are real arrays [N, D] of any float dtype (float64 inside; KID's kernel products
    follow float32 inputs, see :mod:`advisor.metrics.mmd`). Every number in the report is
    finite. Raises ``ValueError`` with a one-line message on bad shapes, too few rows,
    non-finite inputs, a k >= N, or a metric that is not finite (features near float64's
    range). Emits no
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

    fid_est, fid_notes = _fid_estimate(x, y, w1, w2, o)
    notes.extend(fid_notes)

    idx1, idx2 = mmd.kid_subsets(n1, n2, size, o.kid_subsets, o.seed)
    products = mmd.products_dtype(reference, candidate)
    subset_values, kid_reps = mmd.kid_replicates(x, y, idx1, idx2, w1, w2, products=products)
    kid_value = float(subset_values.mean())
    kid_est = (
        _spread_interval(kid_value, kid_reps, o.confidence) if o.bootstrap else Estimate(kid_value)
    )

    report = MetricReport(
        fid=fid_est,
        kid=kid_est,
        kid_std=float(subset_values.std()),
        n_reference=n1,
        n_candidate=n2,
        options=o,
        notes=tuple(notes),
        **_manifold_estimates(x, y, w1, w2, o),
    )
    _check_finite(report, max(float(np.abs(x).max()), float(np.abs(y).max())))
    return report


def _check_finite(report: MetricReport, largest: float) -> None:
    """Every number in a report is finite (JSON has no NaN); anything else is a ``ValueError``.

    Only features far beyond any extractor's range (float64 values near 1e100) get here: the
    computation is float64 throughout and KID's float32 products switch to float64 before they
    could overflow.
    """
    values = [("kid_std", report.kid_std)]
    for name in _METRICS:
        est = getattr(report, name)
        values += [
            (name, est.value),
            (f"the {name} interval", est.low),
            (f"the {name} interval", est.high),
        ]
    for name, value in values:
        if value is not None and not np.isfinite(value):
            raise ValueError(
                f"{name} is not finite for these features (largest |value| "
                f"{largest:.3g}); rescale the features"
            )
