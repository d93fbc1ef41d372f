"""Shell completion: Typer's own (`--install-completion`, `--show-completion SHELL`), answering
for commands and options."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

VMCTL = [str(Path(sys.executable).parent / "vmctl")]  # the installed script: completion keys on its name


def _run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(VMCTL + args, capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})}, cwd=Path(__file__).parents[1])


def test_the_bash_completion_script_is_printed() -> None:
    # Typer finds "the current shell" among the process's ancestors (shellingham), whatever follows
    # --show-completion: run from bash, as a user would, not from whatever started pytest
    r = subprocess.run(["bash", "-c", '"$0" "$@"; exit $?', *VMCTL, "--show-completion", "bash"],
                       capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[1])
    assert r.returncode == 0, r.stderr
    assert "_VMCTL_COMPLETE" in r.stdout and "complete " in r.stdout


def test_completion_answers_commands_and_options() -> None:
    words = _run([], {"_VMCTL_COMPLETE": "complete_bash", "COMP_WORDS": "vmctl dea", "COMP_CWORD": "1"})
    assert words.stdout.split() == ["deallocate"], (words.stdout, words.stderr)
    opts = _run([], {"_VMCTL_COMPLETE": "complete_bash", "COMP_WORDS": "vmctl deallocate --hib", "COMP_CWORD": "2"})
    assert set(opts.stdout.split()) == {"--hibernate", "--hibernate-fallback"}
