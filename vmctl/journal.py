"""The run journal: append-only JSONL, the plan first, then one line per event, flushed as it
happens (a crash loses nothing already written). `resume` and `report` read it back.

Never written here: tokens, secrets, environment values. Hook output is kept (it is the
operator's own script's output).
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Required, TextIO, TypedDict, Unpack, cast

from .errors import InputError
from .timefmt import stamp

if TYPE_CHECKING:
    from .cloud import Event


class RecordFields(TypedDict, total=False):
    """Every field a journal record may carry; which ones a record has depends on its `type`
    (docs/journal.md lists them). One TypedDict, not one per type: readers look fields up by name
    across types (`index`, `correlationId`, `reason`), and a record read back from an older
    vmctl may lack any of them, so every field is optional."""

    # run, resume
    runId: str
    command: str
    principal: dict[str, str]
    host: str
    user: str
    endpoint: str | None
    pid: int
    plan: dict[str, object]          # planner.plan_json; read back by planner.plan_from_json
    steps: list[int] | None          # resume: the steps it runs; wave-start: the wave's steps
    vms: int
    directory: str
    stale: list[dict[str, str | int | None]]
    # one VM's steps
    index: int
    vm: str
    action: str | None
    attempt: int
    correlationId: str | None
    clientRequestId: str | None
    statusUrl: str | None
    rateLimit: dict[str, str]
    hibernate: bool
    skipShutdown: bool
    reason: str
    wait: float | None
    verdict: str
    seen: str
    power: str
    provisioning: str
    why: str
    phase: str
    ok: bool
    outputBytes: int
    truncated: bool
    returncode: int | None
    output: str
    status: str
    retries: int
    duration: float | None
    path: str
    skipCode: str | None
    # waves
    wave: int
    results: dict[str, dict[str, object]]
    unhealthy: list[str]
    notStarted: list[int]
    # after the run
    subscription: str
    error: str
    fallback: str
    states: dict[str, str]
    events: list[Event]
    expected: int
    missing: list[str]
    interrupted: bool
    abandoned: bool
    signal: str                      # interrupted: SIGINT or SIGTERM (empty when not known)
    line: int                        # corrupt: the line that was not a record
    linkError: str                   # run: why a journal kept elsewhere is not linked in the state dir
    confirmedBy: str                 # run, resume: how the operator said go (report.CONFIRMED_BY)
    # the batch engine (batch.py): chunk, chunk-accepted, chunk-lost, resend, cancel; outcome
    chunk: int                       # the chunk's number (1-based, in sending order)
    indexes: list[int]               # the plan steps a chunk (or a resend) carries
    location: str                    # the region of a chunk's VMs (ComputeSchedule's locationparameter)
    opType: str                      # Deallocate, Start or Hibernate
    retryPolicy: dict[str, int] | None
    operations: dict[str, str]       # chunk-accepted, cancel: step index -> ComputeSchedule operationId
    refused: dict[str, str]          # chunk-accepted: step index -> "(errorCode) errorDetails"
    operationId: str | None          # outcome (batch): the VM's operationId
    evidenceKey: str                 # evidence (batch): the step's operationId, or correlationId#index


class Record(RecordFields, total=False):
    ts: str
    type: Required[str]


def state_dir() -> Path:
    """Where run journals go: $XDG_STATE_HOME/vmctl/runs, else ~/.local/state/vmctl/runs."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "vmctl" / "runs"


def default_path(run_id: str) -> Path:
    return state_dir() / f"{run_id}.jsonl"


def journals() -> list[Path]:
    """The run journals (`*.jsonl`) in the state directory, newest first by the start time in their
    run record (microseconds: two runs may start in one second); files that are not journals last."""
    d = state_dir()
    try:
        # a link (a run journaled elsewhere) is followed; a dangling one (its journal was removed) is left out
        found = list(dict.fromkeys(p.resolve() for p in d.iterdir() if p.suffix == ".jsonl" and p.is_file()))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise InputError(f"cannot read the state directory {d}: {exc.strerror}.",
                         "Check its permissions (XDG_STATE_HOME sets where it is).") from exc

    def started(p: Path) -> str:
        try:
            with open(p, "rb") as fh:
                head = json.loads(fh.readline(FIRST_LINE_MAX).decode("utf-8"))
            return str(head.get("ts") or "") if isinstance(head, dict) and head.get("type") == "run" else ""
        except (OSError, ValueError):
            return ""

    return sorted(found, key=lambda p: (started(p), p.name), reverse=True)  # unreadable ones last


def now_iso() -> str:
    return stamp()


# ------------------------------------------------------------------ private files and directories
def _label(path: Path, flag: str | None) -> str:
    return f"{flag} {path}" if flag else str(path)


def mkdirs_private(path: Path) -> None:
    """Create `path` and any missing parents with mode 0700 (existing ones are left as they are).
    Raises OSError."""
    missing = []
    p = path
    while not os.path.lexists(p) and p != p.parent:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            pass


def private_dir(path: Path, *, flag: str | None = None, tighten: bool = False) -> Path:
    """Make sure directory `path` exists; every directory created here (parents included) gets mode
    0700. With `tighten`, an existing one owned by this user loses its group and other bits (for
    vmctl's own state directory; never for a directory the user named). InputError (exit 2), naming
    the directory, when it cannot be created or is not a directory."""
    try:
        mkdirs_private(path)
        if not path.is_dir():
            raise InputError(f"{_label(path, flag)} is not a directory.", "Give a path inside a directory.")
        if tighten:
            st = path.stat()
            if st.st_uid == os.getuid() and st.st_mode & 0o077:
                os.chmod(path, 0o700)
    except OSError as exc:
        raise InputError(f"cannot create directory {path}: {exc.strerror}.",
                         "Check the path and its permissions, or give another path.") from exc
    return path


def ensure_state_dir() -> Path:
    """~/.local/state/vmctl and its runs/ with mode 0700 (journals hold who ran what, where)."""
    runs = state_dir()
    private_dir(runs.parent, tighten=True)
    return private_dir(runs, tighten=True)


def write_private(path: Path, data: str | bytes, *, flag: str | None = None, exclusive: bool = False) -> None:
    """Write a file only its owner can read (mode 0600): reports, plans, bundle files.

    `exclusive`: the file must not exist (created with O_EXCL; bundle files are never
    overwritten). Otherwise the text goes to a private temporary file in the same directory that
    then replaces `path` atomically: a reader never sees half a report, and an existing file's
    looser mode is not inherited. The parent directory must exist. InputError (exit 2) naming
    `flag` and `path` on any OSError; nothing is left behind then.
    """
    raw = data.encode("utf-8") if isinstance(data, str) else data
    label = _label(path, flag)
    tmp: str | None = None
    try:
        if exclusive:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        else:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # mode 0600
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        if tmp is not None:
            if path.is_dir():
                raise IsADirectoryError(21, "Is a directory")
            os.replace(tmp, path)
            tmp = None
    except FileExistsError as exc:
        raise InputError(f"{label} already exists; it is never overwritten.", "Give a new path.") from exc
    except OSError as exc:
        raise InputError(f"cannot write {label}: {exc.strerror or exc}.",
                         "Check the path and its permissions, or give another path.") from exc
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


# ------------------------------------------------------------------ the journal
def open_private_append(path: Path, label: str, *, exclusive: bool = False) -> TextIO:
    """`path` opened to append, created 0600 (FileExistsError when `exclusive` and it exists); an
    InputError naming `label` when it is a directory or cannot be written."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | (os.O_EXCL if exclusive else 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise
    except IsADirectoryError as exc:
        raise InputError(f"{label} {path} is a directory.", "Give the path of a .jsonl file.") from exc
    except OSError as exc:
        raise InputError(f"cannot write {label} {path}: {exc.strerror}.",
                         "Check its permissions and its directory's, or give another path.") from exc
    return os.fdopen(fd, "a", encoding="utf-8")


def _link_into_state_dir(path: Path, run_id: str) -> str:
    """A symlink <state>/runs/<run id>.jsonl -> path; the reason when it could not be made (the
    run goes on: the link only helps `vmctl runs` find it, and the run record says why not)."""
    try:
        ensure_state_dir()
        os.symlink(os.path.abspath(path), state_dir() / f"{run_id}.jsonl")
    except OSError as exc:
        return f"not listed in {state_dir()}: {exc.strerror or exc}"
    return ""


class Journal:
    """Append-only JSONL, mode 0600. A new journal is created exclusively: an existing file is never
    overwritten (InputError). `append=True` continues an existing one (resume, evidence)."""

    def __init__(self, path: Path, append: bool = False) -> None:
        self.path = path
        self.records: list[Record] = []  # what this object wrote, as read back would give it
        if os.path.abspath(path.parent) == os.path.abspath(state_dir()):
            ensure_state_dir()
        else:
            private_dir(path.parent)
        try:
            self._fh = open_private_append(path, "journal", exclusive=not append)
        except FileExistsError as exc:
            raise InputError(f"--journal {path} already exists; a journal is never overwritten: give a new path.",
                             "Leave --journal out for a new file under " f"{state_dir()}.") from exc
        self._lock = threading.Lock()
        # a journal kept elsewhere (--journal PATH) gets a link in the state directory, so that
        # `vmctl runs` and `--last` find every run
        self._link = not append and os.path.abspath(path.parent) != os.path.abspath(state_dir())

    def write(self, type_: str, **fields: Unpack[RecordFields]) -> None:
        if type_ == "run" and self._link and fields.get("runId"):
            self._link = False
            error = _link_into_state_dir(self.path, str(fields.get("runId")))
            if error:
                fields["linkError"] = error
        record = {"ts": now_iso(), "type": type_, **fields}
        line = json.dumps(record, default=str, separators=(",", ":"))
        with self._lock:
            self._fh.write(line + "\n")
            self._fh.flush()
            self.records.append(cast(Record, json.loads(line)))

    def close(self) -> None:
        with self._lock:
            if not self._fh.closed:
                self._fh.flush()
                os.fsync(self._fh.fileno())
                self._fh.close()


FIRST_LINE_MAX = 1 << 20  # the run record is small; a longer first line is not a journal


def _not_journal(p: Path, why: str) -> InputError:
    return InputError(f"{p} is not a vmctl journal: {why}.", "Give the .jsonl path vmctl printed for the run.")


def read(path: str | Path) -> list[Record]:
    """Every record of a journal. InputError (exit 2) naming the file when it is missing, unreadable,
    or not a vmctl journal (not UTF-8, not JSONL, no run record first, no usable plan record).

    A line after the first that is not a JSON record (a line cut short by a crash, the only kind
    expected) becomes {"type": "corrupt", "line": n}; everything after it is kept."""
    p = Path(path)
    if p.is_dir():
        raise InputError(f"journal {p} is a directory.", "Give the .jsonl file vmctl printed for the run.")
    if not p.is_file():
        raise InputError(f"journal {p} does not exist.", "vmctl prints each run's journal path; runs live in "
                         f"{state_dir()}.")
    records: list[Record] = []
    try:
        with open(p, "rb") as fh:
            first = fh.readline(FIRST_LINE_MAX)
            if not first.strip():
                raise _not_journal(p, "it is empty" if not first else "its first line is empty")
            if not first.endswith(b"\n") and fh.peek(1):
                raise _not_journal(p, "its first line is not a run record")
            try:
                head = json.loads(first.decode("utf-8"))
            except UnicodeDecodeError:
                raise _not_journal(p, "it is not UTF-8 text") from None
            except ValueError:
                raise _not_journal(p, "line 1 is not JSON (a journal is JSON Lines)") from None
            if not isinstance(head, dict) or head.get("type") != "run" or not isinstance(head.get("runId"), str):
                raise _not_journal(p, "it does not start with a run record")
            records.append(cast(Record, head))
            for n, raw in enumerate(fh, 2):
                if not raw.strip():
                    continue
                try:
                    rec = json.loads(raw.decode("utf-8"))
                except ValueError:  # UnicodeDecodeError included
                    rec = None
                if isinstance(rec, dict) and isinstance(rec.get("type"), str):
                    records.append(cast(Record, rec))
                else:
                    # a line cut short by a crash is the only kind we expect; anything after it is kept
                    records.append({"type": "corrupt", "line": n})
    except OSError as exc:
        raise InputError(f"cannot read journal {p}: {exc.strerror}.", "Check its permissions.") from exc
    plan = next((r for r in records if r["type"] == "plan"), None)
    if plan is None:
        raise _not_journal(p, "no plan record (the run stopped before its plan was written)")
    from .planner import plan_from_json

    try:
        plan_from_json(plan["plan"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _not_journal(p, f"its plan record is damaged ({type(exc).__name__}: {exc})") from None
    return records


def iter_type(records: list[Record], type_: str) -> Iterator[Record]:
    return (r for r in records if r.get("type") == type_)
