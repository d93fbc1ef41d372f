"""`--verbose`: one line per HTTP call on stderr (method, path, status, time, request id, throttle
budgets left), never on stdout, and nothing of it without the flag."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import SimHandle

VMCTL = str(Path(sys.executable).parent / "vmctl")
LINE = re.compile(r"^http: GET /subscriptions/[^ ?]+/providers/Microsoft\.Compute/virtualMachines -> 200 in "
                  r"\d+\.\d\d s, request id [0-9a-f-]{36}, left: .*HighCostGet3Min")


def test_verbose_prints_each_http_call_on_stderr(sim: SimHandle) -> None:
    env = {**os.environ, **sim.env}
    r = subprocess.run([VMCTL, "list", "-o", "json", "--verbose"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    json.loads(r.stdout)  # stdout stays the document alone
    lines = [line for line in r.stderr.splitlines() if line.startswith("http: ")]
    listing = [line for line in lines if LINE.match(line)]
    assert len(listing) == 6, lines  # two listings (full and statusOnly), 3 pages of 5 each for sub A's 12 VMs
    assert "?" not in "".join(lines)  # paths only: no query strings, no tokens
    quiet = subprocess.run([VMCTL, "list", "-o", "json"], env=env, capture_output=True, text=True, timeout=60)
    assert "http: " not in quiet.stderr
