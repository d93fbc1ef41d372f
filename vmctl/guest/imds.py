"""The guest's IMDS client: GET and POST Scheduled Events, GET the instance's compute metadata.

Standard library only (urllib): two plain-HTTP endpoints polled about once a second need no
connection pool or retry framework, and nothing from outside the VM's own link must be involved,
so proxies are bypassed (IMDS "clients must bypass proxies", wire §14.1). Every failure becomes
an ImdsError with a kind the watcher's backoff understands; this module never retries by itself.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Literal

from .events import Document, DocumentError, parse_document

DEFAULT_ENDPOINT = "http://169.254.169.254"
EVENTS_PATH = "/metadata/scheduledevents?api-version=2020-07-01"
COMPUTE_PATH = "/metadata/instance/compute?api-version=2021-12-13"
FIRST_CALL_TIMEOUT = 150.0   # "the first call may take up to 2 minutes" (wire §14.2)
CALL_TIMEOUT = 10.0

ErrorKind = Literal["unreachable", "status", "malformed"]


class ImdsError(Exception):
    def __init__(self, kind: ErrorKind, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.kind, self.message, self.status = kind, message, status


@dataclass(frozen=True)
class Compute:
    """What the watcher learns once about its VM (`/metadata/instance/compute`)."""
    name: str
    resource_id: str
    resource_group: str
    subscription_id: str
    update_domain: str
    fault_domain: str
    zone: str
    scale_set: str
    priority: str


class ImdsClient:
    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, timeout: float = CALL_TIMEOUT,
                 first_timeout: float = FIRST_CALL_TIMEOUT) -> None:
        self.base = endpoint.rstrip("/")
        self.timeout, self.first_timeout = timeout, first_timeout
        self.answered = False  # until IMDS answers once, calls get the long first-call timeout
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _call(self, path: str, body: bytes | None = None) -> str:
        req = urllib.request.Request(self.base + path, data=body, method="POST" if body is not None else "GET",
                                     headers={"Metadata": "true", "Content-Type": "application/json"})
        timeout = self.timeout if self.answered else self.first_timeout
        try:
            with self._opener.open(req, timeout=timeout) as resp:
                text: str = resp.read(4 * 1024 * 1024).decode("utf-8", errors="replace")
        except urllib.error.HTTPError as exc:
            detail = exc.read(2000).decode("utf-8", errors="replace").strip()
            self.answered = True
            raise ImdsError("status", f"IMDS answered HTTP {exc.code}: {detail[:200] or exc.reason}",
                            exc.code) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ImdsError("unreachable", f"IMDS at {self.base} did not answer: {reason}") from None
        self.answered = True
        return text

    def events(self) -> Document:
        text = self._call(EVENTS_PATH)
        try:
            return parse_document(text)
        except DocumentError as exc:
            raise ImdsError("malformed", f"IMDS sent a malformed Scheduled Events document: {exc}") from None

    def approve(self, event_ids: list[str]) -> None:
        body = json.dumps({"StartRequests": [{"EventId": i} for i in event_ids]}).encode()
        self._call(EVENTS_PATH, body)

    def compute(self) -> Compute:
        text = self._call(COMPUTE_PATH)
        try:
            raw = json.loads(text)
            name = raw["name"]
            if not isinstance(raw, dict) or not isinstance(name, str) or not name:
                raise ValueError
        except (ValueError, KeyError, TypeError):
            raise ImdsError("malformed", f"IMDS instance metadata has no compute name: {text[:80]!r}") from None

        def s(key: str) -> str:
            v = raw.get(key, "")
            return v if isinstance(v, str) else str(v)

        return Compute(name=name, resource_id=s("resourceId"), resource_group=s("resourceGroupName"),
                       subscription_id=s("subscriptionId"), update_domain=s("platformUpdateDomain"),
                       fault_domain=s("platformFaultDomain"), zone=s("zone"), scale_set=s("vmScaleSetName"),
                       priority=s("priority"))
