"""The web dashboard: server-rendered Jinja2 pages, no JavaScript (pages refresh themselves
while a job runs, with ``<meta http-equiv="refresh">``).

Pages: ``/`` (the job list: state, progress, result or reason; tick fine-tunes there to
compare them), ``/ui/jobs/{id}`` (a rank's table with intervals, its plots and sample grids; a
finetune's summary, metric curves, metric table and sample grids per snapshot; the log),
``/ui/compare?jobs=3&jobs=5&metric=fid`` (fine-tune runs side by side, as
``advisor runs compare`` shows them: :func:`advisor.runs.compare_runs` and
:func:`advisor.runs.plot_curves`). Images are the job's artifacts, served by the API, or inlined
(the compare page's curves). A browser signs in once at ``/login`` with the server's token,
which is kept in an HttpOnly, SameSite=Strict cookie (so no other site can use it); the API
accepts that cookie as it accepts the bearer header.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import math
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from advisor.errors import AdvisorError
from advisor.serve import worker
from advisor.serve.scheduler import job_dir
from advisor.serve.store import Job

COOKIE = "advisor_token"
#: Seconds between refreshes of a page that shows a job still queued or running.
REFRESH_S = 5
_MAX_LOGIN_BODY = 8192
#: Most runs one compare page shows.
MAX_COMPARE = 20
_ENV = Environment(
    loader=PackageLoader("advisor.serve", "templates"), autoescape=select_autoescape(["html"])
)


def add_dashboard(
    app: FastAPI,
    *,
    data: Path,
    token: str | None,
    service: Callable[[], Any],
) -> None:
    """Register the dashboard's pages on ``app``."""

    def signed_in(request: Request) -> bool:
        if token is None:
            return True
        given = request.cookies.get(COOKIE, "")
        return hmac.compare_digest(given.encode(), token.encode())

    def page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
        return HTMLResponse(_ENV.get_template(name).render(**context), status_code=status)

    def login_page(error: str | None = None, status: int = 200) -> HTMLResponse:
        return page("login.html", status, title="Sign in", refresh=None, error=error)

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_form() -> HTMLResponse:
        return login_page()

    @app.post("/login", include_in_schema=False, response_model=None)
    async def login(request: Request) -> Response:
        body = await request.body()
        if len(body) > _MAX_LOGIN_BODY:
            return login_page("that is not this server's token", 401)
        given = (parse_qs(body.decode("utf-8", errors="replace")).get("token") or [""])[0]
        if token is not None and not hmac.compare_digest(given.strip().encode(), token.encode()):
            return login_page("that is not this server's token", 401)
        response = RedirectResponse("/", status_code=303)
        if token is not None:
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return response

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def jobs_page(request: Request) -> HTMLResponse:
        if not signed_in(request):
            return login_page()
        svc = service()
        jobs = [_job_row(svc.job_view(j)) for j in svc.store.list(limit=200)]
        active = any(j["state"] in ("queued", "running", "cancelling") for j in jobs)
        return page("jobs.html", title="advisor jobs", jobs=jobs, counts=svc.store.counts(),
                    comparable=[j["id"] for j in jobs if j["comparable"]][:MAX_COMPARE],
                    refresh=REFRESH_S if active else None)  # fmt: skip

    @app.get("/ui/jobs/{job_id}", response_class=HTMLResponse, include_in_schema=False)
    def job_page(request: Request, job_id: int) -> HTMLResponse:
        if not signed_in(request):
            return login_page()
        svc = service()
        job: Job | None = svc.store.get(job_id)
        if job is None:
            raise HTTPException(status_code=404, detail=f"no job {job_id}")
        view = svc.job_view(job)
        folder = job_dir(data, job_id)
        log = (folder / worker.LOG_FILE).read_text(errors="replace") if (
            folder / worker.LOG_FILE).is_file() else ""  # fmt: skip
        fraction = (view.get("progress") or {}).get("fraction")
        return page(
            "job.html",
            title=f"job {job_id}: {job.kind}",
            job=view,
            fraction=fraction,
            created_text=_when(job.created),
            base=f"/jobs/{job_id}/artifacts",
            rank=_rank_view(folder) if job.kind == "rank" else None,
            run=_run_view(folder) if job.kind == "finetune" else None,
            result_text=json.dumps(view["result"], indent=2)
            if job.kind == "compare" and view["result"]
            else None,
            log="".join(log.splitlines(keepends=True)[-200:]),
            refresh=None if job.terminal else REFRESH_S,
        )

    @app.get("/ui/compare", response_class=HTMLResponse, include_in_schema=False)
    def compare_page(
        request: Request,
        jobs: Annotated[list[str], Query()] = [],  # noqa: B006 - FastAPI copies it
        metric: str | None = None,
    ) -> HTMLResponse:
        if not signed_in(request):
            return login_page()
        svc = service()
        try:
            view = _compare_view(svc.store, data, _job_ids(jobs), metric)
        except _PageError as err:
            return page("compare.html", err.status, title="compare fine-tunes", refresh=None,
                        compare=None, error=str(err))  # fmt: skip
        return page("compare.html", title="compare fine-tunes", compare=view, error=None,
                    refresh=REFRESH_S if view["active"] else None)  # fmt: skip


class _PageError(Exception):
    """A request a page refuses: its HTTP status and one line for the page."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _job_ids(values: Sequence[str]) -> list[int]:
    """``jobs`` query values (repeated or comma-separated) as distinct job ids, in order."""
    ids: list[int] = []
    for text in (t.strip() for value in values for t in value.split(",")):
        if not text:
            continue
        if not text.isdigit() or len(text) > 12:
            raise _PageError(422, f"jobs are job ids, got {text[:40]!r}")
        if int(text) not in ids:
            ids.append(int(text))
    if not ids:
        raise _PageError(422, "tick at least one fine-tune in the job list to compare")
    if len(ids) > MAX_COMPARE:
        raise _PageError(422, f"compare at most {MAX_COMPARE} runs at a time")
    return ids


def _compare_view(store: Any, data: Path, ids: list[int], metric: str | None) -> dict[str, Any]:
    """The fine-tune runs of jobs ``ids`` compared on ``metric`` (default: the first run's
    tracked metric) by :func:`advisor.runs.compare_runs`, and their curves on shared axes."""
    from advisor.finetuning.convergence import mode_for
    from advisor.metrics.directions import METRIC_MODES
    from advisor.runs import compare_runs, load_run, plot_curves

    jobs, runs, notes = [], [], []
    for job_id in ids:
        job = store.get(job_id)
        if job is None:
            raise _PageError(404, f"no job {job_id}")
        if job.kind != "finetune":
            raise _PageError(422, f"job {job_id} is a {job.kind} job; only fine-tunes have runs")
        run_dir = job_dir(data, job_id) / "run"
        if not (run_dir / "config.json").is_file():
            notes.append(f"job {job_id} ({job.state}) has no run yet")
            continue
        try:
            runs.append(load_run(run_dir))
        except AdvisorError as err:
            notes.append(f"job {job_id}: {err}")
            continue
        jobs.append(job)
    if not runs:
        raise _PageError(422, "none of the chosen jobs has a run yet; " + "; ".join(notes))
    metric = metric or runs[0].summary.convergence.metric or "fid"
    if metric not in METRIC_MODES:
        raise _PageError(422, f"unknown metric {metric[:40]!r}; choose one of "
                         f"{', '.join(sorted(METRIC_MODES))}")  # fmt: skip
    labels = [
        f"job {job.id} ({run.checkpoint_name or '?'})" for job, run in zip(jobs, runs, strict=True)
    ]
    rows = compare_runs(runs, metric=metric, labels=labels)
    notes += [
        f"job {job.id}: {note}" for job, run in zip(jobs, runs, strict=True) for note in run.notes
    ]
    evaluated = [r for r in rows if r.convergence.best is not None]
    best = None
    if evaluated:
        pick = min if mode_for(metric) == "min" else max
        best = pick(evaluated, key=lambda r: r.convergence.best).name
    table = []
    for job, run, row in zip(jobs, runs, rows, strict=True):
        c = row.convergence
        table.append({"id": job.id, "label": row.name, "state": job.state,
                      "kimg": _num(run.summary.kimg), "best": _num(c.best),
                      "kimg_at_best": _num(c.kimg_at_best), "plateau": _num(c.plateau_kimg),
                      "convergence": _num(c.convergence_kimg), "auc": _num(c.auc),
                      "evaluations": c.evaluations, "is_best": row.name == best})  # fmt: skip
    curves = None
    if evaluated:
        try:
            curves = _curves_image(runs, metric, labels, plot_curves)
        except AdvisorError as err:  # no matplotlib: the table still stands
            notes.append(str(err))
    else:
        notes.append(f"none of the runs has a finite {metric} evaluation yet")
    return {"ids": ids, "metric": metric, "mode": mode_for(metric),
            "metrics": sorted(METRIC_MODES), "rows": table, "curves": curves, "notes": notes,
            "active": any(not job.terminal for job in jobs)}  # fmt: skip


#: Plotted comparisons kept, by what they show: a page refreshed while runs train re-plots only
#: when a run has a new evaluation (a matplotlib figure costs a few hundred ms of the server's
#: CPU), and a finished comparison is never plotted twice.
_CURVES: OrderedDict[str, str] = OrderedDict()
_CURVES_KEPT = 16
_CURVES_LOCK = threading.Lock()


def _curves_image(runs: Sequence[Any], metric: str, labels: list[str], plot: Callable) -> str:
    """The curves of ``runs`` as a PNG data URL, plotted once per distinct content."""
    shown = [
        (
            [(m.kimg, m.metrics.get(metric)) for m in run.metrics],
            len(run.stats),
            run.stats[-1] if run.stats else None,
        )
        for run in runs
    ]  # the metric's points, and the ticks of the loss-only signal (its lower panel): their
    # count and the last one, since a resumed run rewrites the ticks after its snapshot
    key = hashlib.sha256(json.dumps([metric, labels, shown], default=str).encode()).hexdigest()
    with _CURVES_LOCK:
        if key in _CURVES:
            _CURVES.move_to_end(key)
            return _CURVES[key]
    with tempfile.TemporaryDirectory(prefix="advisor-compare-") as tmp:
        png = plot(runs, metric, Path(tmp) / "curves.png", labels=labels)
        image = "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode()
    with _CURVES_LOCK:
        _CURVES[key] = image
        while len(_CURVES) > _CURVES_KEPT:
            _CURVES.popitem(last=False)
    return image


def _when(stamp: float | None) -> str:
    if stamp is None:
        return ""
    return datetime.datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M:%S")


def _job_row(view: dict[str, Any]) -> dict[str, Any]:
    result = view.get("result") or {}
    if view["error"]:
        summary = view["error"]
    elif view["kind"] == "rank" and result:
        summary = f"best: {result.get('best')} (by {result.get('by')})"
    elif view["kind"] == "finetune" and result:
        s = result.get("summary", {})
        summary = f"{s.get('kimg')} kimg, best {s.get('metric')} {_num(s.get('best'))}"
    elif view["kind"] == "compare" and result:
        summary = f"fid {_num(result.get('fid'))}, recall {_num(result.get('recall'))}"
    else:
        summary = view.get("note") or ""
    return {**view, "fraction": (view.get("progress") or {}).get("fraction"),
            "created_text": _when(view["created"]), "summary": summary,
            "comparable": view["kind"] == "finetune" and view["state"] != "queued"}  # fmt: skip


def _num(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else "-"
    return "-" if value is None else str(value)


def _rank_view(folder: Path) -> dict[str, Any] | None:
    """The table of ``report/rank.json`` (value [low, high] per metric) and its images."""
    try:
        report = json.loads((folder / "report" / "rank.json").read_text())
    except (OSError, ValueError):
        return None
    rows = report.get("rows") or []
    metrics = [k for k, v in (rows[0].items() if rows else ()) if isinstance(v, dict)]
    by = (report.get("protocol") or {}).get("by")
    if by in metrics:
        metrics = [by, *[m for m in metrics if m != by]]
    table = []
    for row in rows:
        cells = []
        for m in metrics:
            est = row.get(m) or {}
            low, high = est.get("low"), est.get("high")
            interval = "" if low is None else f" [{_num(low)}, {_num(high)}]"
            cells.append(f"{_num(est.get('value'))}{interval}")
        table.append({"rank": row.get("rank"), "checkpoint": row.get("checkpoint"),
                      "setting": row.get("setting"), "cells": cells,
                      "tied_with": row.get("tied_with") or []})  # fmt: skip
    images = sorted(p.name for p in (folder / "report").glob("*.png"))
    return {"recommendation": report.get("recommendation", ""), "metrics": metrics,
            "rows": table, "images": images}  # fmt: skip


def _run_view(folder: Path) -> dict[str, Any] | None:
    """A finetune's summary, metric table and newest sample grids, read as the run goes."""
    from advisor.runs import load_run

    run_dir = folder / "run"
    if not (run_dir / "config.json").is_file():
        return None
    try:
        run = load_run(run_dir)
    except AdvisorError:
        return None
    summary = [(k, _num(v)) for k, v in run.summary.to_dict().items() if not isinstance(v, dict)]
    names = sorted({name for record in run.metrics for name in record.metrics})
    metrics = [{"kimg": _num(r.kimg), "cells": [_num(r.metrics.get(n)) for n in names]}
               for r in run.metrics]  # fmt: skip
    grids = sorted(p.name for p in (run_dir / "samples").glob("grid-*.png"))[-3:]
    return {"summary": summary, "metric_names": names, "metrics": metrics, "grids": grids,
            "curves": (run_dir / "curves.png").is_file()}  # fmt: skip
