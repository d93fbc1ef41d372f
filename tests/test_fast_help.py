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
