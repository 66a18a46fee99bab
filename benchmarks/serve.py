"""Load benchmark of ``advisor serve``: status reads and submissions while a job trains.

Starts a real ``advisor serve`` on 127.0.0.1 (its own temporary data folder and token, one
``cpu`` device), starts one finetune job in it (a 16 px network, 12 target images, a kimg it
never reaches: it trains for the whole measurement and is cancelled at the end), waits until it
trains, and then runs ``--clients`` concurrent clients for ``--seconds``. Each client is what a
pipeline waiting on its jobs does with :class:`advisor.Client` (a new connection per request,
like ``Client.wait``):

- ``POST /jobs``: submit a compare job of two tiny feature files (validated like any job);
- ``GET /jobs/{id}``: poll it every ``--poll-s`` seconds (``Client.wait``'s default: 1 s),
  ``--polls`` times;
- ``POST /jobs/{id}/cancel``: cancel every second job it submitted, then submit the next.

With the defaults (50 clients, 1 s polls, 5 polls per job) that is about 50 status reads, 10
submissions and 5 cancels per second: 50 pipelines each following a job, rather than a flood
that only measures how fast a 2-core box can refuse work. The compare jobs queue behind the
training finetune (one device), so no other worker competes with it; the queue grows to a few
hundred jobs, which the store and ``GET /jobs`` must carry. Clients start staggered over one
poll interval and keep a fixed schedule (a slow answer does not slow the rate).

Reported: p50/p99/max latency of ``GET /jobs/{id}``, ``POST /jobs`` and the cancels (seen by
the client, so they include the client's own Python); request failures (target 0); jobs lost
(every submitted id must be in ``GET /jobs`` at the end; target 0); the server's resident memory
at the start, the middle and the end of the window (after one warm-up submission, so lazy
imports are not counted as growth); the kimg the finetune trained during the window (it must
still be running at the end). Target: p99 of status reads under 50 ms while the job trains.

    python benchmarks/serve.py [--clients 50] [--seconds 60] [--poll-s 1.0] [--polls 5]
        [--train-threads 1] [--out benchmarks/results/serve.json]

The training worker gets ``--train-threads`` CPU threads (default 1: on a GPU box training
keeps about one core busy feeding the GPU; 0 leaves torch's default, every core).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from advisor.serve.client import Client, ClientError

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(REPO))

from benchmarks.targets import write_noise_images  # noqa: E402

#: Latency targets of the issue (milliseconds, p99).
TARGET_STATUS_P99_MS = 50.0
RESOLUTION = 16
TARGET_IMAGES = 12
#: Feature files of the compare jobs: rows x dimensions (tiny: they only have to validate).
FEATURE_SHAPE = (64, 32)
#: Far beyond what trains in the window: the finetune is still running when it is cancelled.
FINETUNE_KIMG = 10_000.0


# --------------------------------------------------------------------------- statistics
def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ``values``, linearly interpolated (numpy's default);
    NaN when there are none."""
    if not values:
        return float("nan")
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def summarise(seconds: list[float]) -> dict[str, Any]:
    """Latencies in seconds -> ``{"n", "p50_ms", "p99_ms", "max_ms", "mean_ms"}``."""
    ms = [1000.0 * s for s in seconds]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "max_ms": round(max(ms), 3) if ms else float("nan"),
        "mean_ms": round(float(np.mean(ms)), 3) if ms else float("nan"),
    }


def flatness(samples: list[tuple[float, int]], window_s: float) -> dict[str, Any]:
    """Resident memory ``(seconds into the window, bytes)`` samples -> start, middle, end and
    peak in MiB, and the growth from start to end (MiB and fraction)."""
    if not samples:
        return {}
    mib = [(t, b / 2**20) for t, b in samples]
    start, end = mib[0][1], mib[-1][1]
    middle = min(mib, key=lambda s: abs(s[0] - window_s / 2))[1]
    return {
        "start_mib": round(start, 1),
        "middle_mib": round(middle, 1),
        "end_mib": round(end, 1),
        "peak_mib": round(max(m for _, m in mib), 1),
        "growth_mib": round(end - start, 1),
        "growth_fraction": round((end - start) / start, 4) if start else float("nan"),
    }


@dataclass
class Tally:
    """Latencies per request kind and failures, shared by the client threads."""

    latencies: dict[str, list[float]] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    submitted: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def timed(self, what: str, call: Any, *args: Any) -> Any:
        """``call(*args)``, its latency kept under ``what``; a failure counted (None returned)."""
        start = time.perf_counter()
        try:
            value = call(*args)
        except ClientError as err:
            with self.lock:
                self.failures[what] = self.failures.get(what, 0) + 1
                if len(self.reasons) < 20:
                    self.reasons.append(f"{what}: {err}")
            return None
        elapsed = time.perf_counter() - start
        with self.lock:
            self.latencies.setdefault(what, []).append(elapsed)
        return value


# --------------------------------------------------------------------------- the world
def build_assets(folder: Path) -> dict[str, Path]:
    """A tiny checkpoint (G, D, G_ema at 16 px), 12 target images and two feature files."""
    import torch

    from advisor.checkpoints.format import Checkpoint, CheckpointMetadata, save_checkpoint
    from advisor.networks import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig

    g_cfg = GeneratorConfig(z_dim=32, w_dim=32, img_resolution=RESOLUTION, channel_base=512,
                            channel_max=32, mapping_layers=2)  # fmt: skip
    d_cfg = DiscriminatorConfig(img_resolution=RESOLUTION, channel_base=512, channel_max=32,
                                mbstd_group_size=4)  # fmt: skip
    torch.manual_seed(0)
    G, D, G_ema = Generator(g_cfg), Discriminator(d_cfg), Generator(g_cfg)  # noqa: N806
    G_ema.load_state_dict(G.state_dict())
    meta = CheckpointMetadata(name="tiny", generator=g_cfg, discriminator=d_cfg, licence="test")
    save_checkpoint(folder / "tiny", Checkpoint(metadata=meta, G_ema=G_ema, G=G, D=D))
    rng = np.random.default_rng(0)
    target = write_noise_images(folder / "target", TARGET_IMAGES, size=RESOLUTION, rng=rng)
    features = []
    for name in ("reference", "candidate"):
        path = folder / f"{name}.npy"
        np.save(path, rng.normal(size=FEATURE_SHAPE).astype(np.float32))
        features.append(path)
    return {"checkpoint": folder / "tiny.safetensors", "target": target,
            "reference": features[0], "candidate": features[1]}  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``advisor serve`` in a subprocess on a free loopback port."""

    def __init__(self, folder: Path, *, allow: Path, train_threads: int) -> None:
        self.data = folder / "data"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "ADVISOR_CACHE": str(folder / "cache"), "ADVISOR_OFFLINE": "1"}
        env.pop("ADVISOR_REGISTRY", None)
        if train_threads:
            env["OMP_NUM_THREADS"] = str(train_threads)
        command = [sys.executable, "-m", "advisor", "serve", "--host", "127.0.0.1", "--port",
                   str(self.port), "--data", str(self.data), "--devices", "cpu",
                   "--allow-path", str(allow)]  # fmt: skip
        self.log_path = folder / "server.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def wait_ready(self, timeout: float = 120.0) -> Client:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the server exited:\n{self.log_tail()}")
            try:
                Client(self.url, token="", timeout=2).health()
                token = (self.data / "token").read_text().strip()
                return Client(self.url, token=token, timeout=30)
            except (ClientError, OSError):
                time.sleep(0.2)
        raise SystemExit(f"the server did not answer /health in {timeout:g} s:\n{self.log_tail()}")

    def rss_bytes(self) -> int | None:
        """The server process's resident memory (``VmRSS``), None once it is gone."""
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            return None
        return None

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        """Ctrl-C, as a user would; SIGKILL after 60 s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


# --------------------------------------------------------------------------- the load
def client_loop(
    index: int,
    client: Client,
    params: dict[str, Any],
    *,
    start: float,
    deadline: float,
    poll_s: float,
    polls: int,
    tally: Tally,
) -> None:
    """One client: submit, poll ``polls`` times, cancel every second job; on a fixed schedule
    (a slow answer does not lower the rate) until ``deadline``."""
    rng = random.Random(index)
    next_at = start + rng.uniform(0, poll_s)  # staggered starts: no thundering herd
    n = 0

    def sleep_until(moment: float) -> bool:
        now = time.monotonic()
        if moment >= deadline:
            return False
        if moment > now:
            time.sleep(moment - now)
        return True

    while sleep_until(next_at):
        job = tally.timed("submit", client.submit, "compare", params)
        next_at += poll_s
        if job is None:
            continue
        with tally.lock:
            tally.submitted.append(int(job["id"]))
        for _ in range(polls):
            if not sleep_until(next_at):
                break
            tally.timed("status", client.get, job["id"])
            next_at += poll_s
        if n % 2 == 0 and time.monotonic() < deadline:
            tally.timed("cancel", client.cancel, job["id"])
        n += 1


def count_lost(client: Client, submitted: list[int]) -> dict[str, Any]:
    """Which submitted ids ``GET /jobs`` no longer lists (one listing per state, up to 1,000
    jobs each; ids a full listing may have cut off are asked for one by one)."""
    from advisor.serve.store import MAX_LIST, STATES

    listed: dict[int, str] = {}
    truncated = False
    for state in STATES:
        jobs = client.list(state=[state], kind=["compare"], limit=MAX_LIST)
        truncated |= len(jobs) == MAX_LIST
        listed.update({j["id"]: j["state"] for j in jobs})
    missing = [i for i in submitted if i not in listed]
    lost = []
    for job_id in missing if truncated else []:
        try:
            listed[job_id] = client.get(job_id)["state"]
        except ClientError:
            lost.append(job_id)
    if not truncated:
        lost = missing
    states: dict[str, int] = {}
    for job_id in submitted:
        if job_id in listed:
            states[listed[job_id]] = states.get(listed[job_id], 0) + 1
    return {"submitted": len(submitted), "lost": len(lost), "lost_ids": lost[:20],
            "states": states, "listing_truncated": truncated}  # fmt: skip


def start_training(client: Client, assets: dict[str, Path], timeout: float = 300.0) -> int:
    """Submit the finetune and wait until it has trained its first tick; returns its id."""
    params = {"checkpoint": str(assets["checkpoint"]), "target": str(assets["target"]),
              "kimg": FINETUNE_KIMG, "batch": 8, "tick_kimg": 0.08, "metric_every": None,
              "snapshot_every": 1.0, "grid_seeds": 4, "r1_interval": 4,
              "pl_weight": 0.0}  # fmt: skip
    job_id = int(client.submit("finetune", params)["id"])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(job_id)
        if job["state"] not in ("queued", "running"):
            raise SystemExit(f"the finetune job ended before the load: {job}")
        if (job.get("progress") or {}).get("kimg", 0) > 0:
            return job_id
        time.sleep(0.5)
    raise SystemExit(f"the finetune job did not train within {timeout:g} s")


def machine() -> dict[str, Any]:
    import torch

    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "nice": os.nice(0),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def run(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    assets = build_assets(folder / "assets")
    server = Server(folder, allow=folder / "assets", train_threads=args.train_threads)
    try:
        client = server.wait_ready()
        train_id = start_training(client, assets)
        params = {"reference": str(assets["reference"]),
                  "candidate": str(assets["candidate"]), "bootstrap": 0}  # fmt: skip
        warm = client.submit("compare", params)  # lazy imports happen before the window
        client.get(warm["id"])
        client.cancel(warm["id"])
        kimg_start = client.get(train_id)["progress"]["kimg"]
        tally = Tally()
        rss: list[tuple[float, int]] = []
        start = time.monotonic()
        deadline = start + args.seconds
        threads = [
            threading.Thread(
                target=client_loop,
                args=(i, Client(server.url, token=client.token, timeout=30), params),
                kwargs={
                    "start": start,
                    "deadline": deadline,
                    "poll_s": args.poll_s,
                    "polls": args.polls,
                    "tally": tally,
                },
                daemon=True,
            )
            for i in range(args.clients)
        ]
        for t in threads:
            t.start()
        while time.monotonic() < deadline:
            value = server.rss_bytes()
            if value is not None:
                rss.append((time.monotonic() - start, value))
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
        for t in threads:  # bounded: every request has a 30 s timeout
            t.join(timeout=60)
        hung = sum(t.is_alive() for t in threads)
        window_s = time.monotonic() - start
        value = server.rss_bytes()
        if value is not None:
            rss.append((window_s, value))
        training = client.get(train_id)
        jobs = count_lost(client, tally.submitted)
        for job in client.list(state=["queued"], limit=1000):  # nothing else may start
            if job["id"] != train_id:
                client.cancel(job["id"])
        client.cancel(train_id)
        stopped = client.wait(train_id, timeout=120, poll_s=0.5)
        load_end = [round(x, 2) for x in os.getloadavg()]
    finally:
        server.stop()
    latencies = {what: summarise(values) for what, values in sorted(tally.latencies.items())}
    failures = sum(tally.failures.values())
    status_p99 = latencies.get("status", {}).get("p99_ms", float("nan"))
    return {
        "window_s": round(window_s, 2),
        "latency": latencies,
        "requests_per_s": round(sum(len(v) for v in tally.latencies.values()) / window_s, 1),
        "failures": failures,
        "failures_by_request": tally.failures,
        "failure_reasons": tally.reasons,
        "clients_still_running": hung,
        "jobs": jobs,
        "server_rss": flatness(rss, window_s),
        "training": {
            "state_at_end_of_window": training["state"],
            "kimg_during_window": round(training["progress"]["kimg"] - kimg_start, 3)
            if training.get("progress")
            else None,
            "final_state": stopped["state"],
            "stopped_by": (stopped.get("result") or {}).get("stopped_by"),
        },
        "load_average_at_end": load_end,
        "targets": {
            "status_p99_under_50ms": bool(status_p99 < TARGET_STATUS_P99_MS),
            "no_failures": failures == 0 and hung == 0,
            "no_job_lost": jobs["lost"] == 0,
            "trained_throughout": training["state"] == "running",
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--poll-s", type=float, default=1.0, help="seconds between polls")
    parser.add_argument("--polls", type=int, default=5, help="status reads per submitted job")
    parser.add_argument("--train-threads", type=int, default=1, help="0: torch's default")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent / "results" / "serve.json"
    )
    args = parser.parse_args()
    if not (1 <= args.clients <= 1000 and 0 < args.seconds <= 3600 and args.poll_s > 0):
        parser.error("--clients must be 1..1000, --seconds 0..3600, --poll-s > 0")
    info = machine()
    with tempfile.TemporaryDirectory(prefix="advisor-serve-bench-") as tmp:
        result = run(args, Path(tmp))
    doc = {"config": vars(args) | {"out": str(args.out)}, "machine": info, **result}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    for what, s in result["latency"].items():
        print(
            f"{what:>7}: n {s['n']:>6}  p50 {s['p50_ms']:.1f} ms  p99 {s['p99_ms']:.1f} ms  "
            f"max {s['max_ms']:.1f} ms"
        )
    rss, jobs, training = result["server_rss"], result["jobs"], result["training"]
    print(
        f"{result['requests_per_s']} requests/s over {result['window_s']} s; failures "
        f"{result['failures']}; jobs submitted {jobs['submitted']}, lost {jobs['lost']}"
    )
    print(
        f"server RSS start {rss.get('start_mib')} MiB, middle {rss.get('middle_mib')}, end "
        f"{rss.get('end_mib')} (growth {rss.get('growth_mib')} MiB); the finetune trained "
        f"{training['kimg_during_window']} kimg, {training['state_at_end_of_window']} at the end"
    )
    print(f"load average {info['load_average_at_start']} -> {result['load_average_at_end']}")
    met = [f"{name} {'yes' if ok else 'NO'}" for name, ok in result["targets"].items()]
    print("targets: " + ", ".join(met))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
