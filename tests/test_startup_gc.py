"""The entry point holds the garbage collector off during start-up and a command turns it back on
when its work begins (vmctl/_startup.py): a long command (a run, `guest watch`, `sim serve`) must
never run without it. In-process callers (these tests) are left alone."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path

from vmctl import _startup

PROBE = ("import atexit, gc, sys; atexit.register(lambda: print('collector', gc.isenabled(), gc.get_freeze_count() > 0));"
         "sys.argv = ['vmctl', *sys.argv[1:]]; from vmctl.__main__ import main; main()")


def test_a_command_started_by_the_entry_point_runs_with_the_collector_on(tmp_path: Path) -> None:
    env = {**os.environ, "HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "state")}
    out = subprocess.run([sys.executable, "-c", PROBE, "runs"], env=env, capture_output=True, text=True,
                         cwd=tmp_path, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "collector True True"  # on again, start-up's objects frozen


def test_in_process_callers_keep_their_collector() -> None:
    assert gc.isenabled()
    _startup.release()  # nothing was held: no freeze, no change
    with _startup.quiet():
        assert gc.isenabled()  # not started by the entry point: left alone
    assert gc.isenabled()
