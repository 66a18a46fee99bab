"""A finetune job on several devices runs as one torchrun group, here two gloo processes on two
CPU slots (the same code path as on GPUs, where NCCL carries the gradients; that part needs
several GPUs and is not run here).

The group holds both slots (a job behind it waits), trains with world size 2, and a cancel,
which torchrun passes on to both processes, stops them after the same step with a snapshot.
A SIGKILLed server takes the whole group with it (torchrun dies with the server, its processes
with torchrun), and the next server resumes the job from its snapshot.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.serving import serve, wait_for
from tests.test_serve import LITE, assets, finetune_params  # noqa: F401 - fixture

ARGS = ("--devices", "cpu,cpu")
LONG = dict(devices=2, kimg=50.0, metric_every=None, tick_kimg=0.008)


def _group_processes(folder: Path) -> list[int]:
    """Processes whose command line names the job folder (torchrun and its workers)."""
    wanted = os.fsencode(str(folder))
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            status = (entry / "status").read_text()
        except OSError:
            continue
        if wanted in cmdline and "\nState:\tZ" not in status:  # a zombie has stopped running
            found.append(int(entry.name))
    return found


def test_a_two_device_finetune_holds_both_slots_and_a_cancel_stops_the_group_with_a_snapshot(
    tmp_path,
    assets,  # noqa: F811
):
    server = serve(tmp_path, "--allow-path", str(assets["root"]), *ARGS)
    try:
        client = server.client()
        tune = client.submit("finetune", finetune_params(assets, **LONG, snapshot_every=100.0))
        params = {"reference": str(assets["target"]), "candidate": str(assets["other"]),
                  "extractor": LITE, "bootstrap": 0, "kid_subset_size": 6}  # fmt: skip
        behind = client.submit("compare", params)["id"]
        wait_for(lambda: (client.get(tune["id"]).get("progress") or {}).get("kimg", 0) > 0, 300)
        running = client.get(tune["id"])
        assert running["state"] == "running" and running["device"] == "cpu,cpu"
        assert client.get(behind)["state"] == "queued"  # both slots are the group's
        folder = server.data / "jobs" / f"{tune['id']:06d}"
        assert len(_group_processes(folder)) == 3  # torchrun and one worker per device
        config = json.loads((folder / "run" / "config.json").read_text())
        assert config["world_size"] == 2 and config["options"]["batch"] == 8

        client.cancel(tune["id"])
        done = client.wait(tune["id"], timeout=180, poll_s=0.2)
        log = client.logs(tune["id"], tail=0)
        assert done["state"] == "cancelled" and "snapshot kept" in done["note"], (done, log)
        assert done["result"]["stopped_by"] == "interrupt"
        latest = json.loads((folder / "run" / "snapshots" / "latest.json").read_text())
        assert latest["nimg"] == round(done["result"]["summary"]["kimg"] * 1000) > 0
        assert log.count("finetune: ") == 1 and "process 1 failed" not in log  # rank 0 logs
        assert "a torchrun group of 2 processes on cpu,cpu" in log
        assert "Traceback" not in log  # the processes stopped, and torchrun with them
        assert _group_processes(folder) == []
        ran = client.wait(behind, timeout=180, poll_s=0.2)
        assert ran["state"] == "succeeded", ran
    finally:
        server.stop()


@pytest.mark.slow  # ~2 min on a 2-core CPU: two servers and two torchrun start-ups
def test_a_sigkilled_server_takes_the_group_with_it_and_the_next_resumes_it(
    tmp_path,
    assets,  # noqa: F811
):
    first = serve(tmp_path, "--allow-path", str(assets["root"]), *ARGS)
    client = first.client()
    tune = client.submit("finetune", finetune_params(assets, **LONG, snapshot_every=0.016))["id"]
    folder = first.data / "jobs" / f"{tune:06d}"
    latest = folder / "run" / "snapshots" / "latest.json"
    wait_for(lambda: latest.is_file(), 300)
    assert len(_group_processes(folder)) == 3
    first.kill()
    wait_for(lambda: _group_processes(folder) == [], 15)  # nothing left to train twice
    kept = json.loads(latest.read_text())["nimg"]

    second = first.again().start()
    try:
        client = second.client()
        wait_for(lambda: json.loads(latest.read_text())["nimg"] > kept, 300)
        job = client.get(tune)
        assert job["state"] == "running" and job["attempts"] == 2
        assert "resuming run from its last snapshot" in client.logs(tune, tail=0)
        client.cancel(tune)
        done = client.wait(tune, timeout=180, poll_s=0.2)
        assert done["state"] == "cancelled" and done["result"]["stopped_by"] == "interrupt"
    finally:
        second.stop()
