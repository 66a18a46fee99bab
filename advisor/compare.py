"""Compare two image sets (or feature files): the library call behind ``advisor compare``.

REFERENCE plays the real/target role, CANDIDATE the generated/source role. Both sides must be
measured with the same protocol; a feature file's stored protocol is checked against the other
side's, and when the user names no extractor, a feature file's extractor is used for the other.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from dataclasses import dataclass

from advisor.errors import AdvisorError
from advisor.features import check_extractor, check_precision
from advisor.features.pipeline import (
    FeatureOptions,
    FeatureSet,
    compute_features,
    is_feature_file,
    load_features,
)
from advisor.metrics import MetricOptions, MetricReport, compare_features

#: Protocol fields that must agree for two feature sets to be comparable at all.
_MUST_MATCH = ("extractor", "weights_sha256", "input_size", "resize", "dim")


@dataclass(frozen=True, kw_only=True)
class CompareRequest:
    """What to compare and how.

    ``extractor``/``precision`` are None when the user did not choose: a feature file's protocol
    then decides, else ``inception``/``fp32``. ``bootstrap`` None means the metrics default.

    Validated on construction (:class:`AdvisorError`, one line), so a bad option fails before
    any file is read: the metric options' ranges, the extractor and precision names, and the
    protocol options (``extractor``, ``precision``, ``feature_options.weights``), which choose
    how images become features and so are refused when both sides are feature files, rather
    than silently ignored.
    """

    reference: str | os.PathLike[str]
    candidate: str | os.PathLike[str]
    extractor: str | None = None
    precision: str | None = None
    feature_options: FeatureOptions = FeatureOptions()
    k_pr: int = 3
    k_dc: int = 5
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    bootstrap: int | None = None
    confidence: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        try:
            self.metric_options()
        except ValueError as err:
            raise AdvisorError(str(err)) from None
        if self.extractor is not None:
            check_extractor(self.extractor)
        if self.precision is not None:
            check_precision(self.precision)
        unused = protocol_options_without_effect(
            self.reference,
            self.candidate,
            extractor=self.extractor,
            precision=self.precision,
            weights=self.feature_options.weights,
        )
        if unused:
            raise AdvisorError(
                f"both sides are feature files, so {', '.join(unused)} would change nothing; "
                f"leave {'it' if len(unused) == 1 else 'them'} out (only images use them)"
            )

    def metric_options(self) -> MetricOptions:
        extra = {} if self.bootstrap is None else {"bootstrap": self.bootstrap}
        return MetricOptions(
            k_pr=self.k_pr,
            k_dc=self.k_dc,
            kid_subsets=self.kid_subsets,
            kid_subset_size=self.kid_subset_size,
            seed=self.seed,
            confidence=self.confidence,
            **extra,
        )


@dataclass(frozen=True)
class CompareResult:
    """Both feature sets, the metrics, and the protocol they were measured under."""

    reference: FeatureSet
    candidate: FeatureSet
    report: MetricReport
    protocol: dict[str, object]

    def to_dict(self) -> dict[str, object]:
        """JSON-ready: the metric keys at top level (fid, kid, kid_std, precision, recall,
        density, coverage, ci, ...), plus ``protocol`` and per-side ``sources``."""
        out = self.report.to_dict()
        out["protocol"] = self.protocol
        out["sources"] = {
            role: {
                "source": str(fs.source),
                "n": len(fs),
                "skipped": len(fs.skipped),
                "from_cache": fs.from_cache,
            }
            for role, fs in (("reference", self.reference), ("candidate", self.candidate))
        }
        return out

    def format_text(self) -> str:
        """A small human-readable table with confidence intervals and the protocol."""
        r = self.report
        ci_head = f"{round(r.options.confidence * 100)}% CI"
        lines = [
            f"reference: {self.reference.source} ({len(self.reference)} images)",
            f"candidate: {self.candidate.source} ({len(self.candidate)} images)",
            "",
            f"{'metric':<10} {'value':>10}   {ci_head}",
        ]
        for name in ("fid", "kid", "precision", "recall", "density", "coverage"):
            est = getattr(r, name)
            digits = 2 if name == "fid" else 5 if name == "kid" else 4
            ci = (
                f"[{est.low:.{digits}f}, {est.high:.{digits}f}]"
                if est.low is not None and est.high is not None
                else "-"
            )
            lines.append(f"{name:<10} {est.value:>10.{digits}f}   {ci}")
        lines.append(f"{'kid_std':<10} {r.kid_std:>10.5f}   (over KID subsets)")
        lines.append("")
        lines.append("protocol: " + _describe_protocol(self.protocol))
        o = r.options
        intervals = (
            f"bootstrap {o.bootstrap} resamples, seed {o.seed}" if o.bootstrap else "no intervals"
        )
        lines.append(
            f"settings: k={o.k_pr} (precision/recall), k={o.k_dc} (density/coverage), "
            f"KID {o.kid_subsets} subsets of up to {o.kid_subset_size}, {intervals}"
        )
        lines.extend(f"note: {note}" for note in r.notes)
        return "\n".join(lines)


def protocol_options_without_effect(
    reference: str | os.PathLike[str],
    candidate: str | os.PathLike[str],
    *,
    extractor: str | None,
    precision: str | None,
    weights: str | os.PathLike[str] | None,
) -> list[str]:
    """The protocol options given (of ``extractor``, ``precision``, ``weights``) when neither
    side is images: they choose how images become features, so they would change nothing."""
    if not (is_feature_file(reference) and is_feature_file(candidate)):
        return []
    given = {"extractor": extractor, "precision": precision, "weights": weights}
    return [name for name, value in given.items() if value is not None]


def run_compare(request: CompareRequest) -> CompareResult:
    """Load or compute both sides' features and compare them.

    Feature files are read first (cheap), so a protocol mismatch or a bad file fails before
    any image is decoded. Raises :class:`AdvisorError` on any user-facing problem.
    """
    metric_options = request.metric_options()  # checked when the request was made
    sides: dict[str, FeatureSet | None] = {}
    for role, source in (("reference", request.reference), ("candidate", request.candidate)):
        sides[role] = load_features(source) if is_feature_file(source) else None
        recorded = sides[role].protocol.get("extractor") if sides[role] is not None else None
        if request.extractor is not None and recorded not in (None, request.extractor):
            raise AdvisorError(
                f"{source} holds {recorded!r} features, not {request.extractor!r} ones; "
                "drop --extractor or recompute the file"
            )
    known = [fs.protocol for fs in sides.values() if fs is not None and fs.protocol]
    extractor = request.extractor or _agreed(known, "extractor") or "inception"
    precision = request.precision or _agreed(known, "precision") or "fp32"
    options = dataclasses.replace(request.feature_options, extractor=extractor, precision=precision)
    for role, source in (("reference", request.reference), ("candidate", request.candidate)):
        if sides[role] is None:
            sides[role] = compute_features(source, options=options)
    reference, candidate = sides["reference"], sides["candidate"]
    assert reference is not None and candidate is not None
    protocol = _reconcile(reference, candidate)
    try:
        report = compare_features(reference.features, candidate.features, options=metric_options)
    except ValueError as err:
        raise AdvisorError(str(err)) from None
    return CompareResult(reference=reference, candidate=candidate, report=report, protocol=protocol)


def _agreed(protocols: list[dict[str, object]], field: str) -> str | None:
    values = {str(p[field]) for p in protocols if field in p}
    return values.pop() if len(values) == 1 else None


def _reconcile(reference: FeatureSet, candidate: FeatureSet) -> dict[str, object]:
    if reference.features.shape[1] != candidate.features.shape[1]:
        raise AdvisorError(
            f"feature dimensions differ: {reference.source} has "
            f"{reference.features.shape[1]}, {candidate.source} has {candidate.features.shape[1]}"
        )
    a, b = reference.protocol, candidate.protocol
    if not a or not b:
        unknown = reference.source if not a else candidate.source
        warnings.warn(
            f"the protocol of {unknown} is unknown (plain .npy); make sure both sides were "
            "made with the same extractor, weights, resize and precision",
            stacklevel=2,
        )
        return dict(a or b)
    for field in _MUST_MATCH:
        if field in a and field in b and a[field] != b[field]:
            raise AdvisorError(
                f"the two sides were measured differently ({field}: {a[field]!r} vs "
                f"{b[field]!r}); "
                "recompute one of them with the other's protocol"
            )
    if a.get("precision") != b.get("precision"):
        warnings.warn(
            f"precision differs ({a.get('precision')!r} vs {b.get('precision')!r}); "
            "the metrics mix the two",
            stacklevel=2,
        )
    return dict(a)


def _describe_protocol(protocol: dict[str, object]) -> str:
    if not protocol:
        return "unknown (plain .npy features)"
    comparable = "" if protocol.get("comparable") else " (not comparable with published FIDs)"
    return (
        f"{protocol.get('extractor')} {protocol.get('dim')}-d, weights sha256 "
        f"{str(protocol.get('weights_sha256'))[:12]}{comparable}, "
        f"{protocol.get('input_size')}px {protocol.get('resize')}, {protocol.get('precision')}"
    )
