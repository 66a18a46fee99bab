"""advisor.runs and ``advisor runs ...``: reading run folders written by hand in the format that
``advisor finetune`` writes, comparing them, plotting them."""

import importlib.util
import json
import math

import pytest
from click.testing import CliRunner

from advisor.cli import main
from advisor.errors import AdvisorError
from advisor.runs import compare_runs, list_runs, load_run, plot_curves, plot_metric_curves

FIDS = [100.0, 60.0, 40.0, 39.5, 39.2, 39.0]  # kimg 0, 4, ..., 20


def _line(obj):
    return json.dumps(obj) + "\n"


def write_run(folder, *, fids=FIDS, recall=None, summary="fresh", options=None, snapshots=(4, 8)):
    """A run folder with one evaluation per 4 kimg, one stats line per evaluation, snapshots at
    the given kimg (+ best), and a summary.json that is "fresh", "stale" or None."""
    folder.mkdir(parents=True)
    config = {"advisor_version": "0.1.0", "options": options or {"metric": "fid"},
              "checkpoint": {"name": "tiny-32", "sha256": None}, "target": "target/"}  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config))
    lines, stats = [], []
    for i, fid in enumerate(fids):
        metrics = {"fid": fid, "kid": fid / 1000, "precision": 0.5, "coverage": 0.4,
                   "recall": recall[i] if recall else 0.1 * i}  # fmt: skip
        lines.append(_line({"kimg": 4.0 * i, "nimg": 4000 * i, "wall_s": 10.0 * i,
                            "metrics": metrics, "protocol": {"extractor": "tiny", "k": 3},
                            "snapshot": None}))  # fmt: skip
        stats.append(_line({"kimg": 4.0 * i, "tick": i, "s_per_kimg": 2.5, "loss_g": 1.0,
                            "loss_d": 1.2, "r1": 0.1, "ada_p": 0.01 * i}))  # fmt: skip
    (folder / "metrics.jsonl").write_text("".join(lines))
    (folder / "stats.jsonl").write_text("".join(stats))
    snap = folder / "snapshots"
    snap.mkdir()
    for kimg in snapshots:
        stem = snap / f"snapshot-{kimg * 1000:09d}"
        stem.with_suffix(".safetensors").write_bytes(b"weights")
        stem.with_suffix(".json").write_text("{}")
    (snap / "best.safetensors").write_bytes(b"weights")
    (snap / "best.json").write_text("{}")
    if summary is not None:
        last = 4.0 * (len(fids) - 1) - (4.0 if summary == "stale" else 0.0)
        best = min(fids[: len(fids) - (summary == "stale")])
        (folder / "summary.json").write_text(json.dumps({
            "metric": "fid", "mode": "min", "best": best, "kimg_at_best": 4.0 * fids.index(best),
            "plateau_kimg": None, "convergence_kimg": 8.0, "auc": 0.2, "wall_s": 61.0,
            "s_per_kimg": 2.5, "kimg": last, "finished": True, "stopped_by": "kimg",
        }))  # fmt: skip
    return folder


def test_load_run_reads_every_part_and_trusts_a_fresh_summary(tmp_path):
    run = load_run(write_run(tmp_path / "run-a"))
    assert run.name == "run-a" and run.config["checkpoint"]["name"] == "tiny-32"
    assert [r.kimg for r in run.metrics] == [0, 4, 8, 12, 16, 20]
    assert run.metrics[2].metrics["fid"] == 40.0 and run.metrics[2].nimg == 8000
    assert run.metrics[2].protocol == {"extractor": "tiny", "k": 3}
    assert len(run.stats) == 6 and run.stats[-1]["ada_p"] == pytest.approx(0.05)
    assert [s.kimg for s in run.snapshots] == [4.0, 8.0]
    assert run.best_snapshot == tmp_path / "run-a" / "snapshots" / "best.safetensors"
    s = run.summary
    assert (s.source, s.finished, s.stopped_by, s.wall_s, s.kimg) == (
        "summary.json", True, "kimg", 61.0, 20.0
    )  # fmt: skip
    c = s.convergence
    # best 39.0 @ 20; 5% band <= 40.95: 40 at kimg 8; windows of 3 from evaluation 2 improve
    # 40 -> 39.0 = 2.5% (not flat), so no plateau yet with delta 0.02.
    assert (c.metric, c.best, c.kimg_at_best, c.convergence_kimg, c.plateau_kimg) == (
        "fid", 39.0, 20.0, 8.0, None
    )  # fmt: skip
    assert run.notes == ()


def test_summary_uses_the_runs_own_plateau_options(tmp_path):
    opts = {"metric": "fid", "plateau_delta": 0.03, "plateau_window": 3}
    run = load_run(write_run(tmp_path / "r", options=opts))
    # with delta 3%: window 2->5 (2.5%) is flat, window 1->4 (60 -> 39.2) is not.
    assert run.summary.convergence.plateau_kimg == 8.0
    assert run.summary.convergence.plateau_delta == 0.03


def test_truncated_last_line_is_ignored_with_a_note(tmp_path):
    folder = write_run(tmp_path / "r")
    with open(folder / "metrics.jsonl", "a") as f:
        f.write('{"kimg": 24.0, "nimg": 24000, "metr')  # killed mid-write: no newline
    with open(folder / "stats.jsonl", "a") as f:
        f.write('{"kimg": 2')
    run = load_run(folder)
    assert len(run.metrics) == 6 and len(run.stats) == 6
    assert any("metrics.jsonl" in n and "line 7" in n for n in run.notes)
    assert any("stats.jsonl" in n for n in run.notes)


def test_corrupt_line_before_the_end_is_an_error_naming_file_and_line(tmp_path):
    folder = write_run(tmp_path / "r")
    lines = (folder / "metrics.jsonl").read_text().splitlines(keepends=True)
    lines[2] = '{"kimg": 8.0, "metrics": {"fid": 4\n'
    (folder / "metrics.jsonl").write_text("".join(lines))
    with pytest.raises(AdvisorError, match=r"metrics\.jsonl line 3 is not valid JSON") as err:
        load_run(folder)
    assert "\n" not in str(err.value)


def test_bad_last_line_that_ends_in_a_newline_is_corrupt_not_truncated(tmp_path):
    folder = write_run(tmp_path / "r")
    with open(folder / "stats.jsonl", "a") as f:
        f.write("{oops}\n")
    with pytest.raises(AdvisorError, match=r"stats\.jsonl line 7"):
        load_run(folder)


@pytest.mark.parametrize(
    "line, message",
    [
        ({"kimg": 24.0, "metrics": {"fid": "low"}}, "metric 'fid' is not a number"),
        ({"kimg": "24", "metrics": {}}, "'kimg' must be a finite number"),
        ({"kimg": 24.0}, "'metrics' must be an object"),
        ({"kimg": 20.0, "metrics": {"fid": 1.0}}, "kimg 20 does not increase"),
        ([1, 2], "not a JSON object"),
    ],
    ids=["metric-string", "kimg-string", "no-metrics", "kimg-repeats", "not-object"],
)
def test_malformed_metric_records_are_one_line_errors_with_the_line(tmp_path, line, message):
    folder = write_run(tmp_path / "r")
    with open(folder / "metrics.jsonl", "a") as f:
        f.write(_line(line))
    with pytest.raises(AdvisorError, match="line 7") as err:
        load_run(folder)
    assert message in str(err.value)


def test_null_metric_reads_as_nan_and_is_skipped(tmp_path):
    folder = write_run(tmp_path / "r", summary=None)
    with open(folder / "metrics.jsonl", "a") as f:
        f.write(_line({"kimg": 24.0, "metrics": {"fid": None}}))
    run = load_run(folder)
    assert math.isnan(run.metrics[-1].metrics["fid"])
    c = run.summary.convergence
    assert (c.best, c.evaluations, c.skipped) == (39.0, 6, 1)


def test_missing_summary_is_recomputed_from_metrics_and_stats(tmp_path):
    run = load_run(write_run(tmp_path / "r", summary=None))
    s = run.summary
    assert (s.source, s.finished, s.stopped_by) == ("metrics.jsonl", False, None)
    assert (s.kimg, s.wall_s, s.s_per_kimg) == (20.0, 50.0, 2.5)
    assert s.convergence.best == 39.0 and s.convergence.kimg_at_best == 20.0


def test_stale_summary_is_recomputed_with_a_note(tmp_path):
    run = load_run(write_run(tmp_path / "r", summary="stale"))
    assert run.summary.source == "metrics.jsonl" and not run.summary.finished
    assert run.summary.convergence.best == 39.0
    assert any("summary.json is stale" in n for n in run.notes)


def test_summary_best_may_be_an_object_with_value_and_kimg(tmp_path):
    folder = write_run(tmp_path / "r")
    saved = json.loads((folder / "summary.json").read_text())
    saved["best"] = {"value": 39.0, "kimg": 20.0, "snapshot": "snapshots/best.safetensors"}
    (folder / "summary.json").write_text(json.dumps(saved))
    assert load_run(folder).summary.source == "summary.json"
    saved["best"] = {"value": 39.0, "kimg": 16.0}
    (folder / "summary.json").write_text(json.dumps(saved))
    assert load_run(folder).summary.source == "metrics.jsonl"


def test_snapshot_without_its_json_is_left_out_with_a_note(tmp_path):
    folder = write_run(tmp_path / "r")
    (folder / "snapshots" / "snapshot-000012000.safetensors").write_bytes(b"half")
    (folder / "snapshots" / ".snapshot-000016000.safetensors.abc.tmp").write_bytes(b"temp")
    run = load_run(folder)
    assert [s.nimg for s in run.snapshots] == [4000, 8000]
    assert any("snapshot-000012000" in n for n in run.notes)


def test_run_with_only_a_config_loads_empty(tmp_path):
    folder = tmp_path / "new"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    run = load_run(folder)
    assert run.metrics == () and run.snapshots == () and run.best_snapshot is None
    assert run.summary.convergence.best is None and run.summary.kimg is None


def test_folder_without_config_or_with_a_bad_one_is_an_error(tmp_path):
    with pytest.raises(AdvisorError, match="not a run folder"):
        load_run(tmp_path)
    (tmp_path / "config.json").write_text("[1]")
    with pytest.raises(AdvisorError, match="config.json is not a JSON object"):
        load_run(tmp_path)


def test_list_runs_finds_run_folders_up_to_the_depth_and_not_inside_runs(tmp_path):
    write_run(tmp_path / "a")
    write_run(tmp_path / "group" / "b")
    write_run(tmp_path / "group" / "deep" / "c")  # 3 levels down: found by default
    write_run(tmp_path / "group" / "deep" / "deeper" / "d")  # 4 levels: past the default depth
    write_run(tmp_path / ".hidden")
    (tmp_path / "a" / "nested").mkdir()
    (tmp_path / "a" / "nested" / "config.json").write_text("{}")
    assert list_runs(tmp_path) == [tmp_path / "a", tmp_path / "group" / "b",
                                   tmp_path / "group" / "deep" / "c"]  # fmt: skip
    assert list_runs(tmp_path, depth=4)[-1] == tmp_path / "group" / "deep" / "deeper" / "d"
    assert list_runs(tmp_path, depth=1) == [tmp_path / "a"]
    assert list_runs(tmp_path / "a") == [tmp_path / "a"]


def test_compare_runs_rows_for_the_chosen_metric(tmp_path):
    a = load_run(write_run(tmp_path / "pretrained"))
    b = load_run(write_run(tmp_path / "random", fids=[300.0, 250.0, 200.0, 150.0, 100.0, 80.0]))
    rows = compare_runs([a, b], metric="fid")
    assert [r.name for r in rows] == ["pretrained", "random"]
    assert [(r.convergence.best, r.convergence.kimg_at_best) for r in rows] == [
        (39.0, 20.0), (80.0, 20.0)
    ]  # fmt: skip
    assert rows[1].convergence.convergence_kimg == 20.0  # only 80 is within 5% of 80
    assert rows[0].convergence.auc < rows[1].convergence.auc
    recall = compare_runs([a], metric="recall")[0].convergence
    assert recall.mode == "max" and recall.best == pytest.approx(0.5)
    d = rows[0].to_dict()
    assert d["name"] == "pretrained" and d["best"] == 39.0 and d["path"].endswith("pretrained")


def test_compare_labels_runs_sharing_a_name_by_path(tmp_path):
    a = load_run(write_run(tmp_path / "x" / "run"))
    b = load_run(write_run(tmp_path / "y" / "run"))
    assert [r.name for r in compare_runs([a, b])] == [str(a.path), str(b.path)]


def test_compare_and_plot_take_given_labels_one_distinct_per_run(tmp_path):
    a = load_run(write_run(tmp_path / "x" / "run"))
    b = load_run(write_run(tmp_path / "y" / "run", fids=FIDS[::-1]))
    rows = compare_runs([a, b], labels=["job 3", "job 5"])
    assert [(r.name, r.path) for r in rows] == [("job 3", str(a.path)), ("job 5", str(b.path))]
    assert rows[0].convergence == compare_runs([a])[0].convergence  # labels change names only
    for bad in (["job 3"], ["job 3", "job 3"]):
        with pytest.raises(ValueError, match="one distinct label per run"):
            compare_runs([a, b], labels=bad)
    if importlib.util.find_spec("matplotlib") is not None:
        labelled = plot_curves([a, b], "fid", tmp_path / "l.png", labels=["job 3", "job 5"])
        default = plot_curves([a, b], "fid", tmp_path / "d.png")
        assert labelled.read_bytes() != default.read_bytes()  # the legend says job 3, job 5


def test_compare_unknown_metric_lists_known_names(tmp_path):
    with pytest.raises(AdvisorError, match="known metrics"):
        compare_runs([load_run(write_run(tmp_path / "r"))], metric="ssim")


def test_plot_curves_writes_the_same_png_twice_and_leaves_no_temp_file(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    rc_before = dict(matplotlib.rcParams)
    runs = [
        load_run(write_run(tmp_path / "a")),
        load_run(write_run(tmp_path / "b", fids=FIDS[::-1])),
    ]
    out = plot_curves(runs, "fid", tmp_path / "plots" / "curves.png")
    first = out.read_bytes()
    assert first.startswith(b"\x89PNG\r\n\x1a\n")
    assert plot_curves(runs, "fid", out).read_bytes() == first
    assert sorted(p.name for p in out.parent.iterdir()) == ["curves.png"]
    assert dict(matplotlib.rcParams) == rc_before  # the user's style is left as it was


def test_plot_metric_curves_takes_raw_records_and_skips_nan(tmp_path):
    pytest.importorskip("matplotlib")
    records = [
        {"kimg": 0.0, "metrics": {"fid": 50.0}},
        {"kimg": 4.0, "metrics": {"fid": None}},
        {"kimg": 8.0, "metrics": {"fid": float("nan")}},
        {"kimg": 12.0, "metrics": {}},
    ]
    out = plot_metric_curves({"live": records}, "fid", tmp_path / "curves.png")
    assert out.read_bytes().startswith(b"\x89PNG")


def _invoke(*args):
    return CliRunner().invoke(main, ["runs", *(str(a) for a in args)])


def test_cli_list_json_is_one_object_with_every_run_and_damaged_ones_flagged(tmp_path):
    write_run(tmp_path / "a")
    bad = write_run(tmp_path / "b")
    (bad / "metrics.jsonl").write_text("{bad\n{}\n")
    result = _invoke("list", tmp_path, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [r["name"] for r in data["runs"]] == ["a", "b"]
    assert data["runs"][0]["best"] == 39.0 and data["runs"][0]["checkpoint"] == "tiny-32"
    assert "line 1" in data["runs"][1]["error"]
    text = _invoke("list", tmp_path)
    assert text.exit_code == 0 and "fid 39 @ 20" in text.stdout and "error:" in text.stdout


def test_cli_show_json_has_summary_snapshots_and_notes(tmp_path):
    folder = write_run(tmp_path / "a", summary=None)
    result = _invoke("show", folder, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["summary"]["best"] == 39.0 and data["summary"]["source"] == "metrics.jsonl"
    assert data["last_metrics"]["kimg"] == 20.0 and len(data["snapshots"]) == 2
    assert data["best_snapshot"].endswith("best.safetensors")
    text = _invoke("show", folder)
    assert text.exit_code == 0 and "kimg_at_best: 20" in text.stdout


def test_cli_compare_json_and_png(tmp_path):
    pytest.importorskip("matplotlib")
    a, b = write_run(tmp_path / "a"), write_run(tmp_path / "b", fids=[90.0, 80.0, 70.0])
    out = tmp_path / "curves.png"
    result = _invoke("compare", a, b, "--metric", "fid", "--out", out, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["metric"] == "fid" and data["plot"] == str(out) and out.is_file()
    assert [(r["name"], r["best"], r["evaluations"]) for r in data["runs"]] == [
        ("a", 39.0, 6), ("b", 70.0, 3)
    ]  # fmt: skip
    again = _invoke("compare", a, b, "--out", out)
    assert again.exit_code == 1 and "--overwrite" in again.output
    table = _invoke("compare", a, b, "--out", out, "--overwrite")
    assert table.exit_code == 0 and table.stdout.splitlines()[0].split()[:2] == ["run", "best"]


def test_cli_compare_damaged_run_is_a_one_line_error(tmp_path):
    a = write_run(tmp_path / "a")
    (a / "metrics.jsonl").write_text('{"kimg": 0, "metrics": {}}\n{bad\n{}\n')
    result = _invoke("compare", a)
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: {a / 'metrics.jsonl'} line 2 is not valid JSON"
    ]


def test_cli_compare_notes_go_to_stderr_and_missing_metric_is_an_error(tmp_path):
    a = write_run(tmp_path / "a")
    with open(a / "metrics.jsonl", "a") as f:
        f.write('{"kimg": 2')
    result = _invoke("compare", a)
    assert result.exit_code == 0
    assert "unfinished last line" in result.stderr and "unfinished" not in result.stdout
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    missing = _invoke("compare", empty, "--metric", "density")
    assert missing.exit_code == 1 and "none of the runs has a finite density" in missing.output
    unknown = _invoke("compare", a, "--metric", "ssim")
    assert unknown.exit_code == 2 and "ssim" in unknown.output


def _png_size(path):
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_plot_curves_adds_the_loss_signal_panel_only_for_runs_that_logged_it(tmp_path):
    pytest.importorskip("matplotlib")
    plain = load_run(write_run(tmp_path / "plain"))
    assert _png_size(plot_curves([plain], "fid", tmp_path / "plain.png")) == (700, 450)
    folder = write_run(tmp_path / "signal")
    lines = [json.loads(line) for line in (folder / "stats.jsonl").read_text().splitlines()]
    for i, line in enumerate(lines):
        line.update(d_real=1.0 + 0.1 * i, d_fake=-1.0, d_gap=2.0 + 0.1 * i, d_gap_ema=2.0)
    (folder / "stats.jsonl").write_text("".join(_line(line) for line in lines))
    out = plot_curves([plain, load_run(folder)], "fid", tmp_path / "both.png")
    assert _png_size(out) == (700, 650)  # a second panel under the metric
    first = out.read_bytes()
    assert plot_curves([plain, load_run(folder)], "fid", out).read_bytes() == first
