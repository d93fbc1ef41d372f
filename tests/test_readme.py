"""Every `vmctl` command in README.md, run in order against the simulator serving the demo fleet,
as a newcomer would after `make demo` (the README's set-up block: vmctl on PATH, the simulator's
environment loaded). A command's expected exit code is 0 unless its line ends with `# exit N`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from conftest import SimHandle

ROOT = Path(__file__).resolve().parents[1]
BIN = str(Path(sys.executable).parent)
EXIT = re.compile(r"#\s*exit (\d+)\b")
BLOCK = re.compile(r"^```sh\n(.*?)^```", re.S | re.M)
# the set-up block's simulator (the fixture serves it), and the guest side, which runs inside a VM
# against its IMDS (tests/test_guest_*.py run those commands against the simulator's IMDS)
SET_UP = ("vmctl sim serve", "vmctl guest ")


def readme_commands() -> list[tuple[str, int]]:
    """(command, expected exit) for each `vmctl` line of every sh block, continuations joined."""
    out = []
    for block in BLOCK.findall((ROOT / "README.md").read_text(encoding="utf-8")):
        lines: list[str] = []
        for raw in block.splitlines():
            if lines and lines[-1].endswith("\\"):
                lines[-1] = lines[-1][:-1] + " " + raw.strip()
            else:
                lines.append(raw.strip())
        for line in lines:
            if not line.startswith("vmctl ") or line.startswith(SET_UP):
                continue
            m = EXIT.search(line)
            out.append((line, int(m.group(1)) if m else 0))
    return out


def test_the_readme_has_the_commands_it_promises() -> None:
    cmds = [c for c, _ in readme_commands()]
    assert len(cmds) >= 15
    for verb in ("deallocate", "start", "evidence", "report", "runs", "resume", "maintenance start", "list", "show"):
        assert any(c.startswith(f"vmctl {verb} ") or c == f"vmctl {verb}" for c in cmds), verb


@pytest.mark.timeout(240)
def test_every_readme_command_works_on_the_simulator(make_sim: Callable[..., SimHandle], tmp_path: Path) -> None:
    sim = make_sim(ROOT / "examples" / "fleet.yaml", time_scale=200)
    work = tmp_path / "work"
    work.mkdir()
    (work / "examples").symlink_to(ROOT / "examples")  # the README's paths are relative to the checkout
    env = {**os.environ, **sim.env, "PATH": BIN + os.pathsep + os.environ["PATH"], "NO_COLOR": "1"}
    failures = []
    for cmd, expected in readme_commands():
        r = subprocess.run(["bash", "-eo", "pipefail", "-c", cmd], cwd=work, env=env, capture_output=True, text=True,
                           timeout=180)
        if r.returncode != expected:
            failures.append(f"{cmd}\n  exit {r.returncode}, expected {expected}\n  {r.stderr.strip()[-600:]}")
    assert not failures, "\n".join(failures)
