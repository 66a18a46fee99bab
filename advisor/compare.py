"""Compare two image sets (or feature files): the library call behind ``advisor compare``.

REFERENCE plays the real/target role, CANDIDATE the generated/source role. Both sides must be
measured with the same protocol; a feature file's stored protocol is checked against the other
side's, and when the user names no extractor, a feature file's extractor is used for the other.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from advisor.errors import AdvisorError
from advisor.features import FeatureProtocol, check_extractor, check_precision
from advisor.features.pipeline import (
    ExtractionOptions,
    FeatureOptions,
    FeatureSet,
    compute_features,
    is_feature_file,
    load_features,
    resolve_device,
)
from advisor.metrics import MetricOptions, MetricReport, compare_features
from advisor.metrics.classifier import DEFAULT_MIN_COUNT
from advisor.metrics.other import MEASURE_GROUPS, OtherMeasures
from advisor.progress import Progress

if TYPE_CHECKING:
    from advisor.other_measures import OtherOptions


@dataclass(frozen=True, kw_only=True)
class CompareRequest:
    """What to compare and how.

    The protocol options say how images become features: ``extractor``/``precision`` are None
    when the user did not choose (a feature file's protocol then decides, else
    ``inception``/``fp32``); ``weights``: a local weights file instead of the extractor's
    default. ``extraction``: how images are featurised (device, batch size, cache, ...), none of
    which changes a feature. ``bootstrap`` None means the metrics default.

    ``metrics``: extra measure groups beyond the default set (of
    :data:`advisor.metrics.other.MEASURE_GROUPS`: ``is``, ``swd``, ``classifier``);
    ``classes``: k-means surrogate classes for an unlabelled reference (None: its sub-folders
    are its classes); ``min_count``: mode coverage's m. They share ``seed``, ``bootstrap``
    and ``confidence`` with the default metrics.

    Validated on construction (:class:`AdvisorError`, one line), so a bad option fails before
    any file is read: the metric options' ranges, the extractor and precision names, and the
    protocol options, which are refused when both sides are feature files, rather than
    silently ignored.
    """

    reference: str | os.PathLike[str]
    candidate: str | os.PathLike[str]
    extractor: str | None = None
    precision: str | None = None
    weights: str | None = None
    extraction: ExtractionOptions = ExtractionOptions()
    k_pr: int = 3
    k_dc: int = 5
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    bootstrap: int | None = None
    confidence: float = 0.95
    seed: int = 0
    metrics: tuple[str, ...] = ()
    classes: int | None = None
    min_count: int = DEFAULT_MIN_COUNT

    def __post_init__(self) -> None:
        self.metric_options()
        self.other_options()
        if self.extractor is not None:
            check_extractor(self.extractor)
        if self.precision is not None:
            check_precision(self.precision)
        unused = protocol_options_without_effect(
            self.reference,
            self.candidate,
            extractor=self.extractor,
            precision=self.precision,
            weights=self.weights,
        )
        if unused:
            raise AdvisorError(
                f"both sides are feature files, so {', '.join(unused)} would change nothing; "
                f"leave {'it' if len(unused) == 1 else 'them'} out (only images use them)"
            )

    def other_options(self) -> OtherOptions:
        """The extra measures' options (validated: :class:`AdvisorError`)."""
        from advisor.other_measures import OtherOptions

        return OtherOptions(
            groups=tuple(g for g in MEASURE_GROUPS if g in self.metrics),
            classes=self.classes,
            min_count=self.min_count,
            seed=self.seed,
            bootstrap=self.metric_options().bootstrap,
            confidence=self.confidence,
        )

    def metric_options(self) -> MetricOptions:
        return MetricOptions.from_user(
            k_pr=self.k_pr,
            k_dc=self.k_dc,
            kid_subsets=self.kid_subsets,
            kid_subset_size=self.kid_subset_size,
            seed=self.seed,
            bootstrap=self.bootstrap,
            confidence=self.confidence,
        )


@dataclass(frozen=True, kw_only=True)
class CompareResult:
    """Both feature sets, the metrics, and the protocol they were measured under (None when
    neither side's is known: two plain ``.npy`` files).

    ``notes``: caveats about this comparison, one line each: the protocol's (a side of unknown
    protocol, mixed precisions) first, then the metric report's (small-sample FID, a clamped
    KID subset size). The library issues no warnings for them; callers show or attach them.
    """

    reference: FeatureSet
    candidate: FeatureSet
    report: MetricReport
    protocol: FeatureProtocol | None
    notes: tuple[str, ...] = ()
    other: OtherMeasures = OtherMeasures()

    def to_dict(self) -> dict[str, object]:
        """JSON-ready: the metric keys at top level (fid, kid, kid_std, precision, recall,
        density, coverage, ci, ...), the extra measures computed (``inception_score``,
        ``swd``, ``classifier``, each with its protocol and caveats), plus ``protocol``,
        ``notes`` and per-side ``sources``."""
        out = self.report.to_dict()
        out.update(self.other.to_dict())
        out["protocol"] = {} if self.protocol is None else self.protocol.to_dict()
        out["notes"] = list(self.notes)
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


def run_compare(request: CompareRequest, *, on_progress: Progress | None = None) -> CompareResult:
    """Load or compute both sides' features and compare them.

    Feature files are read first (cheap), so a protocol mismatch or a bad file fails before
    any image is decoded. Raises :class:`AdvisorError` on any user-facing problem.
    ``on_progress``: receives each side's feature extraction and any extractor weights download
    (None: as :func:`compute_features`).
    """
    metric_options = request.metric_options()  # checked when the request was made
    sides: dict[str, FeatureSet | None] = {}
    for role, source in (("reference", request.reference), ("candidate", request.candidate)):
        loaded = load_features(source) if is_feature_file(source) else None
        recorded = loaded.protocol if loaded is not None else None
        if request.extractor is not None and recorded is not None:
            if recorded.extractor != request.extractor:
                raise AdvisorError(
                    f"{source} holds {recorded.extractor!r} features, not "
                    f"{request.extractor!r} ones; drop --extractor or recompute the file"
                )
        sides[role] = loaded
    if any(fs is None for fs in sides.values()):
        # Images to featurise: a feature file's protocol (there is at most one) decides what
        # the user left open.
        known = next((fs.protocol for fs in sides.values() if fs is not None), None)
        options = FeatureOptions.of(
            request.extraction,
            extractor=request.extractor or (known.extractor if known else "inception"),
            precision=request.precision or (known.precision if known else "fp32"),
            weights=request.weights,
        )
        for role, source in (("reference", request.reference), ("candidate", request.candidate)):
            if sides[role] is None:
                sides[role] = compute_features(source, options=options, on_progress=on_progress)
    reference, candidate = sides["reference"], sides["candidate"]
    assert reference is not None and candidate is not None
    protocol, protocol_notes = _reconcile(reference, candidate)
    try:
        report = compare_features(reference.features, candidate.features, options=metric_options)
    except ValueError as err:
        raise AdvisorError(str(err)) from None
    other = _other_measures(request, reference, candidate, on_progress)
    return CompareResult(
        reference=reference,
        candidate=candidate,
        report=report,
        protocol=protocol,
        notes=(*protocol_notes, *report.notes, *other.notes),
        other=other,
    )


def _other_measures(
    request: CompareRequest,
    reference: FeatureSet,
    candidate: FeatureSet,
    on_progress: Progress | None = None,
) -> OtherMeasures:
    """The extra measures the request names; a measure these inputs cannot give (IS of
    features of unknown protocol, SWD with a feature file on either side) is left out with a
    note, and each measure's own caveats join the notes. AdvisorError for what the user can
    fix (an unlabelled reference without ``classes``)."""
    from advisor.features.extract import SharedExtractor
    from advisor.metrics.swd import swd
    from advisor.other_measures import (
        classifier_report,
        images_at,
        inception_score_of,
        swd_resolution,
        target_labels,
    )

    o = request.other_options()
    notes: list[str] = []
    classifier = inception = reference_inception = swd_result = None
    if "classifier" in o.groups:
        labels = target_labels(
            reference, classes=o.classes, seed=o.seed, cache=request.extraction.cache
        )
        classifier = classifier_report(reference, labels, candidate.features, o)
    if "is" in o.groups:
        protocol = reference.protocol or candidate.protocol
        if reference.protocol is None or candidate.protocol is None or protocol is None:
            notes.append("inception score left out: it needs features of known protocol")
        else:
            shared = SharedExtractor(
                protocol.extractor,
                weights=request.weights,
                precision=protocol.precision,
                offline=request.extraction.offline,
                progress=on_progress if on_progress is not None else request.extraction.progress,
            )
            device = str(resolve_device(request.extraction.device))
            confidence = o.confidence if o.bootstrap else None  # --bootstrap 0: no intervals
            inception, reference_inception = (
                inception_score_of(
                    side, shared, splits=o.splits, confidence=confidence, device=device
                )
                for side in (candidate, reference)
            )
    if "swd" in o.groups:
        if is_feature_file(request.reference) or is_feature_file(request.candidate):
            notes.append("swd left out: it compares images, and a side is a feature file")
        else:
            resolution = swd_resolution(request.reference, request.candidate)
            try:
                swd_result = swd(
                    images_at(request.reference, resolution),
                    images_at(request.candidate, resolution),
                    options=o.swd,
                )
            except ValueError as err:
                raise AdvisorError(f"swd: {err}") from None
    for result in (inception, reference_inception, swd_result, classifier):
        if result is not None:
            notes.extend(note for note in result.notes if note not in notes)
    return OtherMeasures(
        inception_score=inception,
        reference_inception_score=reference_inception,
        swd=swd_result,
        classifier=classifier,
        notes=tuple(notes),
    )


def _reconcile(
    reference: FeatureSet, candidate: FeatureSet
) -> tuple[FeatureProtocol | None, tuple[str, ...]]:
    """The protocol both sides share and the caveats about it; :class:`AdvisorError` when they
    were measured differently."""
    if reference.features.shape[1] != candidate.features.shape[1]:
        raise AdvisorError(
            f"feature dimensions differ: {reference.source} has "
            f"{reference.features.shape[1]}, {candidate.source} has {candidate.features.shape[1]}"
        )
    a, b = reference.protocol, candidate.protocol
    if a is None or b is None:
        unknown = reference.source if a is None else candidate.source
        note = (
            f"the protocol of {unknown} is unknown (plain .npy); make sure both sides were "
            "made with the same extractor, weights, resize and precision"
        )
        return a or b, (note,)
    differences = a.differences(b)
    for difference in differences:
        if difference.kind == "incomparable":
            raise AdvisorError(
                f"the two sides were measured differently ({difference}); "
                "recompute one of them with the other's protocol"
            )
    notes = tuple(
        f"{d.field} differs ({d.ours!r} vs {d.theirs!r}); the metrics mix the two"
        for d in differences
    )
    return a, notes
