"""The load benchmark's bookkeeping (benchmarks/serve.py): percentiles, memory growth and the
lost-job count, as known answers; the benchmark itself is run by hand, not by the tests."""

from __future__ import annotations

import math

import pytest

from advisor.serve.client import ClientError
from benchmarks import serve as bench


def test_percentiles_and_the_latency_summary_are_in_milliseconds():
    values = [i / 1000 for i in range(1, 101)]  # 1 ms .. 100 ms
    assert bench.percentile([1000 * v for v in values], 50) == pytest.approx(50.5)
    assert bench.percentile([1000 * v for v in values], 99) == pytest.approx(99.01)
    assert math.isnan(bench.percentile([], 50))
    summary = bench.summarise(values)
    assert summary == {"n": 100, "p50_ms": 50.5, "p99_ms": 99.01, "max_ms": 100.0,
                       "mean_ms": 50.5}  # fmt: skip
    assert bench.summarise([])["n"] == 0


def test_memory_flatness_takes_the_sample_nearest_the_middle():
    mib = 2**20
    samples = [(0.0, 100 * mib), (4.0, 104 * mib), (6.5, 130 * mib), (10.0, 110 * mib)]
    flat = bench.flatness(samples, window_s=10.0)
    assert flat == {"start_mib": 100.0, "middle_mib": 104.0, "end_mib": 110.0,
                    "peak_mib": 130.0, "growth_mib": 10.0, "growth_fraction": 0.1}  # fmt: skip
    assert bench.flatness([], window_s=10.0) == {}


class FakeClient:
    """``list`` answers from ``jobs`` (at most ``limit``), ``get`` raises for unknown ids."""

    def __init__(self, jobs: dict[int, str]) -> None:
        self.jobs = jobs
        self.asked: list[int] = []

    def list(self, *, state, kind, limit):
        found = [{"id": i, "state": s} for i, s in self.jobs.items() if s in state]
        return found[:limit]

    def get(self, job_id):
        self.asked.append(job_id)
        if job_id not in self.jobs:
            raise ClientError(f"404: no job {job_id}", status=404)
        return {"id": job_id, "state": self.jobs[job_id]}


def test_a_submitted_id_missing_from_the_listing_is_lost():
    client = FakeClient({1: "queued", 2: "cancelled", 4: "queued"})
    out = bench.count_lost(client, [1, 2, 3, 4])
    assert out == {"submitted": 4, "lost": 1, "lost_ids": [3],
                   "states": {"queued": 2, "cancelled": 1}, "listing_truncated": False}  # fmt: skip
    assert client.asked == []


def test_a_truncated_listing_asks_for_the_missing_ids_one_by_one(monkeypatch):
    from advisor.serve import store

    monkeypatch.setattr(store, "MAX_LIST", 2)
    client = FakeClient({1: "queued", 2: "queued", 3: "queued", 5: "cancelled"})
    out = bench.count_lost(client, [1, 2, 3, 4, 5])
    assert out["lost_ids"] == [4] and out["listing_truncated"]
    assert out["states"] == {"queued": 3, "cancelled": 1}
    assert sorted(client.asked) == [3, 4]
