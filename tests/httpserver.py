"""A tiny loopback HTTP server for download tests: serves bytes, honours Range, counts requests."""

from __future__ import annotations

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
