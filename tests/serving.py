"""A real ``advisor serve`` in a subprocess on a free loopback port, for the serve tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from advisor.serve.client import Client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``advisor serve --devices cpu`` on ``data``; :meth:`start` waits for ``/health``."""

    def __init__(self, data: Path, *, cache: Path, args: tuple[str, ...] = ()) -> None:
        self.data = data
        self.cache = cache
        self.args = args
        self.port = free_port()
        self.proc: subprocess.Popen[str] | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def again(self) -> Server:
        """The next server on this one's data folder, cache and arguments (not started yet):
        what a restart after a stop or a SIGKILL brings up."""
        return Server(self.data, cache=self.cache, args=self.args)

    def start(self, timeout: float = 90.0) -> Server:
        env = {
            **os.environ,
            "ADVISOR_CACHE": str(self.cache),
            "ADVISOR_OFFLINE": "1",
            "OMP_NUM_THREADS": "1",
        }
        env.pop("ADVISOR_REGISTRY", None)
        command = [sys.executable, "-m", "advisor", "serve", "--host", "127.0.0.1"]
        command += ["--port", str(self.port), "--data", str(self.data), "--devices", "cpu"]
        self.log = open(self.data.parent / f"{self.data.name}-server.log", "a")
        self.proc = subprocess.Popen(
            [*command, *self.args], stdout=self.log, stderr=subprocess.STDOUT, env=env, text=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.read_log()[-2000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.kill()  # no server left behind by a test that fails here
        raise RuntimeError(f"server did not start in {timeout:g} s: {self.read_log()[-2000:]}")

    def read_log(self) -> str:
        return (self.data.parent / f"{self.data.name}-server.log").read_text()

    @property
    def token(self) -> str:
        return (self.data / "token").read_text().strip()

    def client(self) -> Client:
        return Client(self.url, token=self.token, timeout=60)

    def http(
        self, method: str, path: str, *, token: str | None = "", **kw: object
    ) -> httpx.Response:
        """A raw request; ``token`` "" uses the server's, None sends none."""
        headers = dict(kw.pop("headers", {}) or {})  # type: ignore[call-overload]
        if token is not None:
            headers["Authorization"] = f"Bearer {token or self.token}"
        return httpx.request(method, self.url + path, headers=headers, timeout=60, **kw)  # type: ignore[arg-type]

    def stop(self) -> None:
        """Ctrl-C, as a user would; SIGKILL if it does not stop within 60 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.log.close()


def serve(tmp_path: Path, *args: str) -> Server:
    """A started server with its data folder (``data``) and cache (``cache``) in ``tmp_path``."""
    return Server(tmp_path / "data", cache=tmp_path / "cache", args=args).start()


def wait_for(predicate, timeout: float = 120.0, every: float = 0.1):  # type: ignore[no-untyped-def]
    """Poll ``predicate()`` until it returns something true; return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("timed out waiting")
