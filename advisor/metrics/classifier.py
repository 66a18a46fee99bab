"""Classifier-based measures on features: GAN-train, a GAN-test analogue, and mode coverage.

Pure functions over feature arrays ``[N, D]`` and integer class labels ``[N]`` (0..K-1); all
models are scikit-learn's. Conventions, in one place:

*Labels.* A labelled target is a folder whose sub-folders are its classes
(:func:`folder_labels`); an unlabelled one gets K surrogate classes from k-means on its
features (:func:`kmeans_labels`, seeded; the clustering idea of S3GAN).

*The classifier* is ``StandardScaler`` then multinomial ``LogisticRegression`` (lbfgs, C=1,
``max_iter`` 1000) on the features: a linear probe, cheap next to feature extraction.

*Threads.* The classifier fits and k-means run on one thread. Their problems are small (a
target's hundreds to thousands of rows), solved in many short steps (L-BFGS iterations, k-means++
candidates, Lloyd rounds); threads gain little there, and on a CPU shared with other work (a
training job) every step's barrier waits for a descheduled thread. Measured on 2 busy cores, 500
target rows x 2048: k-means 30 s on the default threads, 0.7 s on one, same labels; a fit 12 s,
0.6 s. The thread count changes no result beyond float summation order.

*Split.* The target is split once, stratified by class, into a training part and a held-out
part (``test_fraction``, default 0.3; ``train_test_split`` with ``random_state=seed``). The
*target classifier* is trained on the training part only, so the held-out part is unseen by
every model here.

*Pseudo-labels.* advisor's generators are unconditional, so a generated sample's class is the
target classifier's prediction for it.

*GAN-train* (Shmelkov et al. 2018): a classifier trained on generated samples with their
pseudo-labels, its accuracy on the held-out target. Reported next to ``real_train``, the same
classifier trained on as many real (training-part) images: both train on ``n = min(generated,
training part)`` rows (seeded subsets). Missing modes and poor samples both lower GAN-train.

*GAN-test analogue* (``gan_test_confidence``): the target classifier's mean top-class
probability on generated samples, a fidelity proxy. True GAN-test (accuracy of a real-trained
classifier on samples of a *conditional* generator, against the conditioning labels) needs
labels that unconditional samples do not have; this is its unconditional stand-in and is named
so.

*Mode coverage* (the transfer paper's Flowers measure): of the n generated samples, the number
and fraction of the K target classes that receive at least ``min_count`` (default 10)
pseudo-labels. It depends on n (the paper uses 10,000 samples): compare only at equal n.

*Intervals*: seeded percentile bootstrap (``bootstrap`` resamples, ``confidence``) with the
models fixed: accuracies over held-out rows, confidence and mode coverage over generated rows.
They do not include the variation from retraining on other data. The resamples depend only on
the seed and the row count, so they are shared by every generator scored at the same seeds
(``ClassifierReport.replicates``: paired differences).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import sklearn
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from advisor.metrics.inputs import as_features, as_pair
from advisor.metrics.report import MAX_BOOTSTRAP, MAX_SEED, Estimate

#: Default threshold of mode coverage: the transfer paper's "at least 10 of 10,000 samples".
DEFAULT_MIN_COUNT = 10
#: Most surrogate classes k-means may make.
MAX_CLASSES = 10_000
CLASSIFIER = "StandardScaler + LogisticRegression(multinomial, lbfgs, C=1, max_iter=1000)"
#: How :func:`kmeans_labels` clusters, with the library version (a cache of its labels is keyed
#: by this: another scikit-learn may cluster differently).
KMEANS_METHOD = (
    f"StandardScaler + KMeans(k-means++, n_init=10, lloyd), clusters of one image merged into "
    f"the nearest centroid, scikit-learn {sklearn.__version__}"
)


@dataclass(frozen=True, kw_only=True)
class ClassifierOptions:
    """How the classifier measures are computed (validated on construction: ``ValueError``).

    ``min_count``: mode coverage's m; ``test_fraction``: the held-out share of the target;
    ``seed``: the split, the subsets and the bootstrap; ``bootstrap`` resamples (0: none) at
    ``confidence``.
    """

    min_count: int = DEFAULT_MIN_COUNT
    test_fraction: float = 0.3
    seed: int = 0
    bootstrap: int = 200
    confidence: float = 0.95

    def __post_init__(self) -> None:
        for name in ("min_count", "seed", "bootstrap"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
                raise ValueError(f"{name} must be an integer, got {value!r}")
        if self.min_count < 1:
            raise ValueError(f"min_count must be at least 1, got {self.min_count}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must lie in (0, 1), got {self.test_fraction}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be between 0 and {MAX_SEED}, got {self.seed}")
        if self.bootstrap < 0 or self.bootstrap == 1 or self.bootstrap > MAX_BOOTSTRAP:
            raise ValueError(f"bootstrap must be 0 or 2 to {MAX_BOOTSTRAP}, got {self.bootstrap}")
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"confidence must lie strictly between 0 and 1, got {self.confidence}")

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, kw_only=True)
class Labels:
    """Class labels of target rows: ``labels`` int64 [N] in 0..K-1, ``classes`` the K class
    names (sub-folder names, or ``cluster0..``), ``source`` how they were made, in words."""

    labels: np.ndarray
    classes: tuple[str, ...]
    source: str


def folder_labels(names: Sequence[str]) -> Labels | None:
    """Labels from each name's first path component (``"daisy/001.png"`` -> ``daisy``).

    None unless every name lies in a sub-folder and there are at least 2 of them: such a target
    is unlabelled.
    """
    parts = [name.split("/", 1) for name in names]
    if not parts or any(len(p) < 2 or not p[0] for p in parts):
        return None
    classes = tuple(sorted({p[0] for p in parts}))
    if len(classes) < 2:
        return None
    index = {c: i for i, c in enumerate(classes)}
    return Labels(
        labels=np.array([index[p[0]] for p in parts], dtype=np.int64),
        classes=classes,
        source=f"sub-folders ({len(classes)} classes)",
    )


def kmeans_labels(features: np.ndarray, k: int, *, seed: int = 0) -> Labels:
    """K surrogate classes: k-means (``n_init=10``, ``random_state=seed``) on the standardised
    features [N, D] (:data:`KMEANS_METHOD`). Raises ``ValueError`` for ``k < 2`` or ``k > N``.

    A cluster of a single image (an outlier k-means gave its own centroid) cannot be split into
    a training and a test side, so its image joins the nearest centroid of the clusters with at
    least 2 images, and the classes are renumbered 0..K'-1 (K' <= K; the labels' ``source``
    says so). ``ValueError`` when fewer than 2 such clusters are left.
    """
    x = as_features(features, "target")
    if isinstance(k, bool) or not 2 <= k <= min(len(x), MAX_CLASSES):
        raise ValueError(f"--classes must be between 2 and the target's {len(x)} images, got {k}")
    scaled = StandardScaler().fit_transform(x)
    with threadpool_limits(limits=1):  # see "Threads" in the module docstring
        labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(scaled)
    return surrogate_labels(_merge_singletons(scaled, labels, k), k, seed=seed)


def _merge_singletons(x: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """``labels`` (int [N] in 0..k-1) with every cluster of one image merged into the nearest
    centroid (squared Euclidean, in ``x``'s space) of the clusters of 2 or more, renumbered
    0..K'-1 in the kept clusters' order."""
    counts = np.bincount(labels, minlength=k)
    kept = np.flatnonzero(counts >= 2)
    if len(kept) < 2:
        raise ValueError(
            f"k-means found fewer than 2 clusters of 2 or more images among {k}; use fewer "
            "--classes"
        )
    centroids = np.stack([x[labels == c].mean(axis=0) for c in kept])
    out = np.searchsorted(kept, labels)  # kept clusters renumbered; the others fixed below
    lonely = np.flatnonzero(counts[labels] < 2)
    if len(lonely):
        d = ((x[lonely, None, :] - centroids[None, :, :]) ** 2).sum(axis=2)
        out[lonely] = d.argmin(axis=1)
    return out.astype(np.int64)


def surrogate_labels(labels: np.ndarray, k: int, *, seed: int) -> Labels:
    """:class:`Labels` of the k-means surrogate classes in ``labels`` (int [N] in 0..K'-1, K'
    <= ``k`` the clusters asked for), as :func:`kmeans_labels` makes them: for labels read back
    from a cache too."""
    y = np.asarray(labels, dtype=np.int64)
    kept = int(y.max(initial=-1)) + 1
    merged = "" if kept == k else f" ({k - kept} cluster(s) of one image merged into the nearest)"
    return Labels(
        labels=y,
        classes=tuple(f"cluster{i}" for i in range(kept)),
        source=f"k-means, K={k}, seed {seed}, on standardised features{merged}",
    )


def check_labels(labels: Labels, n: int) -> np.ndarray:
    """``labels.labels`` as int64 [n], checked: values in 0..K-1, every class with at least 2
    rows (so a stratified split keeps it on both sides). ``ValueError`` otherwise."""
    y = np.asarray(labels.labels, dtype=np.int64)
    k = len(labels.classes)
    if y.shape != (n,) or y.min(initial=0) < 0 or y.max(initial=0) >= k:
        raise ValueError(f"labels must be {n} integers in 0..{k - 1}")
    counts = np.bincount(y, minlength=k)
    if counts.min() < 2:
        small = labels.classes[int(np.argmin(counts))]
        raise ValueError(
            f"class {small!r} has {counts.min()} image(s); the classifier measures need at "
            "least 2 per class (one to train on, one to test on)"
        )
    return y


def mode_coverage(pseudo_labels: np.ndarray, n_classes: int, *, min_count: int = 10) -> int:
    """How many of ``n_classes`` classes receive at least ``min_count`` of ``pseudo_labels``
    (int [n] in 0..n_classes-1)."""
    counts = np.bincount(np.asarray(pseudo_labels, dtype=np.int64), minlength=n_classes)
    return int((counts[:n_classes] >= min_count).sum())


def _fit(x: np.ndarray, y: np.ndarray) -> Pipeline | int:
    """The classifier fitted on (x, y), or the one label when y holds a single class."""
    present = np.unique(y)
    if len(present) < 2:
        return int(present[0])
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))
    with warnings.catch_warnings(), threadpool_limits(limits=1):  # "Threads", module docstring
        warnings.simplefilter("ignore", ConvergenceWarning)  # a usable fit either way
        return model.fit(x, y)


def _predict(model: Pipeline | int, x: np.ndarray) -> np.ndarray:
    if isinstance(model, int):
        return np.full(len(x), model, dtype=np.int64)
    return model.predict(x).astype(np.int64)


def _percentile(values: np.ndarray, replicates: np.ndarray | None, confidence: float) -> Estimate:
    value = float(values.mean()) if values.ndim else float(values)
    if replicates is None or len(replicates) < 2:
        return Estimate(value)
    low, high = np.quantile(replicates, [(1 - confidence) / 2, (1 + confidence) / 2])
    return Estimate(value, float(low), float(high))


def _mean_replicates(outcomes: np.ndarray, o: ClassifierOptions, stream: int) -> np.ndarray | None:
    """Bootstrap means of per-row ``outcomes`` [n] (None without bootstrap)."""
    if not o.bootstrap:
        return None
    rng = np.random.default_rng([o.seed, stream])
    n = len(outcomes)
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=o.bootstrap)
    return counts @ outcomes.astype(np.float64) / n


@dataclass(frozen=True, kw_only=True)
class ModeCoverage:
    """``covered`` of ``classes`` target classes got >= ``min_count`` of ``n`` samples;
    ``fraction`` = covered / classes, with its bootstrap interval over samples."""

    covered: int
    classes: int
    fraction: Estimate
    min_count: int
    n: int

    def to_dict(self) -> dict[str, object]:
        return {
            "covered": self.covered,
            "classes": self.classes,
            "value": self.fraction.value,
            "low": self.fraction.low,
            "high": self.fraction.high,
            "min_count": self.min_count,
            "n_samples": self.n,
        }


@dataclass(frozen=True, kw_only=True)
class ClassifierReport:
    """The classifier measures of one generated set against a labelled target.

    ``gan_train``: accuracy on the held-out target of a classifier trained on ``n_train``
    generated samples with pseudo-labels; ``real_train``: the same trained on ``n_train`` real
    images (the reference line); ``gan_test_confidence``: the target classifier's mean top-class
    probability on the generated samples; ``mode_coverage``; ``labels``: how the target's
    classes were made; ``notes``: caveats of this run.
    """

    gan_train: Estimate
    real_train: Estimate
    gan_test_confidence: Estimate
    mode_coverage: ModeCoverage
    n_classes: int
    labels: str
    n_train: int
    n_test: int
    n_generated: int
    options: ClassifierOptions
    notes: tuple[str, ...] = ()
    #: Bootstrap replicates, float64 [B], of ``gan_train``, ``gan_test_confidence`` and
    #: ``mode_coverage`` (empty without bootstrap). Each resamples rows from a stream fixed by
    #: ``options.seed`` and the row count, so two reports with equal counts (one target and
    #: generators sampled at the same seeds) saw the same resamples: their differences are a
    #: paired bootstrap, which ``advisor rank`` uses to decide ties.
    replicates: Mapping[str, np.ndarray] = field(default_factory=dict, compare=False, repr=False)

    def to_dict(self) -> dict[str, object]:
        def est(e: Estimate) -> dict[str, float | None]:
            return {"value": e.value, "low": e.low, "high": e.high}

        return {
            "gan_train": est(self.gan_train),
            "real_train": est(self.real_train),
            "gan_test_confidence": est(self.gan_test_confidence),
            "mode_coverage": self.mode_coverage.to_dict(),
            "n_classes": self.n_classes,
            "labels": self.labels,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "n_generated": self.n_generated,
            "classifier": CLASSIFIER,
            "options": self.options.to_dict(),
            "conventions": {
                "gan_train": "classifier trained on n_train generated samples labelled by the "
                "target classifier; accuracy on the held-out target",
                "real_train": "the same classifier trained on n_train real images",
                "gan_test_confidence": "unconditional analogue of GAN-test: the target "
                "classifier's mean top-class probability on generated samples",
                "mode_coverage": "target classes with >= min_count of n_samples pseudo-labels",
                "intervals": "percentile bootstrap with the models fixed",
            },
            "notes": list(self.notes),
        }


def classifier_measures(
    target: np.ndarray,
    labels: Labels,
    generated: np.ndarray,
    *,
    options: ClassifierOptions = ClassifierOptions(),  # noqa: B008 (frozen)
) -> ClassifierReport:
    """GAN-train (with its real reference), the GAN-test analogue and mode coverage.

    ``target`` [N, D] features with ``labels`` (N labels, K >= 2 classes, each with at least 2
    images so the split keeps every class on both sides), ``generated`` [n, D] features. See
    the module docstring for every convention. Raises ``ValueError`` (one line) on bad input.
    """
    x, g = as_pair(target, generated)
    y = check_labels(labels, len(x))
    o = options
    k = len(labels.classes)
    n_test = max(k, round(o.test_fraction * len(x)))
    if len(x) - n_test < k:
        raise ValueError(
            f"{len(x)} target images cannot be split into training and held-out parts that "
            f"both hold all {k} classes"
        )
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=n_test, stratify=y, random_state=o.seed
    )
    target_model = _fit(x_train, y_train)
    if isinstance(target_model, int):  # cannot happen: the split keeps every class
        raise ValueError("the target's training part holds a single class")
    proba = target_model.predict_proba(g)
    pseudo = target_model.classes_[np.argmax(proba, axis=1)].astype(np.int64)
    confidence = proba.max(axis=1)

    n_train = min(len(g), len(x_train))
    rng = np.random.default_rng([o.seed, 1])
    pick_g = np.sort(rng.permutation(len(g))[:n_train])
    gan_model = _fit(g[pick_g], pseudo[pick_g])
    gan_hits = _predict(gan_model, x_test) == y_test
    if n_train == len(x_train):
        real_model: Pipeline | int = target_model
    else:
        pick_r = np.sort(rng.permutation(len(x_train))[:n_train])
        real_model = _fit(x_train[pick_r], y_train[pick_r])
    real_hits = _predict(real_model, x_test) == y_test

    covered = mode_coverage(pseudo, k, min_count=o.min_count)
    coverage_reps = None
    if o.bootstrap:  # resampled generated rows: each replicate's per-class counts
        n = len(pseudo)
        rows = np.random.default_rng([o.seed, 4]).multinomial(n, np.full(n, 1.0 / n), o.bootstrap)
        per_class = np.stack([np.bincount(pseudo, weights=r, minlength=k) for r in rows])
        coverage_reps = (per_class >= o.min_count).sum(axis=1) / k
    gan_train_reps = _mean_replicates(gan_hits, o, 2)
    confidence_reps = _mean_replicates(confidence, o, 3)

    notes = []
    if len(np.unique(pseudo[pick_g])) < 2:
        notes.append("the generated samples used for GAN-train fall into one class; GAN-train "
                     "is that class's share of the held-out target")  # fmt: skip
    if len(g) < o.min_count * k:
        notes.append(
            f"{len(g)} samples cannot give {k} classes {o.min_count} each; mode coverage is "
            f"bounded by {len(g) // o.min_count} classes"
        )
    if n_test < 10 * k:
        notes.append(
            f"{n_test} held-out target images for {k} classes: GAN-train accuracies are coarse"
        )
    return ClassifierReport(
        gan_train=_percentile(gan_hits, gan_train_reps, o.confidence),
        real_train=_percentile(real_hits, _mean_replicates(real_hits, o, 2), o.confidence),
        gan_test_confidence=_percentile(confidence, confidence_reps, o.confidence),
        mode_coverage=ModeCoverage(
            covered=covered,
            classes=k,
            fraction=_percentile(np.asarray(covered / k), coverage_reps, o.confidence),
            min_count=o.min_count,
            n=len(g),
        ),
        n_classes=k,
        labels=labels.source,
        n_train=n_train,
        n_test=n_test,
        n_generated=len(g),
        options=o,
        notes=tuple(notes),
        replicates={
            name: reps
            for name, reps in (
                ("gan_train", gan_train_reps),
                ("gan_test_confidence", confidence_reps),
                ("mode_coverage", coverage_reps),
            )
            if reps is not None
        },
    )
