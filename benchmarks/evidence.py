"""The evidence benchmark's statistics: how well a predicted order of sources matches the truth.

Pure functions over plain mappings ``{source name: value}``, and :func:`analyse`, which derives
every statistic of a target from the raw records of the benchmark's results document (curves,
zero-shot scores, probe order); used by ``benchmarks/transfer.py`` (which records the analysis
in its JSON after every step) and ``benchmarks/transfer_report.py``. Nothing here trains or
reads files. Conventions:

* *Goodness.* Every score is turned into "higher is better" before it is compared: values of a
  lower-is-better metric (FID, KID) are negated. The truth is the goodness of the final FID after
  fine-tuning (``-final_fid``).
* *Correlation* between a predictor and the truth: Spearman's rho and Kendall's tau-b
  (``scipy.stats``; ties get average ranks) of the goodness values over the sources both know.
  ``None`` when fewer than two sources are shared or either side is constant.
* *Pick*: the source with the highest predicted goodness (ties: the first name in sorted
  order). *Regret*: ``FID(pick) / best FID - 1`` (0 for the best source). *Optimal*: the pick's
  FID is within 5% of the best (``regret <= 0.05``), the transfer paper's readers' rule.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

#: A pick is "optimal" when its FID is within this fraction of the best source's.
OPTIMAL_WITHIN = 0.05
#: The from-scratch baseline's run name.
SCRATCH = "scratch"
#: The truth's alternatives: the orders they give are compared with the final FID's.
TRUTH_ALTERNATIVES = (
    ("best_fid", "fid", True),
    ("final_kid", "kid", True),
    ("final_recall", "recall", False),
    ("final_coverage", "coverage", False),
)
_SLACK = 1e-12


def goodness(values: Mapping[str, float | None], *, lower_is_better: bool) -> dict[str, float]:
    """``{name: value}`` oriented so that higher is better; missing and non-finite values
    are dropped."""
    out = {}
    for name, value in values.items():
        if value is None or not math.isfinite(value):
            continue
        out[name] = -float(value) if lower_is_better else float(value)
    return out


def order(good: Mapping[str, float]) -> tuple[str, ...]:
    """Names best first by goodness; ties in sorted name order."""
    return tuple(sorted(good, key=lambda name: (-good[name], name)))


def _shared(a: Mapping[str, float], b: Mapping[str, float]) -> list[str]:
    return sorted(set(a) & set(b))


def _constant(values: Sequence[float]) -> bool:
    return len(set(values)) < 2


def spearman(pred: Mapping[str, float], truth: Mapping[str, float]) -> float | None:
    """Spearman's rho of two goodness mappings over their shared names (None: undefined)."""
    from scipy.stats import spearmanr

    names = _shared(pred, truth)
    x, y = [pred[n] for n in names], [truth[n] for n in names]
    if len(names) < 2 or _constant(x) or _constant(y):
        return None
    return float(spearmanr(x, y).statistic)


def kendall(pred: Mapping[str, float], truth: Mapping[str, float]) -> float | None:
    """Kendall's tau-b of two goodness mappings over their shared names (None: undefined)."""
    from scipy.stats import kendalltau

    names = _shared(pred, truth)
    x, y = [pred[n] for n in names], [truth[n] for n in names]
    if len(names) < 2 or _constant(x) or _constant(y):
        return None
    return float(kendalltau(x, y).statistic)


def regret(pick_fid: float, best_fid: float) -> float:
    """``pick_fid / best_fid - 1``: how much worse than the best the pick's FID is."""
    if best_fid <= 0:
        raise ValueError(f"the best FID must be positive, got {best_fid}")
    return pick_fid / best_fid - 1


def is_optimal(pick_fid: float, best_fid: float, within: float = OPTIMAL_WITHIN) -> bool:
    """The pick's FID is within ``within`` (relative, inclusive) of the best."""
    return regret(pick_fid, best_fid) <= within + _SLACK


@dataclass(frozen=True, kw_only=True)
class PredictorScore:
    """One predictor against the truth: its order, pick and the agreement statistics.

    ``n`` sources are compared (those with both a prediction and a final FID); ``regret`` and
    ``optimal`` are None when the pick has no final FID.
    """

    name: str
    n: int
    order: tuple[str, ...]
    pick: str | None
    spearman: float | None
    kendall: float | None
    regret: float | None
    optimal: bool | None
    cost_s: float | None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["order"] = list(self.order)
        return out


def score_predictor(
    name: str,
    predicted: Mapping[str, float],
    final_fid: Mapping[str, float],
    *,
    cost_s: float | None = None,
) -> PredictorScore:
    """Compare ``predicted`` goodness (higher = better) with the final FIDs of the sources.

    Only sources present in both count; the pick is the best predicted among them.
    """
    truth = goodness(final_fid, lower_is_better=True)
    shared = {n: v for n, v in predicted.items() if n in truth and math.isfinite(v)}
    ranked = order(shared)
    pick = ranked[0] if ranked else None
    best = min(final_fid[n] for n in truth) if truth else None
    reg = opt = None
    if pick is not None and best is not None:
        reg = regret(final_fid[pick], best)
        opt = is_optimal(final_fid[pick], best)
    return PredictorScore(
        name=name,
        n=len(shared),
        order=ranked,
        pick=pick,
        spearman=spearman(shared, truth),
        kendall=kendall(shared, truth),
        regret=reg,
        optimal=opt,
        cost_s=cost_s,
    )


def agreement(a: Mapping[str, float], b: Mapping[str, float]) -> dict[str, Any]:
    """How two goodness mappings agree: Spearman, Kendall, same top-1, same order."""
    names = _shared(a, b)
    ra, rb = order({n: a[n] for n in names}), order({n: b[n] for n in names})
    return {
        "n": len(names),
        "spearman": spearman(a, b),
        "kendall": kendall(a, b),
        "same_top1": bool(names) and ra[0] == rb[0],
        "same_order": ra == rb,
    }


def first_kimg_at_or_below(
    kimg: Sequence[float], values: Sequence[float], level: float
) -> float | None:
    """The first kimg whose value is ``<= level`` (a curve reaching a baseline), or None."""
    for k, v in zip(kimg, values, strict=True):
        if v is not None and math.isfinite(v) and v <= level:
            return float(k)
    return None


# --------------------------------------------------------------------------- analysis
def analyse(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Every statistic of the issue from the raw records in ``doc`` (recomputed each time)."""
    from advisor.ranking import RankOptions

    sources = [z["name"] for z in doc["config"]["zoo"]]
    runs: Mapping[str, Any] = doc.get("runs", {})
    done = [s for s in sources if runs.get(s, {}).get("finished")]
    final_fid = {s: runs[s]["final"].get("fid") for s in done}
    truth = goodness(final_fid, lower_is_better=True)
    out: dict[str, Any] = {
        "complete": len(done) == len(sources),
        "sources_finished": done,
        "true_order": list(order(truth)),
        "final_fid": final_fid,
    }
    alternatives = {}
    for name, metric, lower in TRUTH_ALTERNATIVES:
        if name == "best_fid":
            values = {s: (runs[s]["best_fid"] or {}).get("value") for s in done}
        else:
            values = {s: runs[s]["final"].get(metric) for s in done}
        good = goodness(values, lower_is_better=lower)
        alternatives[name] = {
            "order": list(order(good)),
            **agreement(good, truth),
        }
    out["truth_alternatives"] = alternatives
    remeasured = (doc.get("remeasured") or {}).get("fid", {})
    again = {s: remeasured[s] for s in done if s in remeasured}
    if again:
        # The same generators measured on other seeds: how much of the truth is sampling noise.
        good_again = goodness(again, lower_is_better=True)
        out["truth_repeatability"] = {
            "final_fid_other_seeds": again,
            "mean_abs_fid_change": sum(abs(again[s] - final_fid[s]) for s in again) / len(again),
            "order": list(order(good_again)),
            **agreement(good_again, truth),
        }
    predictors = []
    for setting, block in doc.get("zero_shot", {}).items():
        if "scores" not in block:
            continue
        for metric, direction in block["directions"].items():
            values = {s: v.get(metric) for s, v in block["scores"].items()}
            good = goodness(values, lower_is_better=direction == "min")
            cost = block["cost_s"] + block.get("extra_cost_s", {}).get(metric, 0.0)
            predictors.append(score_predictor(f"{setting}/{metric}", good, final_fid, cost_s=cost))
    probe = doc.get("probe")
    if probe and probe.get("order"):
        good = {name: -float(i) for i, name in enumerate(probe["order"])}
        predictors.append(
            score_predictor(f"probe/{probe['metric']}", good, final_fid, cost_s=probe.get("cost_s"))
        )
    out["predictors"] = [p.to_dict() for p in predictors]
    default = f"{RankOptions().setting}/{RankOptions().by}"
    out["default_predictor"] = default
    bar = [p.name for p in predictors if p.optimal and (p.spearman or -1) >= 0.8]
    out["meeting_the_bar"] = bar  # pick optimal and Spearman >= 0.8
    out["default_meets_the_bar"] = default in bar
    out["scratch_vs_best"] = _scratch_vs_best(runs, truth)
    out["convergence"] = {
        key: {
            k: run["convergence"].get(k)
            for k in ("convergence_kimg", "plateau_kimg", "auc", "best", "kimg_at_best")
        }
        for key, run in runs.items()
    }
    if doc.get("ablation"):
        out["ablation"] = {
            variant: {
                "final_fid": r["final"].get("fid"),
                "best_fid": (r["best_fid"] or {}).get("value"),
                "finished": r["finished"],
            }
            for variant, r in doc["ablation"]["runs"].items()
        }
    if doc.get("check_budget"):
        out["check_budget"] = _check_budget(doc["check_budget"], runs)
    return out


def across_targets(analyses: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Every predictor over several targets (``{target name: analysis}``, each from
    :func:`analyse`): per target its Spearman and whether its pick is optimal, the mean
    Spearman over the targets that could score it, and whether its pick is optimal on every
    target. Predictors are listed best first by (optimal everywhere, mean Spearman).

    ``evidence_default``: the rule that chooses ``advisor rank``'s default (written after the
    example targets' first results; targets it has not seen test it): among predictors of the
    ``generated`` setting (the only one every registry entry supports; ``source`` needs each
    source's training data) that were scored on every target, those whose pick is optimal on
    every target, the highest mean Spearman; None when none is.
    """
    names: dict[str, None] = {}
    for analysis in analyses.values():
        for p in analysis.get("predictors", []):
            names.setdefault(p["name"])
    rows = []
    for name in names:
        per = {}
        for target, analysis in analyses.items():
            found = next((p for p in analysis.get("predictors", []) if p["name"] == name), None)
            if found is not None:
                per[target] = {"spearman": found["spearman"], "optimal": found["optimal"]}
        scored = [v["spearman"] for v in per.values() if v["spearman"] is not None]
        rows.append(
            {
                "name": name,
                "targets": per,
                "on_every_target": len(per) == len(analyses),
                "mean_spearman": sum(scored) / len(scored) if scored else None,
                "optimal_everywhere": len(per) == len(analyses)
                and all(v["optimal"] for v in per.values()),
            }
        )
    rows.sort(
        key=lambda r: (
            not r["optimal_everywhere"],
            -r["mean_spearman"] if r["mean_spearman"] is not None else math.inf,
        )
    )
    eligible = [
        r
        for r in rows
        if r["name"].startswith("generated/")
        and r["on_every_target"]
        and r["optimal_everywhere"]
        and r["mean_spearman"] is not None
    ]
    return {
        "targets": list(analyses),
        "predictors": rows,
        "evidence_default": eligible[0]["name"] if eligible else None,
    }


def _scratch_vs_best(runs: Mapping[str, Any], truth: Mapping[str, float]) -> dict[str, Any] | None:
    scratch = runs.get(SCRATCH)
    if not scratch or not scratch.get("finished") or not truth:
        return None
    best = order(truth)[0]
    level = scratch["final"].get("fid")
    curve = runs[best]["curves"]
    reach = (
        first_kimg_at_or_below(
            [c["kimg"] for c in curve], [c["metrics"].get("fid", math.nan) for c in curve], level
        )
        if level is not None
        else None
    )
    best_fid = runs[best]["final"].get("fid")
    return {
        "scratch_final_fid": level,
        "best_source": best,
        "best_source_final_fid": best_fid,
        "fid_ratio_scratch_over_best": None if not best_fid or level is None else level / best_fid,
        "kimg_for_best_source_to_reach_scratch_final_fid": reach,
    }


def _check_budget(check: Mapping[str, Any], runs: Mapping[str, Any]) -> dict[str, Any]:
    keys = [k for k, r in check["runs"].items() if r.get("finished")]
    short = {k: runs[k]["final"].get("fid") for k in keys}
    long = {k: check["runs"][k]["final"].get("fid") for k in keys}
    a = goodness(short, lower_is_better=True)
    b = goodness(long, lower_is_better=True)
    return {
        "factor": check["factor"],
        "runs": keys,
        "final_fid_1x": short,
        f"final_fid_{check['factor']:g}x": long,
        "order_1x": list(order(a)),
        f"order_{check['factor']:g}x": list(order(b)),
        **agreement(a, b),
    }
