"""The dashboard in a real headless browser (Debian's ``chromium``): a finished rank, a
running finetune, and the runs-compare page of a running and a finished finetune render.
Skipped only where no chromium is installed (``.ci/run`` installs one). The server runs with
``--no-auth`` on loopback, since the browser is driven with ``--dump-dom`` and cannot sign in;
the token sign-in is tested over HTTP in test_serve.py.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from advisor.serve.client import Client
from tests.serving import serve, wait_for
from tests.test_serve import assets, finetune_params, rank_params  # noqa: F401 - fixture

BROWSER = next(
    (shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)),
    None,
)


def dump_dom(url: str) -> str:
    assert BROWSER is not None
    command = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", url]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=True).stdout


@pytest.mark.skipif(BROWSER is None, reason="no chromium installed")
def test_a_headless_browser_renders_a_finished_rank_a_running_finetune_and_a_runs_compare(
    tmp_path,
    assets,  # noqa: F811
):
    server = serve(
        tmp_path, "--no-auth", "--allow-path", str(assets["root"]), "--devices", "cpu,cpu"
    )
    try:
        client = Client(server.url, token="", timeout=60)  # --no-auth: no token file exists
        rank = client.submit("rank", rank_params(assets))["id"]
        tune = client.submit("finetune", finetune_params(assets, kimg=50.0, metric_every=0.008))[
            "id"
        ]
        assert client.wait(rank, timeout=120, poll_s=0.2)["state"] == "succeeded"
        metrics = server.data / "jobs" / f"{tune:06d}" / "run" / "metrics.jsonl"
        wait_for(lambda: metrics.is_file() and metrics.read_text().count("\n") >= 2)
        listing = dump_dom(server.url + "/")
        assert f'href="/ui/jobs/{rank}"' in listing and "running" in listing
        page = dump_dom(f"{server.url}/ui/jobs/{rank}")
        assert 'id="rank-table"' in page and "tiny" in page
        page = dump_dom(f"{server.url}/ui/jobs/{tune}")
        assert 'id="run-metrics"' in page and 'id="state"' in page and "running" in page
        short = client.submit("finetune", finetune_params(assets, seed=5))["id"]  # rank's slot
        assert client.wait(short, timeout=180, poll_s=0.2)["state"] == "succeeded"
        listing = dump_dom(server.url + "/")
        assert f'value="{short}"' in listing and 'id="compare-all"' in listing
        page = dump_dom(f"{server.url}/ui/compare?jobs={tune}&jobs={short}")
        assert 'id="runs-compare"' in page and 'id="compare-curves"' in page
        for job_id in (tune, short):
            assert f'href="/ui/jobs/{job_id}">job {job_id} (tiny)</a>' in page
        assert page.count('class="state-running"') == 1 and "(best)" in page
        client.cancel(tune)
        client.wait(tune, timeout=120, poll_s=0.2)
    finally:
        server.stop()
