"""Times for people: UTC and local, and relative ("opens in 2 days", "closed 3 hours ago"). Pure."""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone

from .errors import InputError


def relative(when: datetime, now: datetime) -> str:
    """'in 2 days' / '3 hours ago' / 'now'."""
    secs = (when - now).total_seconds()
    future = secs >= 0
    secs = abs(secs)
    if secs < 60:
        return "now"
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if secs >= size * 0.95:  # 23 h 59 m reads "1 day", not "24 hours"
            n = max(1, round(secs / size))
            text = f"{n} {unit}{'s' if n != 1 else ''}"
            return f"in {text}" if future else f"{text} ago"
    return "now"  # pragma: no cover


def utc(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def local(when: datetime) -> str:
    return when.astimezone().strftime("%Y-%m-%d %H:%M %Z")


def parse_iso(text: str) -> datetime:
    """ISO-8601 (Python 3.11 reads the `Z` suffix itself); a time without a zone is UTC. ValueError
    for anything else."""
    dt = datetime.fromisoformat(text.strip())
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def stamp(when: datetime | None = None) -> str:
    """UTC, microseconds always written, `Z`: the timestamp of every record vmctl writes."""
    return (when or datetime.now(timezone.utc)).astimezone(timezone.utc).isoformat(timespec="microseconds") \
        .replace("+00:00", "Z")


def iso(when: datetime | None) -> str | None:
    return when.astimezone(timezone.utc).isoformat().replace("+00:00", "Z") if when else None


# Upper bounds for flags that make vmctl wait. Beyond them a value is a typo, not an intent, and an
# absurd one (1e400 seconds) would overflow the timers that use it.
MAX_WAIT = 7 * 86400.0          # --pause, --evidence-wait, --wait: a week
MAX_TIMEOUT = 7 * 86400.0       # --timeout: a week (ARM's own operations give up long before)
MAX_HOOK_TIMEOUT = 86400.0      # --hook-timeout: a day (Azure's graceful-shutdown window is 5 min)

_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _span(seconds: float) -> str:
    """7 days, 1 day, 12 hours, 90 s: for the bound in a message."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds:g} s"


def _short(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."


def parse_duration(text: str, flag: str, *, maximum: float = MAX_WAIT) -> float:
    """Seconds from a flag value such as 30s, 5m, 1h, 2d or 0; finite and at most `maximum`.

    Raises InputError naming `flag` (exit 2) for anything else: not a duration, or too long.
    """
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if not m:
        raise InputError(f"{flag} '{_short(text)}' is not a duration.", "Examples: 30s, 5m, 1h, 0.")
    seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if not math.isfinite(seconds) or seconds > maximum:
        raise InputError(f"{flag} '{_short(text.strip())}' is longer than {_span(maximum)}, the most vmctl waits.",
                         f"Give at most {_span(maximum)}, e.g. 30s, 5m, 1h.")
    return seconds


def parse_seconds(value: float, flag: str, *, minimum_exclusive: float = 0.0, maximum: float = MAX_TIMEOUT) -> float:
    """Check a float flag (Typer has already parsed it, so `nan` arrives as float('nan')): finite,
    greater than `minimum_exclusive` and at most `maximum`. Returns it; InputError (exit 2) otherwise.

    --timeout: maximum=MAX_TIMEOUT (7 days); --hook-timeout: maximum=MAX_HOOK_TIMEOUT (1 day).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{flag} '{value}' is not a number of seconds.",
                         f"Give a number above {minimum_exclusive:g} and at most {maximum:g} ({_span(maximum)}), "
                         f"e.g. {flag} 300.")
    if value <= minimum_exclusive:
        raise InputError(f"{flag} must be more than {minimum_exclusive:g} seconds, not {value:g}.",
                         f"Give a number of seconds, e.g. {flag} 300.")
    if value > maximum:
        raise InputError(f"{flag} {value:g} is more than {maximum:g} seconds ({_span(maximum)}), the most vmctl allows.",
                         f"Give at most {maximum:g}.")
    return float(value)
