"""Loopback servers for download tests: plain HTTP (bytes, Range, request counts) and a Hub."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Served:
    files: dict[str, bytes]
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)
    truncate_at: int | None = None  # send only this many bytes of a full response, then close
    base_url: str = ""


@contextmanager
def serve(files: dict[str, bytes], *, truncate_at: int | None = None) -> Iterator[Served]:
    """Serve ``files`` (path -> bytes) on 127.0.0.1 at a free port until the block ends."""
    served = Served(files=dict(files), truncate_at=truncate_at)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            rng = self.headers.get("Range")
            served.requests.append((self.path, rng))
            data = served.files.get(self.path)
            if data is None:
                self.send_error(404)
                return
            start = 0
            if rng and rng.startswith("bytes="):
                start = int(rng[len("bytes=") :].split("-")[0])
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if served.truncate_at is not None and not rng:
                self.wfile.write(body[: served.truncate_at])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

    with running(ThreadingHTTPServer(("127.0.0.1", 0), Handler)) as base_url:
        served.base_url = base_url
        yield served


#: How often the serving loop looks for a shutdown request: ``shutdown()`` waits up to this
#: long (the standard library's 0.5 s default cost half a second per served test).
POLL_INTERVAL_S = 0.005


@contextmanager
def running(server: ThreadingHTTPServer) -> Iterator[str]:
    """Run ``server`` on a daemon thread until the block ends; yields its base URL. Shutdown
    takes milliseconds, not the default poll interval."""
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": POLL_INTERVAL_S}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


#: The one revision the local Hub serves.
COMMIT = "c0ffee" + "0" * 34


@contextmanager
def hub(files: dict[tuple[str, str], bytes]) -> Iterator[list[str]]:
    """Serve ``{(repo, file): bytes}`` at revision COMMIT; yields the request log (its first
    entry is the base URL, for ``HF_ENDPOINT``).

    Implements what ``huggingface_hub.hf_hub_download`` asks of
    ``{endpoint}/{repo}/resolve/{revision}/{file}``: HEAD and GET with ``X-Repo-Commit``,
    ``ETag`` and ``Content-Length``.
    """
    log: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _find(self):
            parts = self.path.split("?")[0].strip("/").split("/")
            if len(parts) < 5 or parts[2] != "resolve" or parts[3] != COMMIT:
                return None
            return files.get(("/".join(parts[:2]), "/".join(parts[4:])))

        def _headers(self, data):
            self.send_response(200)
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()

        def do_HEAD(self):  # noqa: N802
            log.append("HEAD " + self.path)
            data = self._find()
            if data is None:
                self.send_error(404)
            else:
                self._headers(data)

        def do_GET(self):  # noqa: N802
            log.append("GET " + self.path)
            data = self._find()
            if data is None:
                self.send_error(404)
            else:
                self._headers(data)
                self.wfile.write(data)

    with running(ThreadingHTTPServer(("127.0.0.1", 0), Handler)) as base_url:
        log.append(base_url)
        yield log
