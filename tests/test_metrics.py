"""Metrics against their reference implementations (pytorch-fid, torch-fidelity, prdc) and
against analytic cases; blocked = unblocked; bootstrap intervals; error messages."""

import contextlib
import io
import json
import math
import warnings

import numpy as np
import pytest
import torch

from advisor.metrics import (
    FeatureStats,
    MetricOptions,
    SmallSampleWarning,
    compare_features,
    density_coverage,
    feature_stats,
    fid,
    fid_from_stats,
    frechet,
    kid,
    manifold,
    mmd,
    precision_recall,
    precision_recall_density_coverage,
)


def gaussian(n, d, *, seed, shift=0.0, scale=1.0):
    """Correlated Gaussian features [n, d] (full-rank covariance when n > d)."""
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(d, d)) / math.sqrt(d) + np.eye(d)
    return (rng.normal(size=(n, d)) @ mixing) * scale + shift


def pytorch_fid(x, y):
    from pytorch_fid.fid_score import calculate_frechet_distance

    return float(
        calculate_frechet_distance(
            x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False)
        )
    )


def torch_fidelity_kid(x, y, *, subsets, size, seed):
    from torch_fidelity.metric_kid import kid_features_to_metric

    out = kid_features_to_metric(
        torch.from_numpy(x),
        torch.from_numpy(y),
        kid_subsets=subsets,
        kid_subset_size=size,
        rng_seed=seed,
        verbose=False,
    )
    return out["kernel_inception_distance_mean"], out["kernel_inception_distance_std"]


def reference_prdc(real, fake, k):
    from prdc import compute_prdc

    with contextlib.redirect_stdout(io.StringIO()):  # prdc prints the set sizes
        return compute_prdc(real_features=real, fake_features=fake, nearest_k=k)


# ------------------------------------------------------------------------------------------ FID


@pytest.mark.parametrize("n1, n2, d", [(200, 150, 16), (500, 400, 64), (300, 300, 128)])
def test_fid_equals_pytorch_fid_on_full_rank_inputs(n1, n2, d):
    x = gaussian(n1, d, seed=1)
    y = gaussian(n2, d, seed=2, shift=0.3, scale=1.2)
    expected = pytorch_fid(x, y)
    assert fid(x, y) == pytest.approx(expected, rel=1e-6)
    assert fid_from_stats(feature_stats(x), feature_stats(y)) == pytest.approx(expected, rel=1e-6)
    assert fid(x.astype(np.float32), y) == pytest.approx(
        pytorch_fid(x.astype(np.float32).astype(np.float64), y), rel=1e-6
    )


@pytest.mark.parametrize("n1, n2, d", [(300, 250, 64), (60, 90, 128), (40, 40, 40)])
def test_fid_routes_agree(n1, n2, d):
    """The n1 x n2 cross-Gram route and the D x D eigen route give the same number, N < D too."""
    x, y = gaussian(n1, d, seed=3), gaussian(n2, d, seed=4, shift=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallSampleWarning)
        by_stats = fid_from_stats(feature_stats(x), feature_stats(y))
    assert frechet._fid_gram(x, y) == pytest.approx(by_stats, rel=1e-9)


def test_fid_analytic_diagonal_and_rotated():
    """Commuting covariances: FID = |mu1 - mu2|^2 + sum (sqrt a_i - sqrt b_i)^2."""
    rng = np.random.default_rng(5)
    d = 12
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    a, b = rng.uniform(0.1, 3.0, d), rng.uniform(0.1, 3.0, d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    s1, s2 = FeatureStats(mu1, np.diag(a), 1000), FeatureStats(mu2, np.diag(b), 1000)
    assert fid_from_stats(s1, s2) == pytest.approx(expected, rel=1e-12)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))  # the same rotation of both: same FID
    r1 = FeatureStats(q @ mu1, q @ np.diag(a) @ q.T, 1000)
    r2 = FeatureStats(q @ mu2, q @ np.diag(b) @ q.T, 1000)
    assert fid_from_stats(r1, r2) == pytest.approx(expected, rel=1e-10)


def test_fid_analytic_non_commuting_2d():
    """2 x 2: tr sqrt(M) = sqrt(tr M + 2 sqrt(det M)) for M = S1 S2 with real eigenvalues >= 0."""
    s1 = np.array([[2.0, 0.7], [0.7, 1.0]])
    s2 = np.array([[1.0, -0.4], [-0.4, 3.0]])
    m = s1 @ s2
    tr_sqrt = math.sqrt(np.trace(m) + 2 * math.sqrt(np.linalg.det(m)))
    expected = 0.25 + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt
    a = FeatureStats(np.array([0.5, 0.0]), s1, 100)
    b = FeatureStats(np.zeros(2), s2, 100)
    assert fid_from_stats(a, b) == pytest.approx(expected, rel=1e-12)
    assert fid_from_stats(b, a) == pytest.approx(expected, rel=1e-12)


def test_fid_small_sample_is_finite_real_and_warns():
    x, y = gaussian(50, 256, seed=6), gaussian(70, 256, seed=7, shift=0.2)
    with pytest.warns(SmallSampleWarning, match="N < D"):
        value = fid(x, y)
    assert isinstance(value, float) and math.isfinite(value) and value > 0
    with pytest.warns(SmallSampleWarning):
        from_stats = fid_from_stats(feature_stats(x), feature_stats(y))  # singular: eigh route
    assert from_stats == pytest.approx(value, rel=1e-9)


def test_fid_of_a_set_with_itself_is_zero():
    x = gaussian(400, 32, seed=8, shift=3.0)
    assert abs(fid(x, x)) < 1e-9 * np.trace(np.cov(x, rowvar=False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallSampleWarning)
        small = gaussian(20, 64, seed=9)
        assert abs(fid(small, small)) < 1e-9 * np.trace(np.cov(small, rowvar=False))


def test_feature_stats_float64_unbiased_covariance():
    x = gaussian(100, 8, seed=10).astype(np.float32)
    stats = feature_stats(x)
    assert stats.mu.dtype == np.float64 and stats.sigma.dtype == np.float64 and stats.n == 100
    np.testing.assert_allclose(stats.sigma, np.cov(x.astype(np.float64), rowvar=False), rtol=1e-12)


@pytest.mark.parametrize("gram", [True, False])
def test_fid_replicates_equal_fid_of_materialised_resamples(gram, monkeypatch):
    """A replicate given as row counts equals FID on the resample with its rows repeated."""
    monkeypatch.setattr(frechet, "_fid_uses_gram", lambda n1, n2, dim: gram)
    x, y = gaussian(60, 8, seed=11), gaussian(50, 8, seed=12, shift=0.5)
    rng = np.random.default_rng(0)
    i, j = rng.integers(0, 60, (3, 60)), rng.integers(0, 50, (3, 50))
    w1 = np.stack([np.bincount(r, minlength=60) for r in i]).astype(float)
    w2 = np.stack([np.bincount(r, minlength=50) for r in j]).astype(float)
    replicates = frechet.fid_replicates(x, y, w1, w2)
    expected = [pytorch_fid(x[a], y[b]) for a, b in zip(i, j, strict=True)]
    np.testing.assert_allclose(replicates, expected, rtol=1e-9)


# ------------------------------------------------------------------------------------------ KID


@pytest.mark.parametrize("full", [True, False])
@pytest.mark.parametrize("seed", [0, 3])
def test_kid_subsets_equal_torch_fidelity(full, seed):
    x, y = gaussian(200, 32, seed=13), gaussian(150, 32, seed=14, shift=0.1)
    idx1, idx2 = mmd.kid_subsets(200, 150, 50, 20, seed)
    values, _ = mmd.kid_replicates(x, y, idx1, idx2, full=full, block_rows=17)
    mean, std = torch_fidelity_kid(x, y, subsets=20, size=50, seed=seed)
    assert values.mean() == pytest.approx(mean, rel=1e-9)
    assert values.std() == pytest.approx(std, rel=1e-9)
    assert kid(x, y, num_subsets=20, subset_size=50, seed=seed) == pytest.approx(
        (mean, std), rel=1e-9
    )


def test_kid_on_float32_features_stays_close_to_float64():
    """float32 features: float32 products inside the kernel, float64 sums (see .mmd)."""
    x = np.maximum(gaussian(300, 64, seed=40), 0).astype(np.float32)
    y = np.maximum(gaussian(280, 64, seed=41, shift=0.05), 0).astype(np.float32)
    assert mmd.products_dtype(x, y) is np.float32
    assert mmd.products_dtype(x, y.astype(np.float64)) is np.float64
    exact = torch_fidelity_kid(
        x.astype(np.float64), y.astype(np.float64), subsets=20, size=100, seed=0
    )
    assert kid(x, y, num_subsets=20, subset_size=100) == pytest.approx(exact, rel=1e-5)


def test_kid_equals_direct_formula_on_explicit_subsets():
    x, y = gaussian(40, 6, seed=15), gaussian(30, 6, seed=16, shift=0.4)
    idx1, idx2 = mmd.kid_subsets(40, 30, 12, 3, seed=1)

    def k(a, b):
        return (a @ b / 6 + 1) ** 3

    for s in range(3):
        xs, ys = x[idx1[s]], y[idx2[s]]
        m = 12
        xx = sum(k(xs[i], xs[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
        yy = sum(k(ys[i], ys[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
        xy = sum(k(xs[i], ys[j]) for i in range(m) for j in range(m)) / (m * m)
        for full in (True, False):
            got = mmd.kid_replicates(x, y, idx1[s : s + 1], idx2[s : s + 1], full=full)[0][0]
            assert got == pytest.approx(xx + yy - 2 * xy, rel=1e-10)


def weighted_mmd2(x, y, w1, w2):
    """Definition: pairs of distinct rows weighted by their counts (copies of a row excluded)."""
    dim = x.shape[1]
    kxx, kyy, kxy = ((a @ b.T / dim + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))

    def within(kmat, w):
        off = ~np.eye(len(w), dtype=bool)
        pairs = np.outer(w, w)[off]
        return (kmat[off] * pairs).sum() / pairs.sum()

    return within(kxx, w1) + within(kyy, w2) - 2 * (w1 @ kxy @ w2) / (w1.sum() * w2.sum())


def test_kid_bootstrap_replicates_are_weighted_u_statistics():
    x, y = gaussian(15, 4, seed=17), gaussian(15, 4, seed=18, shift=0.3)
    rng = np.random.default_rng(1)
    counts1 = np.stack([np.bincount(rng.integers(0, 15, 15), minlength=15) for _ in range(3)])
    counts2 = np.stack([np.bincount(rng.integers(0, 15, 15), minlength=15) for _ in range(3)])
    counts1, counts2 = counts1.astype(float), counts2.astype(float)
    expected = [weighted_mmd2(x, y, a, b) for a, b in zip(counts1, counts2, strict=True)]
    everything = np.arange(15)[None, :]  # one subset holding every row: the routes coincide
    for full in (True, False):
        values, reps = mmd.kid_replicates(
            x, y, everything, everything, counts1, counts2, full=full, block_rows=4
        )
        assert values[0] == pytest.approx(weighted_mmd2(x, y, np.ones(15), np.ones(15)))
        np.testing.assert_allclose(reps, expected, rtol=1e-10)
    # direct route with several subsets: each subset's rows keep their resample counts
    idx1, idx2 = mmd.kid_subsets(15, 15, 6, 4, seed=2)
    _, reps = mmd.kid_replicates(x, y, idx1, idx2, counts1, counts2, full=False)
    for b in range(3):
        per_subset = [
            weighted_mmd2(x[i], y[j], counts1[b, i], counts2[b, j])
            for i, j in zip(idx1, idx2, strict=True)
        ]
        assert reps[b] == pytest.approx(np.nanmean(per_subset), rel=1e-10)


def test_kid_subset_size_larger_than_data_is_clamped_with_a_warning():
    x, y = gaussian(30, 8, seed=19), gaussian(25, 8, seed=20, shift=0.2)
    with pytest.warns(UserWarning, match="exceeds the smaller set"):
        clamped = kid(x, y, num_subsets=5, subset_size=1000)
    assert clamped == pytest.approx(kid(x, y, num_subsets=5, subset_size=25), rel=1e-12)
    with pytest.warns(UserWarning, match="used 25"):
        _, std = kid(x[:25], y, num_subsets=5, subset_size=30)
    assert std < 1e-12  # every subset is the whole of both sets


# ------------------------------------------------------------ precision/recall/density/coverage


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("n1, n2, d", [(300, 200, 16), (150, 260, 5)])
def test_prdc_equal_prdc_package_on_tie_free_inputs(k, n1, n2, d):
    """prdc takes the (k+1)-th distance including the point itself and tests with ``<``; on
    tie-free inputs that is the same as the k-th excluding itself and ``<=``."""
    x = gaussian(n1, d, seed=21)
    y = gaussian(n2, d, seed=22, shift=0.3, scale=0.8)
    expected = reference_prdc(x, y, k)
    p, r, dens, cov = precision_recall_density_coverage(x, y, k_pr=k, k_dc=k)
    assert (p, r, cov) == (expected["precision"], expected["recall"], expected["coverage"])
    assert dens == pytest.approx(expected["density"], rel=1e-12)
    assert precision_recall(x, y, k=k) == (p, r)
    assert density_coverage(x, y, k=k) == (dens, cov)


def test_inside_means_distance_at_most_radius():
    """Points on a line: the candidate at 4 lies exactly on reference point 3's 1-NN radius."""
    reference = np.array([[0.0], [1.0], [2.0], [3.0]])
    candidate = np.array([[4.0], [10.0], [10.5]])
    precision, _ = precision_recall(reference, candidate, k=1)
    assert precision == pytest.approx(1 / 3)  # with a strict `<` it would be 0
    assert reference_prdc(reference, candidate, 1)["precision"] == 0.0


def test_direction_tight_candidate_inside_wide_reference():
    """precision = candidate inside reference manifold; recall = reference inside candidate's."""
    rng = np.random.default_rng(23)
    wide, tight = rng.normal(size=(500, 8)), rng.normal(scale=0.1, size=(500, 8))
    precision, recall = precision_recall(wide, tight, k=3)
    assert precision > 0.9 and recall < 0.2
    swapped_precision, swapped_recall = precision_recall(tight, wide, k=3)
    assert swapped_precision < 0.2 and swapped_recall > 0.9
    density, coverage = density_coverage(wide, tight, k=5)
    assert coverage < 0.2 and density > 1.0  # the cluster sits where many reference balls overlap


def test_blocked_equals_unblocked():
    x, y = gaussian(203, 10, seed=24), gaussian(157, 10, seed=25, shift=0.2)
    whole = manifold.manifold_indicators(x, y, 3, 5, block_rows=10_000)
    for rows in (1, 7, 64):
        part = manifold.manifold_indicators(x, y, 3, 5, block_rows=rows)
        for field in ("precision", "recall", "density", "coverage"):
            np.testing.assert_array_equal(getattr(part, field), getattr(whole, field))
    brute = np.sort(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1) + np.diag([np.inf] * 203), 1)
    np.testing.assert_allclose(manifold._knn_sq_radii(x, 4, 9), brute[:, :4], rtol=1e-10)
    w1, w2 = np.ones((203, 2)), np.ones((157, 2))
    lx, ly = mmd._lift(x), mmd._lift(y)
    np.testing.assert_allclose(
        mmd._full(lx, ly, w1, w2, 5), mmd._full(lx, ly, w1, w2, None), rtol=1e-10
    )


# ----------------------------------------------------------------------- report and bootstrap


def test_compare_features_equals_the_pure_functions():
    x, y = gaussian(220, 12, seed=26), gaussian(180, 12, seed=27, shift=0.2)
    options = MetricOptions(kid_subsets=30, kid_subset_size=100, seed=4, bootstrap=50)
    report = compare_features(x, y, options=options)
    assert report.fid.value == pytest.approx(fid(x, y), rel=1e-12)
    kid_mean, kid_std = kid(x, y, num_subsets=30, subset_size=100, seed=4)
    assert report.kid.value == pytest.approx(kid_mean, rel=1e-9)
    assert report.kid_std == pytest.approx(kid_std, rel=1e-9)
    assert (report.precision.value, report.recall.value) == precision_recall(x, y, k=3)
    assert (report.density.value, report.coverage.value) == density_coverage(x, y, k=5)
    out = report.to_dict()
    json.dumps(out)
    assert out["n_reference"] == 220 and out["n_candidate"] == 180
    assert out["confidence"] == 0.95 and out["options"]["bootstrap"] == 50
    assert set(out["ci"]) == {"fid", "kid", "precision", "recall", "density", "coverage"}


def test_intervals_contain_the_value_and_are_reproducible():
    x, y = gaussian(150, 8, seed=28), gaussian(140, 8, seed=29, shift=0.3)
    options = MetricOptions(kid_subset_size=100, bootstrap=100, seed=7)
    first = compare_features(x, y, options=options)
    assert first == compare_features(x, y, options=options)
    for name in ("fid", "kid", "precision", "recall", "density", "coverage"):
        est = getattr(first, name)
        assert est.low <= est.value <= est.high, name
        assert est.low < est.high, name
    other = compare_features(x, y, options=MetricOptions(kid_subset_size=100, bootstrap=100))
    assert other.fid.value == first.fid.value and other.fid.low != first.fid.low


def test_intervals_shrink_with_more_samples():
    def widths(n):
        x, y = gaussian(n, 8, seed=30), gaussian(n, 8, seed=31, shift=0.3)
        report = compare_features(x, y, options=MetricOptions(kid_subset_size=100, bootstrap=100))
        return {
            name: getattr(report, name).high - getattr(report, name).low
            for name in ("fid", "kid", "precision", "recall", "density", "coverage")
        }

    small, large = widths(100), widths(1600)
    for name in small:
        assert large[name] < 0.6 * small[name], name


def test_no_bootstrap_no_intervals():
    x, y = gaussian(50, 4, seed=32), gaussian(40, 4, seed=33)
    report = compare_features(x, y, options=MetricOptions(bootstrap=0, kid_subset_size=20))
    assert report.fid.low is None and report.precision.high is None
    assert report.to_dict()["ci"] is None


def test_notes_instead_of_warnings():
    x, y = gaussian(30, 64, seed=34), gaussian(30, 64, seed=35)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = compare_features(x, y, options=MetricOptions(bootstrap=20))
    assert any("N < D" in note for note in report.notes)
    assert any("KID subset size 1000" in note for note in report.notes)


def test_fid_bootstrap_count_is_budgeted():
    assert frechet.fid_bootstrap_count(300, 300, 2048, 200) == 200
    capped = frechet.fid_bootstrap_count(10_000, 10_000, 2048, 200)
    assert frechet._BOOTSTRAP_MIN <= capped < 200


# ------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    "reference, candidate, match",
    [
        (np.zeros(10), np.zeros((10, 2)), "2-D array"),
        (np.zeros((10, 3)), np.zeros((10, 2)), "differ in dimension: 3 vs 2"),
        (np.zeros((1, 3)), np.zeros((10, 3)), "at least 2 rows"),
        (np.full((10, 3), np.nan), np.zeros((10, 3)), "NaN or inf"),
        (np.zeros((10, 3), dtype=complex), np.zeros((10, 3)), "real numbers"),
    ],
)
def test_bad_inputs_raise_one_line_value_errors(reference, candidate, match):
    for call in (fid, kid, precision_recall, density_coverage, compare_features):
        with pytest.raises(ValueError, match=match) as info:
            call(reference, candidate)
        assert "\n" not in str(info.value)


def test_k_must_be_smaller_than_n():
    x, y = gaussian(20, 3, seed=36), gaussian(3, 3, seed=37)
    with pytest.raises(ValueError, match="k=5 needs more than 5 candidate samples, got 3"):
        precision_recall(x, y, k=5)
    assert density_coverage(x, y, k=5)  # density/coverage only need reference neighbours
    with pytest.raises(ValueError, match="k=3 needs more than 3 candidate samples"):
        compare_features(x, y, options=MetricOptions(bootstrap=0))


@pytest.mark.parametrize(
    "field, value",
    [("bootstrap", -1), ("bootstrap", 1), ("confidence", 1.0), ("k_pr", 0), ("kid_subset_size", 1)],
)
def test_bad_options(field, value):
    with pytest.raises(ValueError, match=field):
        MetricOptions(**{field: value})


def exact_indicators(x, y, k_pr, k_dc):
    """Every pair in float64 through the one formula all comparisons are decided on."""

    def dense(a, b):
        i, j = (g.ravel() for g in np.meshgrid(np.arange(len(a)), np.arange(len(b)), indexing="ij"))
        sq_a, sq_b = np.einsum("ij,ij->i", a, a), np.einsum("ij,ij->i", b, b)
        return manifold._exact_sq(a, b, sq_a, sq_b, i, j).reshape(len(a), len(b))

    def radii(a, k):
        d = dense(a, a)
        np.fill_diagonal(d, np.inf)
        return np.sort(d, axis=1)[:, k - 1]

    d = dense(x, y)
    ref_pr, ref_dc, cand_pr = radii(x, k_pr), radii(x, k_dc), radii(y, k_pr)
    return {
        "precision": (d <= ref_pr[:, None]).any(axis=0),
        "recall": (d <= cand_pr[None, :]).any(axis=1),
        "density": (d <= ref_dc[:, None]).sum(axis=0),
        "coverage": d.min(axis=1) <= ref_dc,
    }


def near_ties(kind, n, seed):
    rng = np.random.default_rng(seed)
    if kind == "lattice_far_from_zero":  # float64 exact, float32 not: every pair is undecided
        return rng.integers(0, 3, size=(n, 6)) + 3000.0
    if kind == "lattice":  # many distances exactly equal to a radius
        return rng.integers(0, 4, size=(n, 12)).astype(float)
    base = rng.normal(size=(n // 4 + 1, 32))  # duplicates, some nudged by 1e-7
    x = np.repeat(base, 4, axis=0)[:n]
    x[::3] += 1e-7 * rng.normal(size=x[::3].shape)
    return x


@pytest.mark.parametrize("kind", ["lattice_far_from_zero", "lattice", "nudged_duplicates"])
@pytest.mark.parametrize("n1, n2, block_rows", [(120, 120, None), (97, 130, 13)])
def test_screened_verdicts_equal_exact_float64_on_near_ties(kind, n1, n2, block_rows):
    """float32 screening re-decides in float64 whatever its error bound leaves open, so ties and
    near-ties at a radius come out as a float64 pass over every pair gives them."""
    x, y = near_ties(kind, n1, seed=31), near_ties(kind, n2, seed=32)
    y[: n2 // 3] = x[: n2 // 3]  # candidates on top of reference points
    expected = exact_indicators(x, y, 3, 5)
    for dtype in (np.float32, np.float64):
        got = manifold.manifold_indicators(x, y, 3, 5, block_rows, dtype=dtype)
        for field, want in expected.items():
            np.testing.assert_array_equal(getattr(got, field), want, err_msg=f"{field} {dtype}")
    same_k = manifold.manifold_indicators(x, y, 4, 4, block_rows)
    expected = exact_indicators(x, y, 4, 4)
    for field, want in expected.items():
        np.testing.assert_array_equal(getattr(same_k, field), want, err_msg=field)


def test_screened_radii_equal_exact_values():
    x = near_ties("nudged_duplicates", 150, seed=33)
    sq = np.einsum("ij,ij->i", x, x)
    i, j = (g.ravel() for g in np.meshgrid(np.arange(150), np.arange(150), indexing="ij"))
    d = manifold._exact_sq(x, x, sq, sq, i, j).reshape(150, 150)
    np.fill_diagonal(d, np.inf)
    expected = np.sort(d, axis=1)[:, :6]
    for dtype in (np.float32, np.float64):
        for block_rows in (None, 1, 16):
            got = manifold._knn_sq_radii(x, 6, block_rows, dtype)
            np.testing.assert_array_equal(got, expected)
            np.testing.assert_array_equal(
                manifold._knn_sq_radii(x, 6, block_rows, dtype, (2, 6)), expected[:, [1, 5]]
            )
