"""Hostile registries: names that become paths stay in the cache, and reading never hangs.

The data-loss case of the hostile review: a registry whose Hub ``file`` is absolute or climbs
out with ``..`` made ``checkpoints verify`` delete that path (and the ``.json`` beside it) after a
hash mismatch. Every such name is now refused when the registry is read, and deletion is
confined to the record's own cache folder even for records built in Python.
"""

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from advisor.cache import cache_dir
from advisor.checkpoints import CheckpointRecord, HubFile, verify
from advisor.checkpoints.fetch import local_path
from advisor.checkpoints.registry import read_registry_file
from advisor.cli import main
from advisor.errors import AdvisorError
from tests.bounded import run_bounded

SHA = "0" * 64

HUB_ENTRY = """
[checkpoints.evil]
format = "advisor"
resolution = 64
source_dataset = "d"
licence = "l"
trust = "third-party"
sha256 = "{sha}"
hf = {{ repo = "owner/name", file = "{file}", revision = "main" }}
"""


def _victim(tmp_path: Path) -> Path:
    victim = tmp_path / "precious" / "work.safetensors"
    victim.parent.mkdir()
    victim.write_bytes(b"a user's file that is not the registry's checkpoint")
    victim.with_suffix(".json").write_text("{}")
    return victim


@pytest.mark.parametrize("kind", ["absolute", "dotdot"])
def test_verify_never_deletes_a_user_file_named_by_a_hostile_registry(tmp_path, kind):
    victim = _victim(tmp_path)
    if kind == "absolute":
        name = str(victim)
    else:
        depth = len(cache_dir("checkpoints").resolve().parts) + 2
        name = "../" * depth + str(victim).lstrip("/")
    registry = tmp_path / "evil.toml"
    registry.write_text(HUB_ENTRY.format(sha=SHA, file=name))
    result = CliRunner().invoke(
        main, ["checkpoints", "verify", "evil", "--registry", str(registry)]
    )
    assert result.exit_code != 0
    assert "hf file" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert victim.exists() and victim.with_suffix(".json").exists()


@pytest.mark.parametrize(
    "file",
    ["", ".", "..", "a/../b", "/etc/passwd", "a//b", "a\\..\\b", "C:/x", "a/./b", "x\nY"],
)
def test_hub_file_names_that_could_leave_the_cache_are_refused(file):
    with pytest.raises(AdvisorError, match="hf file"):
        HubFile(repo="owner/name", file=file, revision="main")


@pytest.mark.parametrize("repo", ["../x", "owner/../x", "/abs", "a/b/c", ""])
def test_hub_repo_and_revision_are_validated(repo):
    with pytest.raises(AdvisorError, match="hf repo"):
        HubFile(repo=repo, file="ok.pkl", revision="main")
    with pytest.raises(AdvisorError, match="hf revision"):
        HubFile(repo="owner/name", file="ok.pkl", revision="../../x")


@pytest.mark.parametrize("url", ["https://host/a/..", "https://host/a/.", "https://host/a#/.."])
def test_url_whose_last_segment_is_not_a_file_name_is_refused(url):
    with pytest.raises(AdvisorError, match="url"):
        CheckpointRecord(name="x", format="nvlabs-pkl", resolution=64, source_dataset="d",
                         licence="l", trust="official", url=url)  # fmt: skip


def test_a_symlink_in_the_cache_folder_cannot_lead_verify_outside(tmp_path):
    victim = _victim(tmp_path)
    record = CheckpointRecord(
        name="evil", format="advisor", resolution=64, source_dataset="d", licence="l",
        trust="third-party", sha256=SHA,
        hf=HubFile(repo="owner/name", file="sub/work.safetensors", revision="main"),
    )  # fmt: skip
    # Someone plants a link where the record's sub-folder would be.
    folder = local_path(record).parent.parent
    (folder / "sub").symlink_to(victim.parent, target_is_directory=True)
    with pytest.raises(AdvisorError, match="leads outside"):
        verify(record)
    assert victim.exists() and victim.with_suffix(".json").exists()


def test_verify_deletes_a_mismatching_download_inside_the_cache(tmp_path):
    record = CheckpointRecord(
        name="ok", format="advisor", resolution=64, source_dataset="d", licence="l",
        trust="third-party", sha256=SHA,
        hf=HubFile(repo="owner/name", file="net/ok.safetensors", revision="main"),
    )  # fmt: skip
    path = local_path(record)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"corrupt")
    path.with_suffix(".json").write_text("{}")
    assert verify(record).outcome == "mismatch"
    assert not path.exists() and not path.with_suffix(".json").exists()


def test_verify_never_deletes_a_local_path_record(tmp_path):
    victim = _victim(tmp_path)
    record = CheckpointRecord(name="mine", format="advisor", resolution=64, source_dataset="d",
                              licence="l", trust="local", sha256=SHA, path=victim)  # fmt: skip
    assert verify(record).outcome == "mismatch"
    assert victim.exists() and victim.with_suffix(".json").exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_registry_that_is_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "registry.toml"
    os.mkfifo(fifo)
    result = run_bounded(
        f"""
        from advisor.checkpoints.registry import read_registry_file
        from advisor.errors import AdvisorError
        try:
            read_registry_file({str(fifo)!r})
        except AdvisorError as err:
            print("ERR", err)
        """,
        imports="import advisor.checkpoints.registry",
        timeout=30,
    )
    assert not result.timed_out
    assert "ERR" in result.stdout and "not a regular file" in result.stdout


def test_a_registry_in_the_environment_that_is_a_device_is_one_line():
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    result = run_bounded(
        """
        from click.testing import CliRunner
        from advisor.cli import main
        out = CliRunner().invoke(main, ["checkpoints", "list"])
        print(out.exit_code, out.output)
        """,
        imports="import advisor.cli",
        budget_mb=256,
        timeout=60,
        env={"ADVISOR_REGISTRY": "/dev/zero"},
    )
    assert not result.timed_out, result.stderr
    assert result.stdout.startswith("1 ") and "not a regular file" in result.stdout


@pytest.mark.parametrize(
    "text",
    [
        "a = " + "[" * 50_000 + "]" * 50_000,
        "a = " + "{b = " * 50_000 + "1" + "}" * 50_000,
    ],
)
def test_deeply_nested_toml_is_one_line(tmp_path, text):
    path = tmp_path / "deep.toml"
    path.write_text(text)
    with pytest.raises(AdvisorError, match="registry"):
        read_registry_file(path)


@pytest.mark.parametrize(
    ("field", "value"),
    [("source_dataset", "{ a = 1 }"), ("licence", "[1, 2]"), ("description", "3"),
     ("resolution", "true"), ("resolution", "1073741824"), ("format", "[\"advisor\"]")],
)  # fmt: skip
def test_registry_fields_of_the_wrong_type_are_one_line_errors(tmp_path, field, value):
    values = {"format": '"advisor"', "resolution": "64", "source_dataset": '"d"',
              "licence": '"l"', "description": '"x"'} | {field: value}  # fmt: skip
    body = "\n".join(f"{k} = {v}" for k, v in values.items())
    path = tmp_path / "r.toml"
    path.write_text(f'[checkpoints.x]\n{body}\ntrust = "local"\npath = "x.safetensors"\n')
    with pytest.raises(AdvisorError, match=f"checkpoint 'x': .*{field}"):
        read_registry_file(path)


def test_registry_larger_than_the_bound_is_refused(tmp_path):
    from advisor.checkpoints.registry import MAX_REGISTRY_BYTES

    path = tmp_path / "big.toml"
    with open(path, "wb") as f:
        f.write(b"# " + b"x" * (MAX_REGISTRY_BYTES + 10) + b"\n")
    with pytest.raises(AdvisorError, match="larger than"):
        read_registry_file(path)


# --------------------------------------------------------------------------- hostile servers
def _hostile_server(kind: str):
    """A loopback server whose one URL misbehaves: ``endless``, ``badlength``, ``drip``."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from tests.httpserver import running

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            if kind == "badlength":
                self.send_header("Content-Length", "abc")
            self.end_headers()
            try:
                if kind == "endless":
                    while True:
                        self.wfile.write(bytes(1 << 16))
                elif kind == "drip":
                    for _ in range(200):
                        self.wfile.write(b"x")
                        self.wfile.flush()
                        threading.Event().wait(0.05)
            except OSError:
                pass

    return running(ThreadingHTTPServer(("127.0.0.1", 0), Handler))


@pytest.mark.parametrize(
    ("kind", "message"),
    [("badlength", "malformed Content-Length"), ("endless", "more than it announced"),
     ("drip", "interrupted")],
)  # fmt: skip
def test_hostile_download_servers_are_one_line_and_bounded(tmp_path, monkeypatch, kind, message):
    import advisor.download as download

    monkeypatch.setattr(download, "MAX_DOWNLOAD_BYTES", 4 << 20)
    monkeypatch.setattr(download, "STALL_SECONDS", 0.5)
    monkeypatch.setattr(download, "STALL_BYTES", 1000)
    dest = tmp_path / "file.bin"
    with _hostile_server(kind) as base:
        with pytest.raises(AdvisorError, match=message):
            download.download_url(f"{base}/x.bin", dest, sha256=None, progress=False)
    assert not dest.exists()
    part = dest.with_name("file.bin.part")
    assert not part.exists() or part.stat().st_size <= 4 << 20


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("kind", ["fifo", "zero"])
def test_cache_memo_files_replaced_by_a_fifo_or_device_neither_hang_nor_eat_memory(tmp_path, kind):
    cache = tmp_path / "cache"
    for sub, name in (("weights", "sha256-memo.json"), ("checkpoints", "recorded-sha256.json")):
        (cache / sub).mkdir(parents=True)
        target = cache / sub / name
        if kind == "fifo":
            os.mkfifo(target)
        else:
            target.symlink_to("/dev/zero")
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"weights")
    result = run_bounded(
        f"""
        from click.testing import CliRunner
        from advisor.cli import main
        from advisor.features.base import weights_sha256
        print("memo", weights_sha256({str(weights)!r})[:8])
        out = CliRunner().invoke(main, ["checkpoints", "list"])
        print("list", out.exit_code, out.output.strip().splitlines()[-1])
        """,
        imports="import advisor.cli, advisor.features.base",
        budget_mb=256,
        timeout=60,
        env={"ADVISOR_CACHE": str(cache)},
    )
    assert not result.timed_out, result.stderr[-500:]
    assert "memo " in result.stdout, result.stderr[-500:]
    assert "recorded-sha256.json is corrupt" in result.stdout
