"""The guest journal: append-only JSONL (mode 0600), one line per thing the watcher saw or did.

Record types: `start`, `identity`, `document` (a new DocumentIncarnation and its events),
`event` (first sight of an event: act or ignore, and why), `hook` (drain or recover: exit,
duration, deadline, output tail), `approve` (sent, or not and why), `recover`, `imds-error` (when
the error changes, with the retry wait), `imds-ok` (answering again), `stop`.

It is also the watcher's memory across restarts: an event drained before a reboot and gone after
it still gets its recover hook (`pending_recovery`).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Required, TypedDict, Unpack, cast

from ..errors import InputError
from ..journal import open_private_append, private_dir
from ..timefmt import stamp

OUTPUT_TAIL = 4096  # characters of hook output kept per record


class GuestEventJson(TypedDict, total=False):
    eventId: str
    eventType: str
    status: str
    resources: list[str]
    notBefore: str | None
    source: str
    durationInSeconds: int


class GuestFields(GuestEventJson, total=False):
    """Every field a record may carry; an `event` record carries the event's own (GuestEventJson)."""
    imds: str
    pid: int
    policy: dict[str, object]
    vm: str
    resourceId: str
    incarnation: int
    events: list[GuestEventJson]
    action: str             # event: act | ignore
    reason: str
    phase: str              # hook: drain | recover | shutdown
    ok: bool
    returncode: int | None
    duration: float
    deadline: str | None
    outputTail: str
    outputBytes: int
    truncated: bool
    sent: bool              # approve: the POST was sent and answered 200
    secondsBeforeNotBefore: float | None
    kind: str               # imds-error: unreachable | status | malformed
    error: str
    retryIn: float
    signal: str


class GuestRecord(GuestFields, total=False):
    ts: Required[str]
    type: Required[str]


def default_path() -> Path:
    """/var/lib/vmctl/guest.jsonl for root (the systemd service), else $XDG_STATE_HOME/vmctl/guest.jsonl."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/vmctl/guest.jsonl")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "vmctl" / "guest.jsonl"


class GuestJournal:
    """Appends records; an existing journal is continued (the watcher restarts with the VM)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        private_dir(path.parent)
        self._fh = open_private_append(path, "--journal")
        self._lock = threading.Lock()

    def write(self, type_: str, **fields: Unpack[GuestFields]) -> GuestRecord:
        record = cast(GuestRecord, {"ts": stamp(), "type": type_, **fields})
        line = json.dumps(record, separators=(",", ":"), default=str)
        with self._lock:
            if not self._fh.closed:
                self._fh.write(line + "\n")
                self._fh.flush()
        return record

    def close(self) -> None:
        with self._lock:
            if not self._fh.closed:
                self._fh.close()


def read(path: Path) -> list[GuestRecord]:
    """Every record; a line cut short by a crash is skipped. InputError (exit 2) naming the file."""
    if path.is_dir():
        raise InputError(f"guest journal {path} is a directory.", "Give the watcher's .jsonl file (--journal).")
    if not path.is_file():
        raise InputError(f"guest journal {path} does not exist.",
                         "Start `vmctl guest watch` first, or give its --journal path.")
    out: list[GuestRecord] = []
    try:
        with open(path, "rb") as fh:
            for raw in fh:
                try:
                    rec = json.loads(raw.decode("utf-8"))
                except ValueError:
                    continue
                if isinstance(rec, dict) and isinstance(rec.get("type"), str) and isinstance(rec.get("ts"), str):
                    out.append(cast(GuestRecord, rec))
    except OSError as exc:
        raise InputError(f"cannot read guest journal {path}: {exc.strerror}.", "Check its permissions.") from exc
    return out


def pending_recovery(records: list[GuestRecord]) -> dict[str, str]:
    """Events acted on (drained, or tried) whose recover step has not run: event id -> event type."""
    pending: dict[str, str] = {}
    for r in records:
        if r["type"] == "event" and r.get("action") == "act" and "eventId" in r:
            pending[r["eventId"]] = r.get("eventType", "")
        elif r["type"] == "recover" and "eventId" in r:
            pending.pop(r["eventId"], None)
    return pending


def status(records: list[GuestRecord], last: int = 10) -> tuple[GuestRecord | None, list[GuestRecord]]:
    """(the last `document` record: the current events, the last `last` actions)."""
    doc = next((r for r in reversed(records) if r["type"] == "document"), None)
    actions = [r for r in records if r["type"] in ("hook", "approve", "recover", "imds-error", "imds-ok", "start",
                                                   "stop", "event")]
    return doc, actions[-last:]
