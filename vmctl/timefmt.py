"""Times for people: UTC and local, and relative ("opens in 2 days", "closed 3 hours ago"). Pure."""

from __future__ import annotations

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


def iso(when: datetime | None) -> str | None:
    return when.astimezone(timezone.utc).isoformat().replace("+00:00", "Z") if when else None


def parse_duration(text: str, flag: str) -> float:
    """Seconds from a flag value such as 30s, 5m, 1h or 0; an InputError naming `flag` otherwise."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not m:
        raise InputError(f"{flag} '{text}' is not a duration.", "Examples: 30s, 5m, 1h, 0.")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]
