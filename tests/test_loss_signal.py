"""advisor.finetuning.loss_signal: the EMA over ticks and the settling point of the loss-only
signal, on synthetic series whose answers are worked out by hand."""

import json
import math
import random

import pytest

from advisor.finetuning import loss_signal as ls


def test_smooth_is_the_ema_over_ticks_and_skips_nan():
    # halflife 1 tick: beta = 0.5.
    assert ls.smooth([0.0, 4.0, 4.0], halflife=1) == [0.0, 2.0, 3.0]
    out = ls.smooth([math.nan, 2.0, math.nan, 4.0], halflife=1)
    assert math.isnan(out[0]) and out[1:] == [2.0, 2.0, 3.0]
    assert ls.ema_beta(4) == pytest.approx(0.5**0.25)
    assert ls.ema_step(None, 5.0, halflife=2) == 5.0
    assert ls.ema_step(1.0, 3.0, halflife=2) == pytest.approx(0.5**0.5 + (1 - 0.5**0.5) * 3)


def test_a_noiseless_step_settles_where_the_ema_enters_a_tenth_of_the_excursion():
    # 10 for ticks 0-4, then 0: the EMA (beta 0.5) is 10, ..., 10, 5, 2.5, 1.25, 0.625, ...
    # Excursion 10 - 10 * 0.5**15, no noise (the differences' MAD is 0), so the band is a tenth
    # of it around the final level (the mean EMA over kimg >= 14.25, ticks 15-19, ~0.002);
    # 1.25 at kimg 7 is outside, 0.625 at 8 inside.
    kimg = list(range(20))
    values = [10.0] * 5 + [0.0] * 15
    s = ls.settling_kimg(kimg, values, halflife=1)
    assert s.kimg == 8 and s.reason is None
    assert s.band == pytest.approx(0.1 * (10 - 10 * 0.5**15), rel=1e-12)
    assert s.level == pytest.approx(10 * sum(0.5**i for i in range(11, 16)) / 5, rel=1e-12)
    # A slower EMA settles later, a wider band sooner.
    # halflife 2: 10 * 0.5 ** ((i - 4) / 2) first drops under ~1 at i = 11.
    assert ls.settling_kimg(kimg, values, halflife=2).kimg == 11
    assert ls.settling_kimg(kimg, values, halflife=1, tol=0.3).kimg == 6  # 2.5 <= ~3


def test_pure_noise_settles_at_once_because_the_band_covers_its_noise():
    # Seeded standard normal noise: the EMA stays within 3 of its own noise sds of the level,
    # so it settles at the first tick. A tenth of the excursion alone (z=0) is narrower than
    # the noise, and the same series would read as never settling.
    rng = random.Random(0)
    kimg = list(range(100))
    values = [rng.gauss(0.0, 1.0) for _ in kimg]
    assert ls.settling_kimg(kimg, values).kimg == 0
    assert ls.settling_kimg(kimg, values, z=0).kimg is None


def test_a_ramp_never_settles_and_says_it_is_still_moving():
    kimg = list(range(20))
    s = ls.settling_kimg(kimg, [float(k) for k in kimg], halflife=1)
    assert s.kimg is None and "still moving" in (s.reason or "")


def test_settling_needs_four_finite_ticks_and_valid_arguments():
    s = ls.settling_kimg([0, 1, 2, 3], [1.0, math.nan, 1.0, 1.0])
    assert s.kimg is None and s.reason == "3 finite ticks, 4 needed"
    assert ls.settling_kimg([0, 1, 2, 3], [1.0, 1.0, 1.0, 1.0]).kimg == 0
    for kw, name in (({"halflife": 0}, "halflife"), ({"tail": 1.0}, "tail"),
                     ({"tol": -1}, "tol"), ({"z": math.inf}, "z")):  # fmt: skip
        with pytest.raises(ValueError, match=name):
            ls.settling_kimg([0, 1, 2, 3], [1.0] * 4, **kw)


def test_signal_convergence_reports_signed_kimg_from_the_plateau_or_why_not():
    stats = [{"kimg": float(k), "d_gap": 10.0 if k < 5 else 0.0, "loss_g": 1.0} for k in range(20)]
    before = ls.signal_convergence(stats, plateau_kimg=12.0, halflife=1)
    assert before.convergence_kimg == 8 and before.kimg_from_plateau == -4.0
    assert before.ticks == 20 and before.note is None and before.signal == "d_gap"
    after = ls.signal_convergence(stats, plateau_kimg=2.0, halflife=1)
    assert after.kimg_from_plateau == 6.0
    waiting = ls.signal_convergence(stats, plateau_kimg=None, metric="kid", halflife=1)
    assert waiting.convergence_kimg == 8 and waiting.kimg_from_plateau is None
    assert waiting.note == "kid has not plateaued"
    old = ls.signal_convergence([{"kimg": 1.0, "loss_d": 0.5}], plateau_kimg=4.0)
    assert old.convergence_kimg is None and old.kimg_from_plateau is None and old.ticks == 0
    assert "no tick in stats.jsonl has 'd_gap'" in (old.note or "")
    d = before.to_dict()
    assert json.loads(json.dumps(d)) == d and d["halflife"] == 1 and d["tol"] == 0.1
