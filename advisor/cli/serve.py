"""``advisor serve`` (the job service) and ``advisor jobs ...`` (its command-line client).

``serve`` checks everything cheap first (the address against ``--no-auth``, the token file,
the devices, the allowed paths), then starts uvicorn on :func:`advisor.serve.app.create_app`.
FastAPI and uvicorn are the ``serve`` extra: without them ``serve`` is a one-line error saying
how to install them. ``jobs`` needs nothing beyond advisor (:class:`advisor.serve.client.Client`
uses the standard library); its token comes from ``$ADVISOR_TOKEN``.
"""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path
from typing import Any

import click

from advisor.cli.options import echo_json, json_option, registry_option
from advisor.serve.client import DEFAULT_SERVER, TERMINAL, Client

_MISSING_EXTRA = "advisor serve needs FastAPI and uvicorn: pip install 'advisor[serve]'"


def default_data_dir() -> Path:
    """``$ADVISOR_SERVE_DATA``, else the platform's user data folder + ``/serve``."""
    import platformdirs

    env = os.environ.get("ADVISOR_SERVE_DATA")
    return Path(env) if env else Path(platformdirs.user_data_dir("advisor")) / "serve"


def parse_devices(text: str) -> tuple[str, ...]:
    """``auto`` (every visible GPU, else cpu) or a comma-separated list (``cuda:0,cuda:1``;
    repeat a device to run several jobs on it at once)."""
    from advisor.devices import resolve_device
    from advisor.ranking.spread import default_devices

    if text.strip() == "auto":
        return default_devices(())
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise click.UsageError("--devices needs at least one device")
    return tuple(str(resolve_device(name)) for name in names)


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8765, show_default=True)
@click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder of the job store, job folders, uploads and the token "
    "[default: $ADVISOR_SERVE_DATA, else the user data folder]",
)
@click.option(
    "--devices",
    default="auto",
    show_default=True,
    help="Comma-separated devices, one job each at a time (auto: every GPU, else cpu).",
)
@click.option(
    "--allow-path",
    "allow_paths",
    multiple=True,
    type=click.Path(exists=True, file_okay=False),
    help="A folder job paths may point into (repeatable; the data folder always may).",
)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Read the bearer token from this file (mode 0600) instead of DATA/token.",
)
@click.option("--no-auth", is_flag=True, help="No token check (loopback addresses only).")
@registry_option("Extra registry TOML file for jobs (repeatable; after $ADVISOR_REGISTRY).")
@click.option(
    "--max-upload-mb",
    type=click.IntRange(1, 1 << 20),
    default=1024,
    show_default=True,
    help="Largest target .zip accepted by POST /targets.",
)
@click.option(
    "--cancel-grace",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="Seconds a cancelled worker has to stop before it is killed.",
)
def serve_command(
    host: str,
    port: int,
    data_dir: str | None,
    devices: str,
    allow_paths: tuple[str, ...],
    token_file: str | None,
    no_auth: bool,
    registries: tuple[str, ...],
    max_upload_mb: int,
    cancel_grace: float,
) -> None:
    """Run the job service: an HTTP API (docs at /docs) that queues and runs compare, rank
    and finetune jobs, one per device at a time, and survives restarts."""
    from advisor.serve.auth import check_bind, load_token
    from advisor.serve.jobs import Roots

    check_bind(host, auth=not no_auth)
    if no_auth and token_file:
        raise click.UsageError("--no-auth and --token-file contradict each other")
    try:
        import uvicorn

        from advisor.serve.app import ServeOptions, create_app
    except ImportError:
        raise click.ClickException(_MISSING_EXTRA) from None
    data = Path(data_dir) if data_dir else default_data_dir()
    try:
        data.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise click.UsageError(f"cannot create the data folder {data} ({err.strerror})") from None
    data = data.resolve()
    for registry in registries:
        if not Path(registry).is_file():
            raise click.UsageError(f"no such registry file: {registry}")
    token = None if no_auth else load_token(data, token_file)
    options = ServeOptions(
        data=data,
        devices=parse_devices(devices),
        roots=Roots(data=data, allowed=tuple(Path(p).resolve() for p in allow_paths)),
        token=token,
        registry_files=tuple(str(Path(r).resolve()) for r in registries),
        max_upload=max_upload_mb << 20,
        cancel_grace_s=cancel_grace,
    )
    where = "no token (--no-auth)" if token is None else f"token in {token_file or data / 'token'}"
    click.echo(
        f"advisor serve: http://{host}:{port}  data {data}  devices "
        f"{','.join(options.devices)}  {where}",
        err=True,
    )
    uvicorn.run(create_app(options), host=host, port=port, log_level="warning")


# --------------------------------------------------------------------------- advisor jobs
@click.group("jobs")
@click.option(
    "--server",
    envvar="ADVISOR_SERVER",
    default=DEFAULT_SERVER,
    show_default=True,
    help="The advisor serve URL (also $ADVISOR_SERVER); the token comes from $ADVISOR_TOKEN.",
)
@click.pass_context
def jobs_group(ctx: click.Context, server: str) -> None:
    """Submit, list, follow and cancel jobs on an advisor server."""
    ctx.obj = Client(server)


def _client(ctx: click.Context) -> Client:
    client = ctx.find_object(Client)
    assert client is not None
    return client


def _value(text: str) -> Any:
    """A ``-p`` value: JSON when it parses (numbers, true, lists), else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


@jobs_group.command("submit")
@click.argument("kind", type=click.Choice(["compare", "rank", "finetune"]))
@click.option(
    "-p",
    "--param",
    "pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="A job parameter (repeatable); VALUE is JSON when it parses, else text.",
)
@click.option("--params", "params_json", default=None, help="All parameters as a JSON object.")
@click.option("--priority", type=click.IntRange(-100, 100), default=0, show_default=True)
@click.option("--wait", is_flag=True, help="Wait for the job to end; exit 1 unless it succeeded.")
@json_option("Print the job as JSON.")
@click.pass_context
def submit_command(
    ctx: click.Context,
    kind: str,
    pairs: tuple[str, ...],
    params_json: str | None,
    priority: int,
    wait: bool,
    as_json: bool,
) -> None:
    """Queue a KIND job (compare, rank, finetune): e.g.
    ``advisor jobs submit rank -p target=targets/ab12.zip -p extractor=efficientnet-lite0``."""
    params: dict[str, Any] = {}
    if params_json is not None:
        try:
            params = json.loads(params_json)
        except ValueError as err:
            raise click.UsageError(f"--params is not JSON ({err})") from None
        if not isinstance(params, dict):
            raise click.UsageError("--params must be a JSON object")
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.UsageError(f"-p takes KEY=VALUE, got {pair!r}")
        params[key] = _value(value)
    client = _client(ctx)
    job = client.submit(kind, params, priority=priority)
    if wait:
        job = client.wait(job["id"])
    _print_job(job, as_json)
    if wait and job["state"] != "succeeded":
        ctx.exit(1)


@jobs_group.command("list")
@click.option("--state", "states", multiple=True, help="Only jobs in this state (repeatable).")
@click.option("--kind", "kinds", multiple=True, help="Only jobs of this kind (repeatable).")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@json_option("Print the jobs as JSON.")
@click.pass_context
def list_command(
    ctx: click.Context, states: tuple[str, ...], kinds: tuple[str, ...], limit: int, as_json: bool
) -> None:
    """List jobs, newest first."""
    jobs = _client(ctx).list(state=states, kind=kinds, limit=limit)
    if as_json:
        echo_json(jobs)
        return
    if not jobs:
        click.echo("no jobs")
        return
    for job in jobs:
        click.echo(_job_line(job))


@jobs_group.command("show")
@click.argument("job_id", type=int)
@json_option("Print the job as JSON.")
@click.pass_context
def show_command(ctx: click.Context, job_id: int, as_json: bool) -> None:
    """Show one job: state, progress, timings, result or error."""
    _print_job(_client(ctx).get(job_id), as_json)


@jobs_group.command("logs")
@click.argument("job_id", type=int)
@click.option("--tail", type=click.IntRange(min=0), default=200, show_default=True,
              help="Last N lines (0: all).")  # fmt: skip
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the job ends.")
@click.pass_context
def logs_command(ctx: click.Context, job_id: int, tail: int, follow: bool) -> None:
    """Print a job's log."""
    client = _client(ctx)
    if follow:
        for line in client.follow(job_id, tail=tail):
            click.echo(line, nl=False)
        return
    click.echo(client.logs(job_id, tail=tail), nl=False)


@jobs_group.command("cancel")
@click.argument("job_id", type=int)
@json_option("Print the job as JSON.")
@click.pass_context
def cancel_command(ctx: click.Context, job_id: int, as_json: bool) -> None:
    """Cancel a job (a running finetune stops at its next step and keeps a snapshot)."""
    _print_job(_client(ctx).cancel(job_id), as_json)


@jobs_group.command("download")
@click.argument("job_id", type=int)
@click.argument("name")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Where to save it (default: its base name here).")  # fmt: skip
@click.pass_context
def download_command(ctx: click.Context, job_id: int, name: str, output: str | None) -> None:
    """Download the file NAME of a job's folder (e.g. report/rank.json)."""
    click.echo(str(_client(ctx).download(job_id, name, output)))


@jobs_group.command("upload")
@click.argument("zip_path", type=click.Path(exists=True, dir_okay=False))
@json_option("Print the stored target as JSON.")
@click.pass_context
def upload_command(ctx: click.Context, zip_path: str, as_json: bool) -> None:
    """Upload a .zip of images as a target; prints the path to give jobs as ``target``."""
    stored = _client(ctx).upload_target(zip_path)
    if as_json:
        echo_json(stored)
        return
    click.echo(f"{stored['path']}  ({stored['images']} images, {stored['n_skipped']} skipped)")


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    return datetime.datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M:%S")


def _progress(job: dict[str, Any]) -> str:
    fraction = (job.get("progress") or {}).get("fraction")
    return "-" if fraction is None else f"{100 * fraction:.0f}%"


def _job_line(job: dict[str, Any]) -> str:
    tail = job.get("error") or job.get("note") or ""
    return (
        f"{job['id']:>6}  {job['state']:<10}  {job['kind']:<8}  {_progress(job):>4}  "
        f"{_when(job['created'])}  {job.get('device') or '-':<7}  {tail}"
    ).rstrip()


def _print_job(job: dict[str, Any], as_json: bool) -> None:
    if as_json:
        echo_json(job)
        return
    click.echo(f"job {job['id']}: {job['kind']} {job['state']}  progress {_progress(job)}")
    click.echo(f"  created {_when(job['created'])}  started {_when(job['started'])}  "
               f"finished {_when(job['finished'])}  device {job.get('device') or '-'}")  # fmt: skip
    for key in ("error", "note"):
        if job.get(key):
            click.echo(f"  {key}: {job[key]}")
    result = job.get("result")
    if job["state"] in TERMINAL and result:
        click.echo("  result: " + json.dumps(result)[:2000])
