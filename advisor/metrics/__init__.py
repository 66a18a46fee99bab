"""Distribution metrics on feature arrays: FID, KID, precision/recall, density/coverage.

Pure functions over arrays; no IO, no global state. Conventions, everywhere in this package:

- Inputs are real arrays ``[N, D]`` of any float dtype; all arithmetic is float64.
- ``reference`` plays the real/target set, ``candidate`` the generated/source set.
- Covariances use 1/(N-1) (:mod:`.frechet`); KID is torch-fidelity's, subset draws included
  (:mod:`.mmd`); precision/recall/density/coverage use k-NN radii with the point itself excluded
  and ``<=`` (:mod:`.manifold`); confidence intervals come from a seeded bootstrap over rows
  (:mod:`.report`).

Layout: ``inputs`` (checks, row blocks) -> ``frechet``, ``mmd``, ``manifold`` (one metric family
each) -> ``report`` (all of them for one pair, with intervals).
"""

from advisor.metrics.frechet import (
    FeatureStats,
    SmallSampleWarning,
    feature_stats,
    fid,
    fid_from_stats,
)
from advisor.metrics.manifold import (
    density_coverage,
    precision_recall,
    precision_recall_density_coverage,
)
from advisor.metrics.mmd import kid
from advisor.metrics.report import Estimate, MetricOptions, MetricReport, compare_features

__all__ = [
    "Estimate",
    "FeatureStats",
    "MetricOptions",
    "MetricReport",
    "SmallSampleWarning",
    "compare_features",
    "density_coverage",
    "feature_stats",
    "fid",
    "fid_from_stats",
    "kid",
    "precision_recall",
    "precision_recall_density_coverage",
]
