"""`vmctl X --help` is answered from vmctl/_helpcache.py without importing Typer: the answer must be
byte for byte what the Typer app prints (the cache's freshness itself is checked with docs/cli.md
by tests/test_docs.py), and anything the cache does not cover must reach the app."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from vmctl.__main__ import cached_help

SLOW = ("import sys; sys.argv[0] = 'vmctl'; from vmctl.cli import app; "
        "app(args=sys.argv[1:], prog_name='vmctl')")


def run(code: list[str], columns: int) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": str(columns), "NO_COLOR": "1"}
    return subprocess.run([sys.executable, *code], capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.parametrize("path", [[], ["list"], ["deallocate"], ["maintenance"], ["maintenance", "start"], ["sim", "serve"]])
def test_cached_help_is_what_typer_prints(path: list[str]) -> None:
    fast = run(["-m", "vmctl", *path, "--help"], 100)
    slow = run(["-c", SLOW.replace("'vmctl')", "'python -m vmctl')"), *path, "--help"], 100)
    assert fast.returncode == slow.returncode == 0
    assert fast.stdout == slow.stdout


def test_help_path_imports_no_typer() -> None:
    code = ("import sys; from vmctl.__main__ import cached_help; sys.argv[0] = 'vmctl'; "
            "assert cached_help(['list', '--help']); assert 'typer' not in sys.modules, 'typer imported'")
    r = run(["-c", code], 100)
    assert r.returncode == 0, r.stderr


def test_what_the_cache_does_not_cover_goes_to_typer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["vmctl"])
    # the program name as the vmctl script has it, whatever runs pytest (`python -m pytest` has a package)
    monkeypatch.setattr(sys.modules["__main__"], "__package__", None, raising=False)
    monkeypatch.setenv("COLUMNS", "100")
    assert cached_help(["list", "--help"])
    assert cached_help(["list", "--bogus", "--help"]) is None      # options before --help: the app decides
    assert cached_help(["nosuchcommand", "--help"]) is None        # the app's error, not a cache miss printed
    assert cached_help(["list"]) is None
    monkeypatch.setenv("COLUMNS", "60")                             # narrower than click's 80: wrapped differently
    assert cached_help(["list", "--help"]) is None
    narrow = run(["-m", "vmctl", "list", "--help"], 60)
    assert narrow.returncode == 0 and narrow.stdout == run(["-c", SLOW.replace("'vmctl')", "'python -m vmctl')"),
                                                            "list", "--help"], 60).stdout


@pytest.mark.parametrize("args", [["list", "--bogus"], ["show"], ["deallocate", "--parallel", "x"],
                                  ["maintenance", "stat"], ["sim", "serve", "--time-scale", "fast"],
                                  ["list", "-g", "rg", "--help"]])
def test_one_command_root_answers_as_the_whole_tree(args: list[str]) -> None:
    """`vmctl COMMAND ...` runs a root holding only COMMAND (typer builds every registered command
    before parsing): what it prints and its exit code are the whole tree's."""
    from typer.testing import CliRunner

    from vmctl.cli import app, app_for

    one = app_for(args)
    assert one is not app
    assert [c.name for c in one.registered_commands] + [g.name for g in one.registered_groups] == [args[0]]
    runner = CliRunner()
    a = runner.invoke(app, args, prog_name="vmctl", env={"COLUMNS": "100"})
    b = runner.invoke(one, args, prog_name="vmctl", env={"COLUMNS": "100"})
    assert (b.exit_code, b.output) == (a.exit_code, a.output)
    assert a.exit_code in (0, 2)


@pytest.mark.parametrize("args", [[], ["--version"], ["lst"], ["--help"]])
def test_the_whole_tree_where_it_is_needed(args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from vmctl.cli import app, app_for

    assert app_for(args) is app
    monkeypatch.setenv("_VMCTL_COMPLETE", "bash_complete")
    assert app_for(["list"]) is app  # shell completion walks the whole tree
