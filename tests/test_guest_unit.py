"""The guest side's pure decisions on plain data, the units `vmctl guest install` writes, and
`vmctl guest status` from a journal. No network, no systemctl."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vmctl.cli import app
from vmctl.errors import InputError
from vmctl.guest.events import (
    DocumentError,
    Event,
    Policy,
    approval,
    drain_deadline,
    ignore_reason,
    parse_document,
)
from vmctl.guest.journal import GuestRecord, pending_recovery
from vmctl.guest.units import GRACEFUL_WINDOW, quote

NOW = 1_800_000_000.0


def ev(**kw: object) -> Event:
    base: dict[str, object] = dict(id="E1", type="Reboot", status="Scheduled", resources=("web-1",),
                                   not_before=NOW + 900, source="User", duration=-1)
    base.update(kw)
    return Event(**base)  # type: ignore[arg-type]


def test_parse_document_and_its_errors() -> None:
    doc = parse_document(json.dumps({"DocumentIncarnation": 3, "Events": [{
        "EventId": "A", "EventStatus": "Scheduled", "EventType": "Freeze", "ResourceType": "VirtualMachine",
        "Resources": ["web-1"], "NotBefore": "Mon, 19 Sep 2016 18:29:47 GMT", "EventSource": "Platform",
        "DurationInSeconds": 5}]}))
    assert doc.incarnation == 3 and doc.events[0].not_before == 1474309787.0
    started = parse_document('{"DocumentIncarnation": 4, "Events": [{"EventId": "A", "EventStatus": "Started", '
                             '"EventType": "Freeze", "Resources": [], "NotBefore": ""}]}')
    assert started.events[0].not_before is None
    for bad, why in [("{", "not JSON"), ("[]", "not a JSON object"), ('{"Events": []}', "DocumentIncarnation"),
                     ('{"DocumentIncarnation": 1, "Events": [{"EventType": "Reboot"}]}', "EventId"),
                     ('{"DocumentIncarnation": 1, "Events": [{"EventId": "A", "EventType": "Reboot", '
                      '"EventStatus": "Scheduled", "NotBefore": "2026-01-01T00:00:00Z"}]}', "RFC 1123")]:
        with pytest.raises(DocumentError, match=why):
            parse_document(bad)


def test_which_events_are_acted_on() -> None:
    p = Policy()
    assert ignore_reason(ev(), "web-1", p) is None
    assert ignore_reason(ev(), "WEB-1", p) is None                      # names compare case-insensitively
    assert "for other VMs (web-2)" in (ignore_reason(ev(resources=("web-2",)), "web-1", p) or "")
    assert "not in the watched types" in (ignore_reason(ev(type="Freeze", duration=60), "web-1", p) or "")
    freezes = Policy(types=frozenset({"Freeze"}), freeze_threshold=10)
    assert "within the threshold" in (ignore_reason(ev(type="Freeze", duration=5), "web-1", freezes) or "")
    assert ignore_reason(ev(type="Freeze", duration=30), "web-1", freezes) is None
    assert ignore_reason(ev(type="Freeze", duration=-1), "web-1", freezes) is None  # unknown: act (fail closed)


def test_drain_deadline_is_not_before_minus_margin_capped_by_hook_timeout() -> None:
    p = Policy(margin=10, hook_timeout=120)
    assert drain_deadline(ev(), NOW, p) == NOW + 120                      # 15 min away: the cap
    assert drain_deadline(ev(not_before=NOW + 30), NOW, p) == NOW + 20    # Spot: 30 s minus the margin
    assert drain_deadline(ev(not_before=NOW + 5), NOW, p) is None         # within the margin: no time
    assert drain_deadline(ev(status="Started", not_before=None), NOW, p) is None


def test_approval_policy() -> None:
    safe = Policy()
    assert approval(ev(), "web-1", safe, drained=True)[0]
    assert not approval(ev(), "web-1", safe, drained=False)[0]
    shared, why = approval(ev(resources=("web-1", "web-2")), "web-1", safe, drained=True)
    assert not shared and "would also release web-2" in why
    assert not approval(ev(), "web-1", Policy(approve="never"), drained=True)[0]
    user_only = Policy(approve="user-events")
    assert approval(ev(source="User"), "web-1", user_only, drained=True)[0]
    assert not approval(ev(source="Platform"), "web-1", user_only, drained=True)[0]
    assert not approval(ev(status="Started"), "web-1", safe, drained=True)[0]


def test_pending_recovery_survives_a_restart_of_the_watcher() -> None:
    recs: list[GuestRecord] = [
        {"ts": "t", "type": "event", "eventId": "A", "eventType": "Reboot", "action": "act"},
        {"ts": "t", "type": "event", "eventId": "B", "eventType": "Freeze", "action": "ignore"},
        {"ts": "t", "type": "event", "eventId": "C", "eventType": "Redeploy", "action": "act"},
        {"ts": "t", "type": "recover", "eventId": "C"},
    ]
    assert pending_recovery(recs) == {"A": "Reboot"}


def test_systemd_quoting() -> None:
    assert quote('/opt/drain.sh --pct 50% "$HOME"') == '"/opt/drain.sh --pct 50%% \\"$$HOME\\""'


def test_install_writes_units_under_root_and_uninstall_removes_them(tmp_path: Path) -> None:
    runner = CliRunner()
    root = tmp_path / "root"
    args = ["guest", "install", "--root", str(root), "--drain-hook", "/usr/local/bin/drain.sh --fast",
            "--recover-hook", "/usr/local/bin/rejoin.sh", "--vmctl", "/usr/bin/vmctl"]
    dry = runner.invoke(app, [*args, "--dry-run"])
    assert dry.exit_code == 0 and "ExecStop=" in dry.output and not root.exists()
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    unit_dir = root / "etc/systemd/system"
    watch = (unit_dir / "vmctl-guest.service").read_text()
    drain = (unit_dir / "vmctl-guest-drain.service").read_text()
    assert 'ExecStart="/usr/bin/vmctl" "guest" "watch" "--drain-hook" "/usr/local/bin/drain.sh --fast"' in watch
    assert '"--approve" "after-drain"' in watch and '"--recover-hook" "/usr/local/bin/rejoin.sh"' in watch
    assert 'ExecStop="/usr/bin/vmctl" "guest" "drain"' in drain
    stop = float(drain.split("TimeoutStopSec=")[1].split()[0])
    assert stop < GRACEFUL_WINDOW                                       # inside Azure's 5 minutes
    assert runner.invoke(app, [*args, "--hook-timeout", "290"]).exit_code == 2
    bad = runner.invoke(app, [*args[:4], "--drain-hook", "./drain.sh"])
    assert bad.exit_code == 2 and "absolute path" in bad.output
    # a unit vmctl did not write is never replaced or removed
    foreign = unit_dir / "vmctl-guest.service"
    r = runner.invoke(app, ["guest", "uninstall", "--root", str(root)])
    assert r.exit_code == 0 and not foreign.exists()
    foreign.write_text("[Unit]\n")
    assert runner.invoke(app, args).exit_code == 2
    assert runner.invoke(app, ["guest", "uninstall", "--root", str(root)]).exit_code == 2 and foreign.exists()


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed on this machine (the units' text is checked above)")
    hook = tmp_path / "drain.sh"
    hook.write_text("#!/bin/sh\nexit 0\n")
    hook.chmod(0o755)
    root = tmp_path / "root"
    r = CliRunner().invoke(app, ["guest", "install", "--root", str(root), "--drain-hook", str(hook),
                                 "--vmctl", shutil.which("true") or "/bin/true"])
    assert r.exit_code == 0, r.output
    units = sorted(str(p) for p in (root / "etc/systemd/system").iterdir())
    done = subprocess.run([analyze, "verify", *units], capture_output=True, text=True, timeout=60)
    problems = [line for line in done.stderr.splitlines() if "vmctl-guest" in line]
    assert done.returncode == 0 and not problems, done.stderr


def test_status_shows_current_events_and_last_actions(tmp_path: Path) -> None:
    journal = tmp_path / "g.jsonl"
    lines = [
        {"ts": "2026-11-23T10:00:00Z", "type": "start", "imds": "http://x"},
        {"ts": "2026-11-23T10:00:01Z", "type": "document", "incarnation": 2, "events": [
            {"eventId": "E1", "eventType": "Reboot", "status": "Scheduled", "resources": ["web-1"],
             "notBefore": "Mon, 23 Nov 2026 10:15:00 GMT", "source": "User", "durationInSeconds": -1}]},
        {"ts": "2026-11-23T10:00:03Z", "type": "hook", "phase": "drain", "eventId": "E1", "ok": True, "duration": 2.0},
        {"ts": "2026-11-23T10:00:03Z", "type": "approve", "eventId": "E1", "sent": True, "secondsBeforeNotBefore": 897.0},
    ]
    journal.write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"cut sho')
    r = CliRunner().invoke(app, ["guest", "status", "--journal", str(journal), "-o", "json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)["data"]
    assert data["incarnation"] == 2 and data["events"][0]["eventId"] == "E1"
    assert [a["type"] for a in data["actions"]] == ["start", "hook", "approve"]
    table = CliRunner().invoke(app, ["guest", "status", "--journal", str(journal)])
    assert table.exit_code == 0 and "E1" in table.output and "approved E1" in table.output


def test_guest_story_of_a_run_window(tmp_path: Path) -> None:
    """The report's guest side: an acted event wins; else the shutdown drain; else an ignored event; by identity."""
    from vmctl.guest.story import load, story, with_operation_end

    rid = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/web-1"

    def journal(name: str, *records: dict[str, object]) -> Path:
        p = tmp_path / f"{name}.jsonl"
        p.write_text("".join(json.dumps(r) + "\n" for r in records) + "{cut sho")   # a line cut by a crash
        return p

    ident = {"ts": "2026-11-23T10:00:00.000000Z", "type": "identity", "vm": "web-1", "resourceId": rid}
    nb = "Mon, 23 Nov 2026 10:20:00 GMT"
    journal("web-1", ident,
            {"ts": "2026-11-23T09:00:00.000000Z", "type": "event", "eventId": "OLD", "eventType": "Reboot",
             "resources": ["web-1"], "action": "act", "source": "User", "notBefore": nb},       # before the run
            {"ts": "2026-11-23T10:05:00.000000Z", "type": "event", "eventId": "F", "eventType": "Freeze",
             "resources": ["web-1"], "action": "ignore", "reason": "Freeze of 5 s", "source": "Platform"},
            {"ts": "2026-11-23T10:05:01.000000Z", "type": "event", "eventId": "E", "eventType": "Reboot",
             "resources": ["WEB-1"], "action": "act", "source": "User", "notBefore": nb},
            {"ts": "2026-11-23T10:05:03.000000Z", "type": "hook", "phase": "drain", "eventId": "E", "ok": True,
             "duration": 2.0, "reason": ""},
            {"ts": "2026-11-23T10:05:04.000000Z", "type": "approve", "eventId": "E", "sent": True,
             "secondsBeforeNotBefore": 896.0})
    journal("web-2", {**ident, "vm": "web-2", "resourceId": rid.replace("web-1", "web-2")},
            {"ts": "2026-11-23T10:06:00.000000Z", "type": "hook", "phase": "shutdown", "ok": False,
             "duration": 5.0, "reason": "drain-hook timed out"})
    (only,) = load([tmp_path / "web-1.jsonl"])
    assert only.names == {"web-1"}
    files = load([tmp_path])
    start, end = "2026-11-23T10:01:00.000000Z", "2026-11-23T10:10:00.000000Z"
    s = story(files, rid.upper(), "web-1", start, end)
    assert s is not None and (s["kind"], s["eventId"], s["drained"], s["approved"], s["secondsSaved"]) == \
        ("event", "E", True, True, 896.0)
    assert s["notBefore"] == "2026-11-23T10:20:00.000000Z" and s["recovered"] is None
    assert with_operation_end(s, "2026-11-23T10:06:00.000000Z")["operationEndedBeforeNotBefore"] == 840.0
    s2 = story(files, rid.replace("web-1", "web-2"), "web-2", start, end)
    assert s2 is not None and (s2["kind"], s2["drained"], s2["drainReason"]) == \
        ("shutdown", False, "drain-hook timed out")
    early = story(files, rid, "web-1", start, "2026-11-23T10:05:00.500000Z")    # the run ended before the Reboot
    assert early is not None and early["kind"] == "ignored" and "Freeze of 5 s" in early["approvalReason"]
    assert story(files, rid.replace("web-1", "web-3"), "web-3", start, end) is None
    nameless = tmp_path / "bad"
    nameless.mkdir()
    (nameless / "x.jsonl").write_text('{"ts": "2026-11-23T10:00:00Z", "type": "start"}\n')
    with pytest.raises(InputError, match="no identity record"):
        load([nameless])
