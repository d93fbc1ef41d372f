"""Activity Log: Administrative events for every write, visible after an ingestion delay.

Implements the `$filter` grammar of `eventtypes/management/values` as the service documents it
(an `eventTimestamp` window plus at most one of resourceGroupName, resourceUri/resourceId,
resourceProvider, correlationId) and what clients send in practice (caller, status, levels,
eventChannels, unquoted timestamps), `$select`, paging with absolute nextLinks, and the 90-day
retention limit. Each event becomes visible after its own (jittered) ingestion delay, so the
events of one operation are not always visible in the order they happened. Left out: the Service
Health, Alert, Autoscale and Policy categories, and the tenant-level endpoint.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

RETENTION_DAYS = 90
_SCOPE_FIELDS = {"resourcegroupname", "resourceuri", "resourceid", "resourceprovider", "correlationid"}
_ALL_FIELDS = _SCOPE_FIELDS | {"eventtimestamp", "caller", "status", "levels", "eventchannels"}
SELECTABLE = {
    "authorization", "caller", "channels", "claims", "correlationId", "description", "eventDataId",
    "eventName", "eventTimestamp", "httpRequest", "level", "operationId", "operationName",
    "properties", "resourceGroupName", "resourceProviderName", "resourceId", "resourceType",
    "status", "submissionTimestamp", "subStatus", "subscriptionId", "tenantId", "category", "id",
}
_SELECT_LOWER = {s.lower(): s for s in SELECTABLE}


class FilterError(ValueError):
    pass


def iso7(ts: float) -> str:
    """ISO-8601 with 7 fractional digits and Z, as the Activity Log writes timestamps."""
    dt = datetime.fromtimestamp(ts, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond:06d}0Z"


def _ticks(ts: float) -> int:
    return int(ts * 10_000_000) + 621_355_968_000_000_000


@dataclass
class Event:
    ts: float            # eventTimestamp (epoch)
    visible_at: float    # submissionTimestamp: when queries can see it
    seq: int
    body: dict[str, Any] = field(repr=False)
    # lower-cased fields for filtering
    rg: str = ""
    rid: str = ""
    provider: str = ""
    correlation: str = ""
    caller: str = ""
    status: str = ""
    level: str = ""


_SUBSTATUS = {
    "Accepted": ("Accepted", "Accepted (HTTP Status Code: 202)"),
    "Succeeded": ("OK", "OK (HTTP Status Code: 200)"),
    "Started": ("", ""),
}


class ActivityLog:
    def __init__(self) -> None:
        self._events: list[Event] = []
        self._seq = 0

    def clear(self) -> None:
        self._events.clear()

    def __len__(self) -> int:
        return len(self._events)

    def emit(
        self, *, now: float, delay: float, status: str, operation: str, resource_id: str,
        subscription_id: str, tenant_id: str, resource_group: str, correlation_id: str,
        operation_id: str, caller: str, claims: dict[str, str], client_request_id: str,
        http_status: int | None = None, error: dict[str, str] | None = None, lro_status: str = "Failed",
    ) -> None:
        """`lro_status` is the operation's own end state for a Failed event: "Failed", or "Canceled"
        for an operation preempted by a newer one (then there is no HTTP status to report)."""
        self._seq += 1
        event_id = str(uuid.uuid4())
        op_name = f"Microsoft.Compute/virtualMachines/{operation}/action"
        if status in _SUBSTATUS:
            sub_value, sub_local = _SUBSTATUS[status]
        else:
            code = {409: "Conflict", 400: "BadRequest", 500: "InternalServerError", 503: "ServiceUnavailable"}.get(
                http_status or 0, "")
            sub_value = code
            sub_local = f"{code} (HTTP Status Code: {http_status})" if code else ""
        level = "Error" if status == "Failed" else "Informational"
        properties = {
            "eventCategory": "Administrative",
            "entity": resource_id,
            "message": op_name,
            "hierarchy": f"{tenant_id}/{subscription_id}",
        }
        if status == "Accepted":
            properties["statusCode"] = "Accepted"
        elif status == "Succeeded":
            properties["statusCode"] = "OK"
        elif status == "Failed":
            if lro_status != "Canceled":
                properties["statusCode"] = sub_value or "InternalServerError"
            if error:
                properties["statusMessage"] = json.dumps({"status": lro_status, "error": error})
        body: dict[str, Any] = {
            "authorization": {"action": op_name, "scope": resource_id},
            "caller": caller,
            "channels": "Operation",
            "claims": claims,
            "correlationId": correlation_id,
            "description": "",
            "eventDataId": event_id,
            "eventName": {
                "value": "BeginRequest" if status == "Started" else "EndRequest",
                "localizedValue": "Begin request" if status == "Started" else "End request",
            },
            "category": {"value": "Administrative", "localizedValue": "Administrative"},
            "httpRequest": {"clientRequestId": client_request_id, "clientIpAddress": "127.0.0.1", "method": "POST"},
            "id": f"{resource_id}/events/{event_id}/ticks/{_ticks(now)}",
            "level": level,
            "resourceGroupName": resource_group,
            "resourceProviderName": {"value": "Microsoft.Compute", "localizedValue": "Microsoft.Compute"},
            "resourceId": resource_id,
            "resourceType": {"value": "Microsoft.Compute/virtualMachines", "localizedValue": "Microsoft.Compute/virtualMachines"},
            "operationId": operation_id,
            "operationName": {"value": op_name, "localizedValue": op_name},
            "properties": properties,
            "status": {"value": status, "localizedValue": status},
            "subStatus": {"value": sub_value, "localizedValue": sub_local},
            "eventTimestamp": iso7(now),
            "submissionTimestamp": iso7(now + delay),
            "subscriptionId": subscription_id,
            "tenantId": tenant_id,
        }
        self._events.append(Event(
            ts=now, visible_at=now + delay, seq=self._seq, body=body, rg=resource_group.lower(),
            rid=resource_id.lower(), provider="microsoft.compute", correlation=correlation_id.lower(),
            caller=caller.lower(), status=status.lower(), level=level.lower(),
        ))

    def query(
        self, subscription_id: str, flt: "ParsedFilter", cutoff: float,
    ) -> list[Event]:
        """Events visible at `cutoff`, matching the filter, newest first."""
        sub = f"/subscriptions/{subscription_id.lower()}/"
        out = [
            e for e in self._events
            if e.visible_at <= cutoff and e.rid.startswith(sub) and flt.matches(e)
        ]
        out.sort(key=lambda e: (e.ts, e.seq), reverse=True)
        return out


@dataclass
class ParsedFilter:
    start: float
    end: float
    eq: dict[str, str]

    def matches(self, e: Event) -> bool:
        if not (self.start <= e.ts <= self.end):
            return False
        for key, value in self.eq.items():
            if key == "resourcegroupname" and e.rg != value:
                return False
            if key in ("resourceuri", "resourceid") and e.rid != value:
                return False
            if key == "resourceprovider" and e.provider != value:
                return False
            if key == "correlationid" and e.correlation != value:
                return False
            if key == "caller" and e.caller != value:
                return False
            if key == "status" and e.status != value:
                return False
            if key == "levels" and e.level not in {v.strip() for v in value.split(",")}:
                return False
        return True


_CLAUSE = re.compile(r"^\s*(\w+)\s+(eq|ge|gt|le|lt)\s+(.+?)\s*$", re.IGNORECASE)


def _parse_time(text: str) -> float:
    t = text.strip()
    try:
        dt = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        # 7 fractional digits are more than fromisoformat accepts on older Pythons
        m = re.match(r"^(.*?\.\d{6})\d*(Z|[+-]\d\d:\d\d)?$", t)
        if not m:
            raise FilterError(f"'{text}' is not a valid ISO-8601 timestamp") from None
        dt = datetime.fromisoformat(m.group(1) + (m.group(2) or "+00:00").replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def parse_filter(text: str | None, now: float) -> ParsedFilter:
    if not text or not text.strip():
        raise FilterError("The $filter query parameter is required: give at least eventTimestamp ge '<start>'.")
    start: float | None = None
    end: float | None = None
    eq: dict[str, str] = {}
    for raw in re.split(r"\s+and\s+", text.strip(), flags=re.IGNORECASE):
        m = _CLAUSE.match(raw)
        if not m:
            raise FilterError(f"The filter clause '{raw.strip()}' is not of the form <field> <op> '<value>'.")
        fld, op, value = m.group(1).lower(), m.group(2).lower(), m.group(3).strip()
        if len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1]
        if fld not in _ALL_FIELDS:
            raise FilterError(f"The filter field '{m.group(1)}' is not supported.")
        if fld == "eventtimestamp":
            ts = _parse_time(value)
            if op in ("ge", "gt"):
                start = ts
            elif op in ("le", "lt"):
                end = ts
            else:
                raise FilterError("eventTimestamp takes ge/gt or le/lt.")
            continue
        if op != "eq":
            raise FilterError(f"The filter field '{m.group(1)}' only supports eq.")
        eq[fld] = value.lower()
    if start is None:
        raise FilterError("The $filter must give a start time: eventTimestamp ge '<start>'.")
    scopes = [k for k in eq if k in _SCOPE_FIELDS]
    if len(scopes) > 1:
        raise FilterError(
            "Only one of resourceGroupName, resourceUri, resourceProvider and correlationId may be "
            f"used in one filter; got {', '.join(scopes)}."
        )
    end = now if end is None else end
    oldest = now - timedelta(days=RETENTION_DAYS).total_seconds()
    if start < oldest:
        raise FilterError(
            f"The start time {iso7(start)} is more than {RETENTION_DAYS} days in the past. The Activity "
            f"Log keeps events for {RETENTION_DAYS} days; query a window that starts after {iso7(oldest)}."
        )
    if end < start:
        raise FilterError("The end time of the query window is before its start time.")
    return ParsedFilter(start, end, eq)


def parse_select(text: str | None) -> list[str] | None:
    if not text:
        return None
    out = []
    for part in text.split(","):
        name = part.strip()
        if not name:
            continue
        canon = _SELECT_LOWER.get(name.lower())
        if canon is None:
            raise FilterError(f"'{name}' is not a field that $select accepts.")
        out.append(canon)
    return out
