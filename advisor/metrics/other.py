"""The measures beyond the default set, as one result: IS, SWD and the classifier measures.

Names, as ``--metrics``, ``rank --by`` and ``finetune --metric`` spell them:

- groups (``--metrics``): ``is`` (Inception Score), ``swd`` (sliced Wasserstein distance on
  Laplacian pyramids), ``classifier`` (GAN-train with its real reference, the GAN-test analogue
  and mode coverage); ``all`` is every group;
- single numbers (``rank --by``, ``finetune --metric``): ``is``, ``swd``, ``gan_train``,
  ``gan_test_confidence``, ``mode_coverage`` (the covered fraction of classes).

Each result keeps its protocol and caveats (:mod:`.inception_score`, :mod:`.swd`,
:mod:`.classifier`); :class:`OtherMeasures` only gathers them for one comparison.
"""

from __future__ import annotations

from dataclasses import dataclass

from advisor.metrics.classifier import ClassifierReport
from advisor.metrics.inception_score import InceptionScore
from advisor.metrics.report import Estimate
from advisor.metrics.swd import SWDResult

#: The groups ``--metrics`` can add to the default set (FID, KID, precision, recall, density,
#: coverage), in report order.
MEASURE_GROUPS: tuple[str, ...] = ("is", "swd", "classifier")
#: The single numbers of those groups, and the group each belongs to.
MEASURE_GROUP_OF: dict[str, str] = {
    "is": "is",
    "swd": "swd",
    "gan_train": "classifier",
    "gan_test_confidence": "classifier",
    "mode_coverage": "classifier",
}
#: The default set, always computed; naming one in ``--metrics`` adds nothing.
DEFAULT_METRICS: tuple[str, ...] = ("fid", "kid", "precision", "recall", "density", "coverage")


def parse_measures(text: str) -> tuple[str, ...]:
    """``--metrics`` text -> the extra groups to compute, in :data:`MEASURE_GROUPS` order.

    ``default`` (or empty): none; ``all``: every group; else a comma list of ``default``, the
    default set's names (always computed), group names and single-number names (which select
    their group). An unknown name is a ``ValueError`` listing the known ones.
    """
    chosen: set[str] = set()
    for raw in text.split(","):
        name = raw.strip().lower()
        if name in ("", "default", *DEFAULT_METRICS):
            continue
        if name == "all":
            chosen.update(MEASURE_GROUPS)
        elif name in MEASURE_GROUP_OF:
            chosen.add(MEASURE_GROUP_OF[name])
        elif name == "classifier":
            chosen.add(name)
        else:
            names = ("default", "all", *DEFAULT_METRICS, *MEASURE_GROUPS, *MEASURE_GROUP_OF)
            known = ", ".join(dict.fromkeys(names))
            raise ValueError(f"unknown metric {raw.strip()!r} in --metrics; known: {known}")
    return tuple(g for g in MEASURE_GROUPS if g in chosen)


@dataclass(frozen=True, kw_only=True)
class OtherMeasures:
    """The extra measures of one reference/candidate comparison; None where not computed.

    ``inception_score``: the candidate's; ``reference_inception_score``: the reference's (the
    level real images reach with the same head); ``swd``; ``classifier``; ``notes``: why a
    requested measure was left out, one line each.
    """

    inception_score: InceptionScore | None = None
    reference_inception_score: InceptionScore | None = None
    swd: SWDResult | None = None
    classifier: ClassifierReport | None = None
    notes: tuple[str, ...] = ()

    def estimate(self, name: str) -> Estimate | None:
        """The single number ``name`` (see the module docstring), None when not computed."""
        if name == "is":
            score = self.inception_score
            return None if score is None else Estimate(score.mean, score.low, score.high)
        if name == "swd":
            return None if self.swd is None else Estimate(self.swd.mean)
        if self.classifier is None:
            return None
        if name == "mode_coverage":
            return self.classifier.mode_coverage.fraction
        if name in ("gan_train", "gan_test_confidence"):
            return getattr(self.classifier, name)
        raise KeyError(name)

    def to_dict(self) -> dict[str, object]:
        """Only the computed measures, each with its protocol and caveats."""
        out: dict[str, object] = {}
        if self.inception_score is not None:
            out["inception_score"] = {
                "candidate": self.inception_score.to_dict(),
                "reference": (
                    None
                    if self.reference_inception_score is None
                    else self.reference_inception_score.to_dict()
                ),
            }
        if self.swd is not None:
            out["swd"] = self.swd.to_dict()
        if self.classifier is not None:
            out["classifier"] = self.classifier.to_dict()
        return out
