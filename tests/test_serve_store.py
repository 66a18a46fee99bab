"""The job store's state machine and the job parameters' confinement, without a server."""

from __future__ import annotations

import os

import pytest

from advisor.errors import AdvisorError
from advisor.serve.jobs import FinetuneParams, RankParams, Roots, from_json, parse_params, to_json
from advisor.serve.store import JobStore


@pytest.fixture
def store(tmp_path):
    s = JobStore(tmp_path / "jobs.sqlite")
    yield s
    s.close()


def test_jobs_run_by_priority_then_in_submission_order(store):
    ids = [store.add("rank", {"n": i}, priority=p).id for i, p in enumerate([0, 5, 0, 5, -1])]
    order = []
    while (job := store.claim_next("cpu")) is not None:
        order.append(job.id)
        assert job.state == "running" and job.device == "cpu" and job.attempts == 1
    assert order == [ids[1], ids[3], ids[0], ids[2], ids[4]]


def test_cancel_is_immediate_when_queued_and_asks_the_worker_when_running(store):
    queued, running = store.add("rank", {}), store.add("finetune", {})
    store.claim_next("cpu")  # the oldest: queued
    store.claim_next("cpu")
    assert store.request_cancel(queued.id).state == "cancelling"
    store.finish(queued.id, "cancelled", note="stopped")
    assert store.get(queued.id).state == "cancelled"
    store.finish(running.id, "succeeded", result={"ok": True})
    for state in ("failed", "cancelled"):  # terminal states never change again
        store.finish(running.id, state)  # type: ignore[arg-type]
    assert store.request_cancel(running.id).state == "succeeded"
    assert store.get(running.id).result == {"ok": True}
    later = store.add("compare", {})
    assert store.request_cancel(later.id).state == "cancelled"


def test_recovery_requeues_running_jobs_and_finishes_cancelling_ones(tmp_path):
    first = JobStore(tmp_path / "jobs.sqlite")
    a, b, c = first.add("finetune", {}), first.add("rank", {}), first.add("compare", {})
    first.claim_next("cuda:0")
    first.claim_next("cuda:1")
    first.set_pid(a.id, 12345)
    first.request_cancel(b.id)
    del first  # the server died: no close, no clean-up
    second = JobStore(tmp_path / "jobs.sqlite")
    stale = second.recover()
    assert [(j.id, j.state, j.pid) for j in stale] == [
        (a.id, "running", 12345),
        (b.id, "cancelling", None),
    ]
    assert second.get(a.id).state == "queued" and second.get(a.id).attempts == 1
    assert second.get(a.id).note == "re-queued after a server restart"
    assert second.get(b.id).state == "cancelled" and second.get(c.id).state == "queued"
    assert second.claim_next("cpu").id == a.id  # first in line again, attempt 2
    assert second.get(a.id).attempts == 2
    assert second.counts() == {"queued": 1, "running": 1, "cancelling": 0, "succeeded": 0,
                               "failed": 0, "cancelled": 1}  # fmt: skip


def test_a_file_that_is_not_a_store_is_one_line(tmp_path):
    path = tmp_path / "jobs.sqlite"
    path.write_bytes(b"not a database" * 100)
    with pytest.raises(AdvisorError, match="cannot be used") as err:
        JobStore(path)
    assert "\n" not in str(err.value)


def test_paths_are_confined_to_the_roots(tmp_path):
    data, extra, outside = tmp_path / "data", tmp_path / "extra", tmp_path / "outside"
    for folder in (data / "targets", extra / "set", outside):
        folder.mkdir(parents=True)
    (extra / "alias").symlink_to(outside)
    (data / "inside-link").symlink_to(extra / "set")
    roots = Roots(data=data, allowed=(extra,))
    assert roots.confine("targets", what="t") == str(data / "targets")
    assert roots.confine(str(extra / "set"), what="t") == str(extra / "set")
    assert roots.confine(str(extra), what="t") == str(extra)
    for bad, reason in [
        (str(outside), "outside the server's allowed paths"),
        (str(extra / "alias"), "leads outside"),
        (str(extra / ".." / "outside"), "'..'"),
        ("../outside", "'..'"),
        ("inside-link", "leads outside"),  # a link from data to another root still leaves data
        ("", "non-empty"),
        ("targets/missing.zip", "no such file"),
    ]:
        with pytest.raises(AdvisorError, match=reason):
            roots.confine(bad, what="t")


def test_params_round_trip_through_the_store_as_json(tmp_path):
    roots = Roots(data=tmp_path)
    (tmp_path / "t").mkdir()
    (tmp_path / "c.safetensors").write_bytes(b"")
    rank = parse_params("rank", {"target": "t", "checkpoints": ["c.safetensors", "ffhq"],
                                 "extractor": "efficientnet-lite0"}, roots=roots,
                        registry_names=["ffhq"])  # fmt: skip
    assert isinstance(rank, RankParams)
    assert rank.checkpoints == (str(tmp_path / "c.safetensors"), "ffhq")
    assert from_json("rank", to_json(rank)) == rank
    tune = parse_params("finetune", {"checkpoint": "ffhq", "target": "t", "kimg": 2},
                        roots=roots, registry_names=["ffhq"])  # fmt: skip
    assert isinstance(tune, FinetuneParams) and tune.options["kimg"] == 2.0
    assert from_json("finetune", to_json(tune)) == tune
    assert os.path.isabs(tune.target)


def test_a_job_waiting_for_devices_keeps_its_turn(store):
    group = store.add("finetune", {"devices": 2})
    single = store.add("rank", {})
    assert store.claim_next(lambda job: None) is None  # the head does not fit: nothing starts
    assert store.get(group.id).state == "queued" and store.get(single.id).state == "queued"
    claimed = store.claim_next(lambda job: "cpu,cpu" if job.params.get("devices") else "cpu")
    assert claimed.id == group.id and claimed.device == "cpu,cpu"
    assert store.claim_next("cpu").id == single.id


def test_device_groups_take_distinct_gpus_or_cpu_slots_never_a_mix():
    from advisor.serve.jobs import device_group

    assert device_group(["cuda:1", "cuda:0"], 1) == ("cuda:1",)
    assert device_group([], 1) is None
    assert device_group(["cuda:0", "cuda:0", "cuda:1"], 2) == ("cuda:0", "cuda:1")
    assert device_group(["cuda:0", "cuda:0", "cuda:1"], 3) is None  # one GPU twice: no
    assert device_group(["cpu", "cpu", "cpu"], 3) == ("cpu", "cpu", "cpu")
    assert device_group(["cpu", "cuda:0"], 2) is None


def test_a_group_runs_under_torchrun_one_process_per_device(tmp_path):
    import sys

    from advisor.serve.scheduler import worker_command

    one = worker_command(tmp_path, ["cuda:1"])
    assert one == [sys.executable, "-m", "advisor.serve.worker", str(tmp_path),
                   "--device", "cuda:1"]  # fmt: skip
    two = worker_command(tmp_path, ["cuda:0", "cuda:1"])
    assert two == [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   "--nproc-per-node=2", "-m", "advisor.serve.worker", str(tmp_path),
                   "--device", "cuda:0,cuda:1"]  # fmt: skip


def test_finetune_devices_must_fit_the_server_and_split_the_batch(tmp_path):
    roots = Roots(data=tmp_path)
    (tmp_path / "t").mkdir()
    base = {"checkpoint": "ffhq", "target": "t"}

    def parse(slots, **extra):
        return parse_params("finetune", {**base, **extra}, roots=roots, registry_names=["ffhq"],
                            devices=slots)  # fmt: skip

    tune = parse(("cpu", "cpu"), devices=2, batch=8)
    assert tune.devices == 2 and "devices" not in tune.options
    assert from_json("finetune", to_json(tune)) == tune
    assert parse(("cpu",)).devices == 1
    for slots, extra, reason in [
        (("cpu",), {"devices": 2}, r"devices must be 1\.\.1 on this server \(its devices: cpu\)"),
        (("cuda:0", "cuda:0"), {"devices": 2}, r"devices must be 1\.\.1 on this server"),
        (("cpu", "cpu"), {"devices": 0}, r"devices must be 1\.\.2"),
        (("cpu", "cpu"), {"devices": "two"}, "devices must be an integer"),
        (("cpu", "cpu"), {"devices": 2, "batch": 7}, "batch 7 does not split over 2 devices"),
    ]:
        with pytest.raises(AdvisorError, match=reason):
            parse(slots, **extra)
