"""The console script's last line of defence: one line and a non-zero exit, never a traceback."""

import subprocess
import sys

import pytest

from advisor import entry


def _boom(self, ctx):  # noqa: ANN001
    raise RuntimeError("internal state\nwent wrong")


def test_unexpected_exception_is_one_line_with_a_debug_hint(monkeypatch, capsys):
    import advisor.cli

    monkeypatch.setattr(advisor.cli.AdvisorGroup, "invoke", _boom)
    with pytest.raises(SystemExit) as exit_info:
        entry.run(["checkpoints", "list"])
    assert exit_info.value.code == entry.EXIT_UNEXPECTED
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "RuntimeError: internal state went wrong" in err and "--debug" in err


def test_debug_flag_shows_the_traceback(monkeypatch):
    import advisor.cli

    monkeypatch.setattr(advisor.cli.AdvisorGroup, "invoke", _boom)
    with pytest.raises(RuntimeError, match="internal state"):
        entry.run(["--debug", "checkpoints", "list"])


def test_ctrl_c_during_start_up_imports_exits_130_without_traceback(monkeypatch, capsys):
    class Interrupt:
        def find_spec(self, name, path=None, target=None):  # noqa: ANN001
            if name == "advisor.cli":
                raise KeyboardInterrupt
            return None

    monkeypatch.delitem(sys.modules, "advisor.cli", raising=False)
    monkeypatch.setattr(sys, "meta_path", [Interrupt(), *sys.meta_path])
    with pytest.raises(SystemExit) as exit_info:
        entry.run(["--help"])
    assert exit_info.value.code == entry.EXIT_INTERRUPTED
    assert capsys.readouterr().err == "interrupted\n"


def test_python_dash_m_uses_the_same_entry_point():
    result = subprocess.run(
        [sys.executable, "-m", "advisor", "--version"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and "advisor" in result.stdout
