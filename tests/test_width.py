"""Terminal widths: every table (list, plan, report, evidence, maintenance status) laid out at 80, 120
and 160 columns never cuts or splits a value. Run through the CLI against the simulator, as on a
terminal of that width (`layout_width` is what asks the terminal; a pty checks it separately), and
checked against the same command's JSON: every name, group, id and timestamp shows whole on one
line (ids and times may use their declared short forms, which the output then says), and no line
is wider than the terminal.
"""

from __future__ import annotations

import copy
import fcntl
import io
import json
import os
import re
import struct
import termios
from pathlib import Path
from typing import Any, Iterable

import pytest
import yaml
from typer.testing import CliRunner

from conftest import BASIC, SimHandle
from vmctl.cli import app
from vmctl.render import Col, Output
from vmctl.render import table as table_mod
from vmctl.render.table import before_prompt, fit, layout_width, table

runner = CliRunner()
WIDTHS = (80, 120, 160)
WIDTH: list[int | None] = [None]


@pytest.fixture(autouse=True)
def _terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Output laid out as for a terminal WIDTH[0] columns wide (None: not a terminal)."""
    monkeypatch.setattr(table_mod, "layout_width", lambda stream: WIDTH[0])


def fleet() -> dict[str, Any]:
    """basic.yaml plus a twin group holding VMs of the same names, and a long name."""
    f = copy.deepcopy(yaml.safe_load(BASIC.read_text(encoding="utf-8")))
    groups = f["subscriptions"][0]["resource_groups"]
    groups.append({"name": "rg-twin-with-a-longer-name", "vms": [
        {"name": "app-01", "tags": {"env": "dev"}},
        {"name": "contoso-dev-frontend-westeurope-01", "tags": {"env": "dev"}}]})
    return f


def run(width: int | None, *args: str) -> Any:
    WIDTH[0] = width
    try:
        return runner.invoke(app, list(args))
    finally:
        WIDTH[0] = None


def lines_of(text: str) -> list[str]:
    return text.splitlines()


def assert_whole(text: str, width: int, values: Iterable[str], *, short_ids: bool = False,
                 short_times: bool = False) -> None:
    """Each value shows whole on one line (or in its declared short form); no line is too wide."""
    lines = lines_of(text)
    too_wide = [line for line in lines if len(line) > width and " " in line.strip()]
    assert not too_wide, f"lines wider than {width}:\n" + "\n".join(too_wide)
    for v in values:
        if not v or v == "-":
            continue
        forms = [v]
        if short_ids and re.fullmatch(r"[0-9a-f-]{36}", v):
            forms.append(v[:8] + "…")
        if short_times and re.match(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}", v):
            forms.append(v[:19] + "Z")
        assert any(f in line for f in forms for line in lines), \
            f"{v!r} is not whole on any line at {width} columns:\n{text}"


@pytest.fixture
def sim(make_sim: Any) -> SimHandle:
    handle: SimHandle = make_sim(fleet())
    return handle


def test_list_at_each_width(sim: SimHandle) -> None:
    data = json.loads(run(None, "list", "--include-production", "-o", "json").stdout)["data"]
    assert {"app-01", "contoso-dev-frontend-westeurope-01"} <= {v["name"] for v in data}
    for w in WIDTHS:
        r = run(w, "list", "--include-production")
        assert r.exit_code == 0, r.output
        assert_whole(r.stdout, w, [v["name"] for v in data] + [v["resourceGroup"] for v in data])
        if w == 120:  # what gave way is said
            assert "Left out at 120 columns:" in r.stdout


def test_plan_at_each_width_and_names_are_never_split(sim: SimHandle) -> None:
    plan = json.loads(run(None, "deallocate", "--tag", "env=dev", "--dry-run", "-o", "json").stdout)["data"]
    names = [s["vm"]["name"] for s in plan["steps"]]
    groups = [s["vm"]["resourceGroup"] for s in plan["steps"]]
    for w in WIDTHS:
        r = run(w, "deallocate", "--tag", "env=dev", "--dry-run")
        assert r.exit_code == 0, r.output
        assert_whole(r.stdout, w, names + groups)
        # the repeated consequence is said once, as a note, not on every row
        assert r.stdout.count("capacity not guaranteed") == 1


def test_report_and_evidence_at_each_width(sim: SimHandle, tmp_path: Path) -> None:
    j = tmp_path / "run.jsonl"
    r = run(None, "deallocate", "-n", "app-0[123]", "-n", "contoso-*", "--yes", "--journal", str(j), "-o", "json",
            "--evidence-wait", "30s")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)["data"]
    acted = [v for v in rep["vms"] if v["evidence"]]
    assert len(acted) == 5 and all(v["evidence"]["complete"] for v in acted)
    ids = [v["correlationId"] for v in acted] + [v["evidence"]["operationId"] for v in acted]
    times = [v["evidence"]["eventTimestamps"]["Succeeded"] for v in acted]
    who = [v["name"] for v in rep["vms"]] + [v["resourceGroup"] for v in rep["vms"]]
    for w in WIDTHS:
        shown = run(w, "report", str(j))
        assert shown.exit_code == 0, shown.output
        assert_whole(shown.stdout, w, who + ids + times, short_ids=True, short_times=True)
        ev = run(w, "evidence", "--journal", str(j))
        assert ev.exit_code == 0, ev.output
        assert_whole(ev.stdout, w, who + [v["evidence"]["operationId"] for v in acted] + times,
                     short_ids=True, short_times=True)
    # full values stay in Markdown, whatever the terminal's width
    md = run(80, "report", str(j), "-o", "markdown").stdout
    assert all(i in md for i in ids + times)


def test_maintenance_status_at_each_width(sim: SimHandle) -> None:
    data = json.loads(run(None, "maintenance", "status", "-o", "json").stdout)["data"]
    assert data
    for w in WIDTHS:
        r = run(w, "maintenance", "status")
        assert r.exit_code == 0, r.output
        assert_whole(r.stdout, w, [v["name"] for v in data] + [v["resourceGroup"] for v in data])
        # a window's date and time are never split apart
        assert not re.search(r"\d{4}-\d{2}-\d{2}\s*$", r.stdout, re.M), r.stdout


def test_a_table_that_cannot_fit_becomes_one_block_per_row() -> None:
    guid = "5f0d2c1e-8a4b-4c3d-9e2f-1a2b3c4d5e6f"
    out = Output(kind="x", data=[], columns=["GROUP", "NAME", "ID", "WHY"],
                 rows=[["rg-a", "app-01", guid, "a reason with several words in it " * 2],
                       ["rg-b", "app-01", guid.replace("5", "6"), "short"]],
                 layout={"GROUP": Col(key=True), "NAME": Col(key=True)})
    buf = io.StringIO()
    table(out, buf, width=40)
    text = buf.getvalue()
    assert "rg-a  app-01" in text and "rg-b  app-01" in text          # each block headed by its key
    assert guid in text and guid.replace("5", "6") in text            # nothing shortened in blocks
    assert all(len(line) <= 40 or len(line.split()) == 1 for line in text.splitlines())


def test_fit_lifts_constants_drops_in_order_and_never_goes_below_a_word() -> None:
    cols = ["SUB", "NAME", "A", "B", "TEXT"]
    rows = [["contoso-dev", f"vm-{i}", "x" * (20 + i), "y" * (20 + i), f"word{i} " * 12] for i in range(3)]
    f = fit(cols, rows, {"A": Col(drop=2), "B": Col(drop=1)}, 60)
    assert "SUB" not in f.columns and f.above == ["Every row: SUB contoso-dev"]
    assert f.columns == ["NAME", "A", "TEXT"]                        # B (drop=1) went first
    assert f.widths is not None and sum(f.widths) + 2 * (len(f.widths) - 1) <= 60
    assert any(line.startswith("Left out at 60 columns: B") for line in f.below)
    wide = fit(cols, rows, {}, None)                                   # no terminal: natural width
    assert wide.columns == cols and not wide.above and not wide.below


def test_layout_width_is_the_terminals_and_none_off_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    primary, secondary = os.openpty()
    try:
        fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 83, 0, 0))
        with open(secondary, "w", closefd=False) as tty:
            assert layout_width(tty) == 83
            monkeypatch.setenv("COLUMNS", "120")
            assert layout_width(tty) == 120
        assert layout_width(io.StringIO()) is None         # a pipe or a file: natural width, whatever COLUMNS says
    finally:
        os.close(primary)
        os.close(secondary)


def test_a_long_plan_is_summed_up_right_above_the_prompt(sim: SimHandle) -> None:
    from vmctl.planner import plan_from_json
    from vmctl.views import plan_output

    r = run(None, "deallocate", "--tag", "env=dev", "--dry-run", "-o", "json")
    assert r.exit_code == 0, r.output
    shown = plan_output(plan_from_json(json.loads(r.stdout)["data"]))
    buf = io.StringIO()
    assert before_prompt(shown, True, buf, height=15)          # 13 rows and more: taller than the terminal
    text = buf.getvalue()
    assert "deallocate 10 of 13 VMs (3 skipped)" in text and "Production: none." in text
    assert "rg-twin-with-a-longer-name 2" in text and "10 no longer billed for compute" in text
    assert not before_prompt(shown, True, io.StringIO(), height=200)   # it all fits: nothing repeated
    assert not before_prompt(shown, False, io.StringIO(), height=15)   # --yes: no prompt, no recap


def _commands() -> list[tuple[list[str], Any]]:
    import typer.main

    out: list[tuple[list[str], Any]] = []

    def walk(cmd: Any, path: list[str]) -> None:
        out.append((path, cmd))
        for name, sub in getattr(cmd, "commands", {}).items():
            if not getattr(sub, "hidden", False):
                walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return out


@pytest.mark.parametrize("path", [pytest.param(p, id=" ".join(p) or "vmctl") for p, _ in _commands()])
def test_help_at_80_columns_shows_every_example_line_whole(path: list[str]) -> None:
    cmd = dict((" ".join(p), c) for p, c in _commands())[" ".join(path)]
    source = [line.strip() for line in (cmd.help or "").splitlines()
              if line.startswith((" ", "\t")) and line.strip() and line.strip() != "\b"]
    assert any(line.startswith("vmctl ") for line in source), f"no example in {path}"
    r = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "80", "NO_COLOR": "1", "TERM": "dumb"},
                      terminal_width=80)
    assert r.exit_code == 0, r.output
    shown = [line.strip() for line in r.output.splitlines()]
    for line in source:   # every line of every example, exactly as written: not re-flowed, not split
        assert line in shown, f"vmctl {' '.join(path)} --help at 80 columns re-wraps {line!r}:\n{r.output}"



def test_runs_keeps_each_journal_path_whole_at_each_width(sim: SimHandle, tmp_path: Path) -> None:
    """`vmctl runs`: the journal path (what the operator copies) is never cut nor left out; the
    start time may take its short form."""
    for n in range(2):
        r = run(None, "restart", "-n", "app-01", "-g", "rg-app", "--yes", "--no-evidence-wait",
                "--journal", str(tmp_path / "a-long-directory-name-for-change-tickets" / f"CHG-{n}.jsonl"))
        assert r.exit_code == 0, r.output
    data = json.loads(run(None, "runs", "-o", "json").stdout)["data"]
    for width in (80, 120):
        r = run(width, "runs")
        assert r.exit_code == 0, r.output
        assert_whole(r.stdout, width, [d["journal"] for d in data] + [d["startedAt"] for d in data], short_times=True)
