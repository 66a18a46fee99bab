"""The field's other measures: Inception Score, SWD, and the classifier-based measures.

Known answers: torch-fidelity's ``isc`` on the same logits; IS of confident, evenly used classes
is their count; SWD of a set with itself is 0, its 1-D case is scipy's W1 of the samples, and it
grows with a shift; the pyramid equals a direct ``scipy.ndimage.convolve`` one; mode coverage
orders generators covering all, half and a tenth of a labelled target's classes.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
import scipy.stats
import torch

from advisor.errors import AdvisorError
from advisor.metrics.classifier import (
    ClassifierOptions,
    Labels,
    check_labels,
    classifier_measures,
    folder_labels,
    kmeans_labels,
    mode_coverage,
)
from advisor.metrics.inception_score import inception_score, score_logits
from advisor.metrics.swd import (
    SWDOptions,
    laplacian_pyramid,
    pyramid_levels,
    sliced_wasserstein,
    swd,
)

# --- Inception Score ---------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "splits", "scale"), [(1000, 10, 3.0), (1003, 10, 1.0), (57, 4, 8.0)])
def test_inception_score_equals_torch_fidelity_isc_on_the_same_logits(n, splits, scale):
    from torch_fidelity.metric_isc import isc_features_to_metric

    logits = (scale * np.random.default_rng(n).standard_normal((n, 1008))).astype(np.float32)
    ours = inception_score(logits, splits=splits)
    theirs = isc_features_to_metric(torch.from_numpy(logits), splits=splits)
    assert ours[0] == pytest.approx(theirs["inception_score_mean"], rel=1e-12)
    assert ours[1] == pytest.approx(theirs["inception_score_std"], rel=1e-9, abs=1e-12)


def test_inception_score_of_confident_evenly_used_classes_is_their_count():
    classes = 7
    logits = np.full((700, 1008), -50.0)
    logits[np.arange(700), np.arange(700) % classes] = 50.0
    # Unshuffled, each split of 70 rows holds every class 10 times: IS = exp(log 7) exactly.
    mean, std = inception_score(logits, shuffle_seed=None)
    assert mean == pytest.approx(classes, rel=1e-9)
    assert std == pytest.approx(0.0, abs=1e-9)
    # Shuffled splits hold the classes unevenly, so each split's IS is below the count.
    assert inception_score(logits)[0] < classes


def test_inception_score_of_one_class_is_one():
    logits = np.zeros((100, 10))
    logits[:, 3] = 40.0
    assert inception_score(logits)[0] == pytest.approx(1.0, abs=1e-9)


def test_inception_score_refuses_fewer_rows_than_splits():
    with pytest.raises(ValueError, match="needs >= 10 rows"):
        inception_score(np.zeros((9, 1008)))


def test_inception_score_interval_has_the_sampling_spread_and_keeps_the_value():
    # Logits of a fixed 20-class model, 400 rows (10 splits of 40) per set. Over 2,000
    # independent sets the IS varies with sd ``truth_sd`` around ``truth``; one set's interval
    # should have about that half-width / t and cover ``truth`` about 95% of the time.
    from scipy import stats

    classes, n = 20, 400
    prior = np.random.default_rng(0).standard_normal(classes)

    def draw(rng):
        return prior + 2.0 * rng.standard_normal((n, classes))

    rng = np.random.default_rng(1)
    values = np.array([inception_score(draw(rng))[0] for _ in range(2000)])
    truth, truth_sd = values.mean(), values.std()
    t = stats.t.ppf(0.975, 9)
    covered, sds = 0, []
    for _ in range(400):
        logits = draw(rng)
        result = score_logits(logits, head="test", standard_head=False, confidence=0.95)
        assert (result.mean, result.std) == inception_score(logits)  # torch-fidelity's value
        assert result.low < result.mean < result.high
        covered += result.low <= truth <= result.high
        sds.append((result.high - result.mean) / t)
    assert np.mean(sds) == pytest.approx(truth_sd, rel=0.1)
    assert 0.91 <= covered / 400 <= 0.98


def test_inception_score_interval_of_one_class_is_the_point_one():
    logits = np.zeros((100, 10))
    logits[:, 3] = 40.0
    result = score_logits(logits, head="test", standard_head=False, confidence=0.9)
    assert result.mean == pytest.approx(1.0, abs=1e-9)
    assert result.low == pytest.approx(1.0, abs=1e-9)
    assert result.high == pytest.approx(1.0, abs=1e-9)
    assert result.to_dict()["confidence"] == 0.9
    assert score_logits(logits, head="test", standard_head=False).low is None
    # One split has no spread to measure: no interval.
    assert score_logits(logits, head="t", standard_head=False, splits=1, confidence=0.9).low is None


def test_another_head_is_marked_not_comparable():
    logits = np.random.default_rng(0).standard_normal((200, 1000))
    result = score_logits(logits, head="efficientnet-lite0 1000-class head", standard_head=False)
    assert not result.comparable
    assert any("not comparable with published IS" in note for note in result.notes)
    assert result.to_dict()["comparable_with_published"] is False


def test_the_inception_head_leaves_out_the_bias():
    from advisor.features.inception import InceptionV3Features

    net = InceptionV3Features()
    with torch.no_grad():
        net.fc.bias.fill_(5.0)
    features = torch.rand(4, 2048)
    logits = net.head_logits(features)
    assert torch.allclose(logits, features @ net.fc.weight.T, atol=1e-5)
    assert net.head_classes == 1008 and net.head_is_standard


def test_logits_of_refuses_features_of_another_network():
    from advisor.features.extract import SharedExtractor, logits_of

    shared = SharedExtractor("efficientnet-lite0", progress=False)
    other = type(shared.protocol)(**{**shared.protocol.to_dict(), "extractor": "inception"})
    with pytest.raises(AdvisorError, match="logits need the head of the same network"):
        logits_of(shared, np.zeros((3, 1280), np.float32), protocol=other)
    with pytest.raises(AdvisorError, match="known protocol"):
        logits_of(shared, np.zeros((3, 1280), np.float32), protocol=None)


def test_lite0_logits_come_from_its_imagenet_head():
    from advisor.features.extract import SharedExtractor, logits_of

    shared = SharedExtractor("efficientnet-lite0", progress=False)
    features = np.random.default_rng(0).random((5, 1280), dtype=np.float32)
    logits = logits_of(shared, features, protocol=shared.protocol)
    net = shared.on("cpu")
    expected = net._fc(torch.from_numpy(features)).detach().numpy()
    assert logits.shape == (5, 1000)
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)


# --- SWD ---------------------------------------------------------------------------------------

SMALL = SWDOptions(patches_per_image=32, directions=64, repeats=2)


def images(n, size=32, *, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 3, size, size), dtype=np.uint8)


def test_pyramid_levels_run_from_the_image_size_down_to_16_px():
    assert pyramid_levels(256) == (256, 128, 64, 32, 16)
    assert pyramid_levels(64) == (64, 32, 16)
    assert pyramid_levels(16) == (16,)
    assert pyramid_levels(48) == (48, 24)


def test_laplacian_pyramid_equals_a_direct_binomial_convolution():
    kernel = np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1])[None, None] / 256.0

    def down(a):
        return scipy.ndimage.convolve(a, kernel, mode="mirror")[:, :, ::2, ::2]

    def up(a):
        out = np.zeros(a.shape[:2] + (2 * a.shape[2], 2 * a.shape[3]))
        out[:, :, ::2, ::2] = a
        return scipy.ndimage.convolve(out, kernel * 4, mode="mirror")

    x = images(3, 32)
    g0 = x.astype(np.float64)
    g1 = down(g0)
    g2 = down(g1)
    expected = [g0 - up(g1), g1 - up(g2), g2]
    for ours, ref in zip(laplacian_pyramid(x, 3), expected, strict=True):
        np.testing.assert_allclose(ours, ref, atol=1e-3)
    # A constant image has no band-pass content.
    flat = np.full((1, 3, 32, 32), 77, dtype=np.uint8)
    assert np.abs(laplacian_pyramid(flat, 2)[0]).max() < 1e-4


def test_one_pyramid_level_alone_equals_that_level_of_the_whole_pyramid():
    from advisor.metrics.swd import _band

    x = images(3, 64, seed=7)
    whole = laplacian_pyramid(x, 3)
    for depth in (0, 1):
        assert np.array_equal(_band(x, depth, 3), whole[depth])
    assert np.array_equal(_band(x, None, 3), whole[-1])


def test_swd_of_a_set_with_itself_is_zero_at_every_level():
    x = images(20)
    result = swd(x, x.copy(), options=SMALL)
    assert [size for size, _ in result.per_level] == [32, 16]
    assert all(value == 0.0 for _, value in result.per_level)
    assert result.mean == 0.0


def test_sliced_wasserstein_in_one_dimension_is_the_sorted_sample_w1():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((500, 1))
    b = 0.5 + 2.0 * rng.standard_normal((500, 1))
    ours = sliced_wasserstein(a, b, directions=8, repeats=2, rng=np.random.default_rng(0))
    expected = float(np.abs(np.sort(a[:, 0]) - np.sort(b[:, 0])).mean())
    assert expected == pytest.approx(scipy.stats.wasserstein_distance(a[:, 0], b[:, 0]))
    assert ours == pytest.approx(expected, rel=1e-5)


def test_sliced_wasserstein_grows_with_a_shift_of_one_set():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((400, 20))
    direction = rng.standard_normal(20)
    values = [
        sliced_wasserstein(a, a + t * direction, directions=64, repeats=2,
                           rng=np.random.default_rng(0))
        for t in (0.0, 0.1, 0.3, 1.0, 3.0)
    ]  # fmt: skip
    assert values[0] == 0.0
    assert all(b > a for a, b in zip(values, values[1:], strict=False))


def test_swd_grows_as_one_image_set_gets_noisier():
    x = images(24, 32, seed=3)
    smooth = scipy.ndimage.uniform_filter(x.astype(np.float32), size=(1, 1, 5, 5))
    smooth = smooth.astype(np.uint8)
    rng = np.random.default_rng(4)
    noise = rng.standard_normal(x.shape)
    values = []
    for sigma in (0.0, 4.0, 16.0, 48.0):
        noisy = np.clip(smooth + sigma * noise, 0, 255).astype(np.uint8)
        values.append(swd(smooth, noisy, options=SMALL).per_level[0][1])
    assert values[0] == 0.0
    assert all(b > a for a, b in zip(values, values[1:], strict=False))


def test_swd_is_seeded_and_cuts_unequal_sets_to_one_size():
    x, y = images(12, seed=5), images(20, seed=6)
    first, second = swd(x, y, options=SMALL), swd(x, y, options=SMALL)
    assert first == second
    assert first.n == 12 and first.notes
    assert (
        swd(x, y, options=SWDOptions(patches_per_image=32, directions=64, repeats=2, seed=1))
        != first
    )


@pytest.mark.parametrize(
    ("a", "b", "message"),
    [
        (np.zeros((4, 3, 32, 32), np.float32), images(4), "uint8"),
        (images(4, 32), images(4, 64), "one resolution"),
        (images(4, 8), images(4, 8), "at least 16 px"),
        (images(1), images(4), "at least 2"),
    ],
)
def test_swd_refuses_bad_image_sets_in_one_line(a, b, message):
    with pytest.raises(ValueError, match=message):
        swd(a, b, options=SMALL)


# --- classifier measures -----------------------------------------------------------------------

CLASSES = 20
DIM = 32


def blobs(labels, *, seed):
    """Features of well-separated class blobs: class c is centred at a fixed random point."""
    centres = np.random.default_rng(99).standard_normal((CLASSES, DIM)) * 4.0
    rng = np.random.default_rng(seed)
    return (centres[labels] + rng.standard_normal((len(labels), DIM))).astype(np.float32)


@pytest.fixture(scope="module")
def labelled_target():
    labels = np.repeat(np.arange(CLASSES), 15)
    return blobs(labels, seed=0), Labels(
        labels=labels, classes=tuple(f"c{i}" for i in range(CLASSES)), source="test"
    )


def generator(classes_covered, n=2000, *, seed):
    labels = np.random.default_rng(seed).integers(0, classes_covered, n)
    return blobs(labels, seed=seed + 1)


def test_mode_coverage_orders_generators_covering_all_half_and_a_tenth_of_the_classes(
    labelled_target,
):
    target, labels = labelled_target
    options = ClassifierOptions(bootstrap=50)
    reports = {
        name: classifier_measures(target, labels, generator(k, seed=i), options=options)
        for i, (name, k) in enumerate([("all", CLASSES), ("half", CLASSES // 2),
                                       ("tenth", CLASSES // 10)])
    }  # fmt: skip
    covered = {name: r.mode_coverage.covered for name, r in reports.items()}
    assert covered == {"all": CLASSES, "half": CLASSES // 2, "tenth": CLASSES // 10}
    fractions = [reports[n].mode_coverage.fraction.value for n in ("all", "half", "tenth")]
    assert fractions == [1.0, 0.5, 0.1]
    # Missing modes lower GAN-train in the same order; the real reference line is the same.
    gan_train = [reports[n].gan_train.value for n in ("all", "half", "tenth")]
    assert gan_train[0] > gan_train[1] > gan_train[2]
    assert gan_train[0] == pytest.approx(reports["all"].real_train.value, abs=0.05)
    for r in reports.values():
        est = r.gan_train
        assert est.low is not None and est.low <= est.value <= est.high


def test_mode_coverage_counts_classes_with_at_least_m_samples():
    pseudo = np.array([0] * 10 + [1] * 9 + [2] * 30)
    assert mode_coverage(pseudo, 4, min_count=10) == 2
    assert mode_coverage(pseudo, 4, min_count=9) == 3


def test_gan_test_confidence_is_higher_for_samples_at_the_class_centres(labelled_target):
    target, labels = labelled_target
    centres = np.random.default_rng(99).standard_normal((CLASSES, DIM)) * 4.0
    rng = np.random.default_rng(7)
    sharp = blobs(rng.integers(0, CLASSES, 500), seed=8)
    a, b = rng.integers(0, CLASSES, (2, 500))
    between = ((centres[a] + centres[b]) / 2).astype(np.float32)  # halfway between two classes
    options = ClassifierOptions(bootstrap=0)
    high = classifier_measures(target, labels, sharp, options=options).gan_test_confidence
    low = classifier_measures(target, labels, between, options=options).gan_test_confidence
    assert high.value > low.value + 0.1


def test_folder_labels_come_from_the_first_path_component():
    found = folder_labels(["b/1.png", "a/x/2.png", "b/3.png"])
    assert found is not None
    assert found.classes == ("a", "b")
    assert found.labels.tolist() == [1, 0, 1]
    assert folder_labels(["1.png", "a/2.png"]) is None  # a file at the top: unlabelled
    assert folder_labels(["a/1.png", "a/2.png"]) is None  # one class


def test_kmeans_surrogate_classes_recover_separated_blobs_and_are_seeded():
    from sklearn.metrics import adjusted_rand_score

    truth = np.repeat(np.arange(5), 40)
    features = blobs(truth, seed=3)
    found = kmeans_labels(features, 5, seed=0)
    assert adjusted_rand_score(truth, found.labels) == 1.0
    assert np.array_equal(found.labels, kmeans_labels(features, 5, seed=0).labels)
    with pytest.raises(ValueError, match="--classes"):
        kmeans_labels(features, 1)


def test_a_kmeans_cluster_of_one_outlier_joins_the_nearest_class_instead_of_failing():
    truth = np.repeat(np.arange(2), 30)
    features = blobs(truth, seed=1)
    a, b = features[truth == 0].mean(axis=0), features[truth == 1].mean(axis=0)
    outlier = b + 6.0 * (b - a)  # far from both blobs, nearer b
    found = kmeans_labels(np.vstack([features, outlier]), 3, seed=0)
    assert found.classes == ("cluster0", "cluster1")  # asked for 3, kept 2
    assert "1 cluster(s) of one image merged" in found.source
    assert found.labels[-1] == found.labels[truth.tolist().index(1)]
    assert check_labels(found, len(truth) + 1).shape == (len(truth) + 1,)
    with pytest.raises(ValueError, match="fewer than 2 clusters"):
        kmeans_labels(np.vstack([features[:2], outlier, outlier + 50, outlier - 50]), 4, seed=0)


def _count_clustering(monkeypatch):
    """Count calls to the clustering behind ``target_labels``."""
    import advisor.other_measures as om

    calls = []
    real = om.kmeans_labels

    def counting(*args, **kwargs):
        calls.append(args[1:])
        return real(*args, **kwargs)

    monkeypatch.setattr(om, "kmeans_labels", counting)
    return calls


def test_surrogate_classes_are_clustered_once_per_features_k_and_seed(monkeypatch):
    from advisor.features.files import FeatureSet
    from advisor.other_measures import target_labels

    calls = _count_clustering(monkeypatch)
    target = FeatureSet(features=blobs(np.repeat(np.arange(4), 10), seed=5), protocol=None)
    first = target_labels(target, classes=4, seed=0)
    second = target_labels(target, classes=4, seed=0)
    assert len(calls) == 1  # the second call read the label cache
    assert np.array_equal(first.labels, second.labels)
    assert (first.classes, first.source) == (second.classes, second.source)
    assert second.labels.dtype == np.int64
    # Another K, another seed or other features are other keys; no cache clusters every time.
    target_labels(target, classes=3, seed=0)
    target_labels(target, classes=4, seed=1)
    moved = FeatureSet(features=target.features + np.float32(0.5), protocol=None)
    target_labels(moved, classes=4, seed=0)
    assert len(calls) == 4
    target_labels(target, classes=4, seed=0, cache=False)
    assert len(calls) == 5


def test_a_damaged_label_cache_entry_is_a_miss_that_is_replaced(monkeypatch):
    from advisor.cache import cache_dir
    from advisor.features.files import FeatureSet
    from advisor.other_measures import target_labels

    calls = _count_clustering(monkeypatch)
    target = FeatureSet(features=blobs(np.repeat(np.arange(3), 8), seed=6), protocol=None)
    expected = target_labels(target, classes=3, seed=0).labels
    (entry,) = cache_dir("labels").glob("*.npy")
    for damage in (b"not an array", np.full(24, 7, np.int64), np.zeros(5, np.int64)):
        if isinstance(damage, bytes):
            entry.write_bytes(damage)
        else:
            np.save(entry, damage)  # out of range for K=3, or the wrong row count
        assert np.array_equal(target_labels(target, classes=3, seed=0).labels, expected)
    assert len(calls) == 4
    assert np.array_equal(np.load(entry), expected)  # the last miss rewrote the entry


def test_a_class_with_one_image_is_a_one_line_error(labelled_target):
    target, labels = labelled_target
    odd = labels.labels.copy()
    odd[0] = CLASSES  # a new class with a single image
    one_more = Labels(labels=odd, classes=(*labels.classes, "single"), source="test")
    with pytest.raises(ValueError, match="'single' has 1 image"):
        classifier_measures(target, one_more, generator(4, seed=0))


# --- where they appear -------------------------------------------------------------------------


def cli(*args):
    from click.testing import CliRunner

    from advisor.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def labelled_folders(tmp_path_factory):
    from tests.conftest import write_images

    root = tmp_path_factory.mktemp("measures")
    for i, name in enumerate(("cats", "dogs", "owls")):
        write_images(root / "target" / name, 8, size=32, seed=i, offset=40.0 * i - 40.0)
    write_images(root / "samples", 24, size=32, seed=9)
    return root


def test_compare_all_metrics_json_carries_every_measure_with_its_protocol(labelled_folders):
    import json

    root = labelled_folders
    result = cli("compare", root / "target", root / "samples", "--extractor", "efficientnet-lite0",
                 "--metrics", "all", "--bootstrap", "20", "--min-count", "2", "--json", "--quiet",
                 "--device", "cpu")  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    for key in ("fid", "kid", "recall", "inception_score", "swd", "classifier"):
        assert key in out
    score = out["inception_score"]["candidate"]
    assert score["low"] <= score["value"] <= score["high"] and score["confidence"] == 0.95
    assert score["comparable_with_published"] is False
    assert any("not comparable with published IS" in n for n in score["notes"])
    assert out["inception_score"]["reference"]["n"] == 24
    assert set(out["swd"]["per_level"]) == {"32", "16"}
    assert out["swd"]["options"]["directions"] == 512
    classifier = out["classifier"]
    assert classifier["labels"] == "sub-folders (3 classes)"
    assert classifier["mode_coverage"]["classes"] == 3
    assert 0.0 <= classifier["gan_train"]["value"] <= 1.0
    assert "unconditional analogue" in classifier["conventions"]["gan_test_confidence"]


def test_compare_default_metrics_add_nothing_new(labelled_folders):
    import json

    root = labelled_folders
    result = cli("compare", root / "target", root / "samples", "--extractor", "efficientnet-lite0",
                 "--bootstrap", "0", "--json", "--quiet", "--device", "cpu")  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert not {"inception_score", "swd", "classifier"} & set(out)


def test_compare_classifier_on_an_unlabelled_target_asks_for_classes(labelled_folders):
    root = labelled_folders
    result = cli("compare", root / "samples", root / "target", "--extractor", "efficientnet-lite0",
                 "--metrics", "classifier", "--quiet", "--device", "cpu")  # fmt: skip
    assert result.exit_code != 0
    assert "--classes K" in result.output
    assert "Traceback" not in result.output


def test_a_second_compare_on_an_unlabelled_reference_reads_its_classes_from_the_cache(
    labelled_folders, monkeypatch, tmp_path
):
    import json

    from tests.test_rank import write_modes

    calls = _count_clustering(monkeypatch)
    root = labelled_folders
    unlabelled = write_modes(tmp_path / "unlabelled", range(3), 6, seed=4)  # 3 colours, 1 folder
    args = ("compare", unlabelled, root / "samples", "--extractor", "efficientnet-lite0",
            "--metrics", "classifier", "--classes", "3", "--min-count", "2", "--bootstrap", "20",
            "--json", "--quiet", "--device", "cpu")  # fmt: skip
    first, second = cli(*args), cli(*args)
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    assert len(calls) == 1
    assert json.loads(first.output)["classifier"] == json.loads(second.output)["classifier"]
    assert cli(*args, "--no-cache").exit_code == 0
    assert len(calls) == 2


def test_compare_metrics_names_are_checked_before_any_work(labelled_folders):
    root = labelled_folders
    result = cli("compare", root / "target", root / "samples", "--metrics", "fid,bogus")
    assert result.exit_code == 2
    assert "unknown metric 'bogus'" in result.output


def test_rank_by_mode_coverage_orders_sources_covering_all_half_and_a_tenth(tmp_path):
    from advisor.metrics import MetricOptions
    from advisor.ranking import rank
    from advisor.ranking.result import recommendation
    from tests.test_rank import mode_sources, write_modes

    target = tmp_path / "target"  # labelled: one sub-folder per colour
    for m in range(10):
        write_modes(target / f"colour{m}", [m], 4, seed=m)
    sources = mode_sources(tmp_path, seed=11)
    common = dict(setting="source", source_data=sources, n_samples=40,
                  extractor="efficientnet-lite0", device="cpu", progress=False,
                  metrics=MetricOptions(bootstrap=20, kid_subsets=10))  # fmt: skip
    ranking = rank(target, by="mode_coverage", min_count=3, **common)
    assert [row.checkpoint for row in ranking.rows] == ["all", "half", "tenth"]
    values = [row.estimate("mode_coverage").value for row in ranking.rows]
    # 3 training images per colour make a coarse classifier: a stray pseudo-label or two.
    assert values[0] == 1.0 and 0.5 <= values[1] <= 0.6 and 0.1 <= values[2] <= 0.2
    row = ranking.to_dict()["rows"][0]
    assert row["classifier"]["labels"] == "sub-folders (10 classes)"
    # Ties are decided by the classifier's bootstrap replicates: all, half and a tenth of the
    # classes are far apart.
    assert not any(r.tied_with for r in ranking.rows)
    assert "the paired bootstrap separates" in recommendation(ranking)
    by_is = rank(target, by="is", **common)
    assert by_is.protocol.to_dict()["direction"] == "higher is better"
    assert all(r.other.inception_score is not None for r in by_is.rows)
    said = recommendation(by_is)
    if by_is.rows[0].tied_with:  # tied at the top by the split test, or separated by it
        assert "but it is tied with" in said
    else:
        assert "the paired t-test over splits separates" in said


def test_rank_by_swd_measures_each_generators_seeded_samples_against_the_target(tmp_path):
    import json
    import shutil

    from advisor.checkpoints.importers import read_checkpoint
    from advisor.images import load_images
    from advisor.sampling import sample
    from tests.conftest import write_images
    from tests.test_rank import entry, run_cli, save_generator

    target = write_images(tmp_path / "target", 12, size=16, seed=1)
    for name, seed in (("gen-a", 3), ("gen-b", 40)):
        save_generator(tmp_path / name, seed)
    for suffix in (".safetensors", ".json"):
        shutil.copy(tmp_path / f"gen-a{suffix}", tmp_path / f"twin{suffix}")
    registry = tmp_path / "reg.toml"
    registry.write_text("".join(entry(n, f"{n}.safetensors") for n in ("gen-a", "gen-b", "twin")))
    args = ("rank", target, "--registry", registry, "--offline", "--extractor",
            "efficientnet-lite0", "--device", "cpu", "--n-samples", 10, "--bootstrap", 20,
            "--by", "swd", "--json")  # fmt: skip
    first = run_cli(*args)
    assert first.exit_code == 0, first.output
    data = json.loads(first.output)
    assert data["protocol"]["by"] == "swd"
    rows = {row["checkpoint"]: row for row in data["rows"]}
    assert set(rows) == {"gen-a", "gen-b", "twin"}
    values = [row["swd"]["value"] for row in data["rows"]]
    assert values == sorted(values)  # lower is better
    # Known answer: SWD of the 10 seeded samples (seeds 0-9, random noise seeded per image, as
    # the ranking samples) against the target's images, computed here directly.
    target_images, _ = load_images(target, size=16)
    for name in ("gen-a", "gen-b"):
        ckpt, _ = read_checkpoint(tmp_path / f"{name}.safetensors", networks=(), device="cpu")
        images = np.concatenate(
            [b.numpy() for b in sample(ckpt.G_ema, range(10), noise_mode="random")]
        )
        expected = swd(target_images, images)
        assert rows[name]["swd"]["value"] == expected.mean
        assert rows[name]["swd"]["n"] == 10 and set(rows[name]["swd"]["per_level"]) == {"16"}
    # The twin's samples are the same images: the same value, so the two tie.
    assert rows["twin"]["swd"]["value"] == rows["gen-a"]["swd"]["value"]
    assert "twin" in rows["gen-a"]["tied_with"]
    assert any("samples of 16 px compared with the target at its 16 px" in n
               for n in rows["gen-a"]["notes"])  # fmt: skip
    # A second ranking reads the features from the cache and samples the images again.
    second = json.loads(run_cli(*args).output)
    assert all(row["from_cache"] for row in second["rows"])
    assert {r["checkpoint"]: r["swd"]["value"] for r in second["rows"]} == {
        name: row["swd"]["value"] for name, row in rows.items()
    }


def test_rank_by_swd_in_the_source_setting_reads_source_images_and_skips_feature_files(tmp_path):
    import json

    from advisor.features.files import save_features
    from advisor.features.pipeline import FeatureOptions, compute_features
    from tests.test_rank import mode_sources, run_cli, write_modes

    target = write_modes(tmp_path / "target", range(10), 4, seed=0)
    sources = mode_sources(tmp_path, seed=1)
    options = FeatureOptions(extractor="efficientnet-lite0", device="cpu", progress=False)
    save_features(tmp_path / "all.npz", compute_features(sources["all"], options=options))
    given = [a for name, path in sources.items() for a in ("--source-data", f"{name}={path}")]
    common = ("--extractor", "efficientnet-lite0", "--device", "cpu", "--n-samples", 30,
              "--bootstrap", 0, "--by", "swd", "--setting", "source", "--json")  # fmt: skip
    result = run_cli("rank", target, *given, "--source-data", f"npz={tmp_path / 'all.npz'}",
                     *common)  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    # Covering the target's ten colours, half of them, or one: SWD orders them so.
    assert [row["checkpoint"] for row in data["rows"]] == ["all", "half", "tenth"]
    # "tenth" and "half" hold 40 images, cut to the same seeded 30 as their features.
    assert all(row["swd"]["n"] == 30 for row in data["rows"])
    (skip,) = data["skipped"]
    assert skip["checkpoint"] == "npz" and "feature file" in skip["reason"]
    # A target given as features cannot be ranked by swd: one line, before any work.
    features = run_cli("rank", tmp_path / "all.npz", *given, *common)
    assert features.exit_code != 0 and "rank --by swd compares images" in features.output


@pytest.mark.parametrize(("metric", "mode"), [("is", "max"), ("swd", "min")])
def test_finetune_tracks_an_other_measure_with_its_direction(tmp_path, metric, mode):
    import json

    from advisor.finetuning import FinetuneOptions, finetune
    from advisor.metrics.directions import METRIC_MODES
    from tests.conftest import write_images
    from tests.test_finetune import FAST, _checkpoint

    assert METRIC_MODES[metric] == mode
    source = _checkpoint(tmp_path / "tiny")
    target = write_images(tmp_path / "target", 12, size=16, seed=3)
    options = FinetuneOptions(**{**FAST, "metric": metric})
    run = finetune(source, target, run_dir=tmp_path / "run", options=options, device="cpu")
    lines = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    values = [line["metrics"][metric] for line in lines]
    assert len(values) == 3 and all(np.isfinite(values))
    summary = json.loads((run.path / "summary.json").read_text())
    assert summary["metric"] == metric
    best = min(values) if mode == "min" else max(values)
    assert summary["best"] == pytest.approx(best)


# --- paired decisions in rank ---------------------------------------------------------------


def test_paired_splits_separate_a_consistent_is_gain_that_single_intervals_cannot():
    # B is A with every row's logits sharpened by 1%: a small gain in every split. Each set's
    # own interval swallows it, the t-interval of the per-split differences does not, and
    # a set against itself is tied. Splits pair because both sets have the same row count.
    from advisor.ranking.ties import decide_pair

    rng = np.random.default_rng(5)
    a = rng.standard_normal(20) + 2.0 * rng.standard_normal((400, 20))
    one = score_logits(a, head="t", standard_head=False, confidence=0.95)
    two = score_logits(1.01 * a, head="t", standard_head=False, confidence=0.95)
    assert two.mean > one.mean and two.low < one.high  # the intervals overlap
    pair = decide_pair(two.mean, one.mean, np.array(two.scores), np.array(one.scores),
                       confidence=0.95, n=400, method="splits")  # fmt: skip
    diffs = np.array(two.scores) - np.array(one.scores)
    half = scipy.stats.t.ppf(0.975, 9) * diffs.std(ddof=1) / np.sqrt(10)
    assert not pair.tied and pair.low == pytest.approx(diffs.mean() - half)
    assert pair.difference == pytest.approx(diffs.mean())  # split means: the values' difference
    same = decide_pair(one.mean, one.mean, np.array(one.scores), np.array(one.scores),
                       confidence=0.95, n=400, method="splits")  # fmt: skip
    assert same.tied and same.samples_to_separate is None


def test_classifier_replicates_pair_generators_of_equal_size(labelled_target):
    # B is A moved a little towards the blobs' centre: every sample's top-class confidence
    # drops a little. Single intervals overlap; the paired replicates separate them.
    from advisor.ranking.ties import decide_pair

    target, labels = labelled_target
    options = ClassifierOptions(bootstrap=200)
    a = generator(CLASSES, n=600, seed=3)
    b = (0.998 * a).astype(np.float32)
    ra = classifier_measures(target, labels, a, options=options)
    rb = classifier_measures(target, labels, b, options=options)
    ea, eb = ra.gan_test_confidence, rb.gan_test_confidence
    assert ea.value > eb.value and eb.high > ea.low  # the intervals overlap
    reps_a, reps_b = ra.replicates["gan_test_confidence"], rb.replicates["gan_test_confidence"]
    assert reps_a.shape == reps_b.shape == (200,)
    pair = decide_pair(ea.value, eb.value, reps_a, reps_b, confidence=0.95, n=600)
    assert not pair.tied and pair.low > 0
    assert set(ra.replicates) == {"gan_train", "gan_test_confidence", "mode_coverage"}
    low, high = np.quantile(ra.replicates["mode_coverage"], [0.025, 0.975])
    assert (low, high) == (ra.mode_coverage.fraction.low, ra.mode_coverage.fraction.high)
    assert (
        classifier_measures(target, labels, a, options=ClassifierOptions(bootstrap=0)).replicates
        == {}
    )
