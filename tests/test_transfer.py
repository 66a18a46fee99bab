"""The evidence benchmark (benchmarks/transfer.py): its statistics as known answers, the analysis
of a hand-made results document, and tiny end-to-end runs that are stopped and resumed.

The zoo is two tiny 16x16 checkpoints (G, D, G_ema) of ``tests/test_finetune.py``; runs are a
few batches of 8 images and evaluations a dozen samples through the offline EfficientNet-Lite0.
"""

import json
import math

import pytest

import advisor.finetuning.run as finetune_run
from advisor.cache import json_safe
from advisor.errors import AdvisorError
from benchmarks import evidence, transfer, transfer_report, transfer_runs
from tests.conftest import write_images
from tests.test_finetune import _checkpoint

FIDS = {"a": 10.0, "b": 20.0, "c": 30.0, "d": 40.0}


# --- statistics on hand-made orders ------------------------------------------------------------


def test_a_perfect_predictor_scores_one_and_picks_the_best():
    score = evidence.score_predictor("p", {"a": 3, "b": 2, "c": 1, "d": 0}, FIDS)
    assert score.order == ("a", "b", "c", "d") and score.pick == "a"
    assert score.spearman == pytest.approx(1.0) and score.kendall == pytest.approx(1.0)
    assert score.regret == 0.0 and score.optimal is True


def test_a_reversed_predictor_scores_minus_one_and_regrets_the_worst():
    score = evidence.score_predictor("p", {"a": 0, "b": 1, "c": 2, "d": 3}, FIDS)
    assert score.spearman == pytest.approx(-1.0) and score.kendall == pytest.approx(-1.0)
    assert score.pick == "d" and score.regret == pytest.approx(40 / 10 - 1)
    assert score.optimal is False


def test_one_swapped_pair_gives_the_textbook_rank_correlations():
    # order a, c, b, d against a, b, c, d: sum d^2 = 2, rho = 1 - 6*2/(4*15) = 0.8;
    # 5 concordant and 1 discordant pairs of 6: tau = 4/6
    score = evidence.score_predictor("p", {"a": 4, "c": 3, "b": 2, "d": 1}, FIDS)
    assert score.spearman == pytest.approx(0.8)
    assert score.kendall == pytest.approx(2 / 3)


def test_ties_use_average_ranks_and_a_constant_predictor_has_no_correlation():
    tied = evidence.score_predictor("p", {"a": 1, "b": 1, "c": 0, "d": 0}, FIDS)
    # ranks (3.5, 3.5, 1.5, 1.5) vs (4, 3, 2, 1): rho = 0.894..., tau-b = 4/sqrt(4*6) = 0.816...
    assert tied.spearman == pytest.approx(0.8944271909999159)
    assert tied.kendall == pytest.approx(4 / math.sqrt(24))
    assert tied.pick == "a"  # a tie for the top goes to the first name
    flat = evidence.score_predictor("p", {"a": 1, "b": 1, "c": 1, "d": 1}, FIDS)
    assert flat.spearman is None and flat.kendall is None


def test_a_lower_is_better_score_is_negated_before_it_is_compared():
    good = evidence.goodness({"a": 1.0, "b": 2.0, "c": math.nan, "d": None}, lower_is_better=True)
    assert good == {"a": -1.0, "b": -2.0}
    score = evidence.score_predictor("fid", good, FIDS)
    assert score.n == 2 and score.pick == "a" and score.spearman == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("pick_fid", "optimal"), [(100.0, True), (104.0, True), (105.0, True), (105.1, False)]
)
def test_optimal_means_within_five_percent_of_the_best_fid_inclusive(pick_fid, optimal):
    assert evidence.regret(pick_fid, 100.0) == pytest.approx(pick_fid / 100 - 1)
    assert evidence.is_optimal(pick_fid, 100.0) is optimal


def test_agreement_of_two_orders_and_a_curve_reaching_a_level():
    a = {"a": 3.0, "b": 2.0, "c": 1.0}
    assert evidence.agreement(a, a) == {
        "n": 3,
        "spearman": pytest.approx(1.0),
        "kendall": pytest.approx(1.0),
        "same_top1": True,
        "same_order": True,
    }
    b = {"a": 2.0, "b": 3.0, "c": 1.0}
    assert evidence.agreement(a, b)["same_top1"] is False
    assert evidence.first_kimg_at_or_below([0, 2, 4], [50.0, 30.0, 20.0], 30.0) == 2
    assert evidence.first_kimg_at_or_below([0, 2], [50.0, 40.0], 30.0) is None


# --- the analysis of a results document --------------------------------------------------------


def _run(final_fid, kind="source", curve=(90.0,)):
    curves = [{"kimg": float(i), "metrics": {"fid": v}} for i, v in enumerate(curve)]
    curves.append(
        {
            "kimg": float(len(curve)),
            "metrics": {
                "fid": final_fid,
                "kid": final_fid / 1e3,
                "recall": 1 / final_fid,
                "coverage": 1 / final_fid,
            },
        }
    )
    return {
        "kind": kind,
        "finished": True,
        "final": curves[-1]["metrics"],
        "best_fid": {"value": min(final_fid, *curve), "kimg": 0.0},
        "curves": curves,
        "convergence": {"convergence_kimg": 1.0, "auc": 0.5},
    }


def test_analysis_of_a_hand_made_document():
    doc = {
        "config": {"zoo": [{"name": n} for n in FIDS]},
        "runs": {
            **{n: _run(f) for n, f in FIDS.items()},
            "scratch": _run(35.0, kind="scratch", curve=(90.0, 60.0)),
        },
        "zero_shot": {
            "generated": {
                "cost_s": 7.0,
                "directions": {"recall": "max", "fid": "min"},
                "scores": {
                    "a": {"recall": 0.9, "fid": 50.0},
                    "b": {"recall": 0.8, "fid": 40.0},
                    "c": {"recall": 0.7, "fid": 60.0},
                    "d": {"recall": 0.1, "fid": 70.0},
                },
            },
            "source": {"skipped": "no source data"},
        },
        "probe": {"metric": "fid", "order": ["b", "a", "c", "d"], "cost_s": 30.0},
    }
    out = evidence.analyse(doc)
    assert out["complete"] and out["true_order"] == ["a", "b", "c", "d"]
    by = {p["name"]: p for p in out["predictors"]}
    assert set(by) == {"generated/recall", "generated/fid", "probe/fid"}
    assert by["generated/recall"]["spearman"] == pytest.approx(1.0)
    assert by["generated/recall"]["cost_s"] == 7.0
    # zero-shot FID orders b, a, c, d: one swap at the top; the pick b is 100% worse than a
    assert by["generated/fid"]["pick"] == "b" and by["generated/fid"]["regret"] == 1.0
    assert by["generated/fid"]["spearman"] == pytest.approx(0.8)
    assert by["probe/fid"]["optimal"] is False and by["probe/fid"]["cost_s"] == 30.0
    assert out["default_predictor"] == "generated/fid"  # rank's default, by the evidence
    assert out["meeting_the_bar"] == ["generated/recall"] and not out["default_meets_the_bar"]
    alt = out["truth_alternatives"]
    assert alt["final_kid"]["same_order"] and alt["final_recall"]["spearman"] == pytest.approx(1)
    svb = out["scratch_vs_best"]
    assert svb["best_source"] == "a" and svb["fid_ratio_scratch_over_best"] == 3.5
    assert svb["kimg_for_best_source_to_reach_scratch_final_fid"] == 1.0
    md = transfer_report.markdown(
        {
            **doc,
            "analysis": out,
            "config": {
                **doc["config"],
                "target": {"path": "/x/t", "n_images": 9},
                "finetune": {"metric_samples": 12, "extractor": "e", "seed": 0},
                "probe": {"budget_kimg": 1.0, "metric": "fid", "metric_samples": 12},
            },
        }
    )
    assert "| `generated/fid` | 0.80 | 0.67 | `b` | 1.000 | no | 7 | 4 |" in md
    assert "**True order** (final FID after fine-tuning, best first): `a` > `b`" in md
    assert "not measured: no source data" in md


def test_the_truths_repeatability_compares_the_order_on_other_seeds_with_the_true_order():
    doc = {
        "config": {"zoo": [{"name": n} for n in FIDS]},
        "runs": {n: _run(f) for n, f in FIDS.items()},
        # a and b swap on the other seeds; scratch and unknown names are left out
        "remeasured": {"fid": {"a": 12.0, "b": 11.0, "c": 30.0, "d": 40.0, "scratch": 1.0}},
    }
    again = evidence.analyse(doc)["truth_repeatability"]
    assert again["order"] == ["b", "a", "c", "d"] and not again["same_top1"]
    assert again["spearman"] == pytest.approx(0.8) and again["n"] == 4
    changes = [abs(doc["remeasured"]["fid"][n] - f) for n, f in FIDS.items()]
    assert again["mean_abs_fid_change"] == pytest.approx(sum(changes) / 4)
    assert "truth_repeatability" not in evidence.analyse({**doc, "remeasured": {"fid": {}}})


def test_across_targets_ranks_predictors_and_the_default_rule_needs_optimal_picks_everywhere():
    def analysis(**predictors):
        return {
            "predictors": [
                {"name": n, "spearman": rho, "optimal": opt} for n, (rho, opt) in predictors.items()
            ]
        }

    summary = evidence.across_targets(
        {
            "t1": analysis(**{"generated/recall": (0.9, True), "generated/coverage": (0.6, True),
                              "source/density": (1.0, True), "generated/fid": (0.0, True)}),
            "t2": analysis(**{"generated/recall": (0.9, False), "generated/coverage": (0.5, True),
                              "source/density": (0.9, True)}),
        }
    )  # fmt: skip
    rows = {r["name"]: r for r in summary["predictors"]}
    assert [r["name"] for r in summary["predictors"]] == [
        "source/density",
        "generated/coverage",
        "generated/recall",  # higher mean, but not optimal on t2
        "generated/fid",  # scored on one target only
    ]
    assert rows["generated/coverage"]["mean_spearman"] == pytest.approx(0.55)
    assert (
        rows["generated/fid"]["mean_spearman"] == 0.0
        and not rows["generated/fid"]["on_every_target"]
    )
    # source/density is better but needs source data: the default comes from `generated`
    assert summary["evidence_default"] == "generated/coverage"
    only_recall = {"t": analysis(**{"generated/recall": (0.9, False)})}
    assert evidence.across_targets(only_recall)["evidence_default"] is None


def test_an_unfinished_source_is_left_out_of_the_truth():
    doc = {
        "config": {"zoo": [{"name": "a"}, {"name": "b"}]},
        "runs": {"a": _run(10.0), "b": {**_run(5.0), "finished": False}},
    }
    out = evidence.analyse(doc)
    assert not out["complete"] and out["true_order"] == ["a"]


# --- end to end --------------------------------------------------------------------------------


@pytest.fixture
def world(tmp_path):
    """A 16 px target, a zoo registry of two tiny checkpoints, a source-data folder each."""
    target = write_images(tmp_path / "target", 12, size=16, seed=3)
    text = ""
    source_data = {}
    for i, name in enumerate(["za", "zb"]):
        _checkpoint(tmp_path / name, seed=20 + i)
        text += (
            f'[checkpoints.{name}]\nformat = "advisor"\nresolution = 16\n'
            f'source_dataset = "test"\nlicence = "CC0"\ntrust = "local"\n'
            f'path = "{name}.safetensors"\n\n'
        )
        folder = write_images(tmp_path / f"data-{name}", 12, size=16, seed=40 + i, offset=20 * i)
        source_data[name] = str(folder)
    (tmp_path / "zoo.toml").write_text(text)
    return tmp_path, target, tmp_path / "zoo.toml", source_data


TINY = transfer_runs.BenchmarkOptions(
    budget_kimg=0.096,
    metric_every=0.096,
    snapshot_every=0.048,
    metric_samples=12,
    probe_samples=12,
    rank_samples=12,
    batch=8,
    device="cpu",
)


def test_budget_defaults_and_bad_options():
    default = transfer_runs.BenchmarkOptions()
    assert default.evaluations == 5 and default.full_run_kimg == pytest.approx(10.5)
    assert default.probe(6).budget_kimg == pytest.approx(10.5)
    assert TINY.evaluations == 2 and TINY.full_run_kimg == pytest.approx(0.12)
    with pytest.raises(AdvisorError, match="metric-every"):
        transfer_runs.BenchmarkOptions(budget_kimg=1.0, metric_every=2.0)
    with pytest.raises(AdvisorError, match="kimg"):
        transfer_runs.BenchmarkOptions(budget_kimg=-1.0, metric_every=-2.0)


def test_a_benchmark_stopped_mid_run_resumes_skips_finished_runs_and_reports(
    world, tmp_path, monkeypatch
):
    _, target, zoo, source_data = world
    out, work = tmp_path / "results" / "t.json", tmp_path / "work"
    call = dict(zoo=str(zoo), options=TINY, source_data=source_data, work=work)

    class Killed(Exception):
        pass

    def kill_in_second_run(text):  # stop zb at its last evaluation, after a snapshot at 0.048
        if text.startswith("  zb: fid") and "0.096 kimg" in text:
            raise Killed

    with pytest.raises(Killed):
        transfer.benchmark(target, out, log=kill_in_second_run, **call)
    partial = json.loads(out.read_text())  # written after every step
    assert list(partial["runs"]) == ["za"] and partial["runs"]["za"]["finished"]
    assert set(partial["zero_shot"]) == {"generated", "source"}
    za_snapshot = work / "runs" / "za" / "snapshots" / "latest.json"
    written = za_snapshot.stat().st_mtime_ns
    started, resumed = [], []
    real_run, real_resume = finetune_run.run_finetune, finetune_run.resume_finetune
    monkeypatch.setattr(
        finetune_run,
        "run_finetune",
        lambda ckpt, tgt, run_dir, **k: (
            started.append(run_dir.name) or real_run(ckpt, tgt, run_dir=run_dir, **k)
        ),
    )
    monkeypatch.setattr(
        finetune_run,
        "resume_finetune",
        lambda run_dir, **k: resumed.append(run_dir.name) or real_resume(run_dir, **k),
    )
    logs = []
    doc = transfer.benchmark(target, out, log=logs.append, **call)
    assert resumed == ["zb"] and "za" not in started
    assert started == ["scratch", "00-za", "01-zb"]  # the last two: the probes' own runs
    assert za_snapshot.stat().st_mtime_ns == written and "za: finished, skipped" in logs

    saved = json.loads(out.read_text())
    assert saved["analysis"] == json.loads(json.dumps(json_safe(doc["analysis"])))
    analysis = saved["analysis"]
    assert analysis["complete"] and sorted(analysis["true_order"]) == ["za", "zb"]
    for key in ("za", "zb", "scratch"):
        run = saved["runs"][key]
        assert run["finished"] and [c["kimg"] for c in run["curves"]] == [0.0, 0.096]
        assert set(run["final"]) >= {"fid", "kid", "recall", "coverage"}
    assert saved["runs"]["scratch"]["g_init"] == saved["runs"]["scratch"]["d_init"] == "random"
    names = {p["name"] for p in analysis["predictors"]}
    for setting in ("generated", "source"):
        assert {f"{setting}/{m}" for m in ("recall", "coverage", "fid", "kid")} <= names
    assert "probe/fid" in names
    again = saved["remeasured"]
    assert again["seed_base"] == transfer.RESEED_BASE and set(again["fid"]) == {
        "za",
        "zb",
        "scratch",
    }
    assert analysis["truth_repeatability"]["n"] == 2
    assert saved["probe"]["cost_kimg"] <= TINY.full_run_kimg
    final = analysis["final_fid"]
    for p in analysis["predictors"]:
        best = min(final.values())
        assert p["n"] == 2 and p["regret"] == pytest.approx(final[p["pick"]] / best - 1)

    md = transfer_report.write_target_report(saved, out)
    text = md.read_text()
    assert "| `probe/fid` |" in text and "(scratch)" in text
    assert (tmp_path / "results" / "t-scores.png").stat().st_size > 1000
    assert (tmp_path / "results" / "t-curves.png").stat().st_size > 1000
    readme = tmp_path / "README.md"
    readme.write_text("# Benchmarks\n\nkept text\n")
    transfer_report.update_readme(readme, [out])
    transfer_report.update_readme(readme, [out])  # replaced in place, not appended twice
    body = readme.read_text()
    assert body.count(transfer_report.BEGIN) == 1 and "kept text" in body
    assert "![FID curves of every run](results/t-curves.png)" in body

    with pytest.raises(AdvisorError, match="another configuration"):
        other = transfer_runs.BenchmarkOptions(**{**TINY.__dict__, "seed": 1})
        transfer.benchmark(target, out, log=print, **{**call, "options": other})


@pytest.mark.slow
def test_ablation_and_budget_check(world, tmp_path):
    _, target, zoo, _ = world
    out = tmp_path / "t.json"
    doc = transfer.benchmark(
        target,
        out,
        zoo=str(zoo),
        options=TINY,
        work=tmp_path / "work",
        ablation=True,
        check_budget=True,
        log=lambda _: None,
    )
    analysis = doc["analysis"]
    assert list(analysis["ablation"]) == ["G+D", "G only", "D only", "neither"]
    best = analysis["true_order"][0]
    ablation = doc["ablation"]["runs"]
    assert ablation["G only"]["d_init"] == "random" and ablation["D only"]["g_init"] == "random"
    assert ablation["G+D"] is doc["runs"][best] or ablation["G+D"] == doc["runs"][best]
    check = analysis["check_budget"]
    assert check["runs"] == [*analysis["true_order"][:3], "scratch"]
    long = doc["check_budget"]["runs"]["scratch"]
    assert long["finished"] and long["curves"][-1]["kimg"] == pytest.approx(0.384)
    # the 4x run is the 1x run continued: its first evaluations are the 1x run's
    assert long["curves"][:2] == doc["runs"]["scratch"]["curves"]
    assert check["n"] == 3 and check["spearman"] is not None


def test_bad_inputs_are_one_line_errors(world, tmp_path, capsys):
    _, target, zoo, _ = world
    assert (
        transfer.main(
            [
                "--target",
                str(tmp_path / "nope"),
                "--out",
                str(tmp_path / "o.json"),
                "--zoo",
                str(zoo),
            ]
        )
        == 1
    )
    assert "no such target" in capsys.readouterr().err
    lonely = tmp_path / "one.toml"
    lonely.write_text(zoo.read_text().split("\n\n")[0] + "\n")
    assert (
        transfer.main(
            ["--target", str(target), "--out", str(tmp_path / "o.json"), "--zoo", str(lonely)]
        )
        == 1
    )
    assert "at least two checkpoints" in capsys.readouterr().err
    assert (
        transfer.main(
            [
                "--target",
                str(target),
                "--out",
                str(tmp_path / "o.json"),
                "--zoo",
                str(zoo),
                "--source-data",
                "nothing",
            ]
        )
        == 1
    )
    assert "NAME=DIR" in capsys.readouterr().err


def test_summary_scores_the_rules_choice_on_held_out_targets():
    def doc(name, **predictors):
        rows = [{"name": k.replace("__", "/"), "spearman": v[0], "optimal": v[1]}
                for k, v in predictors.items()]  # fmt: skip
        return {"config": {"target": {"path": f"/data/{name}"}}, "analysis": {"predictors": rows}}

    docs = [
        doc("a", generated__coverage=(0.6, True), generated__fid=(0.9, False)),
        doc("b", generated__coverage=(0.7, True), generated__fid=(0.8, True)),
        doc("c", generated__coverage=(0.1, False), generated__fid=(0.9, True)),
    ]
    text = transfer_report.summary_markdown(docs, held_out=["c"])
    assert "the rule was written on `a`, `b` and chose `generated/coverage` there (" in text
    assert "- `c`: `generated/coverage` has Spearman 0.10, its pick is not optimal." in text
    # Over all three targets, the rule would now choose nothing: no predictor is optimal on all.
    assert (
        "Applied to every target, the rule" in text
        and "highest mean Spearman) chooses none." in text
    )
    assert "only targets it has not seen" in transfer_report.summary_markdown(docs[:2])
