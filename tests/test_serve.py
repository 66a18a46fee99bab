"""advisor serve: a real server on a loopback port runs each job kind, cancels, and refuses
what it must (no token, paths out of its roots, hostile uploads, escaping artifact names).

One server serves the module (``--devices cpu``, one job at a time); jobs are tiny (16 px
networks, 12 images, the offline EfficientNet-Lite0 extractor). The restart-after-SIGKILL test
is in ``test_serve_restart.py``; the store's own rules are in ``test_serve_store.py``.
"""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from advisor.serve.client import Client, ClientError
from tests.conftest import write_images
from tests.serving import Server, wait_for
from tests.test_finetune import FAST, _checkpoint
from tests.test_hostile_images import MB, Entry, build_zip, stored, zeros_compressed

LITE = "efficientnet-lite0"


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("assets")
    target = write_images(root / "target", 12, size=16, seed=3)
    other = write_images(root / "other", 12, size=16, seed=4, offset=30)
    ckpt = _checkpoint(root / "tiny")
    return {"root": root, "target": target, "other": other, "ckpt": ckpt}


@pytest.fixture(scope="module")
def server(tmp_path_factory, assets):
    data = tmp_path_factory.mktemp("serve") / "data"
    cache = tmp_path_factory.mktemp("cache")
    args = ("--allow-path", str(assets["root"]), "--max-upload-mb", "1", "--cancel-grace", "60")
    srv = Server(data, cache=cache, args=args).start()
    yield srv
    srv.stop()


def rank_params(assets, **extra):
    return {
        "target": str(assets["target"]),
        "checkpoints": [str(assets["ckpt"])],
        "extractor": LITE,
        "n_samples": 12,
        "bootstrap": 20,
        "batch_size": 12,
        **extra,
    }


def finetune_params(assets, **extra):
    return {
        "checkpoint": str(assets["ckpt"]),
        "target": str(assets["target"]),
        "extractor": LITE,
        **FAST,
        **extra,
    }


def png_bytes(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


# --- authentication ------------------------------------------------------------------------------


def test_health_is_open_and_every_other_endpoint_needs_the_token(server):
    assert server.http("GET", "/health", token=None).json()["status"] == "ok"
    for method, path in [
        ("GET", "/jobs"),
        ("POST", "/jobs"),
        ("GET", "/jobs/1"),
        ("GET", "/jobs/1/logs"),
        ("POST", "/jobs/1/cancel"),
        ("GET", "/jobs/1/artifacts/log.txt"),
        ("POST", "/targets"),
        ("GET", "/checkpoints"),
    ]:
        for token in (None, "wrong-token-of-some-length"):
            response = server.http(method, path, token=token)
            assert response.status_code == 401, (method, path, token)
            assert response.headers["www-authenticate"] == "Bearer"
            assert "\n" not in response.json()["detail"]
    assert server.http("GET", "/jobs").status_code == 200


def test_the_token_is_made_at_first_start_readable_by_its_owner_only(server):
    mode = stat.S_IMODE((server.data / "token").stat().st_mode)
    assert mode == 0o600 and len(server.token) >= 40


def test_serving_a_network_address_without_a_token_is_refused_in_one_line(tmp_path):
    from advisor.cli import main

    result = CliRunner().invoke(
        main, ["serve", "--host", "0.0.0.0", "--no-auth", "--data", str(tmp_path / "d")]
    )
    assert result.exit_code == 1
    assert result.output.startswith("Error: refusing to serve 0.0.0.0 without a token")
    assert result.output.count("\n") == 1


def test_a_token_file_readable_by_others_is_refused(tmp_path):
    from advisor.cli import main

    token = tmp_path / "token"
    token.write_text("x" * 32)
    token.chmod(0o644)
    result = CliRunner().invoke(
        main, ["serve", "--token-file", str(token), "--data", str(tmp_path / "d")]
    )
    assert result.exit_code == 1 and "chmod 600" in result.output


def test_serve_without_the_extra_says_how_to_install_it(tmp_path, monkeypatch):
    from advisor.cli import main

    monkeypatch.setitem(sys.modules, "uvicorn", None)
    result = CliRunner().invoke(main, ["serve", "--data", str(tmp_path / "d")])
    assert result.exit_code == 1
    assert result.output == (
        "Error: advisor serve needs FastAPI and uvicorn: pip install 'advisor[serve]'\n"
    )


def test_advisor_and_its_client_import_without_fastapi():
    code = (
        "import sys; sys.modules['fastapi'] = None; sys.modules['uvicorn'] = None\n"
        "import advisor, advisor.cli, advisor.serve.client\n"
        "print(advisor.Client.__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "Client"


# --- jobs end to end -----------------------------------------------------------------------------


def test_a_rank_job_runs_to_its_end_and_its_report_downloads(server, assets, tmp_path):
    client = server.client()
    job = client.submit("rank", rank_params(assets))
    assert job["state"] in ("queued", "running") and job["kind"] == "rank"
    done = client.wait(job["id"], timeout=180, poll_s=0.2)
    assert done["state"] == "succeeded", (done, client.logs(job["id"]))
    assert done["result"]["best"] == "tiny"
    assert done["progress"] == {"fraction": 1.0} and done["run_s"] > 0
    names = {a["path"] for a in client.artifacts(job["id"])}
    assert {"report/rank.json", "report/index.html", "log.txt", "result.json"} <= names
    path = client.download(job["id"], "report/rank.json", tmp_path / "rank.json")
    report = json.loads(path.read_text())
    assert report["rows"][0]["checkpoint"] == "tiny"
    assert "rank: best" in client.logs(job["id"], tail=5)


def test_a_compare_job_returns_the_metrics(server, assets):
    client = server.client()
    params = {"reference": str(assets["target"]), "candidate": str(assets["other"]),
              "extractor": LITE, "bootstrap": 10, "kid_subset_size": 6}  # fmt: skip
    done = client.wait(client.submit("compare", params)["id"], timeout=180, poll_s=0.2)
    assert done["state"] == "succeeded", done
    assert done["result"]["fid"] > 0 and 0 <= done["result"]["recall"] <= 1
    assert done["result"]["protocol"]["extractor"] == LITE


def test_a_rank_job_takes_the_setting_the_source_data_and_the_metric_to_rank_by(server, assets):
    client = server.client()
    params = rank_params(assets, setting="both", source_data=[f"other={assets['other']}"], by="fid")
    done = client.wait(client.submit("rank", params)["id"], timeout=180, poll_s=0.2)
    assert done["state"] == "succeeded", (done, client.logs(done["id"]))
    assert done["params"]["source_data"] == [f"other={assets['other']}"]
    result = done["result"]
    assert result["by"] == "fid"
    rows = {(r["checkpoint"], r["setting"]): r for r in result["rows"]}
    assert set(rows) == {("tiny", "generated"), ("other", "source")}
    assert all(r["fid"] > 0 for r in rows.values())
    fids = [r["fid"] for r in result["rows"]]
    assert fids == sorted(fids)  # fid: lower is better, so the best comes first


def test_a_compare_job_computes_the_metrics_selection_of_advisor_compare(server, assets):
    client = server.client()
    labelled = assets["root"] / "labelled"  # two classes: its sub-folders
    for i, name in enumerate(("cats", "owls")):
        write_images(labelled / name, 8, size=16, seed=10 + i, offset=60.0 * i - 30.0)
    params = {"reference": str(labelled), "candidate": str(assets["other"]), "extractor": LITE,
              "bootstrap": 10, "kid_subset_size": 6, "metrics": "is,swd,classifier",
              "min_count": 2}  # fmt: skip
    done = client.wait(client.submit("compare", params)["id"], timeout=180, poll_s=0.2)
    assert done["state"] == "succeeded", (done, client.logs(done["id"]))
    result = done["result"]
    assert result["inception_score"]["candidate"]["n"] == 12
    assert "16" in result["swd"]["per_level"]
    assert result["classifier"]["labels"] == "sub-folders (2 classes)"
    assert result["classifier"]["mode_coverage"]["classes"] == 2
    plain = client.wait(
        client.submit("compare", {**params, "metrics": "default"})["id"],
        timeout=180,
        poll_s=0.2,
    )
    assert plain["state"] == "succeeded", plain
    assert "inception_score" not in plain["result"] and plain["result"]["fid"] == result["fid"]


def test_a_finetune_job_runs_and_its_best_snapshot_downloads(server, assets, tmp_path):
    client = server.client()
    done = client.wait(
        client.submit("finetune", finetune_params(assets))["id"], timeout=180, poll_s=0.2
    )
    assert done["state"] == "succeeded", (done, client.logs(done["id"]))
    result = done["result"]
    assert result["stopped_by"] == "kimg" and result["summary"]["kimg"] == 0.032
    assert result["best_snapshot"] == "run/snapshots/best.safetensors"
    best = client.download(done["id"], "run/snapshots/best.json", tmp_path / "best.json")
    assert json.loads(best.read_text())["name"]
    log = client.logs(done["id"], tail=0)
    assert "kimg 0.032" in log


def test_cancel_stops_a_running_finetune_with_a_snapshot_and_a_queued_job_at_once(server, assets):
    client = server.client()
    running = client.submit(
        "finetune", finetune_params(assets, kimg=50.0, metric_every=None, snapshot_every=100.0)
    )
    queued = client.submit("rank", rank_params(assets))
    wait_for(lambda: (client.get(running["id"]).get("progress") or {}).get("kimg", 0) > 0)
    assert client.get(queued["id"])["state"] == "queued"  # one CPU slot: it waits its turn
    assert client.cancel(queued["id"])["state"] == "cancelled"
    assert client.cancel(running["id"])["state"] == "cancelling"
    done = client.wait(running["id"], timeout=120, poll_s=0.2)
    assert done["state"] == "cancelled" and "snapshot kept" in done["note"]
    assert done["result"]["stopped_by"] == "interrupt"
    names = {a["path"] for a in client.artifacts(running["id"])}
    assert "run/snapshots/latest.json" in names
    with pytest.raises(ClientError, match="^409: job .* already cancelled$"):
        client.cancel(running["id"])
    assert client.get(queued["id"])["started"] is None  # never ran


def test_list_filters_by_state_and_kind(server, assets):
    client = server.client()
    job = client.submit("rank", rank_params(assets), priority=-5)
    client.cancel(job["id"])
    assert client.wait(job["id"], timeout=60, poll_s=0.1)["state"] == "cancelled"
    cancelled = client.list(state=["cancelled"], kind=["rank"])
    assert job["id"] in [j["id"] for j in cancelled]
    assert all(j["state"] == "cancelled" and j["kind"] == "rank" for j in cancelled)
    bad = server.http("GET", "/jobs?state=sleeping")
    assert bad.status_code == 422 and "unknown state 'sleeping'" in bad.json()["detail"]


# --- refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"kind": "train", "params": {}}, "unknown job kind 'train'"),
        ({"kind": "rank", "params": {"target": "x", "epochs": 3}}, "unknown parameter 'epochs'"),
        ({"kind": "rank", "params": {}}, "missing parameter 'target'"),
        ({"kind": "rank", "params": {"target": 3}}, "target must be a string"),
        ({"kind": "rank", "params": {"target": "/etc"}}, "outside the server's allowed paths"),
        ({"kind": "rank", "params": {"target": "../../etc"}}, "'..' components"),
        ({"kind": "rank", "params": {"target": "targets/none.zip"}}, "no such file or folder"),
        ({"kind": "finetune", "params": {"target": "x"}}, "needs the parameter 'checkpoint'"),
        ({"kind": "compare", "params": {"reference": "a\nb", "candidate": "c"}}, "control"),
        ({"kind": "rank", "params": {}, "priority": 1000}, "priority: Input should be less"),
        ({"kind": "rank"}, None),  # params default to {}: the missing target is the reason
    ],
)
def test_bad_jobs_are_422_in_one_line_and_nothing_is_queued(server, body, reason):
    before = len(server.client().list(limit=1000))
    response = server.http("POST", "/jobs", json=body)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail
    assert reason is None or reason in detail, detail
    assert len(server.client().list(limit=1000)) == before


def test_options_are_checked_by_the_library_before_queuing(server, assets):
    other = assets["other"]

    def compare(**extra):
        return {"reference": str(assets["target"]), "candidate": str(other), **extra}

    bad = [
        ("finetune", finetune_params(assets, kimg=-1.0), "kimg must be a finite number > 0"),
        ("finetune", finetune_params(assets, aug="sometimes"), "aug must be one of"),
        ("finetune", finetune_params(assets, batch=2.5), "batch must be an integer"),
        ("rank", rank_params(assets, by="beauty"), "by"),
        ("rank", rank_params(assets, extractor="nope"), "nope"),
        ("rank", rank_params(assets, checkpoints=["no-such-name"]), "neither a registry name"),
        ("rank", rank_params(assets, setting="sauce"), "setting must be one of generated,"),
        ("rank", rank_params(assets, by="ssim"), "by must be one of recall,"),
        ("rank", rank_params(assets, setting="both", source_data=["x"]), "NAME=PATH, got 'x'"),
        ("rank", rank_params(assets, setting="both", source_data=["a=/etc"]), "'/etc' is outside"),
        (
            "rank",
            rank_params(assets, source_data=[f"a={other}"]),
            "source_data is used with setting",
        ),
        ("rank", rank_params(assets, by="gan_train", classes=1), "classes must be 2.."),
        ("compare", compare(metrics="fun"), "unknown metric 'fun' in metrics; known: default,"),
        ("compare", compare(metrics="all", classes=1), "classes must be 2.."),
    ]
    before = len(server.client().list(limit=1000))
    for kind, params, reason in bad:
        response = server.http("POST", "/jobs", json={"kind": kind, "params": params})
        assert response.status_code == 422, (kind, params)
        assert reason in response.json()["detail"], response.json()
        assert "--" not in response.json()["detail"]  # the service's words, not the CLI's flags
    assert len(server.client().list(limit=1000)) == before


def test_a_symlink_out_of_the_allowed_roots_is_refused(server, assets, tmp_path):
    outside = write_images(tmp_path / "outside", 3, size=16)
    link = assets["root"] / "link-out"
    link.symlink_to(outside, target_is_directory=True)
    response = server.http("POST", "/jobs", json={"kind": "rank", "params": {"target": str(link)}})
    assert response.status_code == 422 and "leads outside" in response.json()["detail"]


def test_artifact_names_cannot_leave_the_job_folder(server, assets):
    job = server.client().submit("rank", rank_params(assets), priority=-10)
    server.client().cancel(job["id"])
    server.client().wait(job["id"], timeout=60, poll_s=0.1)
    folder = server.data / "jobs" / f"{job['id']:06d}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "evil").symlink_to(server.data / "token")
    for name in ("..%2F..%2Ftoken", "%2E%2E/%2E%2E/token", "evil", "%2Fetc%2Fpasswd", "a%00b"):
        response = server.http("GET", f"/jobs/{job['id']}/artifacts/{name}")
        assert response.status_code in (404, 422), (name, response.status_code)
        assert server.token not in response.text
    listed = {a["path"] for a in server.client().artifacts(job["id"])}
    assert "evil" not in listed


# --- uploads -------------------------------------------------------------------------------------


def upload(server, data: bytes):
    return server.http(
        "POST", "/targets", content=data, headers={"Content-Type": "application/zip"}
    )


def test_an_uploaded_zip_becomes_a_target_a_job_can_use(server, tmp_path):
    archive = tmp_path / "t.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for i in range(12):
            z.writestr(f"img/{i:02d}.png", png_bytes(i))
        z.writestr("notes.txt", "ignored")
        z.writestr("broken.png", b"not really a png")
    stored = server.client().upload_target(archive)
    assert stored["images"] == 12 and stored["n_skipped"] == 1
    assert stored["skipped"] == [{"name": "broken.png", "reason": "not an image"}]
    assert stored["path"] == f"targets/{stored['id']}.zip"
    assert (server.data / stored["path"]).read_bytes() == archive.read_bytes()
    params = {"target": stored["path"], "checkpoints": ["x.safetensors"]}
    response = server.http("POST", "/jobs", json={"kind": "rank", "params": params})
    assert "checkpoint" in response.json()["detail"]  # the target passed; the checkpoint not


def test_hostile_uploads_are_refused_in_one_line_and_leave_nothing_behind(server):
    payload, crc = zeros_compressed(zipfile.ZIP_DEFLATED, 8)
    bomb = Entry(b"bomb.png", payload, zipfile.ZIP_DEFLATED, crc, 8 * MB)
    copies = [Entry(b"bomb.png", payload, zipfile.ZIP_DEFLATED, crc, 8 * MB, at=0)] * 99
    cases = [
        (b"", 422, "empty"),
        (b"MZ\x90\x00 not a zip at all" * 10, 422, "not a .zip archive"),
        (os.urandom(2 * MB), 413, "larger than the server's limit"),
        (build_zip([bomb, *copies]), 422, "zip bomb"),
        (build_zip([stored("../../escape.png", png_bytes(0))]), 422, "no usable image"),
        (build_zip([stored("text.png", b"hello " * 100)]), 422, "not an image"),
    ]
    before = sorted(p.name for p in (server.data / "targets").iterdir())
    for data, status, reason in cases:
        response = upload(server, data)
        assert response.status_code == status, (reason, response.text)
        detail = response.json()["detail"]
        assert reason in detail and "\n" not in detail, detail
    assert sorted(p.name for p in (server.data / "targets").iterdir()) == before
    assert not list(server.data.parent.glob("*escape*"))
    # A zip is never extracted: an absolute member name is only the label of an image in it.
    response = upload(server, build_zip([stored("/abs/escape.png", png_bytes(0))]))
    assert response.status_code == 201 and response.json()["images"] == 1
    assert not (server.data / "abs").exists() and not os.path.exists("/abs/escape.png")


# --- clients ----------------------------------------------------------------------------------


def test_the_jobs_cli_submits_lists_shows_logs_and_cancels(server, assets, monkeypatch):
    from advisor.cli import main

    monkeypatch.setenv("ADVISOR_TOKEN", server.token)
    runner = CliRunner()

    def cli(*args):
        result = runner.invoke(main, ["jobs", "--server", server.url, *args])
        assert "Traceback" not in result.output
        return result

    params = json.dumps(rank_params(assets))
    out = cli("submit", "rank", "--params", params, "--priority", "-20", "--json")
    assert out.exit_code == 0, out.output
    job_id = json.loads(out.output)["id"]
    out = cli("list", "--kind", "rank", "--json")
    assert job_id in [j["id"] for j in json.loads(out.output)]
    assert f"{job_id:>6}  " in cli("list").output
    assert cli("show", str(job_id)).output.startswith(f"job {job_id}: rank ")
    assert cli("cancel", str(job_id), "--json").exit_code == 0
    assert cli("logs", str(job_id)).exit_code == 0
    out = cli("submit", "rank", "-p", "target=/etc", "-p", "n_samples=12")
    assert out.exit_code == 1 and out.output.startswith("Error: 422: target '/etc' is outside")
    monkeypatch.setenv("ADVISOR_TOKEN", "not-the-token-at-all")
    out = cli("list")
    assert out.exit_code == 1 and out.output.startswith("Error: 401: missing or wrong bearer")


def test_the_client_names_an_unreachable_server_in_one_line():
    from tests.serving import free_port

    with pytest.raises(ClientError, match=r"^cannot reach http://127\.0\.0\.1:\d+ \("):
        Client(f"http://127.0.0.1:{free_port()}", token="t").health()
    with pytest.raises(ClientError, match="server URL must be"):
        Client("ftp://x")


# --- dashboard (HTML over HTTP; the real-browser test is in test_serve_dashboard.py) --------------


def test_the_dashboard_signs_in_with_the_token_and_renders_a_rank_and_a_running_finetune(
    server, assets
):
    import httpx

    client = server.client()
    anonymous = httpx.get(server.url + "/", timeout=30)
    assert anonymous.status_code == 200 and 'action="/login"' in anonymous.text
    assert 'id="jobs"' not in anonymous.text
    wrong = httpx.post(server.url + "/login", data={"token": "guess"}, timeout=30)
    assert wrong.status_code == 401 and server.token not in wrong.text
    browser = httpx.Client(base_url=server.url, timeout=30)
    signed = browser.post("/login", data={"token": server.token})
    assert signed.status_code == 303 and "httponly" in signed.headers["set-cookie"].lower()
    ranked = client.list(state=["succeeded"], kind=["rank"])
    rank_id = ranked[0]["id"] if ranked else client.submit("rank", rank_params(assets))["id"]
    client.wait(rank_id, timeout=120, poll_s=0.2)
    running = client.submit(
        "finetune", finetune_params(assets, kimg=50.0, metric_every=0.008, snapshot_every=100.0)
    )["id"]
    try:
        metrics = server.data / "jobs" / f"{running:06d}" / "run" / "metrics.jsonl"
        wait_for(lambda: metrics.is_file() and client.get(running).get("progress"))
        listing = browser.get("/").text
        assert f'href="/ui/jobs/{rank_id}"' in listing and "best: tiny" in listing
        assert 'http-equiv="refresh"' in listing  # a job runs: the list refreshes itself
        page = browser.get(f"/ui/jobs/{rank_id}").text
        assert 'id="rank-table"' in page and "<td>tiny</td>" in page
        assert f'src="/jobs/{rank_id}/artifacts/report/bar.png"' in page
        assert browser.get(f"/jobs/{rank_id}/artifacts/report/bar.png").status_code == 200
        page = browser.get(f"/ui/jobs/{running}").text
        assert 'id="run-summary"' in page and 'id="run-metrics"' in page
        assert "<progress" in page and 'http-equiv="refresh"' in page
    finally:
        client.cancel(running)
        client.wait(running, timeout=120, poll_s=0.2)


def test_the_runs_compare_page_shows_finetune_runs_side_by_side_as_runs_compare_does(
    server, assets
):
    import html

    import httpx

    from advisor.runs import compare_runs, load_run

    client = server.client()
    done = client.list(kind=["finetune"], state=["succeeded"])[:2]
    for seed in range(2 - len(done)):
        job = client.submit("finetune", finetune_params(assets, seed=seed + 1))
        done.append(client.wait(job["id"], timeout=180, poll_s=0.2))
    assert all(j["state"] == "succeeded" for j in done), done
    ids = [j["id"] for j in done]
    rank = client.submit("rank", rank_params(assets), priority=-50)["id"]  # never runs
    client.cancel(rank)
    browser = httpx.Client(base_url=server.url, timeout=60)
    assert 'action="/login"' in browser.get(f"/ui/compare?jobs={ids[0]}").text
    browser.post("/login", data={"token": server.token})
    listing = browser.get("/").text
    for job_id in ids:
        assert f'<input type="checkbox" name="jobs" value="{job_id}"' in listing
    assert 'action="/ui/compare"' in listing and 'id="compare-all"' in listing

    page = browser.get("/ui/compare", params=[("jobs", str(i)) for i in ids])
    assert page.status_code == 200
    runs = [load_run(server.data / "jobs" / f"{i:06d}" / "run") for i in ids]
    expected = compare_runs(runs, metric="fid")  # the run's tracked metric is the default
    assert '<option value="fid" selected>' in page.text and 'id="runs-compare"' in page.text
    for job_id, row in zip(ids, expected, strict=True):
        assert f'<a href="/ui/jobs/{job_id}">job {job_id} (tiny)</a>' in page.text
        assert f"<td>{row.convergence.best:.4g}</td>" in page.text
    assert 'id="compare-curves" src="data:image/png;base64,' in page.text
    recall = browser.get(f"/ui/compare?jobs={ids[0]},{ids[1]}&metric=recall").text
    best_recall = compare_runs(runs, metric="recall")[0].convergence.best
    assert '<option value="recall" selected>' in recall and f"<td>{best_recall:.4g}</td>" in recall

    refusals = [(f"jobs={ids[0]}&metric=beauty", 422, "unknown metric 'beauty'"),
                ("jobs=999999", 404, "no job 999999"), ("jobs=x", 422, "jobs are job ids"),
                ("", 422, "tick at least one fine-tune"),
                (f"jobs={rank}", 422, f"job {rank} is a rank job")]  # fmt: skip
    for query, status, reason in refusals:
        response = browser.get(f"/ui/compare?{query}")
        text = html.unescape(response.text)
        assert response.status_code == status and reason in text, (query, text)


def test_the_compare_page_plots_each_distinct_comparison_once(tmp_path):
    from types import SimpleNamespace

    from advisor.serve import dashboard

    calls = []

    def plot(runs, metric, out, labels):
        calls.append(metric)
        Path(out).write_bytes(b"png")
        return Path(out)

    def run(*fids, ticks=2):
        metrics = [SimpleNamespace(kimg=float(i), metrics={"fid": v}) for i, v in enumerate(fids)]
        return SimpleNamespace(metrics=metrics, stats=[{}] * ticks)

    first = dashboard._curves_image([run(9.0, 8.0)], "fid", ["a"], plot)
    again = dashboard._curves_image([run(9.0, 8.0)], "fid", ["a"], plot)
    assert first == again == "data:image/png;base64,cG5n" and calls == ["fid"]
    dashboard._curves_image([run(9.0, 8.0, 7.0)], "fid", ["a"], plot)  # a new evaluation
    dashboard._curves_image([run(9.0, 8.0, 7.0, ticks=3)], "fid", ["a"], plot)  # a new tick
    dashboard._curves_image([run(9.0, 8.0)], "fid", ["b"], plot)  # another label
    assert len(calls) == 4
    for i in range(dashboard._CURVES_KEPT + 1):  # the cache stays bounded
        dashboard._curves_image([run(float(i))], "fid", ["c"], plot)
    assert len(dashboard._CURVES) == dashboard._CURVES_KEPT


def test_service_messages_name_job_parameters_not_cli_flags():
    from advisor.serve.jobs import service_words

    assert service_words("--source-data takes NAME=DIR", "rank") == "source_data takes NAME=DIR"
    assert service_words("with --checkpoint NAME or --all", "rank") == (
        "with checkpoints NAME or include_all"
    )
    assert service_words("--checkpoint x: use --d-init random", "finetune") == (
        "checkpoint x: use d_init random"
    )
    # What the user sent, quoted, and other programs' flags stay as they are.
    assert service_words("'/data/--target/x' is outside", "rank") == "'/data/--target/x' is outside"
    assert service_words("trained with --cfg=stylegan2", "rank") == "trained with --cfg=stylegan2"
    assert service_words("pass --overwrite", "rank") == "pass --overwrite"  # no such parameter
