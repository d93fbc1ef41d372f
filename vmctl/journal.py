"""The run journal: append-only JSONL, the plan first, then one line per event, flushed as it
happens (a crash loses nothing already written). `resume` and `report` read it back.

Never written here: tokens, secrets, environment values. Hook output is kept (it is the
operator's own script's output).
"""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from .errors import InputError


def state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "vmctl" / "runs"


def default_path(run_id: str) -> Path:
    return state_dir() / f"{run_id}.jsonl"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


class Journal:
    def __init__(self, path: Path, append: bool = False) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(path, "a" if append else "x", encoding="utf-8")  # never overwrite a journal
        self._lock = threading.Lock()

    def write(self, type_: str, **fields: Any) -> None:
        record = {"ts": now_iso(), "type": type_, **fields}
        line = json.dumps(record, default=str, separators=(",", ":"))
        with self._lock:
            self._fh.write(line + "\n")
            self._fh.flush()

    def close(self) -> None:
        with self._lock:
            if not self._fh.closed:
                self._fh.flush()
                os.fsync(self._fh.fileno())
                self._fh.close()


def read(path: str | Path) -> list[dict[str, Any]]:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"journal {p} does not exist.", "vmctl prints each run's journal path; runs live in "
                         f"{state_dir()}.")
    records = []
    with open(p, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except ValueError:
                # a line cut short by a crash is the only kind we expect; anything after it is kept
                records.append({"type": "corrupt", "line": n})
    if not records or records[0].get("type") != "run":
        raise InputError(f"{p} is not a vmctl run journal.", "Give the .jsonl path vmctl printed for the run.")
    return records


def iter_type(records: list[dict[str, Any]], type_: str) -> Iterator[dict[str, Any]]:
    return (r for r in records if r.get("type") == type_)
