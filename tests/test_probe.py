"""Probe fine-tunes (advisor.ranking.probe, ``advisor rank --probe``): the successive-halving plan
and its budget as known answers, the order rule, resumable runs, and the CLI end to end.

Networks are the tiny 16x16 ones of ``tests/test_finetune.py``; runs are a few steps long and
evaluations a dozen samples through the offline EfficientNet-Lite0.
"""

import itertools
import json
import math

import pytest
from click.testing import CliRunner

import advisor.finetuning.run as finetune_run
from advisor.cli import main
from advisor.errors import AdvisorError
from advisor.finetuning import FinetuneOptions
from advisor.ranking.halving import halving_counts, halving_order, halving_schedule, survivors
from advisor.ranking.probe import run_probes
from advisor.ranking.probe_report import ProbeCandidate, ProbeOptions
from tests.conftest import write_images
from tests.test_finetune import _checkpoint

LITE = "efficientnet-lite0"


# --- the plan ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "eta", "counts"),
    [
        (1, 2, ()),
        (2, 2, (2,)),
        (3, 2, (3, 2)),
        (4, 2, (4, 2)),
        (5, 2, (5, 3, 2)),
        (6, 2, (6, 3, 2)),
        (8, 2, (8, 4, 2)),
        (9, 2, (9, 5, 3, 2)),
        (6, 3, (6, 2)),
        (9, 3, (9, 3)),
    ],
)
def test_each_round_keeps_the_better_ceil_n_over_eta_until_two_remain(n, eta, counts):
    assert halving_counts(n, eta) == counts


def test_four_candidates_split_eight_kimg_into_two_equal_rounds():
    # share per round 4 kimg: round 1 gives 4 candidates 4/4 - 0.5 = 0.5 kimg each, round 2
    # gives 2 of them 4/2 - 0.5 = 1.5 more (total 2.0); every round costs exactly its share.
    plan = halving_schedule(4, budget_kimg=8.0, eval_kimg=0.5)
    assert [r.candidates for r in plan] == [4, 2]
    assert [r.added_kimg for r in plan] == pytest.approx([0.5, 1.5])
    assert [r.kimg for r in plan] == pytest.approx([0.5, 2.0])
    assert [r.cost_kimg for r in plan] == pytest.approx([4.0, 4.0])


def test_six_candidates_at_the_benchmark_default_train_whole_batches_within_the_budget():
    # 8 kimg + 5 evaluations of 500 samples = 10.5 kimg; probes evaluate 250 samples (0.25).
    # share 3,500 images: 3500/6 - 250 = 333 -> 320 (10 batches of 32), 3500/3 - 250 = 917 ->
    # 896, 3500/2 - 250 = 1500 -> 1472; totals 320, 1216, 2688 images.
    plan = halving_schedule(6, budget_kimg=10.5, eval_kimg=0.25, step_images=32)
    assert [r.candidates for r in plan] == [6, 3, 2]
    assert [round(r.added_kimg * 1000) for r in plan] == [320, 896, 1472]
    assert [round(r.kimg * 1000) for r in plan] == [320, 1216, 2688]
    total = sum(r.cost_kimg for r in plan)
    assert total == pytest.approx(6 * 0.57 + 3 * 1.146 + 2 * 1.722)
    assert total <= 10.5


CASES = list(
    itertools.product([2, 3, 5, 6, 7, 11, 16], [3.0, 10.5, 50.0], [0.0, 0.1, 0.25], [1, 32])
)


def test_the_probes_never_cost_more_than_the_budget():
    planned = 0
    for n, budget, eval_kimg, step in CASES:
        try:
            plan = halving_schedule(n, budget_kimg=budget, eval_kimg=eval_kimg, step_images=step)
        except AdvisorError:
            continue  # too small for n candidates: refused, never overspent
        planned += 1
        _check_within_budget(plan, budget, eval_kimg, step)
    assert planned > len(CASES) * 3 // 4  # the refusals are the exception


def _check_within_budget(plan, budget, eval_kimg, step):
    share = budget / len(plan)
    for r in plan:
        assert r.cost_kimg <= share + 1e-9
        assert round(r.added_kimg * 1000) % step == 0 and r.added_kimg > 0
    # what the runs really train: each round's candidates, their added images, one evaluation
    trained = sum(r.candidates * r.added_kimg for r in plan)
    evaluated = sum(r.candidates for r in plan) * eval_kimg
    assert trained + evaluated <= budget + 1e-9


def test_a_budget_too_small_for_the_candidates_is_a_one_line_error():
    with pytest.raises(AdvisorError, match="too small for 6 candidates"):
        halving_schedule(6, budget_kimg=1.0, eval_kimg=0.25, step_images=32)
    assert halving_schedule(1, budget_kimg=1.0) == ()


def test_later_rounds_rank_first_then_the_metric_then_the_name():
    rounds = [
        {"a": 10.0, "b": 5.0, "c": 7.0, "d": math.nan, "e": 7.0},
        {"b": 6.0, "c": 4.0, "e": 9.0},
        {"b": 3.0, "c": 8.0},
    ]
    assert halving_order(rounds, mode="min") == ("b", "c", "e", "a", "d")
    assert survivors(rounds[0], 3, mode="min") == ("b", "c", "e")  # c and e tie: by name
    assert survivors(rounds[0], 2, mode="max") == ("a", "c")  # NaN is never kept first
    assert halving_order(rounds[:1], mode="max")[-1] == "d"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"budget_kimg": 0.0}, "probe-kimg"),
        ({"top": 1}, "probe-top"),
        ({"eta": 1}, "eta"),
        ({"metric": "accuracy"}, "unknown probe metric"),
        ({"metric_samples": 1}, "samples"),
    ],
)
def test_bad_probe_options_are_one_line_errors(kwargs, message):
    with pytest.raises(AdvisorError, match=message):
        ProbeOptions(**kwargs)


# --- running -----------------------------------------------------------------------------------


def _options(budget=0.2):
    recipe = FinetuneOptions(batch=8, grid_seeds=4, extractor=LITE)
    return ProbeOptions(budget_kimg=budget, metric_samples=12, finetune=recipe)


@pytest.fixture
def world(tmp_path):
    target = write_images(tmp_path / "target", 12, size=16, seed=3)
    candidates = [
        ProbeCandidate(name=f"c{i}", checkpoint=str(_checkpoint(tmp_path / f"c{i}", seed=i)))
        for i in range(3)
    ]
    return tmp_path, target, candidates


def test_probes_train_each_survivor_to_its_round_and_rank_by_the_recorded_metric(world):
    tmp_path, target, candidates = world
    options = _options()
    plan = halving_schedule(3, budget_kimg=0.2, eval_kimg=0.012, step_images=8)
    # share 100 images: 100/3 - 12 = 21 -> 16; 100/2 - 12 = 38 -> 32 (total 48)
    assert [round(r.kimg * 1000) for r in plan] == [16, 48]
    report = run_probes(
        candidates, target, work_dir=tmp_path / "probes", options=options, device="cpu"
    )
    state = json.loads((tmp_path / "probes" / "probe.json").read_text())
    first = {n: state["runs"][n]["rounds"]["0"]["metrics"]["fid"] for n in ("c0", "c1", "c2")}
    kept = sorted(first, key=lambda n: (first[n], n))[:2]
    assert report.order[:2] == tuple(
        sorted(kept, key=lambda n: (state["runs"][n]["rounds"]["1"]["metrics"]["fid"], n))
    )
    assert report.pick == report.order[0] and len(report.rows) == 3
    for row in report.rows:
        latest = json.loads(
            (
                tmp_path / "probes" / state["runs"][row.name]["dir"] / "snapshots" / "latest.json"
            ).read_text()
        )
        want = 48 if row.name in kept else 16
        assert latest["nimg"] == want and round(row.kimg * 1000) == want
        assert row.rounds == (2 if row.name in kept else 1)
    assert report.cost_kimg <= options.budget_kimg
    assert report.train_s > 0 and report.eval_s > 0
    doc = report.to_dict()
    assert doc["pick"] == report.pick and doc["schedule"][1]["candidates"] == 2
    json.dumps(doc, allow_nan=False)


def test_a_second_call_reuses_every_recorded_run_and_other_inputs_are_refused(world, monkeypatch):
    tmp_path, target, candidates = world
    work = tmp_path / "probes"
    first = run_probes(candidates, target, work_dir=work, options=_options(), device="cpu")

    def no_training(*args, **kwargs):
        raise AssertionError("a recorded probe was trained again")

    monkeypatch.setattr(finetune_run, "run_finetune", no_training)
    monkeypatch.setattr(finetune_run, "resume_finetune", no_training)
    again = run_probes(candidates, target, work_dir=work, options=_options(), device="cpu")
    assert again.order == first.order and again.cost_s == pytest.approx(first.cost_s)
    with pytest.raises(AdvisorError, match="other inputs"):
        run_probes(candidates, target, work_dir=work, options=_options(0.3), device="cpu")


def test_probes_stopped_between_rounds_resume_the_survivors_from_their_snapshots(
    world, monkeypatch
):
    tmp_path, target, candidates = world
    work = tmp_path / "probes"

    class Killed(Exception):
        pass

    def kill_at_round_two(text):
        if text.startswith("probe round 2/"):
            raise Killed

    with pytest.raises(Killed):
        run_probes(
            candidates,
            target,
            work_dir=work,
            options=_options(),
            device="cpu",
            log=kill_at_round_two,
        )
    state = json.loads((work / "probe.json").read_text())
    assert all(list(e["rounds"]) == ["0"] for e in state["runs"].values())
    resumed = []
    real = finetune_run.resume_finetune
    monkeypatch.setattr(finetune_run, "run_finetune", lambda *a, **k: pytest.fail("restarted"))
    monkeypatch.setattr(
        finetune_run,
        "resume_finetune",
        lambda run_dir, **k: resumed.append(run_dir) or real(run_dir, **k),
    )
    report = run_probes(candidates, target, work_dir=work, options=_options(), device="cpu")
    assert len(resumed) == 2  # the two survivors continue from their round-1 snapshots
    assert {p.name for p in resumed} == {state["runs"][n]["dir"] for n in report.order[:2]}
    assert [r.rounds for r in report.rows] == [2, 2, 1]


def test_a_candidate_that_cannot_be_fine_tuned_is_skipped_with_its_reason(world):
    tmp_path, target, candidates = world
    from advisor.checkpoints.format import Checkpoint, load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(candidates[0].checkpoint)
    save_checkpoint(tmp_path / "no-d", Checkpoint(metadata=ckpt.metadata, G_ema=ckpt.G_ema))
    broken = ProbeCandidate(name="no-d", checkpoint=str(tmp_path / "no-d.safetensors"))
    report = run_probes(
        [broken, *candidates[:2]], target, work_dir=tmp_path / "p", options=_options(), device="cpu"
    )
    skipped = [r for r in report.rows if r.skipped]
    assert [r.name for r in skipped] == ["no-d"] and "D" in skipped[0].skipped
    assert set(report.order) == {"c0", "c1"}


# --- advisor rank --probe ----------------------------------------------------------------------


def _registry(tmp_path, names):
    text = ""
    for i, name in enumerate(names):
        _checkpoint(tmp_path / name, seed=10 + i)
        text += (
            f'[checkpoints.{name}]\nformat = "advisor"\nresolution = 16\n'
            f'source_dataset = "test"\nlicence = "CC0"\ntrust = "local"\n'
            f'path = "{name}.safetensors"\n\n'
        )
    (tmp_path / "reg.toml").write_text(text)
    return tmp_path / "reg.toml"


def test_rank_probe_json_reports_the_probes_and_reuses_them(tmp_path):
    target = write_images(tmp_path / "target", 12, size=16, seed=3)
    registry = _registry(tmp_path, ["ga", "gb", "gc"])
    args = [
        "rank",
        str(target),
        "--registry",
        str(registry),
        "--all",
        "--extractor",
        LITE,
        "--n-samples",
        "12",
        "--bootstrap",
        "0",
        "--device",
        "cpu",
        "--probe",
        "--probe-kimg",
        "0.12",
        "--probe-top",
        "2",
        "--probe-samples",
        "12",
        "--probe-dir",
        str(tmp_path / "probes"),
        "--json",
        "-q",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    zero_shot = [row["checkpoint"] for row in doc["rows"]]
    probe = doc["probe"]
    # the two best zero-shot generators were probed (auto batch 32 at 16 px: 60 - 12 -> 32)
    assert sorted(probe["order"]) == sorted(zero_shot[:2])
    assert probe["schedule"] == [
        {"index": 0, "candidates": 2, "kimg": 0.032, "added_kimg": 0.032, "cost_kimg": 0.088}
    ]
    assert probe["pick"] == probe["order"][0] and "Probe fine-tunes pick" in probe["recommendation"]
    state = tmp_path / "probes" / "probe.json"
    written = state.stat().st_mtime_ns
    text = CliRunner().invoke(main, [a for a in args if a not in ("--json",)])
    assert state.stat().st_mtime_ns == written  # every probe was recorded: nothing re-ran
    assert text.exit_code == 0, text.output
    assert "probe fine-tunes by successive halving (2 to 0.032 kimg)" in text.output
    assert f"Probe fine-tunes pick {probe['pick']}" in text.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--setting", "source", "--source-data", "x=."], "--probe fine-tunes generators"),
        (["--probe-top", "1"], "--probe-top"),
        (["--probe-kimg", "-1"], "--probe-kimg"),
    ],
)
def test_rank_probe_bad_options_fail_before_any_work(tmp_path, extra, message):
    target = write_images(tmp_path / "target", 6, size=16, seed=3)
    result = CliRunner().invoke(main, ["rank", str(target), "--probe", *extra])
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output
