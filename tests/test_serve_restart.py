"""advisor serve survives SIGKILL: nothing lost, nothing run twice, finetunes resume exactly.

A server with two CPU slots runs a finetune and a rank at once; it is SIGKILLed once the
finetune has written a snapshot. Its workers die with it (no orphan keeps training). A new
server on the same data folder re-queues both: the finetune resumes from its snapshot (its
metric and stats history continue without a gap or a repeat), the rank runs again.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.serving import serve, wait_for
from tests.test_serve import assets, finetune_params, rank_params  # noqa: F401 - fixture

SLOTS = ("--devices", "cpu,cpu")


def _pids(data: Path) -> dict[int, int | None]:
    with sqlite3.connect(data / "jobs.sqlite") as db:
        return dict(db.execute("SELECT id, pid FROM jobs").fetchall())


def _dead(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    return "\nState:\tZ" in status  # a zombie has stopped running


@pytest.mark.slow  # ~55 s on a 2-core CPU: two servers, a 48-image finetune and a rank
def test_sigkill_mid_job_then_restart_loses_nothing_and_resumes_the_finetune(
    tmp_path,
    assets,  # noqa: F811
):
    first = serve(tmp_path, "--allow-path", str(assets["root"]), *SLOTS)
    data = first.data
    client = first.client()
    options = dict(kimg=0.048, metric_every=0.016, snapshot_every=0.016)
    tune = client.submit("finetune", finetune_params(assets, **options))["id"]
    rank = client.submit("rank", rank_params(assets))["id"]
    latest = data / "jobs" / f"{tune:06d}" / "run" / "snapshots" / "latest.json"
    wait_for(lambda: latest.is_file() and json.loads(latest.read_text())["nimg"] >= 16, 240)
    assert client.get(tune)["state"] == "running"
    rank_was = client.get(rank)["state"]
    pids = _pids(data)
    first.kill()
    for pid in (pids[tune], pids[rank]):
        if pid is not None:
            wait_for(lambda pid=pid: _dead(pid), 10)  # the kernel killed the workers too
    killed_at = json.loads(latest.read_text())["nimg"]

    second = first.again().start()
    try:
        client = second.client()
        jobs = {j["id"]: j for j in client.list()}
        assert set(jobs) == {tune, rank}
        done = client.wait(tune, timeout=240, poll_s=0.2)
        assert done["state"] == "succeeded", (done, client.logs(tune, tail=0))
        assert done["attempts"] == 2 and done["note"] == "re-queued after a server restart"
        assert "resuming run from its last snapshot" in client.logs(tune, tail=0)
        run = data / "jobs" / f"{tune:06d}" / "run"
        metrics = [json.loads(line)["nimg"] for line in (run / "metrics.jsonl").open()]
        assert metrics == [0, 16, 32, 48] and killed_at < 48
        stats = [json.loads(line)["nimg"] for line in (run / "stats.jsonl").open()]
        assert stats == [8 * i for i in range(1, 7)]
        ranked = client.wait(rank, timeout=240, poll_s=0.2)
        assert ranked["state"] == "succeeded" and ranked["result"]["best"] == "tiny"
        assert ranked["attempts"] == (2 if rank_was == "running" else 1)
    finally:
        second.stop()
    with sqlite3.connect(data / "jobs.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
