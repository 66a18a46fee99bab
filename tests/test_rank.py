"""advisor rank: known orders recovered, skips with reasons, ties, caches, spreading, outputs.

Everything runs offline on the CPU with ``efficientnet-lite0``, tiny 16x16 images and tiny
generators (:func:`tests.test_checkpoints_fixtures.tiny_networks`), few samples.
"""

import json
import shutil
import threading

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import advisor.features.extract as extract
import advisor.ranking.score as score
from advisor.checkpoints.format import Checkpoint, CheckpointMetadata, save_checkpoint
from advisor.checkpoints.registry import load_registry
from advisor.cli import main
from advisor.errors import AdvisorError
from advisor.features.extract import SharedExtractor
from advisor.features.samples import (
    SampleFeatureStore,
    SampleKey,
    checkpoint_sha256,
    sample_features,
)
from advisor.metrics import MetricOptions
from advisor.ranking import DEFAULT_BY, default_samples, rank
from advisor.ranking.spread import assign, run_spread
from advisor.ranking.ties import decide_pair, tie_groups
from tests.conftest import write_images
from tests.test_checkpoints_fixtures import tiny_networks

LITE = "efficientnet-lite0"
FAST = MetricOptions(bootstrap=50, kid_subsets=10)
#: Ten well separated colours: the "modes" of the known-order target.
COLOURS = [
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (0, 0, 128), (128, 128, 128),
]  # fmt: skip


def write_modes(folder, modes, per_mode, seed):
    """``per_mode`` noisy 16x16 images of each colour in ``modes``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for m in modes:
        for i in range(per_mode):
            pixels = np.clip(np.array(COLOURS[m]) + rng.normal(0, 12, (16, 16, 3)), 0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(folder / f"m{m}_{i:03d}.png")
    return folder


def mode_sources(folder, seed):
    """Three sources of 40 images in ``folder``: one of the ten colours ("tenth", seed
    ``seed + 2``), all ten ("all", ``seed``) and five ("half", ``seed + 1``)."""
    return {
        "tenth": write_modes(folder / "tenth", [0], 40, seed=seed + 2),
        "all": write_modes(folder / "all", range(10), 4, seed=seed),
        "half": write_modes(folder / "half", range(5), 8, seed=seed + 1),
    }


def save_generator(path, seed):
    _, g_ema, _ = tiny_networks(seed=seed)
    meta = CheckpointMetadata(name=path.name, generator=g_ema.config)
    save_checkpoint(path, Checkpoint(metadata=meta, G_ema=g_ema))
    return path


def entry(name, path, fmt="advisor", resolution=16):
    return (
        f'[checkpoints.{name}]\nformat = "{fmt}"\nresolution = {resolution}\n'
        f'source_dataset = "test"\nlicence = "CC0"\ntrust = "local"\npath = "{path}"\n\n'
    )


@pytest.fixture
def zoo(tmp_path):
    """A 16 px target and a registry: two usable generators, two identical twins, an uncached
    remote entry, a corrupt torch file, a corrupt advisor pair and a 32 px entry."""
    target = write_images(tmp_path / "target", 12, size=16, seed=1)
    save_generator(tmp_path / "gen-a", 3)
    save_generator(tmp_path / "gen-b", 40)
    for twin in ("twin-1", "twin-2"):
        shutil.copy(tmp_path / "gen-a.safetensors", tmp_path / f"{twin}.safetensors")
        shutil.copy(tmp_path / "gen-a.json", tmp_path / f"{twin}.json")
    (tmp_path / "corrupt.pt").write_bytes(b"this is not a checkpoint\n" * 20)
    shutil.copy(tmp_path / "gen-a.json", tmp_path / "broken.json")
    data = (tmp_path / "gen-a.safetensors").read_bytes()
    (tmp_path / "broken.safetensors").write_bytes(data[: len(data) // 2])
    text = (
        entry("gen-a", "gen-a.safetensors")
        + entry("gen-b", "gen-b.safetensors")
        + entry("twin-1", "twin-1.safetensors")
        + entry("twin-2", "twin-2.safetensors")
        + entry("corrupt", "corrupt.pt", fmt="nvlabs-state")
        + entry("broken", "broken.safetensors")
        + entry("wide", "gen-b.safetensors", resolution=32)
        + '[checkpoints.remote]\nformat = "nvlabs-pkl"\nresolution = 16\n'
        'source_dataset = "x"\nlicence = "x"\ntrust = "official"\n'
        'url = "https://example.invalid/remote.pkl"\n'
    )
    (tmp_path / "reg.toml").write_text(text)
    return tmp_path, target, tmp_path / "reg.toml"


def run_cli(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


# --- known orders ----------------------------------------------------------------------------


def test_sources_covering_all_half_and_a_tenth_of_the_modes_rank_in_that_order(tmp_path):
    target = write_modes(tmp_path / "target", range(10), 4, seed=0)
    sources = mode_sources(tmp_path, seed=1)
    common = dict(setting="source", source_data=sources, n_samples=40, extractor=LITE,
                  device="cpu", metrics=FAST, progress=False)  # fmt: skip
    by_recall = rank(target, by="recall", **common)
    by_coverage = rank(target, by="coverage", **common)
    for ranking in (by_recall, by_coverage):
        assert [row.checkpoint for row in ranking.rows] == ["all", "half", "tenth"]
        assert all(row.setting == "source" for row in ranking.rows)
        assert not any(row.tied_with for row in ranking.rows)
    # Recall is the fraction of the TARGET inside the candidate's manifold: one mode of ten
    # covers about a tenth of the target, while nearly all of its own images are inside the
    # target's manifold (precision stays high). Swapped, these would read the other way.
    tenth = by_recall.rows[2]
    assert tenth.report.recall.value < 0.25 and tenth.report.precision.value > 0.7
    assert 0.25 < by_recall.rows[1].report.recall.value < 0.75
    assert by_recall.rows[0].report.recall.value > 0.75
    assert by_coverage.rows[0].report.coverage.value > 0.9


def test_registry_source_features_and_tags_rank_the_source_setting(tmp_path):
    from advisor.features.files import save_features
    from advisor.features.pipeline import FeatureOptions, compute_features

    target = write_modes(tmp_path / "target", range(10), 4, seed=0)
    options = FeatureOptions(extractor=LITE, device="cpu", progress=False, cache=False)
    for name, modes, per_mode, seed in (("all", range(10), 4, 1), ("tenth", [0], 40, 3)):
        folder = write_modes(tmp_path / name, modes, per_mode, seed)
        save_features(tmp_path / f"{name}.npz", compute_features(folder, options=options))
        save_generator(tmp_path / f"gen-{name}", seed)
    text = "".join(
        entry(f"gen-{name}", f"gen-{name}.safetensors")
        + f'tags = ["test-zoo"]\nsource_features = "{name}.npz"\n\n'
        for name in ("all", "tenth")
    ) + entry("untagged", "gen-all.safetensors")
    (tmp_path / "reg.toml").write_text(text)
    registry = load_registry([tmp_path / "reg.toml"])
    assert registry.get("gen-all").source_features == (tmp_path / "all.npz").resolve()
    common = dict(registry=registry, n_samples=40, extractor=LITE, device="cpu",
                  metrics=FAST, progress=False)  # fmt: skip
    ranking = rank(target, setting="source", tags=("test-zoo",), **common)
    assert [row.checkpoint for row in ranking.rows] == ["gen-all", "gen-tenth"]
    assert all(row.setting == "source" for row in ranking.rows) and not ranking.skipped
    # Without --tag every entry at the target's resolution is chosen; the untagged one has no
    # features of its training data and is a reported skip, not an error.
    ranking = rank(target, setting="source", **common)
    assert [s.name for s in ranking.skipped] == ["untagged"]
    assert "source_features" in ranking.skipped[0].reason


# --- registry, skips, outputs ---------------------------------------------------------------


def test_offline_registry_ranks_usable_entries_and_skips_the_rest(zoo):
    folder, target, registry = zoo
    out = folder / "report"
    result = run_cli(
        "rank", target, "--registry", registry, "--offline", "--extractor", LITE,
        "--device", "cpu", "--n-samples", 12, "--bootstrap", 50, "--json", "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert set(data) == {"target", "protocol", "selection", "rows", "skipped", "recommendation"}
    names = [row["checkpoint"] for row in data["rows"]]
    assert sorted(names) == ["gen-a", "gen-b", "twin-1", "twin-2"]
    reasons = {s["checkpoint"]: s["reason"] for s in data["skipped"]}
    assert set(reasons) == {"remote", "corrupt", "broken"}
    assert "offline" in reasons["remote"]
    assert all(reason and "\n" not in reason for reason in reasons.values())
    # selection: the 32 px entry (and the default registry's remote entries) are excluded
    excluded = {e["name"]: e["reason"] for e in data["selection"]["excluded"]}
    assert "32 px" in excluded["wide"] and "ffhq-256" in excluded
    assert data["target"]["resolution"] == 16 and data["target"]["n_images"] == 12
    row = data["rows"][0]
    assert row["rank"] == 1 and row["setting"] == "generated"
    for metric in ("recall", "precision", "fid", "kid", "density", "coverage"):
        assert set(row[metric]) == {"value", "low", "high"}
        assert row[metric]["low"] <= row[metric]["value"] <= row[metric]["high"] + 1e-12
    assert isinstance(row["tied_with"], list)
    protocol = data["protocol"]
    assert protocol["n_samples"] == 12 and protocol["seeds"] == "0-11"
    assert protocol["noise_mode"] == "random" and protocol["truncation_psi"] == 1.0
    assert protocol["extractor"]["extractor"] == LITE and protocol["by"] == DEFAULT_BY == "fid"
    # the report folder is self-contained
    index = (out / "index.html").read_text()
    assert index.count("data:image/png;base64,") >= 5
    assert "http://" not in index and "https://" not in index.replace("https://example", "")
    for name in ("rank.json", "bar.png", "scatter.png", "target.png", "samples_01.png"):
        assert (out / name).is_file(), name
    assert json.loads((out / "rank.json").read_text())["rows"] == data["rows"]


def test_identical_checkpoints_are_tied_and_table_and_csv_show_it(zoo):
    folder, target, registry = zoo
    common = ["--registry", registry, "--offline", "--extractor", LITE, "--device", "cpu",
              "--n-samples", 12, "--bootstrap", 50, "-q"]  # fmt: skip
    picks = ["--checkpoint", "twin-1", "--checkpoint", "twin-2", "--checkpoint", "gen-b"]
    text = run_cli("rank", target, *common, *picks)
    assert text.exit_code == 0, text.output
    assert "Fine-tune from" in text.output and "recall" in text.output
    csv_out = run_cli("rank", target, *common, *picks, "--csv")
    lines = csv_out.output.strip().splitlines()
    assert lines[0].startswith("rank,checkpoint,setting,recall,recall_low,recall_high")
    rows = {line.split(",")[1]: line for line in lines[1:]}
    assert set(rows) == {"twin-1", "twin-2", "gen-b"}
    data = json.loads(run_cli("rank", target, *common, *picks, "--json").output)
    by_name = {row["checkpoint"]: row for row in data["rows"]}
    assert by_name["twin-1"]["recall"] == by_name["twin-2"]["recall"]
    assert "twin-2" in by_name["twin-1"]["tied_with"]
    assert "twin-1" in by_name["twin-2"]["tied_with"]
    ranks = sorted([by_name["twin-1"]["rank"], by_name["twin-2"]["rank"]])
    assert ranks[1] == ranks[0] + 1  # identical rows are neighbours (ordered by name)


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--tag", "faces"], "no registry entry is tagged faces"),
        (["--checkpoint", "nope"], "neither a registry name"),
        (["--checkpoint", "remote"], "no usable checkpoint"),
        (["--setting", "source"], "gives no source_features"),
        (["--json", "--csv"], "one of --json and --csv"),
    ],
)
def test_user_mistakes_are_one_line_errors(zoo, extra, match):
    _, target, registry = zoo
    result = run_cli("rank", target, "--registry", registry, "--offline", "--extractor", LITE,
                     "--device", "cpu", "--n-samples", 12, "-q", *extra)  # fmt: skip
    assert result.exit_code != 0
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and match in errors[0], result.output


def test_target_too_small_for_knn_is_one_line(zoo):
    folder, _, registry = zoo
    small = write_images(folder / "small", 4, size=16)
    result = run_cli("rank", small, "--registry", registry, "--offline", "--extractor", LITE,
                     "--device", "cpu", "--n-samples", 12, "-q")  # fmt: skip
    assert result.exit_code != 0
    assert "need at least 6" in result.output and result.output.count("Error") == 1


# --- caches ----------------------------------------------------------------------------------


def test_sample_features_second_call_builds_neither_generator_nor_extractor(tmp_path):
    path = save_generator(tmp_path / "g", 5)
    shared = SharedExtractor(LITE)
    key = SampleKey(checkpoint_sha256=checkpoint_sha256(path), seeds=tuple(range(6)),
                    noise_mode="random", truncation_psi=1.0, protocol=shared.protocol)  # fmt: skip
    loads = []

    def load():
        loads.append(1)
        from advisor.checkpoints.format import load_checkpoint

        return load_checkpoint(path, networks=()).G_ema

    first = sample_features(key, load_generator=load, extractor=shared, batch_size=4)
    assert not first.from_cache and loads == [1] and shared.built == 1
    assert first.features.shape == (6, 1280) and first.features.dtype == np.float32
    assert first.preview.shape == (6, 3, 16, 16) and first.preview.dtype == np.uint8

    fresh = SharedExtractor(LITE)
    second = sample_features(key, load_generator=load, extractor=fresh, batch_size=2)
    assert second.from_cache and loads == [1] and fresh.built == 0
    np.testing.assert_array_equal(first.features, second.features)
    np.testing.assert_array_equal(first.preview, second.preview)
    # Another seed list, noise mode or truncation is another entry.
    for change in (dict(seeds=tuple(range(1, 7))), dict(noise_mode="const"),
                   dict(truncation_psi=0.7)):  # fmt: skip
        other = SampleKey(**{**key.__dict__, **change})
        assert other.digest() != key.digest()
        assert SampleFeatureStore().get(other) is None


def test_damaged_sample_cache_entry_is_a_miss(tmp_path):
    path = save_generator(tmp_path / "g", 5)
    shared = SharedExtractor(LITE)
    key = SampleKey(checkpoint_sha256=checkpoint_sha256(path), seeds=(0, 1, 2),
                    noise_mode="random", truncation_psi=1.0, protocol=shared.protocol)  # fmt: skip
    store = SampleFeatureStore(tmp_path / "store")
    store.put(key, np.ones((3, 1280), dtype=np.float32), None)
    assert store.get(key) is not None
    (tmp_path / "store" / f"{key.digest()}.npz").write_bytes(b"garbage")
    assert store.get(key) is None


def test_rerank_reads_every_feature_from_the_caches(zoo, monkeypatch):
    _, target, registry = zoo
    registry = load_registry([registry])
    common = dict(registry=registry, checkpoints=["gen-a", "gen-b"], n_samples=12,
                  extractor=LITE, device="cpu", metrics=FAST, progress=False)  # fmt: skip
    cold = rank(target, **common)

    def forbidden(*args, **kwargs):
        raise AssertionError("a warm re-rank must not load a generator or build an extractor")

    monkeypatch.setattr(score, "read_checkpoint", forbidden)
    monkeypatch.setattr(extract, "get_extractor", forbidden)
    warm = rank(target, **common)
    assert warm.target.from_cache and all(row.from_cache for row in warm.rows)
    assert [r.to_dict()["recall"] for r in warm.rows] == [r.to_dict()["recall"] for r in cold.rows]


# --- spreading over devices ------------------------------------------------------------------


def test_assign_balances_costs_deterministically():
    assert assign([1, 1, 1, 1], 2) == [[0, 2], [1, 3]]
    assert assign([8, 1, 1, 1, 1, 1], 2) == [[0], [1, 2, 3, 4, 5]]
    assert assign([3, 2], 5) == [[0], [1], [], [], []]
    with pytest.raises(ValueError):
        assign([1], 0)


def test_run_spread_uses_one_thread_per_device_and_keeps_job_order():
    seen = {}
    lock = threading.Lock()
    # Each device's first job waits for the other's: only two concurrent workers get past it.
    both_running = threading.Barrier(2, timeout=30)

    def work(job, device):
        with lock:
            first = device not in seen
            seen.setdefault(device, []).append(job)
        if first:
            both_running.wait()
        return job * 10

    out = run_spread(list(range(7)), ["dev0", "dev1"], work)
    assert out == [j * 10 for j in range(7)]
    assert seen == {"dev0": [0, 2, 4, 6], "dev1": [1, 3, 5]}


def test_two_cpu_workers_give_the_same_ranking_as_one(zoo):
    _, target, registry = zoo
    registry = load_registry([registry])
    common = dict(registry=registry, checkpoints=["gen-a", "gen-b", "twin-1"], n_samples=12,
                  extractor=LITE, metrics=FAST, progress=False, cache=False)  # fmt: skip
    one = rank(target, devices=["cpu"], **common)
    two = rank(target, devices=["cpu", "cpu"], **common)
    assert [r.to_dict()["recall"] for r in one.rows] == [r.to_dict()["recall"] for r in two.rows]
    assert [r.checkpoint for r in one.rows] == [r.checkpoint for r in two.rows]
    assert two.protocol.devices == ("cpu", "cpu")


# --- small pieces ----------------------------------------------------------------------------


def test_default_sample_count_is_the_target_size_clamped():
    assert default_samples(12) == 1000 and default_samples(4321) == 4321
    assert default_samples(50_000) == 10_000


def test_paired_bootstrap_ties_and_samples_to_separate():
    rng = np.random.default_rng(0)
    base = rng.normal(0.5, 0.05, 200)
    same = decide_pair(0.5, 0.5, base, base.copy(), confidence=0.95, n=100)
    assert same.tied and same.samples_to_separate is None
    close = decide_pair(0.51, 0.5, base + 0.01 + rng.normal(0, 0.02, 200), base,
                        confidence=0.95, n=100)  # fmt: skip
    assert close.tied and close.samples_to_separate > 100
    apart = decide_pair(0.7, 0.5, base + 0.2, base, confidence=0.95, n=100)
    assert not apart.tied and apart.samples_to_separate is None
    assert tie_groups([same, apart, close], 4) == [0, 0, 1, 1]


def test_api_errors_are_advisor_errors(zoo):
    _, target, registry = zoo
    with pytest.raises(AdvisorError, match="rank by one of"):
        rank(target, by="speed", extractor=LITE)
    with pytest.raises(AdvisorError, match="--n-samples"):
        rank(target, n_samples=3, extractor=LITE)
    assert torch.get_num_threads() >= 1
