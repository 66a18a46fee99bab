"""advisor.finetuning.convergence: best, plateau, convergence kimg, AUC and stop rules on synthetic
curves whose answers are worked out by hand."""

import json
import math

import pytest

from advisor.errors import AdvisorError
from advisor.finetuning import convergence as cv

KIMG = [0, 10, 20, 30, 40, 50, 60]


def test_best_is_first_occurrence_of_minimum_in_min_mode():
    assert cv.best([0, 10, 20, 30], [50, 30, 30, 40], mode="min") == (30, 10)


def test_best_is_first_occurrence_of_maximum_in_max_mode():
    assert cv.best([0, 10, 20, 30], [0.2, 0.5, 0.4, 0.5], mode="max") == (0.5, 10)


def test_plateau_starts_where_every_later_window_improved_at_most_delta():
    # best-so-far 100, 80, 70, 69, 68.9, 68.8, 68.8; windows of 3 evaluations:
    # 0->3 31%, 1->4 13.9%, 2->5 1.7% (flat), 3->6 0.3% (flat): flat from evaluation 2 on.
    values = [100, 80, 70, 69, 68.9, 68.8, 68.8]
    assert cv.plateau_kimg(KIMG, values, mode="min", delta=0.02, window=3) == 20


def test_plateau_is_none_while_the_latest_window_still_improves():
    values = [100, 99.5, 99, 98.9, 98.8, 80, 60]  # flat early, then a big drop
    assert cv.plateau_kimg(KIMG, values, mode="min", delta=0.02, window=3) is None


def test_plateau_after_a_second_descent_is_the_later_flat_stretch():
    # windows 0->3 (1.5%) flat, 1->4 flat... then 60 at 50 breaks it; with window 1 the
    # trailing flat run is 5->6 only.
    values = [100, 99.5, 99, 98.5, 98.4, 60, 60]
    assert cv.plateau_kimg(KIMG, values, mode="min", delta=0.02, window=1) == 50


def test_plateau_needs_window_plus_one_evaluations():
    assert cv.plateau_kimg([0, 10, 20], [5, 5, 5], mode="min", window=3) is None
    assert cv.plateau_kimg([0, 10, 20, 30], [5, 5, 5, 5], mode="min", window=3) == 0


def test_plateau_boundary_improvement_exactly_delta_counts_as_plateau():
    # (8 - 6) / 8 == 0.25 exactly in binary floating point: "<=" makes it flat.
    assert cv.plateau_kimg([0, 1, 2, 3], [8, 8, 8, 6], mode="min", delta=0.25, window=3) == 0
    assert cv.plateau_kimg([0, 1, 2, 3], [8, 8, 8, 5.99], mode="min", delta=0.25, window=3) is None


def test_plateau_boundary_at_default_delta_two_percent():
    assert (100 - 98) / 100 == 0.02  # the premise: the relative change is exactly delta
    assert cv.plateau_kimg([0, 1, 2, 3], [100, 100, 100, 98], mode="min") == 0
    assert cv.plateau_kimg([0, 1, 2, 3], [100, 100, 100, 97.9], mode="min") is None


def test_plateau_in_max_mode_uses_relative_gain():
    # recall 0.5 -> 0.625 over 3 evaluations is +25% exactly: flat at delta 0.25.
    assert cv.plateau_kimg([0, 1, 2, 3], [0.5, 0.5, 0.5, 0.625], mode="max", delta=0.25) == 0
    assert cv.plateau_kimg([0, 1, 2, 3], [0.5, 0.5, 0.5, 0.626], mode="max", delta=0.25) is None


def test_plateau_boundary_survives_decimal_rounding():
    # (0.51 - 0.5) / 0.5 computes to 0.020000000000000018: still the 2% boundary, so flat.
    assert (0.51 - 0.5) / 0.5 > 0.02
    assert cv.plateau_kimg([0, 1, 2, 3], [0.5, 0.5, 0.5, 0.51], mode="max") == 0
    assert cv.plateau_kimg([0, 1, 2, 3], [0.5, 0.5, 0.5, 0.5101], mode="max") is None


def test_plateau_with_zero_delta_is_best_not_beaten_for_window_evaluations():
    values = [10, 8, 7, 7.5, 7.2, 7.1]
    kimg = [0, 1, 2, 3, 4, 5]
    assert cv.plateau_kimg(kimg, values, mode="min", delta=0, window=3) == 2
    assert cv.plateau_kimg(kimg[:5], values[:5], mode="min", delta=0, window=3) is None
    for n in range(1, 7):
        on_plateau = cv.should_stop(kimg[:n], values[:n], mode="min", stop_at_plateau=True,
                                    stop_if_worse=None, delta=0, window=3)  # fmt: skip
        not_beaten = cv.should_stop(kimg[:n], values[:n], mode="min", stop_at_plateau=False,
                                    stop_if_worse=3)  # fmt: skip
        assert on_plateau == not_beaten


def test_plateau_relative_to_zero_best_counts_any_gain_as_infinite():
    assert cv.relative_improvement(0.0, 0.0, "min") == 0.0
    assert cv.relative_improvement(0.0, -1e-6, "min") == math.inf


def test_convergence_kimg_is_first_evaluation_within_five_percent_of_best():
    # best 25; 5% band is <= 26.25: 26 at kimg 20 is the first inside.
    assert cv.convergence_kimg([0, 10, 20, 30, 40], [100, 60, 26, 25.5, 25], mode="min") == 20


def test_convergence_kimg_band_is_inclusive():
    # 21 == 20 * 1.05 exactly: inside.
    assert cv.convergence_kimg([0, 10, 20], [40, 21, 20], mode="min") == 10
    assert cv.convergence_kimg([0, 10, 20], [40, 21.01, 20], mode="min") == 20


def test_convergence_kimg_in_max_mode():
    # best 0.8; band >= 0.76.
    assert cv.convergence_kimg([0, 10, 20, 30], [0.2, 0.75, 0.77, 0.8], mode="max") == 20


def test_auc_of_a_step_then_flat_curve_is_worked_out_by_trapezoids():
    # x = 0, .25, .5, .75, 1; y = 1, 1/3, 0, 0, 0 -> .25*(4/3)/2 + .25*(1/3)/2 = 5/24.
    auc = cv.normalised_auc([0, 10, 20, 30, 40], [100, 50, 25, 25, 25], mode="min")
    assert auc == pytest.approx(5 / 24)


def test_auc_of_a_straight_line_to_the_best_is_one_half_in_both_modes():
    assert cv.normalised_auc([0, 5, 10], [30, 20, 10], mode="min") == pytest.approx(0.5)
    assert cv.normalised_auc([0, 5, 10], [0.1, 0.2, 0.3], mode="max") == pytest.approx(0.5)


def test_auc_of_an_immediate_drop_is_half_the_first_step():
    assert cv.normalised_auc([0, 1, 10], [9, 3, 3], mode="min") == pytest.approx(0.05)


def test_auc_exceeds_one_when_the_curve_gets_worse_than_its_start():
    # y = 1, 3, 0 over x = 0, .5, 1: area 1 + .75 = 1.75... (1+3)/2*.5 + (3+0)/2*.5 = 1.75.
    assert cv.normalised_auc([0, 1, 2], [10, 30, 0], mode="min") == pytest.approx(1.75)


def test_auc_is_none_when_nothing_beat_the_start_or_a_single_point():
    assert cv.normalised_auc([0, 1, 2], [10, 12, 11], mode="min") is None
    assert cv.normalised_auc([0], [10], mode="min") is None


def test_nan_and_inf_values_are_skipped_everywhere():
    kimg = [0, 10, 20, 30, 40]
    values = [100, math.nan, 50, math.inf, 40]
    s = cv.summarize(kimg, values, mode="min", metric="fid")
    assert (s.best, s.kimg_at_best, s.evaluations, s.skipped) == (40, 40, 3, 2)
    assert s.auc == pytest.approx(cv.normalised_auc([0, 20, 40], [100, 50, 40], mode="min"))
    assert cv.best([0, 1], [None, 3.0], mode="min") == (3.0, 1)


def test_nan_does_not_count_toward_stop_if_worse():
    values = [10, 5, math.nan, math.nan, 6]
    assert cv.evaluations_since_best([0, 1, 2, 3, 4], values, mode="min") == 1
    assert not cv.should_stop([0, 1, 2, 3, 4], values, mode="min", stop_at_plateau=False,
                              stop_if_worse=2)  # fmt: skip


def test_empty_and_all_nan_curves_summarize_to_none():
    for kimg, values in (([], []), ([0, 1], [math.nan, math.nan])):
        s = cv.summarize(kimg, values, mode="min", metric="fid")
        assert (s.best, s.kimg_at_best, s.plateau_kimg, s.convergence_kimg, s.auc) == (None,) * 5
        assert s.evaluations == 0
    assert not cv.should_stop([], [], mode="min", stop_at_plateau=True, stop_if_worse=1)


def test_single_point_is_its_own_best_and_convergence_without_plateau():
    s = cv.summarize([0], [42.0], mode="min", metric="fid")
    assert (s.best, s.kimg_at_best, s.convergence_kimg, s.plateau_kimg, s.auc) == (
        42.0, 0.0, 0.0, None, None
    )  # fmt: skip


@pytest.mark.parametrize(
    "kimg",
    [[0, 10, 10], [0, 10, 5], [0, math.nan, 20], [0, math.inf]],
    ids=["repeated", "decreasing", "nan", "inf"],
)
def test_kimg_that_does_not_strictly_increase_is_an_error(kimg):
    with pytest.raises(ValueError, match="kimg"):
        cv.best(kimg, [1.0] * len(kimg), mode="min")


def test_mismatched_lengths_and_bad_mode_are_errors():
    with pytest.raises(ValueError, match="values"):
        cv.best([0, 1], [1.0], mode="min")
    with pytest.raises(ValueError, match="mode"):
        cv.best([0], [1.0], mode="lowest")  # type: ignore[arg-type]


def test_stop_if_worse_fires_after_k_evaluations_without_a_new_best():
    kimg = [0, 1, 2, 3, 4]
    values = [10, 5, 6, 5, 7]  # best 5 at evaluation 1; the tie at 3 does not beat it
    stop = dict(mode="min", stop_at_plateau=False)
    assert cv.stop_reason(kimg, values, stop_if_worse=3, **stop) == cv.STOP_WORSE
    assert cv.stop_reason(kimg, values, stop_if_worse=4, **stop) is None
    assert cv.stop_reason(kimg[:4], values[:4], stop_if_worse=3, **stop) is None


def test_stop_at_plateau_fires_once_the_plateau_exists_and_is_checked_first():
    kimg = [0, 1, 2, 3]
    values = [10, 10, 10, 10]
    assert cv.stop_reason(kimg, values, mode="min", stop_at_plateau=True,
                          stop_if_worse=1) == cv.STOP_PLATEAU  # fmt: skip
    assert cv.stop_reason(kimg[:3], values[:3], mode="min", stop_at_plateau=True,
                          stop_if_worse=None) is None  # fmt: skip
    assert not cv.should_stop(kimg, values, mode="min", stop_at_plateau=False, stop_if_worse=None)


@pytest.mark.parametrize("bad", [0, -1, True])
def test_stop_if_worse_must_be_a_positive_integer(bad):
    with pytest.raises(ValueError, match="stop_if_worse"):
        cv.should_stop([0], [1.0], mode="min", stop_at_plateau=False, stop_if_worse=bad)


def test_plateau_arguments_are_validated():
    with pytest.raises(ValueError, match="delta"):
        cv.plateau_kimg([0], [1.0], mode="min", delta=-0.1)
    with pytest.raises(ValueError, match="window"):
        cv.plateau_kimg([0], [1.0], mode="min", window=0)


def test_summary_is_frozen_and_to_dict_is_json_ready():
    import dataclasses

    kimg, values = [0, 10, 20, 30, 40], [100, 50, 25, 25, 25]
    s = cv.summarize(kimg, values, mode="min", metric="fid", window=1)
    d = s.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["metric"] == "fid" and d["best"] == 25 and d["kimg_at_best"] == 20
    assert d["plateau_kimg"] == 20 and d["convergence_kimg"] == 20
    assert d["auc"] == pytest.approx(5 / 24) and d["evaluations"] == 5 and d["skipped"] == 0
    assert d["plateau_delta"] == 0.02 and d["plateau_window"] == 1 and d["within"] == 0.05
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.best = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        cv.ConvergenceSummary("fid", "min", 1.0, 0.0, None, 0.0, None, 1)  # type: ignore[misc]


def test_metric_modes_and_unknown_metric_lists_known_names():
    assert cv.mode_for("fid") == "min" and cv.mode_for("recall") == "max"
    with pytest.raises(AdvisorError, match="coverage"):
        cv.mode_for("ssim")
