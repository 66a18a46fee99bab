"""Which way is better for every metric advisor reports: one table for everything that orders
by a metric (fine-tune tracking and stopping, ranking, probes, run comparisons)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

Mode = Literal["min", "max"]

METRIC_MODES: Mapping[str, Mode] = {
    "fid": "min",
    "kid": "min",
    "precision": "max",
    "recall": "max",
    "density": "max",
    "coverage": "max",
    # The other measures (advisor.metrics.other).
    "is": "max",
    "swd": "min",
    "gan_train": "max",
    "gan_test_confidence": "max",
    "mode_coverage": "max",
}
"""Whether lower (``"min"``) or higher (``"max"``) is better, per advisor metric name."""
