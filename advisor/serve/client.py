"""``advisor.Client``: the Python client of ``advisor serve`` (standard library only).

::

    import advisor
    client = advisor.Client("http://gpu-box:8765", token="...")  # or $ADVISOR_TOKEN
    target = client.upload_target("pets.zip")
    job = client.submit("rank", {"target": target["path"], "extractor": "efficientnet-lite0"})
    job = client.wait(job["id"])
    client.download(job["id"], "report/rank.json", "rank.json")

Every method returns the server's JSON (dicts and lists, see :mod:`advisor.serve.app`). A
refusal or an unreachable server raises :class:`ClientError` (an :class:`AdvisorError`) with
one line: the HTTP status and the server's reason.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from advisor.cache import atomic_open
from advisor.errors import AdvisorError, one_line

#: The server ``advisor jobs`` and :class:`Client` use when none is given.
DEFAULT_SERVER = "http://127.0.0.1:8765"
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
_CHUNK = 1 << 20


class ClientError(AdvisorError):
    """A request the server refused (``status``: its HTTP status) or could not be made
    (``status`` None)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Client:
    """A connection to ``url``; ``token`` None reads ``$ADVISOR_TOKEN`` (empty: no token)."""

    def __init__(self, url: str = DEFAULT_SERVER, *, token: str | None = None,
                 timeout: float = 30.0) -> None:  # fmt: skip
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ClientError(f"server URL must be http(s)://HOST:PORT, got {url!r}")
        self.url = url.rstrip("/")
        self.token = token if token is not None else os.environ.get("ADVISOR_TOKEN") or None
        self.timeout = timeout

    # ------------------------------------------------------------------ jobs
    def submit(self, kind: str, params: Mapping[str, Any], *, priority: int = 0) -> dict[str, Any]:
        """Queue a ``compare``, ``rank`` or ``finetune`` job; returns the job."""
        body = {"kind": kind, "params": dict(params), "priority": priority}
        return self._json("POST", "/jobs", body=body)

    def get(self, job_id: int) -> dict[str, Any]:
        return self._json("GET", f"/jobs/{int(job_id)}")

    def list(
        self, *, state: Sequence[str] = (), kind: Sequence[str] = (), limit: int = 100
    ) -> list[dict[str, Any]]:
        """Jobs, newest first, filtered by states and kinds (empty: any)."""
        query = [("state", s) for s in state] + [("kind", k) for k in kind]
        query.append(("limit", str(limit)))
        return self._json("GET", "/jobs?" + urllib.parse.urlencode(query))

    def cancel(self, job_id: int) -> dict[str, Any]:
        return self._json("POST", f"/jobs/{int(job_id)}/cancel")

    def wait(
        self, job_id: int, *, timeout: float | None = None, poll_s: float = 1.0
    ) -> dict[str, Any]:
        """Poll until the job is succeeded, failed or cancelled; returns it. ``timeout``
        seconds (None: no limit) raises :class:`ClientError` when passed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if job["state"] in TERMINAL:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise ClientError(f"job {job_id} is still {job['state']} after {timeout:g} s")
            time.sleep(poll_s)

    def logs(self, job_id: int, *, tail: int = 200) -> str:
        """The last ``tail`` lines of the job's log (0: all)."""
        return self._request("GET", f"/jobs/{int(job_id)}/logs?tail={int(tail)}").decode(
            "utf-8", errors="replace"
        )

    def follow(self, job_id: int, *, tail: int = 200) -> Iterator[str]:
        """The job's log as it grows, line by line, until the job ends."""
        path = f"/jobs/{int(job_id)}/logs?tail={int(tail)}&follow=true"
        with self._open("GET", path, timeout=None) as response:
            for line in response:
                yield line.decode("utf-8", errors="replace")

    def artifacts(self, job_id: int) -> list[dict[str, Any]]:
        """The job folder's files: ``[{"path", "bytes"}]``."""
        return self._json("GET", f"/jobs/{int(job_id)}/artifacts")

    def download(self, job_id: int, name: str, dest: str | os.PathLike[str] | None = None) -> Path:
        """Save the job's file ``name`` (e.g. ``report/rank.json``, ``run/snapshots/best.json``)
        to ``dest`` (default: its base name here), atomically; returns the path written."""
        out = Path(dest) if dest is not None else Path(Path(name).name)
        quoted = urllib.parse.quote(name)
        with self._open("GET", f"/jobs/{int(job_id)}/artifacts/{quoted}") as response, \
                atomic_open(out) as f:  # fmt: skip
            while chunk := response.read(_CHUNK):
                f.write(chunk)
        return out

    # ------------------------------------------------------------------ the rest
    def upload_target(self, zip_path: str | os.PathLike[str]) -> dict[str, Any]:
        """Upload a .zip of images; returns ``{"id", "path", "images", ...}`` (give ``path`` as
        a job's target)."""
        path = Path(zip_path)
        try:
            f = open(path, "rb")
        except OSError as err:
            raise ClientError(f"cannot read {path} ({err.strerror})") from None
        with f:
            headers = {"Content-Length": str(os.fstat(f.fileno()).st_size)}
            with self._open("POST", "/targets", data=f, content_type="application/zip",
                            headers=headers) as response:  # fmt: skip
                return json.loads(response.read())

    def checkpoints(self) -> list[dict[str, Any]]:
        return self._json("GET", "/checkpoints")

    def health(self) -> dict[str, Any]:
        return self._json("GET", "/health")

    # ------------------------------------------------------------------ HTTP
    def _json(self, method: str, path: str, *, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        raw = self._request(method, path, data=data, content_type="application/json")
        return json.loads(raw)

    def _request(self, method: str, path: str, *, data: bytes | None = None,
                 content_type: str | None = None) -> bytes:  # fmt: skip
        with self._open(method, path, data=data, content_type=content_type) as response:
            return response.read()

    def _open(
        self,
        method: str,
        path: str,
        *,
        data: Any = None,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None | object = ...,
    ) -> Any:
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        if content_type and data is not None:
            request.add_header("Content-Type", content_type)
        for key, value in (headers or {}).items():
            request.add_header(key, value)
        wait = self.timeout if timeout is ... else timeout
        try:
            return urllib.request.urlopen(request, timeout=wait)  # noqa: S310 - http(s) only
        except urllib.error.HTTPError as err:
            raise ClientError(_http_reason(err), status=err.code) from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise ClientError(f"cannot reach {self.url} ({reason})") from None


def _http_reason(err: urllib.error.HTTPError) -> str:
    try:
        detail = json.loads(err.read()).get("detail")
    except (ValueError, AttributeError, OSError):
        detail = None
    return one_line(f"{err.code}: {detail or err.reason}")
