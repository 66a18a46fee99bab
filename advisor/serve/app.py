"""The HTTP API: a FastAPI application over the job store and the scheduler.

Endpoints (every one but ``GET /health`` needs ``Authorization: Bearer TOKEN``; OpenAPI docs at
``/docs``)::

    GET  /health                          liveness and version (no token)
    POST /jobs                            {"kind", "params", "priority"} -> 201 job; bad: 422
    GET  /jobs?state=&kind=&limit=        newest first
    GET  /jobs/{id}                       state, progress, timings, result summary
    GET  /jobs/{id}/logs?tail=N&follow=1  the worker's log (follow: streamed until the job ends)
    POST /jobs/{id}/cancel                queued: cancelled; running: SIGINT (finetunes snapshot)
    GET  /jobs/{id}/artifacts             the job folder's files
    GET  /jobs/{id}/artifacts/{path}      one file, confined to the job folder
    POST /targets                         a .zip of images as the body -> {"id", "path", ...}
    GET  /targets                         uploaded targets
    GET  /checkpoints                     the registry

The dashboard (:mod:`advisor.serve.dashboard`) adds ``/``, ``/ui/jobs/{id}`` and ``/login``.

Every refusal is a JSON ``{"detail": "one line"}``: 401 (token), 404 (no such job or file),
409 (cancelling a finished job), 413 (upload too large), 422 (bad parameters, paths outside the
allowed roots, a zip that is not a target). FastAPI is imported here only, so ``advisor``
itself never needs the ``serve`` extra.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hmac
import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from advisor import __version__
from advisor.cache import json_safe
from advisor.errors import AdvisorError, one_line
from advisor.paths import confined
from advisor.serve import worker
from advisor.serve.auth import token_matches
from advisor.serve.dashboard import COOKIE, add_dashboard
from advisor.serve.jobs import Roots, parse_params, to_json
from advisor.serve.scheduler import Scheduler, job_dir
from advisor.serve.store import (
    KINDS,
    MAX_LIST,
    MAX_PRIORITY,
    MIN_PRIORITY,
    STATES,
    Job,
    JobStore,
)
from advisor.serve.uploads import DEFAULT_MAX_UPLOAD, UploadTooLarge, UploadWriter

#: Lines ``GET /jobs/{id}/logs`` returns by default, and at most.
DEFAULT_TAIL, MAX_TAIL = 200, 100_000
_LOG_READ_LIMIT = 8 << 20
# Module level: FastAPI resolves the (string) annotations of endpoints in this module's globals.
_BEARER = HTTPBearer(auto_error=False, description="The token in DATA/token")


@dataclass(frozen=True, kw_only=True)
class ServeOptions:
    """How the service runs: ``data`` folder (store, jobs, targets, token), ``devices`` (one
    job per entry at a time), ``roots`` for job paths, ``token`` (None: no check, loopback
    only), server-side ``registry_files``, upload limit and cancel grace period."""

    data: Path
    devices: tuple[str, ...]
    roots: Roots
    token: str | None
    registry_files: tuple[str, ...] = ()
    max_upload: int = DEFAULT_MAX_UPLOAD
    cancel_grace_s: float = 60.0
    poll_s: float = 0.2


class JobRequest(BaseModel):
    """``POST /jobs`` body: the job kind, its parameters (see :mod:`advisor.serve.jobs`) and
    a priority (higher runs first; equal priorities run in submission order)."""

    kind: str = Field(description="compare, rank or finetune")
    params: dict[str, Any] = Field(default_factory=dict)
    priority: int = Field(default=0, ge=MIN_PRIORITY, le=MAX_PRIORITY)


class Service:
    """The store, the scheduler and the data folder's lock, for one running server."""

    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        data = options.data
        try:
            data.mkdir(parents=True, exist_ok=True)
            (data / "jobs").mkdir(exist_ok=True)
            (data / "targets").mkdir(exist_ok=True)
        except OSError as err:
            raise AdvisorError(f"cannot use the data folder {data} ({err.strerror})") from None
        self._lock_file = open(data / "server.lock", "a+")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise AdvisorError(f"another advisor serve is using {data}") from None
        self.store = JobStore(data / "jobs.sqlite")
        self.scheduler = Scheduler(
            store=self.store,
            data=data,
            devices=options.devices,
            registry_files=options.registry_files,
            poll_s=options.poll_s,
            cancel_grace_s=options.cancel_grace_s,
        )
        self.started = time.time()

    def start(self) -> None:
        self.scheduler.start()

    def stop(self) -> None:
        self.scheduler.stop()
        self.store.close()
        with contextlib.suppress(OSError):
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()

    def registry(self) -> Any:
        from advisor.checkpoints.registry import load_registry

        return load_registry(list(self.options.registry_files))

    def job_view(self, job: Job) -> dict[str, Any]:
        """The job as the API shows it: the stored row plus live progress while it runs."""
        out = job.to_dict()
        out["progress"] = None
        if job.state in ("running", "cancelling"):
            with contextlib.suppress(OSError, ValueError):
                path = job_dir(self.options.data, job.id) / worker.PROGRESS_FILE
                out["progress"] = json.loads(path.read_text())
        elif job.state == "succeeded":
            out["progress"] = {"fraction": 1.0}
        return out


def create_app(options: ServeOptions) -> FastAPI:
    """The application; the service starts and stops with it (FastAPI's lifespan)."""
    service_box: dict[str, Service] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = Service(options)
        service.start()
        service_box["service"] = service
        app.state.service = service
        try:
            yield
        finally:
            await run_in_threadpool(service.stop)

    app = FastAPI(
        title="advisor",
        version=__version__,
        description="Rank pretrained StyleGAN2 checkpoints for a target and fine-tune them.",
        lifespan=lifespan,
    )

    def service() -> Service:
        return service_box["service"]

    def authorised(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
    ) -> None:
        if options.token is None:
            return
        cookie = request.cookies.get(COOKIE)  # the dashboard's sign-in (SameSite=Strict)
        if cookie is not None and hmac.compare_digest(cookie.encode(), options.token.encode()):
            return
        if not token_matches(request.headers.get("authorization"), options.token):
            raise HTTPException(
                status_code=401,
                detail="missing or wrong bearer token (Authorization: Bearer TOKEN)",
                headers={"WWW-Authenticate": "Bearer"},
            )

    auth = [Depends(authorised)]

    @app.exception_handler(AdvisorError)
    async def _advisor_error(request: Request, err: AdvisorError) -> JSONResponse:
        status = 413 if isinstance(err, UploadTooLarge) else 422
        return JSONResponse({"detail": one_line(str(err))}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, err: RequestValidationError) -> JSONResponse:
        first = err.errors()[0] if err.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        text = f"{where}: {first.get('msg', 'invalid request')}" if where else "invalid request"
        return JSONResponse({"detail": one_line(text)}, status_code=422)

    def get_job(job_id: int) -> Job:
        job = service().store.get(job_id)
        if job is None:
            raise HTTPException(status_code=404, detail=f"no job {job_id}")
        return job

    # ------------------------------------------------------------------ endpoints
    @app.get("/health")
    def health() -> dict[str, Any]:
        """Liveness: always answers while the server runs; no token needed."""
        return {"status": "ok", "version": __version__}

    @app.post("/jobs", status_code=201, dependencies=auth)
    def submit(request: JobRequest) -> dict[str, Any]:
        """Validate and queue a job; a bad parameter is a 422 and nothing is queued."""
        svc = service()
        names: list[str] = []
        if request.kind in ("rank", "finetune"):
            names = svc.registry().names()
        params = parse_params(
            request.kind,
            request.params,
            roots=options.roots,
            registry_names=names,
            devices=options.devices,
        )
        job = svc.store.add(request.kind, to_json(params), priority=request.priority)
        svc.scheduler.wake()
        return svc.job_view(job)

    @app.get("/jobs", dependencies=auth)
    def list_jobs(
        state: Annotated[list[str], Query()] = [],  # noqa: B006 - FastAPI copies it
        kind: Annotated[list[str], Query()] = [],  # noqa: B006
        limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 100,
    ) -> list[dict[str, Any]]:
        """Jobs, newest first; ``state`` and ``kind`` may repeat or be comma-separated."""
        states = _split(state, STATES, "state")
        kinds = _split(kind, KINDS, "kind")
        svc = service()
        return [svc.job_view(j) for j in svc.store.list(states=states, kinds=kinds, limit=limit)]

    @app.get("/jobs/{job_id}", dependencies=auth)
    def show(job_id: int) -> dict[str, Any]:
        return service().job_view(get_job(job_id))

    @app.post("/jobs/{job_id}/cancel", dependencies=auth)
    def cancel(job_id: int) -> dict[str, Any]:
        """Queued: cancelled at once. Running: the worker gets SIGINT (a finetune stops after
        its step and keeps a snapshot), the job is ``cancelling`` until it ends."""
        job = get_job(job_id)
        if job.terminal:
            raise HTTPException(status_code=409, detail=f"job {job_id} already {job.state}")
        svc = service()
        after = svc.scheduler.cancel(job_id)
        return svc.job_view(after or job)

    @app.get("/jobs/{job_id}/logs", dependencies=auth, response_model=None)
    def logs(
        job_id: int,
        tail: Annotated[int, Query(ge=0, le=MAX_TAIL)] = DEFAULT_TAIL,
        follow: bool = False,
    ) -> PlainTextResponse | StreamingResponse:
        """The last ``tail`` lines of the worker's log (0: all); ``follow``: stream new lines
        until the job ends."""
        get_job(job_id)
        path = job_dir(options.data, job_id) / worker.LOG_FILE
        text, offset = _tail(path, tail)
        if not follow:
            return PlainTextResponse(text)
        return StreamingResponse(_follow(text, path, offset, job_id), media_type="text/plain")

    async def _follow(first: str, path: Path, offset: int, job_id: int) -> AsyncIterator[bytes]:
        yield first.encode()
        while True:
            chunk = await run_in_threadpool(_read_from, path, offset)
            if chunk:
                offset += len(chunk)
                yield chunk
                continue
            job = service().store.get(job_id)
            if job is None or job.terminal:
                rest = await run_in_threadpool(_read_from, path, offset)
                if rest:
                    yield rest
                return
            await asyncio.sleep(0.5)

    @app.get("/jobs/{job_id}/artifacts", dependencies=auth)
    def artifacts(job_id: int) -> list[dict[str, Any]]:
        """Every file of the job's folder: relative path and size."""
        get_job(job_id)
        root = job_dir(options.data, job_id)
        return [{"path": p, "bytes": n} for p, n in _files(root)]

    @app.get("/jobs/{job_id}/artifacts/{name:path}", dependencies=auth)
    def artifact(job_id: int, name: str) -> FileResponse:
        """One file of the job's folder; names leading outside it are refused."""
        get_job(job_id)
        root = job_dir(options.data, job_id)
        path = confined(root, name, what="artifact path")
        if not path.is_file():
            raise HTTPException(status_code=404, detail=f"job {job_id} has no file {name}")
        return FileResponse(path)

    @app.post("/targets", status_code=201, dependencies=auth)
    async def upload(request: Request) -> dict[str, Any]:
        """A target as a .zip (the request body, ``Content-Type: application/zip``)."""
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > options.max_upload:
            raise UploadTooLarge(
                f"the upload is larger than the server's limit of {options.max_upload} bytes"
            )
        writer = UploadWriter(options.data / "targets", max_bytes=options.max_upload)
        try:
            async for chunk in request.stream():
                writer.write(chunk)
        except BaseException:
            writer.discard()
            raise
        stored = await run_in_threadpool(writer.finish)
        return stored.to_dict()

    @app.get("/targets", dependencies=auth)
    def targets() -> list[dict[str, Any]]:
        folder = options.data / "targets"
        return [
            {"id": p.stem, "path": f"targets/{p.name}", "bytes": p.stat().st_size}
            for p in sorted(folder.glob("*.zip"))
            if not p.name.startswith(".")
        ]

    @app.get("/checkpoints", dependencies=auth)
    def checkpoints() -> list[dict[str, Any]]:
        """The server's registry (built in, ``$ADVISOR_REGISTRY``, ``--registry``)."""
        return [json_safe(record.to_dict()) for record in service().registry()]

    add_dashboard(app, data=options.data, token=options.token, service=service)
    return app


def _split(values: list[str], allowed: tuple[str, ...], what: str) -> list[str]:
    out = [v.strip() for value in values for v in value.split(",") if v.strip()]
    for v in out:
        if v not in allowed:
            raise AdvisorError(f"unknown {what} {v!r}; choose from {', '.join(allowed)}")
    return out


def _tail(path: Path, lines: int) -> tuple[str, int]:
    """The last ``lines`` lines of ``path`` (0: all, up to 8 MiB) and the file's size."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            start = max(0, size - _LOG_READ_LIMIT)
            f.seek(start)
            data = f.read(size - start)
    except FileNotFoundError:
        return "", 0
    text = data.decode("utf-8", errors="replace")
    if lines:
        text = "".join(text.splitlines(keepends=True)[-lines:])
    return text, size


def _read_from(path: Path, offset: int) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(1 << 20)
    except FileNotFoundError:
        return b""


def _files(root: Path) -> Iterator[tuple[str, int]]:
    """Regular files below ``root`` (symlinks not followed), sorted, hidden temporaries left out."""
    if not root.is_dir():
        return
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = Path(folder) / name
            if path.is_symlink() or not path.is_file():
                continue
            yield path.relative_to(root).as_posix(), path.stat().st_size
