"""ARM error answers, one class per named error (as moto does it).

Each answer is `{"error": {"code", "message"[, "details"]}}` with an HTTP status and headers;
`SimError` carries all of them, and its subclasses fix the status and code of one ARM error so a
handler raises `ResourceGroupNotFound(rg)` rather than spelling out 404 and the code each time.
"""

from __future__ import annotations

import json
from typing import Any


class SimError(Exception):
    """An ARM error answer: status, code and message (rendered as {"error": {...}})."""

    def __init__(
        self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(f"({code}) {message}")
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}
        self.details = details

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            err["details"] = self.details
        return {"error": err}


class ArmError(SimError):
    """A named ARM error: the subclass fixes STATUS and CODE, the caller gives the message."""

    STATUS = 500
    CODE = "InternalServerError"

    def __init__(
        self, message: str, *, headers: dict[str, str] | None = None,
        details: list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__(self.STATUS, self.CODE, message, headers=headers, details=details)


# ------------------------------------------------------------------ 400
class BadRequest(ArmError):
    STATUS, CODE = 400, "BadRequest"


class InvalidParameter(ArmError):
    STATUS, CODE = 400, "InvalidParameter"


class InvalidFilterInQueryString(ArmError):
    STATUS, CODE = 400, "InvalidFilterInQueryString"

    def __init__(self, flt: str) -> None:
        super().__init__(f"Invalid $filter '{flt}' specified in the query string.")


class InvalidSkipToken(ArmError):
    STATUS, CODE = 400, "InvalidSkipToken"

    def __init__(self, token: str) -> None:
        super().__init__(f"The $skiptoken '{token}' is not valid.")


class MissingApiVersion(ArmError):
    STATUS, CODE = 400, "MissingApiVersionParameter"

    def __init__(self) -> None:
        super().__init__("The api-version query parameter (?api-version=) is required for all requests.")


class NoRegisteredProviderFound(ArmError):
    """ARM's answer to an api-version the resource provider does not serve (ComputeSchedule: the
    simulator serves 2024-10-01 and 2025-05-01 only; Resource Graph: the versions of wire §13)."""
    STATUS, CODE = 400, "NoRegisteredProviderFound"

    def __init__(self, location: str, api_version: str, resource_type: str, supported: str) -> None:
        super().__init__(f"No registered resource provider found for location '{location}' and API version "
                         f"'{api_version}' for type '{resource_type}'. The supported api-versions are '{supported}'.")


class ScheduleRequestInvalid(ArmError):
    """A ComputeSchedule request its validation refuses (no ids, more than 100, retryPolicy out of
    range, ids outside the path's subscription or region, ...). Wire §12.5: the real codes and texts
    are not established; the simulator answers 400 with the ARM envelope and code BadRequest."""
    STATUS, CODE = 400, "BadRequest"


class AmbiguousVm(ArmError):
    """The simulator's own (control endpoint): a VM name found in several resource groups."""
    STATUS, CODE = 400, "AmbiguousVm"


# ------------------------------------------------------------------ 401, 403
class AuthenticationFailed(ArmError):
    """401 with ARM's `WWW-Authenticate` challenge. `code` is AuthenticationFailed (no token),
    InvalidAuthenticationToken or ExpiredAuthenticationToken."""
    STATUS, CODE = 401, "AuthenticationFailed"

    def __init__(self, message: str, *, tenant_id: str, code: str | None = None) -> None:
        super().__init__(message, headers={
            "WWW-Authenticate": (f'Bearer authorization_uri="https://login.windows.net/{tenant_id}", '
                                 f'error="invalid_token", error_description="{message}"')})
        if code is not None:
            self.code = code


class ExpiredAuthenticationToken(ArmError):
    STATUS, CODE = 401, "ExpiredAuthenticationToken"


class AuthorizationFailed(ArmError):
    STATUS, CODE = 403, "AuthorizationFailed"


# ------------------------------------------------------------------ 404
class NotFound(ArmError):
    STATUS, CODE = 404, "NotFound"


class RouteNotFound(NotFound):
    def __init__(self, method: str, path: str) -> None:
        super().__init__(f"The simulator does not implement {method} {path}.")


class OperationNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("The entity was not found in this Azure location.")


class SubscriptionNotFound(ArmError):
    STATUS, CODE = 404, "SubscriptionNotFound"

    def __init__(self, sub: str) -> None:
        super().__init__(f"The subscription '{sub}' could not be found.")


class ResourceGroupNotFound(ArmError):
    STATUS, CODE = 404, "ResourceGroupNotFound"

    def __init__(self, rg: str) -> None:
        super().__init__(f"Resource group '{rg}' could not be found.")


class ResourceNotFound(ArmError):
    STATUS, CODE = 404, "ResourceNotFound"


# ------------------------------------------------------------------ 409
class OperationNotAllowed(ArmError):
    """Compute's synchronous refusal of an action in the VM's state."""
    STATUS, CODE = 409, "OperationNotAllowed"


class Conflict(ArmError):
    STATUS, CODE = 409, "Conflict"


# ------------------------------------------------------------------ 429
class Throttled(ArmError):
    """429 with `Retry-After` (whole seconds)."""
    STATUS, CODE = 429, "TooManyRequests"

    def __init__(self, message: str, retry_after: int, *, details: list[dict[str, str]] | None = None) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after)}, details=details)


class TooManyRequests(Throttled):
    pass


class SubscriptionRequestsThrottled(Throttled):
    """ARM's own limit (the subscription's read or write bucket)."""
    CODE = "SubscriptionRequestsThrottled"


class ComputeThrottled(Throttled):
    """Compute's API-rate policy (`OperationNotAllowed` 429 with a TooManyRequests detail)."""
    CODE = "OperationNotAllowed"

    def __init__(self, bucket: str, retry_after: int, capacity: float) -> None:
        super().__init__(
            "The server rejected the request because too many requests have been received for this subscription.",
            retry_after,
            details=[{"code": "TooManyRequests", "target": bucket, "message": json.dumps(
                {"operationGroup": bucket, "allowedRequestCount": int(capacity),
                 "measuredRequestCount": int(capacity) + 1})}],
        )


# ------------------------------------------------------------------ 5xx
class InternalServerError(ArmError):
    """500, or another 5xx status an injected fault names."""
    STATUS, CODE = 500, "InternalServerError"

    def __init__(self, message: str, *, status: int | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message, headers=headers)
        if status is not None:
            self.status = status


class BadGateway(ArmError):
    STATUS, CODE = 502, "BadGateway"


class ServiceUnavailable(ArmError):
    STATUS, CODE = 503, "ServiceUnavailable"


class GatewayTimeout(ArmError):
    STATUS, CODE = 504, "GatewayTimeout"
