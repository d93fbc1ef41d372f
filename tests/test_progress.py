"""The progress display and the evidence wait: counters and ETA on plain data, the line discipline
off a terminal through the CLI, and the same Activity Log calls on a terminal (a pty) as off it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest
from typer.testing import CliRunner

from conftest import SUB_A, SimHandle
from ptyrun import run_on_pty
from vmctl.cli import app
from vmctl.cli.actions import RunDisplay, progress_text
from vmctl.run import ProgressModel

runner = CliRunner()
ACTIVITY = "activityLogs.list"


def fleet(n: int, *, lro: float = 0.3, activity_delay: float = 0.2) -> dict[str, Any]:
    return {
        "tenant_id": "11111111-0000-0000-0000-000000000000", "identity": {"upn": "tester@contoso.example"},
        "time": {"lro_seconds": {op: lro for op in ("powerOff", "deallocate", "start", "restart")},
                 "activity_log_delay_seconds": activity_delay, "lro_retry_after": 0.05, "jitter": 0},
        "subscriptions": [{"id": SUB_A, "name": "test-sub-a", "resource_groups": [
            {"name": "rg-t", "vms": [{"name": "vm-{i:02d}", "count": n, "start": 0, "power_state": "running",
                                     "tags": {"env": "dev"}}]}]}],
    }


def config_file(tmp_path: Path) -> Path:
    p = tmp_path / "vmctl.toml"
    p.write_text("[execution]\npoll_interval = 0.2\n", encoding="utf-8")
    return p


# ---------------------------------------------------------------------------- the model, on plain data
def test_no_eta_and_no_rate_before_the_first_completion() -> None:
    m = ProgressModel(total=8, parallel=20, now=0.0)
    m.sample(8, now=0.5)
    v = m.view(now=30.0)
    assert (v.done, v.in_flight, v.failed, v.queued) == (0, 8, 0, 0)
    assert v.eta is None and v.rate is None
    assert "ETA -" in progress_text(v) and "0/8 done, 8 in flight, 0 failed, 0 queued" in progress_text(v)


def test_all_in_flight_the_eta_counts_down_from_the_observed_duration() -> None:
    """8 operations launched together, parallel 20: after the first ends at 45 s the rest are due at
    about the same time: the ETA is small and falls as time passes, it does not sit still."""
    m = ProgressModel(total=8, parallel=20, now=0.0)
    m.sample(8, now=0.2)
    m.finished(False, 44.0)
    m.sample(7, now=44.5)
    etas = [m.view(now=t).eta for t in (44.5, 44.7, 44.9)]
    assert all(e is not None for e in etas)
    assert etas[0] is not None and etas[0] < 1.0 and etas == sorted(etas, reverse=True)
    v = m.view(now=50.0)
    assert v.eta == 0.0 and "ETA any moment" in progress_text(v)  # past the mean: never a frozen 0:00:01
    assert v.rate is not None and abs(v.rate - 60 / 50) < 1e-9


def test_queued_operations_take_the_slots_as_they_free_up() -> None:
    """parallel 2, 6 operations of 10 s: two done at 10 s, two in flight since 10 s, two queued ->
    the in-flight pair ends at 20 s, the queued pair at 30 s: ETA 20 s at t=10, 15 s at t=15."""
    m = ProgressModel(total=6, parallel=2, now=0.0)
    m.sample(2, now=0.0)
    m.finished(False, 10.0)
    m.finished(True, 10.0)
    m.sample(2, now=10.0)
    v = m.view(now=10.0)
    assert (v.done, v.failed, v.in_flight, v.queued) == (1, 1, 2, 2)
    assert v.eta == pytest.approx(20.0)
    assert m.view(now=15.0).eta == pytest.approx(15.0)
    m.finished(False, 10.0)
    m.finished(False, 10.0)
    m.sample(2, now=20.0)
    assert m.view(now=20.0).eta == pytest.approx(10.0)
    assert m.view(now=20.0).queued == 0


def test_progress_text_fits_80_columns_without_cutting_a_value() -> None:
    m = ProgressModel(total=120, parallel=20, now=0.0)
    m.sample(20, now=1.0)
    for _ in range(37):
        m.finished(False, 41.5)
    m.finished(True, 12.0)
    m.sample(20, now=200.0)
    v = m.view(now=200.0)
    wide = progress_text(v)
    assert "38/120" not in wide and "37/120 done, 20 in flight, 1 failed, 62 queued" in wide
    assert "elapsed" in wide and "/min" in wide and "ETA " in wide
    head = "deallocate: "
    narrow = progress_text(v, 79 - len(head))
    assert len(head + narrow) <= 79
    assert narrow.startswith("37/120 done, 20 in flight, 1 failed, 62 queued") and "ETA " in narrow


def test_off_a_terminal_waiting_prints_one_line_per_interval(capsys: pytest.CaptureFixture[str]) -> None:
    """Each outcome is a line; polls are not: 600 evidence rounds in 10 minutes give 10 lines."""
    now = [0.0]
    d = RunDisplay("restart", interval=60.0, parallel=4, tty=False, clock=lambda: now[0])
    d.model = ProgressModel(4, 4, 0.0)
    d.set_phase("evidence")
    for i in range(600):
        now[0] = float(i + 1)
        d.evidence_round(3, 4, 600.0 - i)
    lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("evidence: 3 of 4")]
    assert len(lines) == 10


# ---------------------------------------------------------------------------- through the CLI
def test_cli_off_a_terminal_one_line_per_vm_and_evidence_lines_per_minute_not_per_poll(
        make_sim: Callable[..., SimHandle], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # time scale 60: a minute of the run's time is 1 s; the Activity Log shows events after 4 s
    sim = make_sim(fleet(4, activity_delay=4.0))
    monkeypatch.setenv("VMCTL_PACE_SCALE", "60")
    t0 = time.monotonic()
    r = runner.invoke(app, ["restart", "-g", "rg-t", "--yes", "--config", str(config_file(tmp_path))])
    took = time.monotonic() - t0
    assert r.exit_code == 0, r.output
    err = r.stderr.splitlines()
    assert len([x for x in err if x.startswith("[")]) == 4           # one line per VM outcome
    status = [x for x in err if x.startswith("evidence: ") and "not in the Activity Log yet" in x]
    rounds = sim.stats()["by_operation"][ACTIVITY] // 4              # one query per pending operation a round
    assert rounds >= 5 and len(status) < rounds                      # not a line per poll ...
    assert len(status) <= took / 1.0 + 1                             # ... at most one per minute (1 s here)
    assert "evidence: all 4 operations are in the Activity Log" in r.stderr


def _visible(screen: str) -> list[str]:
    """The lines left on the screen: each line's text after its last carriage return or line erase."""
    import re

    return [re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", re.split(r"\r|\x1b\[2K", line)[-1]) for line in screen.split("\n")]


def test_the_evidence_wait_makes_the_same_activity_log_calls_on_a_terminal_and_off_it(
        make_sim: Callable[..., SimHandle], tmp_path: Path) -> None:
    """The Activity Log never shows the events within the wait: the number of rounds depends on the
    wait alone, so a terminal (a pty: the live status line) and a pipe must ask the same."""
    sim = make_sim(fleet(3, activity_delay=3600))
    args = ["restart", "-g", "rg-t", "--yes", "--evidence-wait", "3.5s", "--config", str(config_file(tmp_path))]
    env = {**os.environ, "NO_COLOR": ""}
    env.pop("NO_COLOR")
    code, screen = run_on_pty(args, env)
    assert code == 0, screen
    assert "\x1b[" in screen and "evidence: 3 of 3 operations not in the Activity Log yet" in screen
    on_tty = sim.stats()["by_operation"][ACTIVITY]
    r = subprocess.run([sys.executable, "-m", "vmctl", *args], env=env, capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=60)
    assert r.returncode == 0, r.stderr
    off_tty = sim.stats()["by_operation"][ACTIVITY] - on_tty
    assert on_tty == off_tty and on_tty % 3 == 0, (on_tty, off_tty)
    # on the terminal the wait's status is one line rewritten in place, not a line per round
    assert not [x for x in _visible(screen) if "not in the Activity Log yet" in x], screen
    assert len([x for x in r.stderr.splitlines() if "not in the Activity Log yet" in x]) <= 4 + 1


def _screen(width: int, model: ProgressModel, phase: str = "execution") -> list[str]:
    import io
    import re

    from rich.console import Console

    buf = io.StringIO()
    console = Console(width=width, file=buf, force_terminal=True, color_system="standard")
    d = RunDisplay("deallocate", interval=60.0, parallel=5, tty=True, clock=lambda: 58.0)
    d.model, d.phase = model, phase
    d.evidence = (3, 15, 412.0, 58.0)

    class Live:
        pass

    live = Live()
    live.console = console  # type: ignore[attr-defined]
    d.live = live
    console.print(d._render())
    return [re.sub(r"\x1b\[[0-9;]*m", "", x) for x in buf.getvalue().splitlines()]


def test_the_live_line_is_one_line_with_every_value_whole_at_80_and_120_columns() -> None:
    m = ProgressModel(total=15, parallel=5, now=0.0)
    m.sample(5, now=0.3)
    for d in (44.0, 46.5, 45.1):
        m.finished(False, d)
    m.finished(True, 12.0)
    m.sample(5, now=47.0)
    at80, at120 = _screen(80, m), _screen(120, m)
    assert at80 == ["deallocate: 3/15 done, 5 in flight, 1 failed, 6 queued  4.1/min  ETA 1:14"]
    assert len(at120) == 1 and len(at120[0]) <= 120 and "━" in at120[0]
    assert at120[0].endswith("deallocate: 3/15 done, 5 in flight, 1 failed, 6 queued  4.1/min  ETA 1:14  0:58 elapsed")
    for width in (80, 120):
        assert _screen(width, m, "evidence") == ["evidence: 3 of 15 operations not in the Activity Log yet (6:52 left)"]
