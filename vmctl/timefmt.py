"""Times for people: UTC and local, and relative ("opens in 2 days", "closed 3 hours ago"). Pure."""

from __future__ import annotations

from datetime import datetime, timezone


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
